"""MoE helpers: per-expert Linear layout and a count of the tokens each expert sees in calibration.

llm-compressor 0.14 quantizes routed experts one Linear at a time after "linearizing" the fused
3-D expert tensors of Transformers 5; its all-experts option (seed 001) runs every expert on every
token while statistics are gathered, with the router's output still deciding the result.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

_EXPERT = re.compile(r"^(.*\.experts\.\d+)\.(gate_proj|up_proj)$")


def linearize(model) -> None:
    """Split fused experts into per-expert Linear modules (no-op for dense models)."""
    from llmcompressor.modeling.moe.linearize import linearize_moe

    linearize_moe(model)


def expert_inputs(model) -> dict[str, object]:
    """One input Linear per routed expert (gate_proj, else up_proj), keyed by the expert's name."""
    found: dict[str, object] = {}
    for name, mod in model.named_modules():
        m = _EXPERT.match(name)
        if m and (m.group(1) not in found or m.group(2) == "gate_proj"):
            found[m.group(1)] = mod
    return found


@contextmanager
def count_expert_tokens(model):
    """Yields a dict expert name -> tokens its input layer received, filled while the block runs.

    Counts are forward-pass tokens: llm-compressor's sequential pipeline runs each layer twice per
    batch (calibrate, then propagate), so a fully covered expert shows twice the sample tokens.
    """
    counts: dict[str, int] = {}
    hooks = []
    for name, mod in expert_inputs(model).items():
        counts[name] = 0

        def hook(_m, args, _name=name):
            x = args[0]
            counts[_name] += int(x.shape[:-1].numel())

        hooks.append(mod.register_forward_pre_hook(hook))
    try:
        yield counts
    finally:
        for h in hooks:
            h.remove()


def coverage(counts: dict[str, int], all_experts: bool) -> dict | None:
    if not counts:
        return None
    starved = sorted((n for n, c in counts.items() if c == 0), key=_natural)
    return {"all_experts": all_experts, "experts": len(counts), "experts_without_tokens": starved,
            "min_tokens": min(counts.values()), "max_tokens": max(counts.values())}


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
