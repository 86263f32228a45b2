"""`registry convert`: build a GGUF or compressed-tensors artifact from a Hugging Face checkpoint.

The command only parses options; registry/cli/converts.py does the work (the fast path runs it too, without
typer), and the converter package for the target format is imported there, inside the command, so the rest of
the CLI never loads torch or llama.cpp.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import JsonOpt, app


@app.command()
def convert(
    name: str = typer.Argument(..., help="Family name the checkpoint belongs to, e.g. glm-4.7, or a build tag "
                               "FAMILY:QUANT, e.g. glm4-chat-1m:Q4_K."),
    source: Path = typer.Option(..., "--from", help="Hugging Face checkpoint directory."),
    to: Optional[str] = typer.Option(None, "--to", help="ggufv2 (or gguf) or compressed-tensors (default: the format "
                                     "that has the quant)."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Quantization, e.g. Q4_K or W4A16_GS64; 'all' for "
                                        "the GGUF ladder (or the tag's)."),
    out: Optional[Path] = typer.Option(None, "--out", help="A directory, or FILE.gguf for one quantization (default: the registry's artifacts dir)."),
    keep_f16: bool = typer.Option(
        False, "--keep-f16",
        help="GGUF, --out FILE.gguf: keep the F16 (or BF16) first pass beside it as NAME.F16.gguf, recorded too "
             "(default: removed once FILE is written)."),
    report: bool = typer.Option(False, "--report", help="Measure KL divergence and top-1 agreement against the source."),
    outtype: Optional[str] = typer.Option(None, "--outtype", help="GGUF: F16 or BF16 for the first pass."),
    keep_mtp: bool = typer.Option(False, "--keep-mtp", help="GGUF: keep MTP/NextN layers (dropped by default)."),
    split_max_size: Optional[str] = typer.Option(None, "--split-max-size", help="GGUF: split output above this size (e.g. 2G, 500M)."),
    method: Optional[str] = typer.Option(None, "--method", help="compressed-tensors W4A16: awq, gptq or rtn."),
    calibration: Optional[str] = typer.Option(
        None, "--calibration",
        help="Hub dataset name or local JSONL of chat messages; GGUF: a text or chat JSONL file to collect an imatrix from."),
    imatrix: Optional[Path] = typer.Option(
        None, "--imatrix", help="GGUF: quantize with this importance matrix (llama.cpp imatrix .gguf or legacy .dat)."),
    chunks: Optional[int] = typer.Option(None, "--chunks", help="GGUF --calibration: evaluate at most this many chunks."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="GGUF --calibration: tokens per chunk (default 512)."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Calibration sample count."),
    max_seq_len: Optional[int] = typer.Option(None, "--max-seq-len", help="Calibration max sequence length."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Calibration sampling seed (default: the spec's, else 0)."),
    all_experts: Optional[bool] = typer.Option(
        None, "--all-experts/--no-all-experts",
        help="MoE: every expert sees every calibration token (default: as the spec's recipe says)."),
    device: Optional[str] = typer.Option(
        None, "--device", help="compressed-tensors: cpu or cuda:N, where weights are quantized and layers calibrated."),
    offload_dir: Optional[Path] = typer.Option(
        None, "--offload-dir", help="compressed-tensors calibration: keep the layers not being calibrated here on disk."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="compressed-tensors: print what the build needs (memory, disk, path) and build nothing."),
    no_record: bool = typer.Option(False, "--no-record", help="Do not record the result in the store."),
    force: bool = typer.Option(False, "--force", help="Rebuild an output that exists (the old one is replaced once "
                               "the new one is complete)."),
    json_: bool = JsonOpt,
) -> None:
    """Convert a checkpoint into a build and record it as an artifact."""
    from .converts import convert as run

    code = run(name, source, to=to, quant=quant, out=out, keep_f16=keep_f16, report=report, outtype=outtype,
               keep_mtp=keep_mtp, split_max_size=split_max_size, method=method, calibration=calibration,
               imatrix=imatrix, chunks=chunks, chunk_size=chunk_size, samples=samples, max_seq_len=max_seq_len,
               seed=seed, all_experts=all_experts, device=device, offload_dir=offload_dir, dry_run=dry_run,
               no_record=no_record, force=force, json_=json_)
    if code:
        raise typer.Exit(code)
