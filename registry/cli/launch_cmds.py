"""Launch commands: launch, fit, ps, logs, stop, hardware."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from . import reads
from .app import EngineArgsCommand, JsonOpt, complete_name, _console, _print_json, _table, app, engine_args
from .reads import _gb


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


@app.command(cls=EngineArgsCommand)
def launch(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Family name, e.g. glm4-chat-1m, or a build tag, e.g. glm4-chat-1m:Q4_K.",
                      autocompletion=complete_name),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Spec format: ggufv2 (or gguf), pytorch, "
                                         "or compressed-tensors (default: the one that has the quant)."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Quantization in any case, e.g. Q4_K, "
                                        "q4_k_m, FP8_DYNAMIC, AWQ (or the tag's)."),
    size: Optional[float] = typer.Option(None, "--size", help="Size in billions, where a format has several."),
    engine: Optional[str] = typer.Option(None, "--engine", "-e", help="Force an engine (default: the best that can)."),
    port: Optional[int] = typer.Option(None, "--port", help="Port (default: the spec's; the next free one if taken)."),
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1); beyond loopback "
                                       "the engine gets an API key (--api-key, else one made and printed once)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="Key the engine requires (Authorization: Bearer "
                                          "KEY), passed through the engine's own option; never stored."),
    context: Optional[str] = typer.Option(None, "--context", help="Context length in tokens: 8192, 32k, 128K, 1M, "
                                          "or max (the longest that fits)."),
    gpus: Optional[int] = typer.Option(None, "--gpus", help="GPUs per node (tensor parallel size)."),
    nodes: Optional[int] = typer.Option(None, "--nodes", help="Machines to spread over (vLLM over Ray, SGLang)."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="Plan for another machine: 8xB200, "
                                           "4xH100-80G, 2xH200, 24GB (one GPU of that memory), cpu-64GB, or a JSON file."),
    profile: Optional[str] = typer.Option(None, "--profile", help="A named launch profile of the spec, "
                                          "e.g. expert-parallel."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", help="llama.cpp's CPU threads (default: one "
                                          "per physical core; fewer leaves cores to other programs)."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for the server to answer."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan, start nothing."),
    new: bool = typer.Option(False, "--new", help="Start another server even if this build already runs."),
    json_: bool = JsonOpt,
) -> None:
    """Start the best engine for a build and wait until it answers (or print the plan with --dry-run). Without a
    quantization: a running deployment of the family, else a local build, else the best build that fits.
    Words after -- go to the engine's command line (`-- --seed 7`), checked first by the engine's own
    parser; the options the registry sets (--port, --host, --context, --gpus, --api-key and the like) stay its own."""
    from .. import launcher
    from ..naming import parse_context, split_tag

    launcher.check_timeout(timeout)  # before planning: nan would wait for ever, 0 or less not at all
    context = parse_context(context)
    if split_tag(name, quant)[1] is None:  # the rule `registry run FAMILY` follows
        pick = launcher.pick_build(name, format, context, hardware)
        name, format, quant = pick["family"], pick["format"], pick["quantization"]
        _say(f"{name}:{quant} ({format}): {pick['why']}")
    p = launcher.plan(name, format, quant, engine=engine, hardware=hardware, context=context, gpus=gpus,
                      nodes=nodes, port=port, host=host, profile=profile, size=size, threads=threads,
                      extra_args=engine_args(ctx))
    if dry_run:
        if json_:
            _print_json(p.to_dict())
        else:
            _show_plan(p)
        return
    from .. import prestart
    from ..views import deployment_view

    same = [] if new or port is not None or api_key else launcher.running_same(p, engine, context, threads)
    if same:
        dep = same[0]
        if json_:
            _print_json({**deployment_view(dep), "reused": True})
            return
        _say(f"{dep.family} {dep.quantization} already runs (deployment {dep.id}); reusing it (--new starts "
             "another)")
        _answers_at(dep)
        return
    from ..engines.keys import protect

    key, made = protect(p.engine, p.main, p.main.host, api_key)
    dep = launcher.launch(p, timeout=timeout, say=_say, spinner=not json_, prestarted=prestart.claim())
    if made:  # shown this once: it is in no row, log or listing
        _say(f"API key for this {p.engine} server (bound to {p.main.host}; it is not stored, keep it): {key}\n"
             f"  clients send: Authorization: Bearer {key}")
    if json_:
        _print_json({**deployment_view(dep), "reused": False})
        return
    _answers_at(dep)


def _answers_at(dep) -> None:
    """Where it answers, the model name to request and a request to copy."""
    from .. import launcher

    base = launcher.address(dep)
    model = launcher.served_model(dep)
    c = _console()
    c.print(f"{dep.family} ({dep.engine}, deployment {dep.id}, pid {dep.pid}) answers at {base}", markup=False,
            highlight=False)
    body = '{"model": "%s", "messages": [{"role": "user", "content": "Hello"}]}' % model
    c.print(f"  model: {model}\n  curl {base}/chat/completions -H 'Content-Type: application/json' -d '{body}'",
            markup=False, highlight=False, soft_wrap=True)


def _show_plan(p) -> None:
    import shlex

    d = p.to_dict()
    c = _console()
    c.print(f"[bold]{d['family']}[/] {d['format']} {d['quantization']} on {d['hardware']['name']}: "
            f"[bold]{d['engine']}[/]" + (f" (profile {d['profile']})" if d["profile"] else ""))
    cmds = d.get("commands") or [{"argv": d["argv"], "env": d["env"]}]
    for cmd in cmds:
        prefix = f"node {cmd['node_rank']}: " if "node_rank" in cmd else ""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in cmd["env"].items())
        c.print(prefix + (env + " " if env else "") + shlex.join(cmd["argv"]), soft_wrap=True, markup=False)
    e = d["estimate"]
    if e:
        c.print(f"memory: weights {_gb(e['weights_bytes'])} + KV {_gb(e['kv_cache_bytes'])} ({e['context']:,} tokens) "
                f"+ runtime {_gb(e['overhead_bytes'])} = {_gb(e['total_bytes'])}"
                + (f", {_gb(e['per_gpu_bytes'])} per GPU on {e['gpus']}" if e["gpus"] else ""))
    a = d["artifact"]
    c.print("artifact: " + (a["path"] or f"{a.get('model_id')}@{a.get('revision')} {' '.join(a.get('files') or [])}"
                            if a["source"] != "build" else a["note"]), markup=False)
    for n in d["notes"]:
        c.print(f"note: {n}", markup=False)
    for r in d["rejected"]:
        c.print(f"not {r['engine']}: " + "; ".join(r["reasons"]), markup=False)


@app.command()
def fit(
    name: str = typer.Argument(..., help="Family name, or a build tag FAMILY:QUANT.",
                      autocompletion=complete_name),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="A profile name or JSON file (default: here)."),
    context: Optional[str] = typer.Option(None, "--context", help="Context length in tokens: 8192, 32k, 128K, 1M, "
                                          "or max (each build's longest that fits)."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="One quantization, or 'auto': the best that fits."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Only this format."),
    json_: bool = JsonOpt,
) -> None:
    """Every build of a family with its memory estimate, and whether it fits this (or that) hardware."""
    reads.fits(name, hardware, context, quant, format, json_)


@app.command()
def ps(all_: bool = typer.Option(False, "--all", "-a", help="Stopped and failed ones too."),
       node: Optional[str] = typer.Option(None, "--node", help="Only this node's (machine's) deployments."),
       json_: bool = JsonOpt) -> None:
    """Running deployments of every node sharing the store (one of this node's that died is marked exited;
    another node's status is what that node last wrote, at `seen`)."""
    reads.deployments(all_, node, json_)


@app.command()
def logs(name: str = typer.Argument(..., help="Build tag FAMILY:QUANT, family name or deployment id.",
                                    autocompletion=complete_name),
         lines: Optional[int] = typer.Option(None, "--lines", "-n", help="Only the last N lines."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing what the server writes, until it "
                                     "exits (or Ctrl-C).")) -> None:
    """The log of a deployment (the newest one of that family)."""
    from .. import launcher

    dep = launcher.find(name, active_only=True)[0]
    sys.stdout.write(launcher.log_text(dep, lines))
    if follow:
        _follow(dep)


def _follow(dep, poll: float = 0.2) -> None:
    """`tail -f` until the server's process is gone: what is appended to its log, as it comes."""
    import time
    from pathlib import Path

    from .. import launcher

    sys.stdout.flush()
    with open(Path(dep.log_path), "rb") as f:
        f.seek(0, 2)
        alive_at = 0.0
        while True:
            chunk = f.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                continue
            if time.monotonic() - alive_at > 1.0:  # the process check reads /proc: once a second
                if dep.status not in ("starting", "running") or not launcher._alive(dep.pid, dep.argv):
                    sys.stdout.buffer.write(f.read())
                    sys.stdout.flush()
                    print(f"(deployment {dep.id} is no longer running)", file=sys.stderr)
                    return
                alive_at = time.monotonic()
            time.sleep(poll)


@app.command()
def stop(name: Optional[str] = typer.Argument(None, help="Build tag FAMILY:QUANT, family name or deployment id.",
                                              autocompletion=complete_name),
         all_: bool = typer.Option(False, "--all", "-a", help="Stop every running deployment.")) -> None:
    """Stop deployments of this node: SIGTERM, then SIGKILL after 10 s (another node's: run stop there)."""
    from .. import launcher
    from ..errors import RegistryError

    if all_ == (name is not None):
        raise RegistryError("give a deployment (FAMILY:QUANT, family name or id) or --all, not both or neither")
    deps = launcher.ps(mine=True) if all_ else launcher.find(name, active_only=True)
    if all_ and not deps:
        _console().print("nothing running")
    for d in deps:
        what = launcher.stop(d)
        _console().print(f"{d.family} (deployment {d.id}, pid {d.pid}): {what}", markup=False)


@app.command("hardware")
def hardware_(
    profile: Optional[str] = typer.Option(None, "--hardware", "--profile", help="Show a profile instead of this machine."),
    json_: bool = JsonOpt,
) -> None:
    """This machine's GPUs (name, memory, compute capability), RAM and cores; or a named profile."""
    from .. import hardware

    hw = hardware.get(profile)
    d = hw.to_dict()
    d["profiles"] = hardware.profile_names()
    if json_:
        _print_json(d)
        return
    c = _console()
    c.print(f"[bold]{hw.name}[/] ({hw.source}): {hw.cpu_cores} cores, {hw.host_memory_bytes / 2**30:.1f} GiB RAM")
    if not hw.gpus:
        c.print("no NVIDIA GPU" + (" (nvidia-smi not found or reports none)" if hw.local else ""))
    else:
        _table(None, ["#", "GPU", "memory", "compute capability"],
               [[str(g.index), g.name, f"{g.memory_bytes / 2**30:.1f} GiB",
                 f"{g.compute_capability:.1f}" if g.compute_capability else "?"] for g in hw.gpus])
    c.print("profiles: " + ", ".join(d["profiles"]), markup=False)
