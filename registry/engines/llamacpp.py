"""llama.cpp through llama-cpp-python's OpenAI-compatible server: `python -m llama_cpp.server --model F.gguf`.

Runs on the CPU here (the wheel in this project is a CPU build), so the memory that matters is the
host's: weights (exact from the GGUF header when the file is local), KV cache, compute buffers.
"""

from __future__ import annotations

import sys

from ..estimate import engine_estimate
from ..prestart import LLAMA_CPP_ENV, LLAMA_CPP_SERVER
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
    if hw.gpus and not gpu_build(hw):
        v.notes.append("runs on the CPU: the llama-cpp-python installed here is a CPU build (rebuild it with "
                       "CMAKE_ARGS=-DGGML_CUDA=on to offload layers to the GPUs)")
    elif hw.gpus:
        v.estimate = est = offload(req, est)
        if est.host:
            v.notes.append(f"{est.gpus} GPU(s) hold {layers_on_gpu(req, est)} of {req.family.architecture.layers} "
                           f"layers; the rest ({est.host / 1e9:.1f} GB) stays in host memory, so decoding runs "
                           "at host memory speed for those layers")
        if est.host and hw.host_memory_bytes and est.host > hw.host_memory_bytes:
            v.reasons.append(f"not enough memory: {est.host / 1e9:.1f} GB left in host memory after filling the GPUs, "
                             f"{hw.name} has {hw.host_memory_bytes / 1e9:.1f} GB")
        return v
    if hw.host_memory_bytes and est.total > hw.host_memory_bytes:
        v.reasons.append(f"not enough host memory: needs ~{est.total / 1e9:.1f} GB (weights + KV for {ctx} tokens "
                         f"+ buffers), {hw.name} has {hw.host_memory_bytes / 1e9:.1f} GB")
    return v


GPU_RESERVE = 10**9  # per GPU: the CUDA context and llama.cpp's scratch, outside its own buffers


def gpu_build(hw) -> bool:
    """Whether llama.cpp there can offload: assumed for another machine (a CUDA build); asked of the library here."""
    if not hw.local:
        return True
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except (ImportError, OSError, AttributeError):
        return False


def offload(req: Request, est):
    """Layers go to the GPUs (split by layer, llama.cpp's default) until their memory is full; KV and compute
    buffers go with them (offload_kqv). Returns the estimate with gpus set and the host part."""
    import dataclasses

    hw = req.hardware
    budget = sum(g.memory_bytes for g in hw.gpus) - GPU_RESERVE * hw.gpu_count
    if est.total <= budget:
        return dataclasses.replace(est, gpus=hw.gpu_count, host=0)
    layers = req.family.architecture.layers
    per_layer = (est.weights + est.kv_cache) / layers
    k = max(0, min(layers, int((budget - est.overhead) // per_layer)))
    return dataclasses.replace(est, gpus=hw.gpu_count, host=int((layers - k) * per_layer))


def layers_on_gpu(req: Request, est) -> int:
    if not est.gpus:
        return 0
    layers = req.family.architecture.layers
    if not est.host:
        return layers
    per_layer = (est.weights + est.kv_cache) / layers
    return layers - round(est.host / per_layer)


def command(req: Request, model: str, host: str, port: int | None, verdict: Verdict) -> list[Command]:
    """The server for a GGUF file on disk (a hub revision was used to fetch it: no flag)."""
    port = port or 8080
    python = sys.executable if req.hardware.local else "python3"  # another machine: its own interpreter
    argv = [python, "-m", LLAMA_CPP_SERVER, "--model", model, "--model_alias", req.family.name,
            "--host", host, "--port", str(port), "--n_ctx", str(context_of(req)),
            # the server's default stops a running stream whenever another request arrives: with
            # several clients (or `registry serve`), every stream but the newest would be cut short
            "--interrupt_requests", "False"]
    threads = req.threads or req.hardware.threads
    if threads:
        argv += ["--n_threads", str(threads)]
    est = verdict.estimate
    if req.hardware.gpus and est is not None and est.gpus:
        k = layers_on_gpu(req, est)
        argv += ["--n_gpu_layers", "-1" if k == req.family.architecture.layers else str(k)]
    client = client_host(host)
    return [Command(argv, {}, host, port, f"http://{client}:{port}/v1/models", unset_env=LLAMA_CPP_ENV)]
