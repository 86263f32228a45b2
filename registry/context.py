"""The longest context a build fits on some hardware, as the engine would place it (`--context max`, fit's
max_context columns, and the cap a plan takes instead of refusing a context that does not fit).

Memory grows with the context (KV cache, and llama.cpp's compute buffers), so the answer is a binary search
over the engine's own check (can_serve) at each context: no second model of memory to drift from the first.
"""

from __future__ import annotations

import dataclasses

from . import engines

STEP = 256  # contexts are multiples of this (llama.cpp pads n_ctx to 256 anyway)
MIN_CAPPED = 2048  # a plan caps a context that does not fit down to this much at least, else refuses it
CAPPED_ENGINES = ("llama.cpp", "vllm", "sglang")  # the engines whose memory depends on the context
MEMORY = "not enough"  # how every engine's memory reason begins (registry/engines/*.py)


def memory_only(reasons: list[str]) -> bool:
    """The engine says no only for memory (a shorter context may fit)."""
    return bool(reasons) and all(r.startswith(MEMORY) for r in reasons)


def _fits(req, engine: str, ctx: int, gpu_only: bool) -> bool:
    v = engines.get(engine).can_serve(dataclasses.replace(req, context=ctx))
    if any(r.startswith(MEMORY) for r in v.reasons):
        return False
    if gpu_only:  # every byte on the GPUs: no llama.cpp layers left in host memory
        e = v.estimate
        return bool(e and e.gpus and not e.host)
    return True


def longest(req, engine: str, gpu_only: bool = False) -> int | None:
    """The longest context (a multiple of STEP, at most the family's) `engine` fits for req's build on
    req's hardware; `gpu_only`: with everything on the GPUs. None when not even STEP tokens fit, or when the
    engine refuses the build for something other than memory (a wrong format, no GPUs, not installed)."""
    if engine not in CAPPED_ENGINES:
        return None
    top = req.family.context_length
    first = engines.get(engine).can_serve(dataclasses.replace(req, context=top))
    if [r for r in first.reasons if not r.startswith(MEMORY)]:
        return None
    if _fits(req, engine, top, gpu_only):
        return top
    lo, hi = 0, top  # fits at lo (0: not yet known), not at hi
    while hi - lo > STEP:
        mid = max(STEP, (lo + hi) // 2 // STEP * STEP)
        if mid >= hi:
            break
        if _fits(req, engine, mid, gpu_only):
            lo = mid
        else:
            hi = mid
    return lo or None
