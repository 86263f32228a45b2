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
    """Quantize `src_gguf` (F16/BF16, first shard if split) to `out`; written under a temp name, then renamed."""
    import ctypes

    import llama_cpp

    q = llama_quant_name(quant)
    out = Path(out)
    if out.exists():
        raise RegistryError(f"{out} already exists; remove it or choose another --out")
    if not Path(src_gguf).is_file():
        raise RegistryError(f"{src_gguf} does not exist; convert the checkpoint to F16 GGUF first")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{q}")
    params.nthread = nthread or os.cpu_count() or 1
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        rc = llama_cpp.llama_model_quantize(str(src_gguf).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0 or not tmp.is_file():
            raise RegistryError(f"llama.cpp could not quantize {src_gguf} to {q} (code {rc}); see the log above")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
