"""Transformers: `transformers serve MODEL` (FastAPI + Uvicorn, `transformers[serving]`)."""

from __future__ import annotations

from ..estimate import engine_estimate
from .base import (Command, Request, Verdict, client_host, format_reasons, install_reason, modality_notes,
                   module_installed, revision_argv, rule_reasons, script)

NAME = "transformers"
INSTALL = "pip install 'glm-registry[transformers]' (transformers[serving])"
BNB = {"4-bit": "bnb-4bit", "8-bit": "bnb-8bit"}


def can_serve(req: Request) -> Verdict:
    v = Verdict(NAME)
    v.reasons += rule_reasons(req, NAME)
    if v.reasons:  # not this engine's build: the spec's rule is the reason
        return v
    v.reasons += format_reasons(
        req, NAME, f"transformers serve loads full-precision checkpoints here, not {req.spec.format} builds")
    v.notes += modality_notes(req, NAME)
    r, n = install_reason(req, NAME, module_installed("transformers", "fastapi", "uvicorn"), INSTALL)
    v.reasons += r
    v.notes += n
    if req.nodes > 1:
        v.reasons.append("transformers serve runs on one machine; --nodes needs vLLM or SGLang")
    hw = req.hardware
    if req.quant in BNB and not hw.gpus:
        v.reasons.append(f"{req.quant} loads through bitsandbytes, which needs a CUDA GPU; {hw.name} has none")
    ctx = req.context or min(8192, req.family.context_length)
    gpus = max(1, hw.gpu_count) if hw.gpus else 0
    est = engine_estimate(req.family, req.spec, req.quant, NAME, ctx, gpus=gpus)
    v.estimate = est
    if gpus:
        if est.total > hw.gpu_memory_bytes * gpus:
            v.reasons.append(f"not enough GPU memory: needs ~{est.total / 1e9:.1f} GB, "
                             f"{gpus} x {hw.gpu_memory_bytes / 1e9:.0f} GB present")
    elif hw.host_memory_bytes and est.total > hw.host_memory_bytes:
        v.reasons.append(f"not enough host memory: needs ~{est.total / 1e9:.1f} GB, "
                         f"{hw.name} has {hw.host_memory_bytes / 1e9:.1f} GB")
    return v


def command(req: Request, model: str, host: str, port: int | None, verdict: Verdict) -> list[Command]:
    port = port or 8000
    argv = [script("transformers") if req.hardware.local else "transformers", "serve", model, "--host", host, "--port", str(port), "--dtype", "auto"]
    if req.quant in BNB:
        argv += ["--quantization", BNB[req.quant]]
    if not req.hardware.gpus:
        argv += ["--device", "cpu"]
    argv += revision_argv(req)
    client = client_host(host)
    return [Command(argv, {}, host, port, f"http://{client}:{port}/health")]
