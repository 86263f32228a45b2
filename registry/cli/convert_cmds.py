"""`registry convert`: build a GGUF or compressed-tensors artifact from a Hugging Face checkpoint.

The command only parses options; the converter package for the target format does the work
(imported here, inside the command, so the rest of the CLI never loads torch or llama.cpp).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import RegistryError
from .app import JsonOpt, _print_json, _table, app

_TARGETS = {"ggufv2": "gguf", "gguf": "gguf", "compressed-tensors": "compressed_tensors"}


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
    from importlib import import_module

    from converters.options import ConvertRequest

    from ..catalog import use_plain
    from ..naming import format_name, split_tag

    # A GGUF conversion reads its family's name, specs and architecture: the compiled catalog's plain families
    # answer them without the schema's models being built and every family validated
    use_plain(to is None or format_name(to) == "ggufv2")
    name, quant = split_tag(name, quant)
    if quant is None:
        raise RegistryError(f"give a quantization: --quant QUANT (or 'all') or {name}:QUANT")
    if to is None:
        if quant.lower() == "all":
            raise RegistryError("--quant all needs --to ggufv2")
        from .app import _catalog

        to = _catalog().resolve(name, None, quant).spec.format
    to = format_name(to)
    target = _TARGETS.get(to)
    if target is None:
        raise RegistryError(f"--to {to!r} is not a format the converters write; use one of: ggufv2, compressed-tensors")
    if target != "gguf":
        use_plain(False)  # the compressed-tensors recipes are the schema's models
    req = ConvertRequest(
        family=name, source=source, to="ggufv2" if target == "gguf" else to, quant=quant, out=out,
        report=report, record=not no_record, progress=not json_ and sys.stderr.isatty(),
        outtype=outtype, keep_mtp=keep_mtp, split_max_size=_parse_size(split_max_size),
        imatrix=imatrix, chunks=chunks, chunk_size=chunk_size, keep_first_pass=keep_f16,
        method=method, calibration=calibration, samples=samples, max_seq_len=max_seq_len,
        seed=seed, all_experts=all_experts, device=device, offload_dir=offload_dir, dry_run=dry_run, force=force,
        say=lambda m: print(m, file=sys.stderr),
    )
    if dry_run or device or offload_dir:
        if target != "compressed_tensors":
            flag = "--dry-run" if dry_run else "--device" if device else "--offload-dir"
            raise RegistryError(f"{flag} applies to --to compressed-tensors builds; GGUF conversion streams by tensor")
    if (imatrix or chunks or chunk_size) and target != "gguf":
        raise RegistryError("--imatrix/--chunks/--chunk-size apply to --to ggufv2 builds")
    from ..catalog import check_buildable
    from .app import _catalog

    fam = _catalog().get(name)
    check_buildable(fam, to, quant)  # before anything is read or built
    req.family = name = fam.name
    if dry_run:
        from converters.compressed_tensors.plan import print_plans, run_plan

        plans = run_plan(req)
        if json_:
            _print_json([p.to_dict() for p in plans])
        else:
            print_plans(plans)
        if any(not p.fits for p in plans):
            raise typer.Exit(1)
        return
    import gc

    if target == "gguf":
        import os

        # numpy's OpenBLAS starts a thread per core at import that spins for work (0.1 s of CPU beside the
        # start-up); the GGUF converter does no BLAS (llama.cpp quantizes and evaluates)
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # This process ends with the command: what start-up loaded (~70k objects of typer, pydantic and the
    # catalog) stays, so the collections during the build need not walk it again (a full one took 0.1 s)
    gc.freeze()
    results = import_module(f"converters.{target}").run_convert(req)
    if json_:
        from ..views import with_quant_names
        from .app import _catalog

        fam = _catalog().get(name)
        _print_json([with_quant_names(r.to_dict(), fam) for r in results])
        return
    cols = ["quant", "path", "size", "sha256"]
    with_report = any(r.report for r in results)
    with_plain = any((r.report or {}).get("imatrix") for r in results)
    if with_report:
        cols += ["KL divergence", "top-1 agreement"]
    if with_plain:
        cols += ["KL without imatrix", "top-1 without imatrix"]
    rows = []
    for r in results:
        row = [r.quantization, str(r.path), f"{r.size_bytes / 2**20:.1f} MiB", r.sha256[:12]]
        if with_report:
            rep = r.report or {}
            kl, top1 = rep.get("kl_divergence"), rep.get("top1_agreement")
            row += [f"{kl:.6f}" if kl is not None else "", f"{top1:.1%}" if top1 is not None else ""]
        if with_plain:
            plain = rep.get("without_imatrix") or {}
            row += [f"{plain['kl_divergence']:.6f}" if plain else ("needs one" if rep.get("imatrix") else ""),
                    f"{plain['top1_agreement']:.1%}" if plain else ""]
        rows.append(row)
    _table(f"{name}: {len(results)} build{'s' if len(results) != 1 else ''}", cols, rows)


def _parse_size(text: str | None) -> int | None:
    if text is None:
        return None
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    t = text.strip().upper().rstrip("B")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise RegistryError(f"--split-max-size {text!r} is not a size; write e.g. 2G, 500M or a byte count") from None
