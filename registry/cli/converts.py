"""`registry convert`'s work, free of typer: the typer command (registry/cli/convert_cmds.py) and the fast path
(registry/cli/fast.py) both run it, so both do and print the same. Returns the exit code."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import RegistryError
from .output import _catalog, _print_json, _table

_TARGETS = {"ggufv2": "gguf", "gguf": "gguf", "compressed-tensors": "compressed_tensors"}


def convert(name: str, source: Path, *, to: str | None = None, quant: str | None = None, out: Path | None = None,
            keep_f16: bool = False, report: bool = False, outtype: str | None = None, keep_mtp: bool = False,
            split_max_size: str | None = None, method: str | None = None, calibration: str | None = None,
            imatrix: Path | None = None, chunks: int | None = None, chunk_size: int | None = None,
            samples: int | None = None, max_seq_len: int | None = None, seed: int | None = None,
            all_experts: bool | None = None, device: str | None = None, offload_dir: Path | None = None,
            dry_run: bool = False, no_record: bool = False, force: bool = False, json_: bool = False) -> int:
    """Convert checkpoint `source` into a build of family `name` (or tag FAMILY:QUANT) and record it."""
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
        return 1 if any(not p.fits for p in plans) else 0
    import gc

    if target == "gguf":
        import os

        # numpy's OpenBLAS starts a thread per core at import that spins for work (0.1 s of CPU beside the
        # start-up); the GGUF converter does no BLAS (llama.cpp quantizes and evaluates)
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # This process ends with the command: what start-up loaded (the catalog; typer's and pydantic's objects on
    # typer's path) stays, so the collections during the build need not walk it again (a full one took 0.1 s)
    gc.freeze()
    results = import_module(f"converters.{target}").run_convert(req)
    if json_:
        from ..views import with_quant_names

        fam = _catalog().get(name)
        _print_json([with_quant_names(r.to_dict(), fam) for r in results])
        return 0
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
    return 0


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
