"""`registry demo`: the whole path on what this machine has, no hub needed.

It grows with each capability that lands. Today: load and validate the catalog, pin every seed
system to its hub objects, and record the state database round trip.
"""

from __future__ import annotations

from collections.abc import Callable

SEED_SYSTEMS = [
    ("seed 000", "glm-4-9b-chat", "compressed-tensors", "FP8_DYNAMIC"),
    ("seed 001", "glm-4.7", "compressed-tensors", "W4A16_GS32"),
    ("seed 001", "glm-4.7", "compressed-tensors", "W4A16_GS64"),
    ("seed 001", "glm-4.7", "compressed-tensors", "W4A16_GS128"),
    ("seed 002", "glm-4.6", "compressed-tensors", "AWQ"),
    ("seed 003", "glm-5", "modelopt", "NVFP4"),
    ("seed 004", "glm4-chat-1m", "pytorch", "none"),
    ("seed 004", "glm4-chat-1m", "ggufv2", "Q4_K"),
]


def run(say: Callable[[str], None] = print) -> dict[str, object]:
    from .catalog import load

    cat = load()
    say(f"catalog: {len(cat.names())} families validated ({', '.join(cat.names())})")
    resolved = []
    for seed, name, fmt, quant in SEED_SYSTEMS:
        r = cat.resolve(name, fmt, quant)
        hf = r.hubs.get("huggingface")
        where = f"{hf.model_id}@{hf.revision}" + (f" {hf.files[0]}" if hf and hf.files else "") if hf else "local build"
        say(f"{seed}: {name} {fmt} {r.quantization} -> {where}; engines: {', '.join(r.engines)}")
        resolved.append(r.to_dict())
    return {"families": cat.names(), "seed_systems": resolved}
