"""Does a build fit a machine: every build of a family planned there (the engine, its memory estimate, the
longest context), and the `auto` pick (the most bits that fit and decode at a usable speed)."""

from __future__ import annotations

import time

from .. import engines
from ..errors import RegistryError, not_found
from ..naming import gguf_type
from .plan import _artifact, _cap_context, check_context, request


def fit(name: str, hardware: str | None = None, context: int | str | None = None, quant: str | None = None,
        format: str | None = None) -> dict:
    """Every build of a family: the engine that would serve it here (or there), its memory estimate,
    and whether it fits. quant='auto' also names the best build that fits (auto_choice). A name qualified by
    its uploader (bartowski/glm-4-9b-0414) has that uploader's builds only, as `registry launch` picks them."""
    from .. import hardware as hw_mod
    from ..catalog import load, resolved_build, spec_quant, split_uploader
    from ..hub import local
    from ..naming import format_name, parse_context, split_tag

    name, quant = split_tag(name, quant)
    format = format_name(format)
    catalog = load()
    uploader = None if catalog.hub_build(name) else split_uploader(name)[0]
    fam = catalog.get(name)
    name = fam.name
    if uploader and not any(s.publisher.lower() == uploader.lower() for s in fam.specs):
        raise not_found("uploader", uploader, fam.uploaders(), f"{name} builds come from: {', '.join(fam.uploaders())}")
    if format and format not in fam.formats():
        raise not_found("format", format, fam.formats(), f"{name} has: {', '.join(fam.formats())}")
    context = parse_context(context)
    if context != "max":
        if context is not None and context < 1:
            raise RegistryError(f"--context must be at least 1, not {context}")
        check_context(fam, context)
    hw = hw_mod.get(hardware)
    auto = quant == "auto"
    recorded = local.family_rows(name)  # one store query for every build
    builds = []
    for spec in fam.specs:
        if (format and spec.format != format) or (uploader and spec.publisher.lower() != uploader.lower()):
            continue
        quants = spec.quantizations
        if quant and not auto:
            q = spec_quant(spec, quant)
            if q is None:
                continue
            quants = [q]
        for q in quants:
            resolved = resolved_build(fam, spec, q)
            builds.append(build_fit(resolved, hw, _artifact(resolved, recorded), context))
    if quant and not auto and not builds:
        raise not_found("quantization", quant, fam.quantizations(), f"{name} has: {', '.join(fam.quantizations())}")
    out = {"family": name, "hardware": hw.to_dict(), "context": context, "builds": builds}
    if auto:
        out["auto"] = auto_choice(fam, hw, builds, context)
    return out



def build_fit(resolved, hw, art: dict, context: int | str | None = None) -> dict:
    """One build on one machine: the engine that would serve it (the best by RANK that can), its memory
    estimate, and whether it fits (else every engine's reasons); `max_context`, the longest context that engine
    fits (llama.cpp: layers left in host memory included) and `max_context_gpu`, with everything on the GPUs.
    context="max": each engine at its longest; no context: an engine whose default does not fit at the longest
    that does, as plan() places it. The docs' fit tables ask this too."""
    from ..context import longest
    from ..estimate import bits_per_weight

    spec, q = resolved.spec, resolved.quantization
    want_max = context == "max"
    req, verdicts, good, v = _verdict(resolved, hw, art, context)
    est = v.estimate if v and v.estimate else None
    e = est.to_dict() if est else {}
    top = (est.context if want_max and v.ok and est else longest(req, v.engine)) if v else None
    top_gpu = longest(req, v.engine, gpu_only=True) if v is not None and hw.gpus and top else None
    return {
        "format": spec.format, "size_in_billions": spec.size_in_billions, "quantization": q,
        "gguf_type": gguf_type(spec.format, q),
        "engine": good[0].engine if good else None,
        "weights_bytes": e.get("weights_bytes"), "kv_cache_bytes": e.get("kv_cache_bytes"),
        "overhead_bytes": e.get("overhead_bytes"), "total_bytes": e.get("total_bytes"),
        "per_gpu_bytes": e.get("per_gpu_bytes"), "host_bytes": e.get("host_bytes", 0), "gpus": e.get("gpus", 0),
        "context": e.get("context"), "max_context": top, "max_context_gpu": top_gpu,
        "bits_per_weight": _bpw(bits_per_weight, spec.format, q),
        "fits": bool(good),
        "reasons": [] if good else [f"{x.engine}: {r}" for x in verdicts for r in x.reasons] or
        ["no engine listed for this quantization"],
        "notes": good[0].notes if good else [],
    }



def _verdict(resolved, hw, art: dict, context: int | str | None):
    """(request, every listed engine's verdict, the ok ones, the verdict whose estimate a fit row reports: the
    best engine that can serve the build, else the first that was asked)."""
    want_max = context == "max"
    req = request(resolved, hw, art, None if want_max else context)
    listed = resolved.spec.engines_for(resolved.quantization)
    by_engine = {e: engines.get(e).can_serve(req) for e in engines.RANK if e in listed}
    reqs = {e: req for e in by_engine}
    if want_max or context is None:
        _cap_context(req, by_engine, reqs, want_max)
    verdicts = list(by_engine.values())
    good = [v for v in verdicts if v.ok]
    return req, verdicts, good, good[0] if good else (verdicts[0] if verdicts else None)



# The machine `registry show` and the model pages count a build's memory on, as `registry fit --hardware H` does
# (weights, KV cache and the engine's buffers depend on the engine and its GPU count; no one machine runs every
# format: MLX builds are counted on a Mac).
MEMORY_HARDWARE = {"mlx": "M3-Ultra-512G"}
MEMORY_HARDWARE_DEFAULT = "8xH200"


def memory_hardware(fmt: str) -> str:
    return MEMORY_HARDWARE.get(fmt, MEMORY_HARDWARE_DEFAULT)


def build_memory(resolved, context: int):
    """A build's memory at `context` tokens, as `registry fit --hardware H --context N` counts it on the format's
    memory_hardware (its hub copy: a local GGUF's header may differ by a little): the estimate of the engine fit
    would report, with its runtime (llama.cpp's compute buffers at that context, the GPU servers' per GPU).
    `registry show` and the model pages print it, so that they and fit cannot disagree. None: no engine counts it."""
    from .. import hardware as hw_mod
    from .plan import hub_artifact

    v = _verdict(resolved, hw_mod.get(memory_hardware(resolved.spec.format)), hub_artifact(resolved), context)[3]
    return v.estimate if v is not None else None


USABLE_TOK_S = 10.0  # a chat reads comfortably from here; below it, speed matters more than bits



def auto_choice(fam, hw, builds: list[dict], context: int | None = None) -> dict:
    """The build to launch among `builds` (build_fit's dicts on `hw`): the most bits among the builds that fit (on
    GPUs: the GPUs alone, where any does) and decode at a usable speed. `registry fit --quant auto` and the
    docs' suggested build (registry/docs/fit.py) both ask this; it adds each fitting build's decode bound.

    Speed is seed 002's bound (memory bandwidth / bytes read per token). "Usable": at least 10 tok/s, or,
    where nothing is that fast (a small CPU box), at least half the fastest build's speed, so that 18 GB
    of BF16 on a 2-core machine does not win over a 4-5 bit build that answers four times as fast."""
    from ..estimate import bytes_read_per_token

    fitting = [b for b in builds if b["fits"]]
    host_bw, how = host_bandwidth(hw)
    specs = {(s.format, s.size_in_billions): s for s in fam.specs}
    for b in fitting:
        read = bytes_read_per_token(fam, specs[(b["format"], b["size_in_billions"])], b["quantization"])
        gpu_bw = min((g.bandwidth_bytes_s or 0 for g in hw.gpus), default=0)
        if b["gpus"] and gpu_bw:
            share = 1 - (b.get("host_bytes") or 0) / max(1, b["total_bytes"] or 1)
            # tensor/layer split: each GPU reads its share; layers left on the host read at host speed
            seconds = read * share / (gpu_bw * b["gpus"]) + read * (1 - share) / host_bw
        else:
            seconds = read / host_bw
        b["decode_tok_s_bound"] = 1 / seconds
    if not fitting:
        return {"format": None, "quantization": None, "engine": None, "reason": "no build fits"}
    fastest = max(b["decode_tok_s_bound"] for b in fitting)
    floor = min(USABLE_TOK_S, fastest / 2)
    usable = [b for b in fitting if b["decode_tok_s_bound"] >= floor]
    if hw.gpus:  # on GPUs, a build that fits them alone before one that leaves layers in host memory
        usable = [b for b in usable if b["gpus"] and not b.get("host_bytes")] or usable
    best = max(usable, key=lambda b: (b["bits_per_weight"] or 0, -(b["total_bytes"] or 0)))
    for b in fitting:
        b["decode_tok_s_bound"] = round(b["decode_tok_s_bound"], 2)
    cmd = f"registry launch {fam.name} --format {best['format']} --quant {best['quantization']}"
    if context:
        cmd += f" --context {context}"
    if not hw.local:
        cmd += f" --hardware {hw.name}"
    return {"format": best["format"], "quantization": best["quantization"], "gguf_type": best["gguf_type"],
            "engine": best["engine"],
            "context": best["context"], "decode_tok_s_bound": best["decode_tok_s_bound"],
            "usable_tok_s": round(floor, 1), "host_bandwidth_bytes_s": host_bw, "bandwidth_source": how,
            "command": cmd}



def host_bandwidth(hw) -> tuple[float, str]:
    """Host memory bandwidth for the decode bound: Apple's unified-memory figure, a short copy measured
    here, or ~10 GB/s per core (up to 300 GB/s, eight DDR5 channels) for a machine described by a profile."""
    if hw.memory_bandwidth_bytes_s:
        return hw.memory_bandwidth_bytes_s, "the profile's unified memory bandwidth"
    if hw.local:
        return _measure_bandwidth(), "measured here (a 64 MiB copy)"
    return min(300e9, 10e9 * max(1, hw.cpu_cores)), "assumed ~10 GB/s per core"



def _measure_bandwidth() -> float:
    import numpy as np

    a = np.ones(64 * 2**20 // 8)
    b = np.zeros_like(a)  # touched: the copies time memory, not page faults
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best  # read + write



def _bpw(fn, fmt: str, q: str) -> float | None:
    try:
        return fn(fmt, q)
    except RegistryError:
        return None
