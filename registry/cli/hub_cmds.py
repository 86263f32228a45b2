"""Hub commands: pull (download a build, offline-first) and verify (re-check a local copy)."""

from __future__ import annotations

import sys
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
