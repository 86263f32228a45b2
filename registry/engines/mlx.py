"""mlx-lm on Apple silicon: `mlx_lm.server --model REPO --host H --port P` (OpenAI-compatible, GET /v1/models).

It runs only on an Apple-silicon Mac; anywhere else it plans (for an M-series hardware profile) but never
starts. The weights and KV cache live in unified memory, of which Metal lets a process wire its "recommended
working set" (mlx_lm.server sets mx.set_wired_limit to it): about three quarters of the RAM, taken here as
the budget (an allowance; `sudo sysctl iogpu.wired_limit_mb` raises it).
Source: ml-explore/mlx-lm mlx_lm/server.py (0130d3b): --model, --host, --port (8080), --trust-remote-code,
--max-kv-size; no --revision flag, so a hub revision is fetched before the server starts.
"""

from __future__ import annotations

import platform

from ..estimate import engine_estimate
from .base import Command, Request, Verdict, client_host, format_reasons, install_reason, modality_notes, rule_reasons, script

NAME = "mlx-lm"
INSTALL = "pip install mlx-lm (Apple silicon, macOS 14+)"
WORKING_SET = 0.75  # of unified memory: Metal's recommended working set, roughly
DEFAULT_CONTEXT = 8192  # a server default: KV grows with the context actually used


def on_apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def context_of(req: Request) -> int:
    return req.context or min(DEFAULT_CONTEXT, req.family.context_length)


def can_serve(req: Request) -> Verdict:
    from .base import module_installed

    v = Verdict(NAME)
    v.reasons += rule_reasons(req, NAME)
    if v.reasons:
        return v
    v.reasons += format_reasons(req, NAME, f"mlx-lm loads MLX builds; {req.family.name} {req.spec.format} is not one")
    v.notes += modality_notes(req, NAME)
    hw = req.hardware
    if not getattr(hw, "apple_silicon", False):
        v.reasons.append(f"mlx-lm runs on Apple silicon only; {hw.name} is not an M-series Mac "
                         "(plan for one with --hardware M3-Ultra-512G, M3-Ultra-96G or M4-Max-36G)")
        return v
    if hw.local and not on_apple_silicon():  # a profile claimed Apple silicon for this machine
        v.reasons.append("this machine is not an Apple-silicon Mac")
    r, n = install_reason(req, NAME, module_installed("mlx_lm"), INSTALL)
    v.reasons += r
    v.notes += n
    if req.nodes > 1:
        v.reasons.append("mlx_lm.server runs on one machine here; --nodes needs vLLM or SGLang")
    ctx = context_of(req)
    est = engine_estimate(req.family, req.spec, req.quant, NAME, ctx)
    v.estimate = est
    budget = int(hw.host_memory_bytes * WORKING_SET)
    if budget and est.total > budget:
        v.reasons.append(f"not enough unified memory: needs ~{est.total / 1e9:.1f} GB (weights + KV for {ctx} tokens), "
                         f"{WORKING_SET:g} x {hw.host_memory_bytes / 1e9:.0f} GB = {budget / 1e9:.1f} GB usable by Metal")
    return v


def command(req: Request, model: str, host: str, port: int | None, verdict: Verdict) -> list[Command]:
    port = port or 8080
    argv = [script("mlx_lm.server"), "--model", model, "--host", host, "--port", str(port),
            "--max-kv-size", str(context_of(req))]
    return [Command(argv, {}, host, port, f"http://{client_host(host)}:{port}/v1/models")]
