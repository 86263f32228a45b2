"""GPT-2's byte-level BPE alphabet, shared by the tiny tokenizer and the GGUF vocabulary reader."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def byte_chars() -> dict[int, str]:
    """Printable bytes map to themselves, the rest to code points from 256 up, so every byte has a
    visible one-character name (the table byte-level vocabularies are written in)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table
