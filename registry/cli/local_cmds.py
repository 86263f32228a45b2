"""Commands people expect from Ollama and uv: rm, run (an interactive chat), completion."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from ..errors import RegistryError
from .app import JsonOpt, _print_json, app, complete_name


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _size(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


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


@app.command()
def run(
    name: str = typer.Argument(..., help="A build tag FAMILY:QUANT (FAMILY alone: the best build that fits here).",
                               autocompletion=complete_name),
    prompt: Optional[str] = typer.Argument(None, help="Ask this once and exit, instead of a chat."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Format (default: the one that has the quant)."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Quantization, in any case (or the tag's)."),
    engine: Optional[str] = typer.Option(None, "--engine", "-e", help="Force an engine (default: the best that can)."),
    context: Optional[int] = typer.Option(None, "--context", help="Context length in tokens."),
    system: Optional[str] = typer.Option(None, "--system", help="A system message for the chat."),
    max_tokens: int = typer.Option(512, "--max-tokens", help="Most tokens per answer."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Sampling temperature (default: the "
                                                "engine's)."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for a server to answer."),
    stop: bool = typer.Option(False, "--stop", help="Stop the server on exit if this command started it."),
) -> None:
    """Chat with a build in the terminal, answers streamed as they come (as `ollama run`): starts it if it is not
    running (a running one is reused). /bye or Ctrl-D ends, /clear forgets the conversation."""
    from .. import launcher, prestart
    from ..naming import split_tag
    from .launch_cmds import running_same

    family, quant = split_tag(name, quant)
    if quant is None:  # the build `registry fit FAMILY --quant auto` would pick on this machine
        auto = launcher.fit(family, context=context, quant="auto", format=format)["auto"]
        if not auto["quantization"]:
            raise RegistryError(f"no build of {family} fits this machine (`registry fit {family}` says why); "
                                "name one as FAMILY:QUANT")
        format, quant = auto["format"], auto["quantization"]
        _err(f"{family}: {auto['format']} {quant}, the best build that fits here")
    p = launcher.plan(family, format, quant, engine=engine, context=context)
    same = running_same(p, engine, context)
    started = not same
    if same:
        dep = same[0]
        _err(f"{dep.family} {dep.quantization} runs (deployment {dep.id}); chatting with it")
    else:
        dep = launcher.launch(p, timeout=timeout, say=_err, spinner=sys.stderr.isatty(), prestarted=prestart.claim())
    try:
        _chat(dep, prompt, system, max_tokens, temperature)
    finally:
        if stop and started:
            _err(f"{dep.family} (deployment {dep.id}): {launcher.stop(dep)}")
        elif started:
            _err(f"{dep.family} keeps running (deployment {dep.id}); `registry stop {dep.id}` stops it")


def _chat(dep, prompt: str | None, system: str | None, max_tokens: int, temperature: float | None) -> None:
    from .. import launcher

    base, model = launcher.address(dep), launcher.served_model(dep)
    history: list[dict] = [{"role": "system", "content": system}] if system else []
    if prompt is not None:
        _answer(base, model, history + [{"role": "user", "content": prompt}], max_tokens, temperature)
        return
    tty = sys.stdin.isatty()
    if tty:
        _err("Send a message (/bye or Ctrl-D to end, /clear to forget the conversation)")
    while True:
        if tty:
            sys.stdout.write(">>> ")
            sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:  # end of input
            if tty:
                sys.stdout.write("\n")
            return
        text = line.strip()
        if text in ("/bye", "/exit", "/quit"):
            return
        if text == "/clear":
            history = history[:1] if system else []
            continue
        if not text:
            continue
        history.append({"role": "user", "content": text})
        try:
            history.append({"role": "assistant", "content": _answer(base, model, history, max_tokens, temperature)})
        except KeyboardInterrupt:  # Ctrl-C stops this answer, not the chat
            sys.stdout.write("\n")
            history.pop()


def _answer(base: str, model: str, messages: list[dict], max_tokens: int, temperature: float | None) -> str:
    """One streamed chat completion, printed as it comes; the whole answer."""
    import urllib.error
    import urllib.request

    body = {"model": model, "messages": messages, "stream": True, "max_tokens": max_tokens}
    if temperature is not None:
        body["temperature"] = temperature
    req = urllib.request.Request(f"{base}/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json", "Accept": "text/event-stream"})
    parts: list[str] = []
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            for raw in resp:  # server-sent events, one `data: {...}` line per chunk
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    break
                choices = json.loads(data).get("choices") or [{}]
                delta = (choices[0].get("delta") or {}).get("content") or ""
                if delta:
                    parts.append(delta)
                    sys.stdout.write(delta)
                    sys.stdout.flush()
    except urllib.error.HTTPError as e:
        raise RegistryError(f"the server answered {e.code}: {e.read().decode(errors='replace')[:300]}") from None
    except (urllib.error.URLError, OSError) as e:
        raise RegistryError(f"the server at {base} did not answer: {e}; see `registry logs`") from None
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(parts)


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
