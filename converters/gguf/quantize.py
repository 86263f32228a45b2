"""F16/BF16 GGUF -> K-quants (Q2_K .. Q8_0) through libllama's llama_model_quantize, on all cores."""

from __future__ import annotations

import os
from pathlib import Path

from registry.errors import RegistryError

# The ladder `--quant all` builds from one F16 pass, smallest first.
LADDER = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0")


def llama_quant_name(quant: str) -> str:
    """Registry name -> llama.cpp ftype name: Q3_K/Q4_K/Q5_K are the _M variants (registry.schema.GGUF_ALIASES)."""
    from registry.schema import GGUF_ALIASES

    q = GGUF_ALIASES.get(quant.upper(), quant.upper())
    if q not in LADDER and q not in ("F16", "BF16"):
        raise RegistryError(f"GGUF quantization {quant!r} is not one this converter builds; use one of: "
                            f"{', '.join(LADDER)} (Q3_K, Q4_K, Q5_K = the _M variants), F16, BF16, or 'all'")
    return q


def quantize(src_gguf: Path, out: Path, quant: str, *, nthread: int | None = None) -> Path:
    """Quantize `src_gguf` (F16/BF16) to `out`; returns the first file. See quantize_files."""
    return quantize_files(src_gguf, out, quant, nthread=nthread)[0]


def quantize_files(src_gguf: Path, out: Path, quant: str, *, nthread: int | None = None) -> list[Path]:
    """Quantize `src_gguf` to `out`, written under temp names and renamed when complete.

    A split source (first shard, -00001-of-0000N.gguf) gives a split output with the same
    tensor grouping (llama.cpp's keep_split), named -0000i-of-0000N after `out`.
    """
    import ctypes
    import logging

    import llama_cpp

    from registry.hub.integrity import split_parts

    from .core import prepare_out
    from .writer import final_names

    q = llama_quant_name(quant)
    out, src = prepare_out(out), Path(src_gguf)  # refuses `out` and its split parts alike
    if not src.is_file():
        raise RegistryError(f"{src} does not exist; convert the checkpoint to F16 GGUF first")
    n_split = len(split_parts(src))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{q}")
    params.nthread = nthread or os.cpu_count() or 1
    params.keep_split = n_split > 1
    prefix = out.parent / f".{out.stem}.partial-{os.getpid()}"
    tmp_target = prefix if n_split > 1 else prefix.with_name(prefix.name + ".gguf")
    produced = final_names(prefix.with_name(prefix.name + ".gguf"), n_split)
    log = logging.getLogger("llama-cpp-python")  # llama.cpp's per-tensor log: errors only
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp_target).encode(), ctypes.byref(params))
        if rc != 0 or not all(p.is_file() for p in produced):
            raise RegistryError(f"llama.cpp could not quantize {src} to {q} (code {rc})")
        finals = final_names(out, n_split)
        for a, b in zip(produced, finals):
            os.replace(a, b)
        return finals
    finally:
        log.setLevel(level)
        for p in produced:
            p.unlink(missing_ok=True)
