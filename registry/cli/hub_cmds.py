"""Hub commands: pull (download a build, offline-first), verify (re-check a local copy) and discover (uploads
the catalog lacks)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .app import JsonOpt, complete_name, _catalog, _print_json, _table, app


@app.command()
def pull(
    name: str = typer.Argument(..., help="Family name, e.g. glm4-chat-1m, or a build tag, e.g. glm4-chat-1m:Q4_K.",
                      autocompletion=complete_name),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Format (default: the one that has the quant)."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Quantization, in any case (or the tag's)."),
    size: Optional[float] = typer.Option(None, "--size", help="Size in billions, where a format has several."),
    uploader: Optional[str] = typer.Option(None, "--from", help="Uploader, where several publish the format in "
                                           "one size: bartowski, unsloth or local; or name it: bartowski/FAMILY."),
    hub: Optional[str] = typer.Option(None, "--hub", help="huggingface or modelscope (default: REGISTRY_HUB, else huggingface)."),
    offline: bool = typer.Option(False, "--offline", help="Never touch the network (as HF_HUB_OFFLINE=1)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Pin a commit (or branch, tag) instead of the spec's revision."),
    json_: bool = JsonOpt,
) -> None:
    """Download a build into the Hugging Face cache (or use the local copy) and record it with the exact commit."""
    from ..hub import pull as do_pull

    r = _catalog().resolve(name, format, quant, size=size, uploader=uploader)
    others = [s.publisher for s in r.family.specs if s is not r.spec and s.format == r.spec.format
              and s.size_in_billions == r.spec.size_in_billions and s.quantizations]
    if others and not json_:  # several uploaders publish this format in one size: say whose build comes
        print(f"{r.family.name}:{r.quantization} from {r.spec.publisher}"
              + (f" ({next(iter(r.hubs.values())).model_id})" if r.hubs else " (built here)")
              + f"; --from {' or --from '.join(others)} takes another uploader's", file=sys.stderr)
    res = do_pull(r, hub=hub, offline=True if offline else None, progress=not json_ and sys.stderr.isatty(),
                  say=lambda m: print(m, file=sys.stderr), revision=revision)
    if json_:
        _print_json(res.to_dict())
        return
    where = {"store": "local artifact", "cache": "Hugging Face cache", "download": "downloaded",
             "modelscope": "ModelScope"}[res.source]
    at = f"; {res.model_id}@{res.commit or res.revision}" if res.model_id else ""
    print(f"{res.path} ({where}{at})")


@app.command()
def verify(
    name: str = typer.Argument(..., help="Family name, or a build tag FAMILY:QUANT."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Format (default: the one that has the quant)."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Quantization, in any case (or the tag's)."),
    size: Optional[float] = typer.Option(None, "--size"),
    uploader: Optional[str] = typer.Option(None, "--from", help="Uploader, where several publish the format in "
                                           "one size: bartowski, unsloth or local; or name it: bartowski/FAMILY."),
    json_: bool = JsonOpt,
) -> None:
    """Re-hash the local copy of a build; a bad file is moved aside (exit 1) and the error says where."""
    from ..hub import verify as do_verify

    r = _catalog().resolve(name, format, quant, size=size, uploader=uploader)
    if json_:
        results = do_verify(r, raise_on_error=False)
        _print_json(results)
        if not all(x["ok"] for x in results):
            raise typer.Exit(1)
        return
    results = do_verify(r)
    _table(f"{r.family.name} {r.spec.format} {r.quantization}: {len(results)} file{'s' if len(results) != 1 else ''} ok",
           ["file", "sha256"], [[x["path"], x["sha256"] or ""] for x in results])


@app.command()
def discover(
    name: Optional[str] = typer.Argument(None, help="Family name, e.g. glm-4.5-air (or --all).",
                                         autocompletion=complete_name),
    all_: bool = typer.Option(False, "--all", help="Every family of the catalog."),
    base: list[str] = typer.Option([], "--base", metavar="REPO", help="Another base repository to ask about, e.g. THUDM/glm-4-9b-chat "
                                   "(repeat it for several)."),
    write: Optional[Path] = typer.Option(None, "--write", metavar="FILE", help="Write the proposed specs as a user family to this "
                                         "YAML file (it validates; register it after reading it)."),
    family_name: Optional[str] = typer.Option(None, "--name", metavar="NAME", help="The written family's name (default: "
                                              "FAMILY-discovered)."),
    force: bool = typer.Option(False, "--force", help="Overwrite the --write file if it exists."),
    headers: bool = typer.Option(True, "--headers/--no-headers", help="Read one GGUF header per GGUF upload over "
                                 "HTTP ranges (architecture, file type); off: file names only."),
    limit: int = typer.Option(200, "--limit", min=1, metavar="N", help="At most this many uploads per base repository."),
    json_: bool = JsonOpt,
) -> None:
    """Ask the hub for public quantized uploads of a family's base repositories and print specs for those the
    catalog lacks.

    Uploads come from Hugging Face's model tree (base_model:quantized:REPO); their format and quantizations from
    their files, config.json and GGUF headers. Uploads the catalog has are shown as such. Nothing is added to the
    catalog: read the proposed YAML, then paste it under the family's `specs:` or register the --write file.
    """
    from ..catalog import shipped
    from ..errors import RegistryError
    from ..hub.discover import discover as run, write_family

    if all_ == (name is not None):
        raise typer.BadParameter("give one family name or --all", param_hint="NAME")
    cat = _catalog()
    names = cat.names() if all_ else [cat.get(name).name]
    if write is not None and all_:
        raise typer.BadParameter("--write takes one family; drop --all", param_hint="--write")
    say = None if json_ else (lambda m: print(m, file=sys.stderr)) if sys.stderr.isatty() else None
    found = [run(cat.get(n), cat, extra_bases=tuple(base), headers=headers, limit=limit, say=say) for n in names]
    written = None
    if write is not None:
        d = found[0]
        target = family_name or f"{d.family}-discovered"
        if target in {e.family.name for e in shipped()}:
            raise RegistryError(f"{target!r} is a shipped family's name; pass --name with another")
        n = write_family(cat.get(d.family), d.proposals, write, target, force=force)
        written = {"file": str(write), "family": target, "specs": n}
    if json_:
        out = [d.to_dict() for d in found]
        _print_json({"families": out, "written": written} if all_ or written else out[0])
        return
    for d in found:
        _print_discovery(d)
    if written:
        print(f"wrote {written['file']}: family {written['family']} with {written['specs']} proposed "
              f"spec{'s' if written['specs'] != 1 else ''}; read it, then `registry register {written['file']}`")


def _print_discovery(d) -> None:
    ups = d.uploads
    print(f"{d.family}: {len(ups)} quantized upload{'s' if len(ups) != 1 else ''} of {', '.join(d.bases) or '(no base)'}")
    rows = []
    for u in ups:
        what = f"{u.format or '?'} {', '.join(u.quantizations)}".strip()
        note = u.note
        if u.status == "in catalog":
            note = f"in {u.where}" + (f"; the spec lacks {', '.join(u.missing)}" if u.missing else "")
        rows.append([u.status, u.repo, what, note])
    if rows:
        _table(None, ["status", "repository", "build", "note"], rows)
    if not d.proposals:
        print("nothing to propose: the catalog has every upload recognised here")
        return
    print(f"\nProposed specs for {d.family} (read each one, then paste it under `specs:` in its spec file):")
    for p in d.proposals:
        print(p.yaml())
