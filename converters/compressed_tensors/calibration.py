"""Calibration samples: chat conversations rendered with the model's chat template, then tokenized.

Two sources: a Hugging Face dataset by name or local dataset directory (datasets.load_dataset;
rows with a `messages` list, as in neuralmagic/LLM_compression_calibration) or a local JSONL file with one conversation per
line (`{"messages": [...]}` or a bare list of messages). Tokenization follows seed 001:
apply_chat_template(tokenize=False), then max_length/truncation, no padding, no added specials.
Seed 000's length mix (e.g. 90% 256-1024 tokens, 10% 1024-2048) picks a target length per sample.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import RegistryError


@dataclass(frozen=True)
class Bucket:
    min_tokens: int
    max_tokens: int
    fraction: float


@dataclass(frozen=True)
class CalibrationPlan:
    """What the converter calibrates with; stored in the artifact's recipe."""

    source: str
    split: str
    samples: int
    max_seq_len: int
    seed: int
    length_mix: tuple[Bucket, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "dataset": self.source, "split": self.split, "samples": self.samples,
            "max_seq_length": self.max_seq_len, "seed": self.seed,
        }
        if self.length_mix:
            d["length_mix"] = [b.__dict__ for b in self.length_mix]
        return d


def _messages_of(row: Any, where: str) -> list[dict]:
    msgs = row.get("messages") if isinstance(row, dict) else row
    if not isinstance(msgs, list) or not msgs:
        raise RegistryError(
            f"{where}: expected a non-empty list of chat messages (an object with a 'messages' list, "
            "or a JSON list of {\"role\", \"content\"} objects)"
        )
    for m in msgs:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise RegistryError(f"{where}: every message needs string 'role' and 'content' fields")
    return msgs


def read_jsonl(path: Path) -> list[list[dict]]:
    """Conversations from a JSONL file; a broken line is an error that names its line number."""
    out: list[list[dict]] = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise RegistryError(
                    f"{path}: line {n} is not valid JSON ({e.msg} at column {e.colno}); "
                    "fix or remove that line (one conversation per line)"
                ) from None
            out.append(_messages_of(row, f"{path}: line {n}"))
    return out


_FILE_HINT = "pass --calibration FILE (a JSONL file, one {\"messages\": [...]} conversation per line)"


def _offline() -> bool:
    from registry.hub import is_offline

    return is_offline() or os.environ.get("HF_DATASETS_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub (HF_ENDPOINT, or the HTTPS proxy in front of it) cannot be reached, or None if a TCP
    connection opens. datasets would otherwise retry each request five times, seconds apart, before failing."""
    import socket
    from urllib.parse import urlsplit

    endpoint = os.environ.get("HF_ENDPOINT", "").strip() or "https://huggingface.co"
    via = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or endpoint
    u = urlsplit(via if "://" in via else f"http://{via}")
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        socket.create_connection((u.hostname or "", port), timeout=timeout).close()
    except OSError as e:
        return f"cannot reach {endpoint}" + (f" through {via}" if via != endpoint else "") + f" ({e.strerror or e})"
    return None


def read_hub_dataset(name: str, split: str, *, local: bool = False) -> list[list[dict]]:
    offline = not local and _offline()
    if not local and not offline:
        why = hub_unreachable()
        if why:
            raise RegistryError(f"calibration dataset {name!r} is on the hub, which is out of reach: {why}; "
                                f"{_FILE_HINT}, or set HF_HUB_OFFLINE=1 to use a copy already in the cache")
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - the compress extra brings it
        raise RegistryError("calibration from the hub needs the 'datasets' package (pip install glm-registry[compress])") from e
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # datasets raises many types (network, missing split, bad name)
        if offline:
            raise RegistryError(f"calibration dataset {name!r} is not in the local cache and the hub is off "
                                f"(HF_HUB_OFFLINE); {_FILE_HINT}") from None
        raise RegistryError(f"cannot load calibration dataset {name!r} split {split!r}: {e}") from e
    if "messages" not in ds.column_names:
        raise RegistryError(f"dataset {name!r} has no 'messages' column (columns: {', '.join(ds.column_names)})")
    return [_messages_of(r, f"{name}[{i}]") for i, r in enumerate(ds["messages"])]


def read_conversations(source: str, split: str) -> list[list[dict]]:
    p = Path(source).expanduser()
    if p.is_dir():  # a dataset saved as files (e.g. a hub snapshot): datasets reads it like a hub name
        return read_hub_dataset(str(p), split, local=True)
    if p.exists() or source.endswith((".jsonl", ".json")):
        if not p.is_file():
            raise RegistryError(f"calibration file {p} not found")
        return read_jsonl(p)
    return read_hub_dataset(source, split)


def scaled_mix(mix: tuple[Bucket, ...], max_seq_len: int) -> tuple[Bucket, ...]:
    """The mix shrunk proportionally when --max-seq-len is below its longest bucket (short test runs)."""
    if not mix:
        return mix
    top = max(b.max_tokens for b in mix)
    if top <= max_seq_len:
        return mix
    f = max_seq_len / top
    return tuple(Bucket(max(1, int(b.min_tokens * f)), max(1, int(b.max_tokens * f)), b.fraction) for b in mix)


def target_lengths(n: int, mix: tuple[Bucket, ...], max_seq_len: int, rng: random.Random) -> list[int]:
    """One target length per sample: bucket i gets round(fraction_i * n) samples (the last the rest)."""
    if not mix:
        return [max_seq_len] * n
    out: list[int] = []
    for i, b in enumerate(mix):
        k = n - len(out) if i == len(mix) - 1 else round(b.fraction * n)
        out += [rng.randint(b.min_tokens, min(b.max_tokens, max_seq_len)) for _ in range(k)]
    rng.shuffle(out)
    return out[:n]


def tokenize(convs: list[list[dict]], tokenizer: Any, plan: CalibrationPlan) -> list[list[int]]:
    """Token ids per sample, `plan.samples` of them, drawn with `plan.seed`."""
    if len(convs) < plan.samples:
        raise RegistryError(
            f"calibration set {plan.source} has {len(convs)} conversations but {plan.samples} samples were asked "
            f"for; pass --samples {len(convs)} or less, or a larger set"
        )
    if getattr(tokenizer, "chat_template", None) is None:
        raise RegistryError("the source tokenizer has no chat template to render calibration messages with")
    rng = random.Random(plan.seed)
    picked = rng.sample(convs, plan.samples)
    mix = scaled_mix(plan.length_mix, plan.max_seq_len)
    lengths = target_lengths(plan.samples, mix, plan.max_seq_len, rng)
    ids: list[list[int]] = []
    for msgs, want in zip(picked, lengths):
        text = tokenizer.apply_chat_template(msgs, tokenize=False)
        enc = tokenizer(text, max_length=want, truncation=True, padding=False, add_special_tokens=False)
        toks = list(enc["input_ids"])
        if toks:
            ids.append(toks)
    if len(ids) < plan.samples:
        raise RegistryError(f"calibration set {plan.source}: {plan.samples - len(ids)} samples render to no tokens")
    return ids


def as_dataset(ids: list[list[int]]):
    """A datasets.Dataset of input_ids/attention_mask, the tokenized form oneshot accepts."""
    import datasets

    return datasets.Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]})
