"""`registry convert NAME --from DIR --to ggufv2 --quant Q`: one F16 pass, then the quantized builds.

Checks the checkpoint against the family (architecture class must be one the family names; size
differences are only a warning), writes F16 (or BF16) once, quantizes each requested level from
it, optionally measures the quality report, and records every build in the store.
"""

from __future__ import annotations

from pathlib import Path

from registry.errors import RegistryError

from ..options import ConvertRequest, ConvertResult, record
from ..source import checkpoint_config
from .quantize import LADDER, llama_quant_name

DIRECT = ("F16", "BF16")


def check_family(req: ConvertRequest):
    import registry

    fam = registry.get(req.family)
    if not any(s.format == "ggufv2" for s in fam.specs):
        req.say(f"warning: family {fam.name} lists no ggufv2 spec; the build is recorded anyway")
    cfg, _ = checkpoint_config(Path(req.source), fam)
    a = fam.architecture
    layers = cfg.get("num_hidden_layers", cfg.get("num_layers"))
    diffs = [f"{k} {got} (family: {want})" for k, got, want in
             (("layers", layers, a.layers), ("hidden size", cfg.get("hidden_size"), a.hidden_size)) if got != want]
    if diffs:
        req.say(f"warning: checkpoint differs in size from {fam.name}: {', '.join(diffs)}; converting anyway")
    return fam


def _targets(req: ConvertRequest) -> list[str]:
    if req.quant.lower() == "all":
        return list(LADDER)
    return [llama_quant_name(req.quant)]


def _paths(req: ConvertRequest, base: str, quants: list[str], first: str) -> tuple[Path, dict[str, Path]]:
    from registry import paths

    out = Path(req.out) if req.out else paths.artifacts_dir() / req.family
    if out.suffix == ".gguf":
        if len(quants) > 1 or (quants[0] != first):
            raise RegistryError(f"--out {out} names one file; for this build (F16 pass + {', '.join(quants)}) give a directory")
        return out, {quants[0]: out}
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{base}.{first}.gguf", {q: out / f"{base}.{q}.gguf" for q in quants}


def run_convert(req: ConvertRequest) -> list[ConvertResult]:
    from .core import convert_files, prepare_out
    from .quantize import quantize_files
    from .writer import sha256_of

    fam = check_family(req)
    first = (req.outtype or "F16").upper()
    if first not in DIRECT:
        raise RegistryError(f"--outtype {req.outtype!r}: the first pass writes F16 or BF16")
    quants = _targets(req)
    base = fam.name
    first_path, outs = _paths(req, base, quants, first)
    for q, p in outs.items():
        if q != first:
            prepare_out(p)  # before the first pass: an existing build (or split part) of any level stops the run
    recipe = {"tool": "glm-registry", "converter": "gguf", "first_pass": first, "keep_mtp": req.keep_mtp,
              "split_max_size": req.split_max_size, "source": str(req.source)}
    results: list[ConvertResult] = []
    if first_path.exists() and first not in quants:
        req.say(f"reusing {first_path} as the {first} parent build")
        first_files = [first_path]
    else:
        first_files = convert_files(req.source, first_path, first, keep_mtp=req.keep_mtp,
                                    split_max_size=req.split_max_size, progress=req.progress)
    results.append(ConvertResult(req.family, "ggufv2", first, first_files[0], sha256_of(first_files),
                                 sum(f.stat().st_size for f in first_files), parent=str(req.source),
                                 recipe={**recipe, "quant": first}))
    for q in quants:
        if q == first:
            continue
        req.say(f"quantizing {first_path.name} -> {q}")
        files = quantize_files(first_files[0], outs[q], q)
        results.append(ConvertResult(req.family, "ggufv2", q, files[0], sha256_of(files), sum(f.stat().st_size for f in files),
                                     parent=str(first_files[0]), recipe={**recipe, "quant": q}))
    if req.report:
        from .report import quality_report

        reps = quality_report(first_files[0], {r.quantization: r.path for r in results if r.quantization != first},
                              reference_name=first)
        for r in results:
            r.report = reps.get(r.quantization)
    if first not in quants:
        results = [r for r in results if r.quantization in quants] + [results[0]]
    if req.record:
        record(results)
    return results
