"""Commands people expect from Ollama and uv: ls, rm, run (an interactive chat), completion."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..errors import RegistryError
from .app import EngineArgsCommand, JsonOpt, _print_json, app, complete_name, engine_args


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _size(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


# --- ls -------------------------------------------------------------------------------------------


@app.command("ls")
def ls(json_: bool = JsonOpt) -> None:
    """Every local build across families (as `ollama list`): tag, format, size, path, created, in use."""
    show_local_builds(json_)


def show_local_builds(json_: bool) -> None:
    """`registry ls` and `registry list --local`."""
    from ..builds import local_builds
    from .app import _console, _table

    builds = local_builds()
    if json_:
        _print_json(builds)
        return
    if not builds:
        _console().print("no local builds (`registry pull FAMILY:QUANT` or `registry convert` makes one)", markup=False)
        return
    _table(None, ["tag", "format", "size", "path", "created", "in use"],
           [[b["tag"], b["format"], _size(b["size_bytes"]), b["path"] + ("" if b["exists"] else " (missing)"),
             b["created"][:19].replace("T", " ") if b["created"] else "-",
             ", ".join(f"deployment {i}" for i in b["in_use"]) or "-"] for b in builds])


# --- rm -------------------------------------------------------------------------------------------


@app.command()
def rm(
    name: str = typer.Argument(..., help="A build tag FAMILY:QUANT (or FAMILY with --quant), or an artifact id "
                               "from `registry show FAMILY --artifacts`.", autocompletion=complete_name),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Format (default: the one that has the quant)."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Quantization, in any case (or the tag's)."),
    size: Optional[float] = typer.Option(None, "--size", help="Size in billions, where a format has several."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Remove without asking."),
    json_: bool = JsonOpt,
) -> None:
    """Remove a local build or a cached download: its files (a cache blob too, when nothing else uses it) and
    its store rows. Asks first, unless --yes."""
    from .. import remove

    if name.isdigit() and format is None and quant is None:
        r, label, found = None, f"artifact {name}", remove.targets(artifact_id=int(name))
    else:
        from .app import _catalog

        r = _catalog().resolve(name, format, quant, size=size)
        label, found = f"{r.family.name} {r.spec.format} {r.quantization}", remove.targets(r)
    if not found and r is not None:
        from ..hub import local

        local.only_elsewhere(r, f"registry rm {r.family.name} --format {r.spec.format} --quant {r.quantization}")
    if not found:
        raise RegistryError(f"no local copy of {label}: nothing in the store or the Hugging Face cache to remove")
    remove.check_not_served(found)
    total = sum(t.size_bytes for t in found)
    for t in found:
        _err(f"{t.kind}: {t.path} ({_size(t.size_bytes)}"
             + (f", artifact {', '.join(map(str, t.rows))})" if t.rows else ", not recorded)"))
    if not yes:
        sys.stderr.write(f"remove {label} ({_size(total)})? [y/N] ")
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            _err("nothing removed" + ("" if answer else " (no answer; --yes removes without asking)"))
            raise typer.Exit(1)
    remove.remove(found)
    if json_:
        _print_json({"removed": [t.to_dict() for t in found], "size_bytes": total})
        return
    print(f"removed {label}: {len(found)} cop{'y' if len(found) == 1 else 'ies'}, {_size(total)}")


# --- run ------------------------------------------------------------------------------------------


@app.command(cls=EngineArgsCommand)
def run(
    command: typer.Context,
    name: str = typer.Argument(..., help="A build tag FAMILY:QUANT (FAMILY alone: a running deployment of it, else "
                               "a local build, else the best build that fits here).", autocompletion=complete_name),
    prompt: Optional[str] = typer.Argument(None, help="Ask this once and exit, instead of a chat."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Format (default: the one that has the quant)."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Quantization, in any case (or the tag's)."),
    engine: Optional[str] = typer.Option(None, "--engine", "-e", help="Force an engine (default: the best that can)."),
    context: Optional[str] = typer.Option(None, "--context", help="Context length in tokens: 8192, 32k, 128K, 1M, "
                                          "or max (the longest that fits)."),
    system: Optional[str] = typer.Option(None, "--system", help="A system message for the chat."),
    max_tokens: int = typer.Option(512, "--max-tokens", help="Most tokens per answer."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Sampling temperature (default: the "
                                                "engine's)."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for a server to answer."),
    stop: bool = typer.Option(False, "--stop", help="Stop the server on exit if this command started it."),
) -> None:
    """Chat with a build in the terminal, answers streamed as they come (as `ollama run`): starts it if it is not
    running (a running one is reused). /? lists the chat's commands; /bye or Ctrl-D ends. Words after -- go to
    the engine's command line, as with `registry launch`."""
    from .. import launcher, prestart
    from ..naming import parse_context, split_tag
    from .chat import Chat, loop

    extra = engine_args(command)
    ctx = parse_context(context)
    family, quant = split_tag(name, quant)
    if quant is None:
        pick = launcher.pick_build(family, format, ctx)
        family, format, quant = pick["family"], pick["format"], pick["quantization"]
        _err(f"{family}:{quant} ({format}): {pick['why']}")
    started: list = []

    def deployment(context):
        p = launcher.plan(family, format, quant, engine=engine, context=context, extra_args=extra)
        same = launcher.running_same(p, engine, context)
        if same:
            return same[0]
        dep = launcher.launch(p, timeout=timeout, say=_err, spinner=sys.stderr.isatty(),
                              prestarted=None if started else prestart.claim())
        started.append(dep)
        return dep

    dep = deployment(ctx)
    if not started:
        _err(f"{dep.family}:{dep.quantization} runs (deployment {dep.id}); chatting with it")
    try:
        chat = Chat(dep, system, max_tokens, temperature, switch=deployment)
        if prompt is not None:
            chat.ask(prompt)
        else:
            loop(chat)
    finally:
        for d in started:
            if stop:
                _err(f"{d.family} (deployment {d.id}): {launcher.stop(d)}")
            else:
                _err(f"{d.family} keeps running (deployment {d.id}); `registry stop {d.id}` stops it")


# --- completion -----------------------------------------------------------------------------------

SHELLS = ("bash", "zsh", "fish")


@app.command()
def completion(shell: str = typer.Argument(..., help="bash, zsh or fish.")) -> None:
    """Print the shell completion script (click's): commands, options, family names and build tags.

    bash: eval "$(registry completion bash)" in ~/.bashrc; zsh: eval "$(registry completion zsh)" in
    ~/.zshrc; fish: registry completion fish > ~/.config/fish/completions/registry.fish"""
    from typer._completion_shared import get_completion_script  # the scripts typer's completion handler answers

    from .app import COMPLETE_VAR

    if shell.lower() not in SHELLS:
        raise RegistryError(f"no completion for shell {shell!r}; choose one of: {', '.join(SHELLS)}")
    sys.stdout.write(get_completion_script(prog_name="registry", complete_var=COMPLETE_VAR, shell=shell.lower()) + "\n")
