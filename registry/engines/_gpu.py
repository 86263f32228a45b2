"""Shared by the GPU server engines (vLLM, SGLang): launch-profile args to argv, context and GPU count."""

from __future__ import annotations

import dataclasses

from .base import (Request, Verdict, compute_reasons, find_profile, format_reasons, gpu_fit_reasons, install_reason,
                   modality_notes, rule_reasons)


def args_to_argv(args: dict) -> list[str]:
    """A profile's flags in order: true is a bare flag, false/None is dropped, a list repeats the flag."""
    out: list[str] = []
    for flag, v in args.items():
        if v is True:
            out.append(flag)
        elif v is False or v is None:
            continue
        elif isinstance(v, list):
            for item in v:
                out += [flag, str(item)]
        else:
            out += [flag, _fmt(v)]
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return repr(v) if not v.is_integer() else str(int(v)) if abs(v) >= 1 else repr(v)
    return str(v)


def profile_args(req: Request, engine: str) -> tuple[dict, dict, int | None, str | None]:
    """(args, env, port, source) of the chosen launch profile, copies the caller may change."""
    # a profile name this engine lacks: no profile here; the launcher reports the name
    p = find_profile(req.spec, engine, req.profile, required=False)
    if p is None:
        return {}, {}, None, None
    return dict(p.args), dict(p.env), p.port, p.source or f"spec launch profile {p.name!r}"


def context_of(req: Request, args: dict, flag: str) -> int:
    if req.context:
        return req.context
    if flag in args and args[flag] not in (None, True, False):
        return int(args[flag])
    return req.family.context_length


def gpus_of(req: Request, args: dict, flags: tuple[str, ...], engine: str, util: float, ctx: int,
            kv_dtype: str) -> int:
    """GPUs per node: --gpus, else the profile's tensor-parallel size, else the fewest (1, 2, 4, 8 ...)
    whose memory holds the build, up to the GPUs the machine has."""
    if req.gpus:
        return req.gpus
    if req.nodes > 1 and req.hardware.gpu_count:
        # Spread over machines: every GPU of every node (a profile's single-box TP divided by the node
        # count left half of them idle: AWQ on 2 x 4xH100 ran TP2 x PP2).
        return req.hardware.gpu_count
    for f in flags:
        if f in args:
            return int(args[f])
    from ..estimate import engine_estimate

    have = req.hardware.gpu_count
    n = 1
    while n < have:
        est = engine_estimate(req.family, req.spec, req.quant, engine, ctx, gpus=n * req.nodes, kv_dtype=kv_dtype)
        if (est.per_gpu or 0) <= req.hardware.gpu_memory_bytes * util:
            break
        n *= 2
    return min(n, have) if have else 1


# NCCL settings for one PCIe box (seed 003's SGLang command: no InfiniBand, P2P through the host bridge);
# across machines they would disable the very interconnect the nodes talk over.
SINGLE_BOX_ENV = ("NCCL_IB_DISABLE", "NCCL_P2P_LEVEL")


def multi_node_env(req: Request, env: dict) -> tuple[dict, list[str]]:
    if req.nodes <= 1:
        return env, []
    dropped = [k for k in SINGLE_BOX_ENV if k in env]
    return {k: v for k, v in env.items() if k not in dropped}, (
        [f"{', '.join(dropped)} left out: the launch profile sets them for one PCIe machine, not for a cluster"]
        if dropped else [])


def kv_dtype_of(args: dict) -> str:
    return "fp8" if str(args.get("--kv-cache-dtype", "auto")).startswith("fp8") else "f16"


def utilization(args: dict, flag: str, default: float) -> float:
    v = args.get(flag)
    return float(v) if v not in (None, True, False) else default


def gpu_verdict(req: Request, engine: str, *, missing, install: str, gguf_reason: str, marlin_fp8: bool,
                tp_flags: tuple[str, ...], ctx_flag: str, util_flag: str, util_default: float) -> Verdict:
    """The verdict of a GPU server engine (vLLM, SGLang): its rule, installed, compute, memory fit."""
    v = Verdict(engine)
    v.reasons += rule_reasons(req, engine)
    r, n = install_reason(req, engine, missing, install)
    v.reasons += r
    v.notes += n
    v.reasons += format_reasons(req, engine, gguf_reason if req.spec.format == "ggufv2" else None)
    v.notes += modality_notes(req, engine)
    if v.reasons:  # not this engine's build at all: its rule says so, the rest is noise
        return v
    args, _, _, _ = profile_args(req, engine)
    r, n = compute_reasons(req, engine, marlin_fp8=marlin_fp8)
    v.reasons += r
    v.notes += n
    ctx = context_of(req, args, ctx_flag)
    util = utilization(args, util_flag, util_default)
    kv_dtype = kv_dtype_of(args)
    gpus = gpus_of(req, args, tp_flags, engine, util, ctx, kv_dtype)
    sub = dataclasses.replace(req, context=ctx)
    r, est = gpu_fit_reasons(sub, engine, gpus, util, kv_dtype)
    v.reasons += r
    v.estimate = est
    v.gpus = gpus
    return v


def verdict_gpus(verdict: Verdict) -> int:
    """GPUs per node from the engine's own can_serve verdict: the command uses what the check sized."""
    if verdict.gpus is None:
        raise ValueError(f"{verdict.engine}: command() needs an ok verdict from can_serve(); this one has "
                         f"reasons {verdict.reasons}")
    return verdict.gpus


def generic_args(req: Request, engine: str, *, dtype: str | None = None, auto_tool_choice: bool = False) -> dict:
    """Flags every GPU server gets from the family and spec when no launch profile says more: the format's
    flags (registry/formats.py, e.g. vLLM's --quantization method), the family's parsers."""
    from ..formats import engine_flags

    chat = req.family.chat
    args: dict = {"--served-model-name": req.spec.served_name or req.family.name}
    args.update(engine_flags(req.spec.format, req.quant, engine))
    if dtype:
        args["--dtype"] = dtype
    if any(h.custom_code for h in req.spec.hubs.values()):
        args["--trust-remote-code"] = True  # the repository's own code (auto_map) builds its tokenizer or model
    parser = chat.tool_parser_for(engine) if chat else None
    if parser:
        args["--tool-call-parser"] = parser
        if auto_tool_choice:
            args["--enable-auto-tool-choice"] = True
    if chat and chat.reasoning_parser:
        args["--reasoning-parser"] = chat.reasoning_parser
    return args
