"""`registry imatrix FAMILY --from BUILD.gguf --calibration FILE`: collect an importance matrix from an
F16/BF16 build, write it in llama.cpp's imatrix GGUF (or .dat), record it as an artifact.

The artifact row: format "imatrix", quantization = the build's type it was collected from (F16/BF16),
parent = that build, recipe = calibration source (path, sha256), tokens, chunks and chunk size.
"""

from __future__ import annotations

from pathlib import Path

from registry.errors import RegistryError
from registry.hardware import usable_cpus

from ..options import ConvertResult, record as record_results

DEFAULT_CHUNK = 512  # llama-imatrix's default context (-c 512)


def build_type(gguf_path: Path) -> str:
    """F16 or BF16 from general.file_type; anything else is refused (an imatrix comes from the full-precision build)."""
    from gguf import GGUFReader

    if not Path(gguf_path).is_file():
        raise RegistryError(f"{gguf_path} does not exist; convert the checkpoint to F16 GGUF first "
                            "(registry convert FAMILY --from DIR --to ggufv2 --quant F16)")
    try:
        r = GGUFReader(gguf_path)
    except Exception as e:  # gguf raises ValueError/struct errors on damaged files
        raise RegistryError(f"{gguf_path}: not a readable GGUF ({e})") from None
    f = r.fields.get("general.file_type")
    ft = int(f.contents()) if f is not None else -1
    names = {0: "F32", 1: "F16", 32: "BF16"}
    if ft not in names:
        raise RegistryError(f"{gguf_path} is not an F16/BF16 build (general.file_type {ft}); collect the imatrix "
                            "from the full-precision GGUF the quantized builds are made from")
    return names[ft]


def default_out(build: Path) -> Path:
    stem = build.name[: -len(".gguf")] if build.name.endswith(".gguf") else build.name
    for t in (".F16", ".BF16", ".F32"):
        if stem.endswith(t):
            stem = stem[: -len(t)]
    return build.with_name(f"{stem}.imatrix.gguf")


def build_imatrix(family: str, build: Path, calibration: Path, *, out: Path | None = None, chunks: int | None = None,
                  chunk_size: int | None = None, record: bool = True, say=print):
    """Collect, write and (optionally) record; returns (Imatrix, ConvertResult)."""
    from .calibration import calibration_tokens
    from .collect import collect_imatrix
    from .imatrix_file import write_imatrix
    from .writer import sha256_of

    build, calibration = Path(build), Path(calibration)
    kind = build_type(build)
    out = Path(out) if out else default_out(build)
    if out.suffix not in (".gguf", ".dat"):
        raise RegistryError(f"--out {out}: name the imatrix file .gguf (llama.cpp's format) or .dat (legacy)")
    if out.exists():
        raise RegistryError(f"{out} already exists; remove it or choose another --out")
    if not out.parent.is_dir():
        raise RegistryError(f"output directory {out.parent} does not exist; create it first")
    size = chunk_size or DEFAULT_CHUNK
    if size < 16:
        raise RegistryError(f"--chunk-size {size}: llama.cpp skips matmuls of fewer than 16 tokens; use 16 or more")
    toks, bos = calibration_tokens(calibration, build)
    say(f"collecting an importance matrix from {build.name} over {calibration.name} "
        f"({min(len(toks) // size, chunks or 1 << 30)} chunks of {size} tokens)")
    im = collect_imatrix(build, toks, dataset=calibration.name, chunk_size=size, n_chunks=chunks, bos=bos,
                         n_threads=usable_cpus())
    write_imatrix(im, out)
    recipe = {"tool": "glm-registry", "converter": "imatrix", "file_format": "dat" if out.suffix == ".dat" else "gguf",
              "calibration": {"dataset": str(calibration), "sha256": sha256_of([calibration]), "tokens": im.tokens,
                              "chunks": im.chunk_count, "chunk_size": im.chunk_size},
              "entries": len(im.entries)}
    res = ConvertResult(family, "imatrix", kind, out, sha256_of([out]), out.stat().st_size, parent=str(build),
                        recipe=recipe)
    if record:
        record_results([res])
    return im, res


def imatrix_ref(res) -> dict:
    """What a quantized build's recipe says about the imatrix it used."""
    cal = (res.recipe or {}).get("calibration") or {}
    return {"path": str(res.path), "sha256": res.sha256, "dataset": cal.get("dataset"), "tokens": cal.get("tokens"),
            "chunks": cal.get("chunks"), "artifact_id": res.artifact_id}
