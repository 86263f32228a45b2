"""`registry convert NAME --from DIR --to ggufv2 --quant Q`: one F16 pass, then the quantized builds.

Checks the checkpoint against the family (architecture class must be one the family names; size
differences are only a warning), writes F16 (or BF16) once, quantizes each requested level from
it, optionally measures the quality report, and records every build in the store.

Importance matrix: --imatrix FILE quantizes with that file; --calibration FILE first collects one
from the F16 pass (recorded as its own artifact). The types that need one refuse before the first
pass without either. With an imatrix the report also measures each type built without it.
"""

from __future__ import annotations

from pathlib import Path

from registry.errors import RegistryError

from ..options import ConvertRequest, ConvertResult, record
from ..source import checkpoint_config
from .quantize import IQ_LADDER, LADDER, llama_quant_name, require_imatrix

DIRECT = ("F16", "BF16")


def check_family(req: ConvertRequest):
    from registry.catalog import load  # the core, not the Python API above it

    fam = load().get(req.family)
    if not any(s.format == "ggufv2" for s in fam.specs):  # `registry convert` refuses it (catalog.check_buildable)
        req.say(f"warning: family {fam.name} lists no ggufv2 spec; the build is recorded anyway")
    cfg, _ = checkpoint_config(Path(req.source), fam)
    a = fam.architecture
    layers = cfg.get("num_hidden_layers", cfg.get("num_layers"))
    diffs = [f"{k} {got} (family: {want})" for k, got, want in
             (("layers", layers, a.layers), ("hidden size", cfg.get("hidden_size"), a.hidden_size)) if got != want]
    if diffs:
        req.say(f"warning: checkpoint differs in size from {fam.name}: {', '.join(diffs)}; converting anyway")
    return fam


def _with_imatrix(req: ConvertRequest) -> bool:
    return bool(req.imatrix or req.calibration)


def _targets(req: ConvertRequest) -> list[str]:
    if req.quant.lower() == "all":
        return list(LADDER) + (list(IQ_LADDER) if _with_imatrix(req) else [])
    return [llama_quant_name(req.quant)]


def _paths(req: ConvertRequest, base: str, quants: list[str], first: str) -> tuple[Path, dict[str, Path], bool]:
    """The first pass's path, each build's, and whether the first pass is a scratch file removed at the end.

    --out FILE.gguf of one quantization: the build is written under that name; its F16 pass lies beside it as
    NAME.F16.gguf (kept and recorded with --keep-f16, or when it was already there), else under a hidden
    name in the same folder, removed once the build is written or has failed.
    """
    from registry import paths

    out = Path(req.out) if req.out else paths.artifacts_dir() / req.family
    if out.suffix == ".gguf":
        if len(quants) > 1:
            raise RegistryError(f"--out {out} names one file, and --quant {req.quant} makes {len(quants)} builds "
                                f"({', '.join(quants)}); give a directory, or one quantization")
        if quants[0] == first:
            return out, {first: out}, False
        beside = out.with_name(f"{base}.{first}.gguf")
        if req.keep_first_pass or beside.exists():
            return beside, {quants[0]: out}, False
        from ..claims import partial_tag

        # a scratch name the next run sweeps if this one is killed (claims.sweep_partials)
        return out.with_name(f".{out.stem}.{first}-pass.{partial_tag()}.gguf"), {quants[0]: out}, True
    if out.exists() and not out.is_dir():  # e.g. --out /dev/null
        raise RegistryError(f"--out {out} is not a directory; give a directory for the builds, or a .gguf file name "
                            "for a single one")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from ..writes import write_error

        raise write_error(e, out / "x", None) from None
    return out / f"{base}.{first}.gguf", {q: out / f"{base}.{q}.gguf" for q in quants}, False


def _check_imatrix_options(req: ConvertRequest, quants: list[str]):
    """Before any work: the imatrix options make sense, and the types that need one have one."""
    if req.imatrix and req.calibration:
        raise RegistryError("--imatrix and --calibration both given; pass --imatrix FILE to reuse one, "
                            "or --calibration FILE to collect a new one")
    if not _with_imatrix(req) and (req.chunks or req.chunk_size):
        raise RegistryError("--chunks/--chunk-size apply to collecting an imatrix; pass --calibration FILE too")
    for q in quants:
        if q not in DIRECT:
            require_imatrix(q, _with_imatrix(req))
    if req.calibration and not Path(req.calibration).is_file():
        raise RegistryError(f"calibration file {req.calibration} not found; GGUF builds calibrate from a local "
                            "text or chat JSONL file")
    if req.imatrix:
        from .imatrix_file import read_imatrix

        return read_imatrix(Path(req.imatrix))
    return None


def _file_ref(path: Path, im) -> dict:
    from .writer import sha256_of

    return {"path": str(path), "sha256": sha256_of([path]), "dataset": im.datasets[0] if im.datasets else None,
            "tokens": im.tokens, "chunks": im.chunk_count, "artifact_id": None}


def run_convert(req: ConvertRequest) -> list[ConvertResult]:
    from ..claims import Claims, sweep_partials

    fam = check_family(req)
    first = (req.outtype or "F16").upper()
    if first not in DIRECT:
        raise RegistryError(f"--outtype {req.outtype!r}: the first pass writes F16 or BF16")
    quants = _targets(req)
    im = _check_imatrix_options(req, quants)
    first_path, outs, scratch = _paths(req, fam.name, quants, first)
    if not first_path.parent.is_dir():
        raise RegistryError(f"output directory {first_path.parent} does not exist; create it first")
    sweep_partials(first_path.parent, req.say)  # temporaries of runs that were killed
    with Claims(req.say) as claims:
        return _run(req, fam.name, first, quants, im, first_path, outs, scratch, claims)


def _reusable(first_path: Path, req: ConvertRequest, first: str) -> tuple[str | None, dict | None, str]:
    """An existing first-pass build is reused only if its row says it came from this very checkpoint
    (the files' sizes and mtimes) with the same options; returns its recorded parent and recipe."""
    from registry import paths

    from ..source import identity_difference, source_identity

    row = None
    if paths.has_database():
        from registry.store import Store

        row = Store().artifact_at(str(first_path))
    if row is None:
        raise RegistryError(f"{first_path} exists but no artifact row says what it was built from; remove it, "
                            "or choose another --out")
    rec = row.recipe or {}
    why = identity_difference(rec.get("source_identity"), source_identity(Path(req.source)))
    if why is None and bool(rec.get("keep_mtp")) != bool(req.keep_mtp):
        why = f"it was built with keep_mtp={bool(rec.get('keep_mtp'))}"
    if why is not None:
        raise RegistryError(f"{first_path} was built from {row.parent} and cannot be reused for --from {req.source} "
                            f"({why}); remove it, or choose another --out")
    return row.parent, row.recipe, row.sha256


def _run(req, base, first, quants, im, first_path, outs, scratch, claims) -> list[ConvertResult]:
    from .core import prepare_out

    claims.claim(first_path)  # also when reusing it: a stale claim's unrecorded F16 goes first
    reuse = first_path.exists() and first not in quants and not scratch and not req.force
    for q, p in outs.items():
        claims.claim(p)
        if q != first:
            prepare_out(p, req.force)  # before the first pass: an existing build (or split part) of any level stops the run
    first_files: list[Path] = []
    try:
        return _build(req, base, first, quants, im, first_path, outs, scratch, first_files, claims, reuse)
    finally:
        if scratch:  # the F16 pass of a single --out FILE.gguf, done with (or failed)
            for f in first_files:
                f.unlink(missing_ok=True)


def _build(req, base, first, quants, im, first_path, outs, scratch, first_files, claims, reuse) -> list[ConvertResult]:
    from ..source import source_identity
    from .core import convert_build
    from .quantize import quantize_files
    from .writer import sha256_of

    recipe = {"tool": "glm-registry", "converter": "gguf", "first_pass": first, "keep_mtp": req.keep_mtp,
              "split_max_size": req.split_max_size, "source": str(req.source),
              "source_identity": source_identity(Path(req.source))}
    results: list[ConvertResult] = []
    parent, first_recipe, want_sha = str(req.source), {**recipe, "quant": first}, None
    if reuse:
        parent, first_recipe, want_sha = _reusable(first_path, req, first)
        req.say(f"reusing {first_path} as the {first} parent build")
        first_files.append(first_path)
        first_sha = sha256_of(first_files)  # recorded earlier: check it is still those bytes
    else:
        # a scratch first pass is quantized and removed, never recorded: its sha256 would cost a core meanwhile
        files, first_sha = convert_build(req.source, first_path, first, keep_mtp=req.keep_mtp,
                                         split_max_size=req.split_max_size, progress=req.progress, force=req.force,
                                         hashed=not scratch)
        first_files.extend(files)
        claims.placed_files(first_files)
    if want_sha is not None and first_sha != want_sha:
        raise RegistryError(f"{first_path} changed since it was recorded (sha256 {first_sha}, the row says {want_sha}); "
                            "remove it, or choose another --out")
    results.append(ConvertResult(req.family, "ggufv2", first, first_files[0], first_sha,
                                 sum(f.stat().st_size for f in first_files), parent=parent, recipe=first_recipe))
    im_ref, im_path, im_result = None, None, None
    if req.calibration:
        from .imatrix_run import build_imatrix, imatrix_ref

        im_out = first_path.with_name(f"{base}.imatrix.gguf")
        if im_out.exists():
            raise RegistryError(f"{im_out} already exists; reuse it with --imatrix {im_out} or remove it")
        im, im_result = build_imatrix(req.family, first_files[0], Path(req.calibration), out=im_out,
                                      chunks=req.chunks, chunk_size=req.chunk_size, record=req.record, say=req.say)
        im_ref, im_path = imatrix_ref(im_result), im_out
    elif im is not None:
        im_path = Path(req.imatrix)
        im_ref = _file_ref(im_path, im)
    for q in quants:
        if q == first:
            continue
        req.say(f"quantizing {first_path.name} -> {q}" + (f" with {im_path.name}" if im is not None else ""))
        files = quantize_files(first_files[0], outs[q], q, imatrix=im, imatrix_path=im_path, force=req.force)
        claims.placed_files(files)
        rec = {**recipe, "quant": q, **({"imatrix": im_ref} if im_ref else {})}
        results.append(ConvertResult(req.family, "ggufv2", q, files[0], sha256_of(files), sum(f.stat().st_size for f in files),
                                     parent=str(first_files[0]), recipe=rec))
    if req.report:
        from .report import quality_report

        built = {r.quantization: r.path for r in results if r.quantization != first}
        reps = quality_report(first_files[0], built, reference_name=first)
        if im is not None:
            plain = _plain_reports(first_files[0], list(built), first)
        for r in results:
            r.report = reps.get(r.quantization)
            if r.report is not None and im is not None:
                r.report = {**r.report, "imatrix": True, "without_imatrix": plain.get(r.quantization)}
    if scratch:  # the F16 pass is removed: not a build of its own, and no parent on disk to point at
        results = [r for r in results if r.quantization in quants]
        for r in results:
            r.parent = str(req.source)
    elif first not in quants:
        results = [r for r in results if r.quantization in quants] + [results[0]]
    if im_result is not None:
        results.append(im_result)
    if req.record:
        record([r for r in results if r is not im_result])  # the imatrix was recorded when it was written
    claims.recorded()
    return results


def _plain_reports(f16: Path, quants: list[str], first: str) -> dict:
    """Each type rebuilt without the imatrix in a temp dir and measured; None for types that need one."""
    import tempfile

    from .quantize import needs_imatrix, quantize_files
    from .report import quality_report

    with tempfile.TemporaryDirectory(prefix=".registry-plain-", dir=f16.parent) as d:
        paths = {q: quantize_files(f16, Path(d) / f"plain.{q}.gguf", q)[0] for q in quants if not needs_imatrix(q)}
        reps = quality_report(f16, paths, reference_name=first) if paths else {}
    return {q: ({k: reps[q][k] for k in ("kl_divergence", "top1_agreement")} if q in reps else None) for q in quants}
