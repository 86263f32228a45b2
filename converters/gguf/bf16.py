"""bf16 -> float16, the conversion behind every F16 GGUF of a GLM checkpoint (they ship in bf16).

numpy has no bf16 type: widening to float32 and casting to float16 runs at ~0.2-0.3 G elements/s
on one core, several times slower than copying the bytes. Two faster paths, both exact (every
one of the 65536 bit patterns gives what numpy's float32 -> float16 cast gives: round to nearest
even, overflow to inf, signed zeros, subnormals):

* ggml's own row conversions (ggml_cpu_bf16_to_fp32, ggml_cpu_fp32_to_fp16: SIMD, F16C) from the
  CPU library of llama-cpp-python, which the GGUF converter needs anyway; ~3.6 G elements/s, and
  ctypes releases the GIL, so threads convert in parallel. NaN stays NaN, quieted as F16C does.
* a 65536-entry table built by numpy's cast (~1 G elements/s) where that library can't be loaded.
"""

from __future__ import annotations

import threading

STEP = 1 << 16  # elements per call: the float32 temporary (256 KiB) stays in the core's cache
_local = threading.local()
_ggml = None  # the loaded library, False once it can't be
_table = None


def ggml_library():
    """llama-cpp-python's libggml-cpu with the two row conversions declared, or None."""
    global _ggml
    if _ggml is None:
        _ggml = False
        try:
            import ctypes
            import importlib.util
            from pathlib import Path

            spec = importlib.util.find_spec("llama_cpp")
            libs = sorted((Path(spec.origin).parent / "lib").glob("libggml-cpu.*")) if spec and spec.origin else []
            if libs:
                lib = ctypes.CDLL(str(libs[0]))
                for name in ("ggml_cpu_bf16_to_fp32", "ggml_cpu_fp32_to_fp16"):
                    fn = getattr(lib, name)
                    fn.restype, fn.argtypes = None, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
                lib.ggml_cpu_init.restype, lib.ggml_cpu_init.argtypes = None, []
                lib.ggml_cpu_init()  # the conversion tables of builds without F16C
                _ggml = lib
        except (OSError, AttributeError, ImportError, ValueError):
            _ggml = False
    return _ggml or None


def to_f16(bits, out=None, backend: str | None = None):
    """bf16 bit patterns (a uint16 array) as float16, into `out` if given (same size).
    backend: "ggml" or "table" to force one (tests check both); default: ggml where it loads."""
    import numpy as np

    flat = np.ascontiguousarray(bits, dtype=np.uint16).reshape(-1)
    res = np.empty(flat.shape, np.float16) if out is None else out.reshape(-1)
    lib = ggml_library() if backend in (None, "ggml") else None
    if backend == "ggml" and lib is None:
        raise RuntimeError("llama-cpp-python's libggml-cpu cannot be loaded")
    if lib is not None:
        tmp = getattr(_local, "f32", None)
        if tmp is None:
            tmp = _local.f32 = np.empty(STEP, np.float32)
        src, dst, scratch = flat.ctypes.data, res.ctypes.data, tmp.ctypes.data
        for a in range(0, flat.size, STEP):
            k = min(STEP, flat.size - a)
            lib.ggml_cpu_bf16_to_fp32(src + 2 * a, scratch, k)
            lib.ggml_cpu_fp32_to_fp16(scratch, dst + 2 * a, k)
    else:
        global _table
        if _table is None:
            every = np.arange(1 << 16, dtype=np.uint32)
            with np.errstate(over="ignore"):  # bf16 beyond float16's range becomes inf, as intended
                _table = (every << 16).view(np.float32).astype(np.float16)
        for a in range(0, flat.size, STEP):
            # mode="wrap": a uint16 index is always inside the table, and wrap skips the bounds check
            np.take(_table, flat[a:a + STEP], out=res[a:a + STEP], mode="wrap")
    return res.reshape(np.shape(bits))
