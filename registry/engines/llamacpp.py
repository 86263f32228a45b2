"""llama.cpp through llama-cpp-python's OpenAI-compatible server: `python -m llama_cpp.server --model F.gguf`.

Runs on the CPU here (the wheel in this project is a CPU build), so the memory that matters is the
host's: weights (exact from the GGUF header when the file is local), KV cache, compute buffers.
"""

from __future__ import annotations

import sys

from ..estimate import engine_estimate
from ..prestart import LLAMA_CPP_SERVER
from .base import (Command, Request, Verdict, client_host, format_reasons, install_reason, modality_notes, module_installed,
                   rule_reasons)

NAME = "llama.cpp"
INSTALL = "pip install 'glm-registry[gguf]' (llama-cpp-python[server])"
DEFAULT_CONTEXT = 4096  # a server default, not the family's 128K-1M context: KV grows with n_ctx


def context_of(req: Request) -> int:
    return req.context or min(DEFAULT_CONTEXT, req.family.context_length)


def can_serve(req: Request) -> Verdict:
    v = Verdict(NAME)
    v.reasons += rule_reasons(req, NAME)
    if v.reasons:  # not this engine's build: the spec's rule is the reason
        return v
    v.reasons += format_reasons(req, NAME, f"llama.cpp serves GGUF builds; {req.family.name} {req.spec.format} is not "
                                           f"one (convert it with `registry convert {req.family.name} --to ggufv2`)")
    v.notes += modality_notes(req, NAME)
    r, n = install_reason(req, NAME, module_installed("llama_cpp", "uvicorn", "fastapi", "sse_starlette"), INSTALL)
    v.reasons += r
    v.notes += n
    if req.nodes > 1:
        v.reasons.append("llama-cpp-python's server runs on one machine; --nodes needs vLLM or SGLang")
    if v.reasons and req.spec.format != "ggufv2":
        return v
    ctx = context_of(req)
    est = engine_estimate(req.family, req.spec, req.quant, NAME, ctx, gguf_path=req.gguf_path)
    v.estimate = est
    hw = req.hardware
    if hw.host_memory_bytes and est.total > hw.host_memory_bytes:
        v.reasons.append(f"not enough host memory: needs ~{est.total / 1e9:.1f} GB (weights + KV for {ctx} tokens "
                         f"+ buffers), {hw.name} has {hw.host_memory_bytes / 1e9:.1f} GB")
    if hw.gpus:
        v.notes.append("runs on the CPU: this project's llama-cpp-python wheel is a CPU build")
    return v


def command(req: Request, model: str, host: str, port: int | None, verdict: Verdict) -> list[Command]:
    """The server for a GGUF file on disk (a hub revision was used to fetch it: no flag)."""
    port = port or 8080
    argv = [sys.executable, "-m", LLAMA_CPP_SERVER, "--model", model, "--model_alias", req.family.name,
            "--host", host, "--port", str(port), "--n_ctx", str(context_of(req)),
            # the server's default stops a running stream whenever another request arrives: with
            # several clients (or `registry serve`), every stream but the newest would be cut short
            "--interrupt_requests", "False"]
    if req.hardware.cpu_cores:
        argv += ["--n_threads", str(req.hardware.cpu_cores)]
    client = client_host(host)
    return [Command(argv, {}, host, port, f"http://{client}:{port}/v1/models")]
