"""vLLM: `vllm serve MODEL ...` (OpenAI-compatible); multi-node over Ray with tensor + pipeline parallel."""

from __future__ import annotations

from . import _gpu
from .base import Command, Request, Verdict, client_host, family_floor, floor_check, revision_argv, version_below

NAME = "vllm"
INSTALL = "pip install 'glm-registry[vllm]' (vllm>=0.11.0)"
TP_FLAGS = ("--tensor-parallel-size", "-tp")
RAY_PORT = 6379


# The first vLLM release with what a family needs (vLLM's release notes: the glm47 tool parser in 0.14,
# GLM-5's GlmMoeDsaForCausalLM in 0.16); the base floor is the project's own extra.
BASE_FLOOR = "0.11.0"


def floors(req: Request) -> list[tuple[str, str]]:
    """(what, version) this build needs of vLLM beyond the base floor."""
    args, _, _, _ = _gpu.profile_args(req, NAME)
    parser = args.get("--tool-call-parser") or (req.family.chat.tool_parser_for(NAME) if req.family.chat else None)
    out = []
    if parser == "glm47":
        out.append(("the glm47 tool-call parser", "0.14.0"))
    if any("GlmMoeDsa" in c for c in req.family.architecture.hf_classes):
        out.append(("GlmMoeDsaForCausalLM (GLM-5)", "0.16.0"))
    return out + family_floor(req, NAME)


def install_hint(req: Request) -> str:
    need = BASE_FLOOR
    for _, v in floors(req):
        need = v if version_below(need, v) else need
    what = "; ".join(f"{w} needs vllm>={v}" for w, v in floors(req))
    ray = " ray" if req.nodes > 1 else ""
    return (f"pip install 'glm-registry[vllm]' 'vllm>={need}'{ray}" + (f" ({what})" if what else "")
            + (" (vLLM runs multi-node over Ray, which it does not install)" if ray else ""))


def can_serve(req: Request) -> Verdict:
    v = _gpu.gpu_verdict(
        req, NAME, missing=_missing(req), install=install_hint(req), marlin_fp8=True, tp_flags=TP_FLAGS,
        gguf_reason="GGUF builds are served by llama.cpp here (vLLM's GGUF loader is experimental)",
        ctx_flag="--max-model-len", util_flag="--gpu-memory-utilization", util_default=0.9)
    r, n = floor_check(req, "vLLM", "vllm", floors(req), install_hint(req))
    v.reasons += r
    v.notes += n
    return v


def _missing(req: Request) -> list[str]:
    from .base import module_installed

    return module_installed("vllm", *(["ray"] if req.nodes > 1 else []))


def command(req: Request, model: str, host: str, port: int | None, verdict: Verdict) -> list[Command]:
    """One command per node: the head runs `vllm serve`; other nodes join its Ray cluster first."""
    args, env, pport, source = _gpu.profile_args(req, NAME)
    env, notes = _gpu.multi_node_env(req, env)
    verdict.notes += notes
    gpus = _gpu.verdict_gpus(verdict)
    port = port or pport or 8000
    if req.context:
        args["--max-model-len"] = req.context
    if not any(f in args for f in TP_FLAGS) or req.gpus or req.nodes > 1:
        for f in TP_FLAGS:
            args.pop(f, None)
        if gpus > 1 or req.nodes > 1:
            args = {"--tensor-parallel-size": gpus, **args}
    if source is None:  # no launch profile in the spec: the generic command
        args = {**_generic(req), **args}
    if req.nodes > 1:
        args["--pipeline-parallel-size"] = req.nodes
        args["--distributed-executor-backend"] = "ray"
    argv = [_gpu.entry(req, "vllm"), "serve", model, *_gpu.args_to_argv(args), "--host", host, "--port", str(port),
            *revision_argv(req)]
    head = Command(argv, env, host, port, f"http://{client_host(host)}:{port}/v1/models", 0 if req.nodes > 1 else None)
    if req.nodes == 1:
        return [head]
    ray = _gpu.entry(req, "ray")
    head_start = Command([ray, "start", "--head", f"--port={RAY_PORT}"], env, host, RAY_PORT, "", 0)
    workers = [Command([ray, "start", f"--address=HEAD_IP:{RAY_PORT}", "--block"], env, host, RAY_PORT, "", i)
               for i in range(1, req.nodes)]
    return [head_start, *workers, head]


def _generic(req: Request) -> dict:
    full = req.spec.format == "pytorch" and req.quant == "none"
    args = _gpu.generic_args(req, NAME, dtype="bfloat16" if full else None, auto_tool_choice=True)
    args["--max-model-len"] = req.context or req.family.context_length
    return args
