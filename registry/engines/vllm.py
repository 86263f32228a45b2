"""vLLM: `vllm serve MODEL ...` (OpenAI-compatible); multi-node over Ray with tensor + pipeline parallel."""

from __future__ import annotations

from . import _gpu, found, vllm_cpu
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


# Flags of a launch profile that only a GPU server takes: left out of a CPU plan.
GPU_FLAGS = ("--tensor-parallel-size", "-tp", "--gpu-memory-utilization", "--enable-expert-parallel",
             "--data-parallel-size", "--kv-cache-dtype", "--cpu-offload-gb", "--max-num-seqs", "--max-num-batched-tokens")


def installed(req: Request):
    """The vLLM this machine would run (registry/engines/found.py), or None for a plan for another machine."""
    return found.find(NAME) if req.hardware.local else None


def on_cpu(req: Request) -> bool:
    """The plan is for vLLM's CPU backend: this machine has no GPU and the vLLM found is a CPU build."""
    inst = installed(req)
    return isinstance(inst, found.Installation) and inst.platform == "cpu" and not req.hardware.gpus


def can_serve(req: Request) -> Verdict:
    inst = installed(req)
    if on_cpu(req):
        args, _, _, _ = _gpu.profile_args(req, NAME)
        v = vllm_cpu.verdict(req, args, {f for f in args if f in GPU_FLAGS})
    else:
        v = _gpu.gpu_verdict(
            # what this machine lacks: a reason here, a note in a plan for another machine
            req, NAME, missing=found.missing(found.find(NAME), "ray" if req.nodes > 1 else None), install=install_hint(req),
            marlin_fp8=True, tp_flags=TP_FLAGS,
            gguf_reason="GGUF builds are served by llama.cpp here (vLLM's GGUF loader is experimental)",
            ctx_flag="--max-model-len", util_flag="--gpu-memory-utilization", util_default=0.9)
    if isinstance(inst, found.NotFound) and inst.why:
        v.reasons.insert(0, inst.why)
    r, n = floor_check(req, "vLLM", NAME, inst.version if isinstance(inst, found.Installation) else None,
                       floors(req), install_hint(req))
    v.reasons += r
    v.notes += n
    if isinstance(inst, found.Installation) and v.ok:
        v.notes.append(f"runs {inst.describe()}")
    return v


def command(req: Request, model: str, host: str, port: int | None, verdict: Verdict) -> list[Command]:
    """One command per node: the head runs `vllm serve`; other nodes join its Ray cluster first."""
    args, env, pport, source = _gpu.profile_args(req, NAME)
    port = port or pport or 8000
    if on_cpu(req):
        return [_cpu_command(req, model, host, port, verdict, args, env)]
    env, notes = _gpu.multi_node_env(req, env)
    verdict.notes += notes
    gpus = _gpu.verdict_gpus(verdict)
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
    argv = [*serve_argv(req, model), *_gpu.args_to_argv(args), "--host", host, "--port", str(port),
            *revision_argv(req)]
    head = Command(argv, env, host, port, f"http://{client_host(host)}:{port}/v1/models", 0 if req.nodes > 1 else None)
    if req.nodes == 1:
        return [head]
    ray = _ray(req)
    head_start = Command([ray, "start", "--head", f"--port={RAY_PORT}"], env, host, RAY_PORT, "", 0)
    workers = [Command([ray, "start", f"--address=HEAD_IP:{RAY_PORT}", "--block"], env, host, RAY_PORT, "", i)
               for i in range(1, req.nodes)]
    return [head_start, *workers, head]


def serve_argv(req: Request, model: str) -> list[str]:
    """The start of the server's command: `vllm serve MODEL` with the console script found (or its interpreter
    with vLLM's CLI module); for another machine, the bare name. vllm-cpu's CLI looks up the version of a
    distribution named vllm (vllm/entrypoints/cli/main.py, 0.32.0), which it is not, and exits: there the
    OpenAI server module runs instead, with the interpreter found."""
    inst = installed(req)
    if not isinstance(inst, found.Installation):
        return ["vllm", "serve", model]
    if inst.dist != "vllm":
        return [inst.python, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
    return [inst.script, "serve", model] if inst.script else [inst.python, "-m", "vllm.entrypoints.cli.main", "serve", model]


def _ray(req: Request) -> str:
    """`ray` of the environment vLLM was found in (multi-node plans), else the bare name."""
    from pathlib import Path

    inst = installed(req)
    if isinstance(inst, found.Installation):
        beside = Path(inst.python).with_name("ray")
        if beside.exists():
            return str(beside)
    return "ray"


def _cpu_command(req: Request, model: str, host: str, port: int, verdict: Verdict, args: dict, env: dict) -> Command:
    """vLLM's CPU backend: the generic flags (a launch profile's GPU flags left out), the context that fits
    host memory, and its KV cache size and thread binding in the environment."""
    _gpu.verdict_gpus(verdict)  # an ok verdict: its estimate holds the context that fits
    est = verdict.estimate
    args = {k: v for k, v in args.items() if k not in GPU_FLAGS}
    # Eager: the CPU backend's torch.compile warm-up took 222 s for a 2-layer model on 2 cores (vllm-cpu 0.32.0,
    # its compile cache not saved), past `registry launch`'s default wait, at every start.
    args = {**_generic(req), **args, "--max-model-len": est.context, "--enforce-eager": True}
    env = {**env, **vllm_cpu.env(req, est)}
    argv = [*serve_argv(req, model), *_gpu.args_to_argv(args), "--host", host, "--port", str(port),
            *revision_argv(req)]
    return Command(argv, env, host, port, f"http://{client_host(host)}:{port}/v1/models")


def _generic(req: Request) -> dict:
    full = req.spec.format == "pytorch" and req.quant == "none"
    args = _gpu.generic_args(req, NAME, dtype="bfloat16" if full else None, auto_tool_choice=True)
    args["--max-model-len"] = req.context or req.family.context_length
    return args
