"""`registry imatrix`: collect an importance matrix for low-bit GGUF builds (converters/gguf/imatrix_run.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .app import JsonOpt, _print_json, _table, app


@app.command()
def imatrix(
    name: str = typer.Argument(..., help="Family the build belongs to, e.g. glm4-chat-1m."),
    source: Path = typer.Option(..., "--from", help="The F16/BF16 GGUF build to evaluate."),
    calibration: Path = typer.Option(..., "--calibration", help="Plain text, or a chat JSONL rendered with the build's template."),
    chunks: Optional[int] = typer.Option(None, "--chunks", help="Evaluate at most this many chunks (default: all of the text)."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="Tokens per chunk (default 512, as llama-imatrix)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output .gguf (llama.cpp's imatrix format) or .dat (legacy); "
                                       "default: NAME.imatrix.gguf beside the build."),
    no_record: bool = typer.Option(False, "--no-record", help="Do not record the file in the store."),
    json_: bool = JsonOpt,
) -> None:
    """Collect an importance matrix (llama.cpp's imatrix GGUF) from an F16/BF16 GGUF over calibration text."""
    import registry
    from converters.gguf.imatrix_run import build_imatrix

    registry.get(name)  # an unknown family is an error before any work
    _, res = build_imatrix(name, source, calibration, out=out, chunks=chunks, chunk_size=chunk_size,
                           record=not no_record, say=lambda m: print(m, file=sys.stderr))
    if json_:
        _print_json(res.to_dict())
        return
    cal = res.recipe["calibration"]
    _table(f"{name}: importance matrix", ["path", "tokens", "chunks", "entries", "calibration", "sha256"],
           [[str(res.path), str(cal["tokens"]), f"{cal['chunks']} x {cal['chunk_size']}", str(res.recipe["entries"]),
             cal["dataset"], res.sha256[:12]]])
