"""Calibration tokens for an importance matrix: plain text, or the chat-format JSONL that
compressed-tensors builds take (one conversation per line), each conversation rendered through
the build's own chat template (tokenizer.chat_template in the GGUF, the family's template as the
converter copied it) and the renderings joined. Tokenized by the GGUF's vocabulary in llama.cpp.
"""

from __future__ import annotations

from pathlib import Path

from registry.errors import RegistryError


def _metadata(gguf_path: Path) -> dict:
    from gguf import GGUFReader

    r = GGUFReader(gguf_path)
    keep = ("tokenizer.chat_template", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.bos_token_id")
    return {k: r.fields[k].contents() for k in keep if k in r.fields}


def render_text(source: Path, gguf_path: Path) -> str:
    source = Path(source)
    if not source.is_file():
        raise RegistryError(f"calibration file {source} not found; pass a text file or a chat JSONL")
    if source.suffix not in (".jsonl", ".json"):
        text = source.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            raise RegistryError(f"calibration file {source} is empty; give it text to evaluate")
        return text
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from ..compressed_tensors.calibration import read_jsonl

    convs = read_jsonl(source)
    if not convs:
        raise RegistryError(f"calibration file {source} holds no conversation; one JSON object per line")
    template = _metadata(gguf_path).get("tokenizer.chat_template")
    if not template:
        raise RegistryError(f"{gguf_path} carries no chat template to render {source} with; give plain text instead")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    tpl = env.from_string(template)
    return "".join(tpl.render(messages=c, add_generation_prompt=False) for c in convs)


def calibration_tokens(source: Path, gguf_path: Path) -> tuple[list[int], int | None]:
    """(token ids of the calibration text, the BOS id to start each chunk with or None)."""
    import llama_cpp
    from llama_cpp import _internals

    text = render_text(source, gguf_path)
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    m = _internals.LlamaModel(path_model=str(gguf_path), params=params, verbose=False)
    try:
        toks = m.tokenize(text.encode(), add_bos=False, special=Path(source).suffix in (".jsonl", ".json"))
        bos = m.token_bos() if m.add_bos_token() else None
    finally:
        m.close()
    return [t for t in toks if t >= 0], bos
