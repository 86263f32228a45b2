"""Catalog commands: list, show, search, resolve, schema, validate, register, unregister, demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from . import reads
from .app import JsonOpt, complete_name, _print_json, app


def _exit(code: int) -> None:
    if code:
        raise typer.Exit(code)


# --- read commands -------------------------------------------------------------------------


@app.command("list")
def list_(
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Only families with a spec in this format."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Only families offering this quantization."),
    engine: Optional[str] = typer.Option(None, "--engine", "-e", help="Only families this engine can serve."),
    ability: Optional[str] = typer.Option(None, "--ability", help="Only families with this ability: chat, generate, tools, reasoning or vision."),
    min_context: Optional[int] = typer.Option(None, "--min-context", help="Only families with at least this context."),
    local: bool = typer.Option(False, "--local", help="The local builds instead (as `registry ls`)."),
    json_: bool = JsonOpt,
) -> None:
    """List model families (--local: the local builds)."""
    if local:
        from .local_cmds import show_local_builds

        return show_local_builds(json_)
    _exit(reads.list_families(format, quant, engine, ability, min_context, json_))


@app.command()
def show(
    name: str = typer.Argument(..., help="Family name, e.g. glm4-chat-1m, or a build tag, e.g. glm4-chat-1m:Q4_K.",
                      autocompletion=complete_name),
    artifacts: bool = typer.Option(False, "--artifacts", help="Also list the recorded builds with their recipes and quality reports."),
    node: Optional[str] = typer.Option(None, "--node", help="With --artifacts: only this node's (machine's) builds."),
    json_: bool = JsonOpt,
) -> None:
    """Show a family and every spec (--artifacts: and its recorded builds)."""
    _exit(reads.show(name, artifacts, node, json_))


@app.command()
def search(words: list[str] = typer.Argument(..., help="Words to look for: a family, an uploader, a hub repository, a format, a quantization or an engine."),
           json_: bool = JsonOpt) -> None:
    """Find builds by family, uploader, hub repository, format, quantization or engine (every word must match),
    e.g. `registry search unsloth`, `registry search mlx 4bit`."""
    _exit(reads.search(words, json_))


@app.command()
def resolve(
    name: str = typer.Argument(..., help="Family name, or a build tag FAMILY:QUANT."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Format (default: the one that has the quant)."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Quantization, in any case (or the tag's)."),
    size: Optional[float] = typer.Option(None, "--size", help="Size in billions, where a format has several."),
    uploader: Optional[str] = typer.Option(None, "--from", help="Uploader, where several publish the format in "
                                           "one size: bartowski, unsloth or local; or name it: bartowski/FAMILY."),
    json_: bool = JsonOpt,
) -> None:
    """Pin a family/format/quant to its hub repo, revision and files."""
    _exit(reads.resolve(name, format, quant, size, uploader, json_))


@app.command()
def schema() -> None:
    """Print the JSON Schema of a spec file."""
    from ..schema import json_schema

    _print_json(json_schema())


# --- spec files ----------------------------------------------------------------------------


@app.command()
def validate(files: list[Path] = typer.Argument(..., help="Spec files to check."), json_: bool = JsonOpt) -> None:
    """Check spec files, printing every problem on its own line with its field path; exit 1 if any is invalid."""
    from ..errors import SpecError
    from ..loader import read_spec_file

    results = []
    names: dict[str, str] = {}
    for f in files:
        try:
            fam = read_spec_file(f)
            if fam.name in names:
                raise SpecError(f"{f}: family {fam.name!r}: field name: duplicate of the family in {names[fam.name]}")
            names[fam.name] = str(f)
            results.append({"file": str(f), "ok": True, "family": fam.name})
        except SpecError as e:
            lines = e.lines or [str(e)]
            results.append({"file": str(f), "ok": False, "error": str(e), "errors": lines})
    if json_:
        _print_json(results)
    else:
        for r in results:
            if r["ok"]:
                print(f"ok: {r['file']} ({r['family']})")
            else:
                for line in r["errors"]:
                    print(f"error: {line}", file=sys.stderr)
    if not all(r["ok"] for r in results):
        raise typer.Exit(1)


@app.command()
def register(
    file: Path = typer.Argument(..., help="A spec file of your own family (`registry init NAME` writes one)."),
    replace: bool = typer.Option(False, "--replace", help="Replace the family of that name if it is registered."),
) -> None:
    """Add a user family to the store (it cannot shadow a shipped name)."""
    from ..catalog import shipped
    from ..errors import SpecError
    from ..loader import read_spec_file
    from ..store import Store

    fam = read_spec_file(file)
    shipped_names = {e.family.name for e in shipped()}
    if fam.name in shipped_names:
        raise SpecError(f"{file}: family {fam.name!r}: field name: a shipped family has this name; choose another")
    store = Store()
    replaced = replace and any(r.name == fam.name for r in store.user_families())
    store.register_family(fam.name, fam.model_dump(mode="json", exclude_none=True), str(file.resolve()),
                          replace=replace)
    verb = "replaced" if replaced else "registered"
    print(f"{verb} {fam.name} ({len(fam.specs)} spec{'s' if len(fam.specs) != 1 else ''})")


@app.command()
def unregister(name: str) -> None:
    """Remove a user family from the store."""
    from ..store import Store

    Store().unregister_family(name)
    print(f"unregistered {name}")


@app.command()
def demo(json_: bool = JsonOpt) -> None:
    """Run the whole registry path locally, with no hub (see README)."""
    from ..demo import run

    say = (lambda m: print(m, file=sys.stderr)) if json_ else print
    result = run(say=say, progress=not json_ and sys.stderr.isatty())
    if json_:
        _print_json(result)


