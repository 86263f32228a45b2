"""SGLang: `python -m sglang.launch_server --model-path MODEL ...`; multi-node with --nnodes/--node-rank."""

from __future__ import annotations

from . import _gpu, found
from .base import Command, Request, Verdict, client_host, family_floor, floor_check, revision_argv

NAME = "sglang"
INSTALL = "pip install 'glm-registry[sglang]'"
TP_FLAGS = ("--tp", "--tp-size", "--tensor-parallel-size")
DIST_PORT = 5000


def install_hint(req: Request) -> str:
    """The install line, with the release the family's spec asks for (engine_floors.sglang)."""
    floors = family_floor(req, NAME)
    if not floors:
        return INSTALL
    what, need = floors[0]
    return f"{INSTALL} 'sglang>={need}' ({what} needs sglang>={need})"


def installed(req: Request):
    """The SGLang this machine would run (registry/engines/found.py), or None for a plan for another machine."""
    return found.find(NAME, ()) if req.hardware.local else None


def can_serve(req: Request) -> Verdict:
    inst = installed(req)
    # SGLang has no Marlin FP8 fallback for pre-Ada GPUs in its FP8 path.
    v = _gpu.gpu_verdict(
        req, NAME, missing=found.missing(found.find(NAME, ())), install=install_hint(req), marlin_fp8=False, tp_flags=TP_FLAGS,
        gguf_reason="GGUF builds are served by llama.cpp here",
        ctx_flag="--context-length", util_flag="--mem-fraction-static", util_default=0.88)
    if isinstance(inst, found.NotFound) and inst.why:
        v.reasons.insert(0, inst.why)
    have = inst.version if isinstance(inst, found.Installation) else None
    r, n = floor_check(req, "SGLang", NAME, have, family_floor(req, NAME), install_hint(req))
    v.reasons += r
    v.notes += n
    if isinstance(inst, found.Installation) and v.ok:
        v.notes.append(f"runs {inst.describe()}")
    return v


def command(req: Request, model: str, host: str, port: int | None, verdict: Verdict) -> list[Command]:
    """One command per node; every node runs the same server with its own --node-rank."""
    args, env, pport, source = _gpu.profile_args(req, NAME)
    env, notes = _gpu.multi_node_env(req, env)
    verdict.notes += notes
    gpus = _gpu.verdict_gpus(verdict)
    port = port or pport or 30000
    if source is None:
        args = {**_generic(req), **args}
    if req.context:
        args["--context-length"] = req.context
    # SGLang's --tp-size counts every GPU over all nodes (2 x 8xB200: 16). Its exact name, not the "--tp"
    # abbreviation argparse happens to accept, so that the plan reads the same in SGLang's docs.
    tp = next((args.pop(f) for f in TP_FLAGS if f in args), None)
    if req.gpus or req.nodes > 1 or tp is None:
        tp = gpus * req.nodes
    args = {"--tp-size": tp, **args} if tp and int(tp) > 1 else args
    inst = installed(req)
    # the interpreter of the environment SGLang was found in; another machine: its own python3
    python = inst.python if isinstance(inst, found.Installation) else "python3"
    base = [python, "-m", "sglang.launch_server", "--model", model]
    client = client_host(host)
    out = []
    for rank in range(req.nodes):
        extra = dict(args)
        if req.nodes > 1:
            extra.update({"--nnodes": req.nodes, "--node-rank": rank, "--dist-init-addr": f"HEAD_IP:{DIST_PORT}"})
        argv = base + _gpu.args_to_argv(extra) + ["--host", host, "--port", str(port)] + revision_argv(req)
        out.append(Command(argv, dict(env), host, port, f"http://{client}:{port}/health" if rank == 0 else "",
                           rank if req.nodes > 1 else None))
    return out


def _generic(req: Request) -> dict:
    return _gpu.generic_args(req, NAME)
