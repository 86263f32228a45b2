"""F16/BF16 GGUF -> K-quants, IQ quants and Q8_0 through libllama's llama_model_quantize, on all cores.

With an importance matrix (converters.gguf.imatrix_file.Imatrix) each weight's per-column mean
squared activation is passed through llama_model_quantize_params.imatrix (an array of
llama_model_imatrix_data {name, data, size}, NULL-terminated, as tools/quantize builds it), and
the build's metadata records quantize.imatrix.* like llama-quantize writes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from registry.errors import RegistryError
from registry.hardware import usable_cpus

# The ladder `--quant all` builds from one F16 pass, smallest first.
LADDER = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0")
# llama.cpp's IQ types (tools/quantize QUANT_OPTIONS), smallest first: `--quant all` adds them with an imatrix.
IQ_LADDER = ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M",
             "IQ4_XS", "IQ4_NL")
OTHER = ("Q2_K_S", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "MXFP4_MOE")
# bartowski's names for a llama.cpp mix with the token embeddings and output in Q8_0 ("Uses Q8_0 for
# embed and output weights", e.g. bartowski/granite-embedding-278m-multilingual-GGUF README @3b401ec);
# the _L / _XL sits on the mix that is one step up from the plain name (Q3_K_XL = Q3_K_L + Q8_0).
Q8_EDGES = {"Q2_K_L": "Q2_K", "Q3_K_XL": "Q3_K_L", "Q4_K_L": "Q4_K_M", "Q5_K_L": "Q5_K_M", "Q6_K_L": "Q6_K"}
# Types libllama refuses to build without an importance matrix: tools/quantize's list (IQ1_S, IQ1_M,
# IQ2_S, IQ2_XXS, IQ2_XS, Q2_K_S) plus the mixes whose tensors include those types (llama-quant's
# per-tensor check): IQ2_M, and IQ3_XXS / IQ3_XS (seen: libllama 0.3.36 returns 1 for both without one).
NEEDS_IMATRIX = ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "Q2_K_S")
KNOWN = LADDER + IQ_LADDER + OTHER + tuple(Q8_EDGES)


def llama_quant_name(quant: str) -> str:
    """Registry name -> llama.cpp ftype name: Q3_K/Q4_K/Q5_K are the _M variants (registry.schema.GGUF_ALIASES)."""
    from registry.formats import GGUF_ALIASES

    q = GGUF_ALIASES.get(quant.upper(), quant.upper())
    if q.startswith("UD-"):
        # Unsloth Dynamic quants choose a type per tensor from unsloth's own measurements, which are not
        # published as a recipe: a local build under that name would pass for theirs without being it.
        near = q[3:] if q[3:] in KNOWN else "Q4_K_M"
        raise RegistryError(f"GGUF {q} is an Unsloth Dynamic quant (unsloth's own per-tensor choices), not a type "
                            f"llama.cpp builds; download it (registry pull ... --quant {q}) or build {near} "
                            "with --imatrix instead")
    if q not in KNOWN and q not in ("F16", "BF16"):
        raise RegistryError(f"GGUF quantization {quant!r} is not one this converter builds; use one of: "
                            f"{', '.join(KNOWN)} (Q3_K, Q4_K, Q5_K = the _M variants), F16, BF16, or 'all'")
    return q


def needs_imatrix(quant: str) -> bool:
    return llama_quant_name(quant) in NEEDS_IMATRIX


def require_imatrix(quant: str, have: bool) -> None:
    q = llama_quant_name(quant)
    if q in NEEDS_IMATRIX and not have:
        raise RegistryError(f"GGUF {q} needs an importance matrix; pass --imatrix FILE (from `registry imatrix`) "
                            "or --calibration FILE to collect one first")


def quantize(src_gguf: Path, out: Path, quant: str, *, nthread: int | None = None, imatrix=None,
             imatrix_path: Path | None = None) -> Path:
    """Quantize `src_gguf` (F16/BF16) to `out`; returns the first file. See quantize_files."""
    return quantize_files(src_gguf, out, quant, nthread=nthread, imatrix=imatrix, imatrix_path=imatrix_path)[0]


def _imatrix_params(params, im, im_path: Path | None):
    """Fill params.imatrix and params.kv_overrides from `im`; returns what must stay alive during the call."""
    import ctypes

    import llama_cpp

    values = im.values()
    arr = (llama_cpp.llama_model_imatrix_data * (len(values) + 1))()  # zeroed: the last is the terminator
    keep = [arr]
    for i, (name, v) in enumerate(sorted(values.items())):
        b = name.encode()
        keep += [b, v]
        arr[i].name = b
        arr[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        arr[i].size = v.size
    params.imatrix = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    # the keys llama-quantize writes (tools/quantize LLM_KV_QUANTIZE_IMATRIX_*)
    kvs = [("quantize.imatrix.file", str(im_path or "")), ("quantize.imatrix.entries_count", len(values))]
    if im.datasets:
        kvs.insert(1, ("quantize.imatrix.dataset", im.datasets[0]))
    if im.chunk_count > 0:
        kvs.append(("quantize.imatrix.chunks_count", im.chunk_count))
    ov = (llama_cpp.llama_model_kv_override * (len(kvs) + 1))()
    for i, (k, v) in enumerate(kvs):
        ov[i].key = k.encode()
        if isinstance(v, str):
            ov[i].tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR
            ov[i].value.val_str = v.encode()[-127:]  # 128 bytes with the NUL; keep the file name's end
        else:
            ov[i].tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT
            ov[i].value.val_i64 = int(v)
    params.kv_overrides = ctypes.cast(ov, ctypes.POINTER(llama_cpp.llama_model_kv_override))
    keep.append(ov)
    return keep


def _free(d: Path) -> int | None:
    try:
        return shutil.disk_usage(d).free
    except OSError:
        return None


def _disk_full(src: Path, out: Path, q: str, free_before: int | None) -> RegistryError | None:
    """llama.cpp reports a failed write as code 1: say 'disk full' (and how much) when that is what happened.

    The need is estimated from the source size and the type's bits per weight; the disk counts as full
    when that exceeded what was free, or when almost nothing is left with the partial output still there.
    """
    from registry.formats import bits_per_weight
    from registry.hub.integrity import split_parts

    from ..writes import mib as _mib

    src_bytes = sum(p.stat().st_size for p in split_parts(src))
    bpw = bits_per_weight("ggufv2", q) or 16.0
    need = int(src_bytes * bpw / 16)
    free_now = _free(out.parent)
    if free_before is None or free_now is None:
        return None
    if need <= free_before and free_now > (1 << 20):
        return None
    return RegistryError(
        f"disk full: quantizing to {q} needs about {_mib(need)} in {out.parent}, which had {_mib(free_before)} free; "
        "free space or choose another --out"
    )


def quantize_files(src_gguf: Path, out: Path, quant: str, *, nthread: int | None = None, imatrix=None,
                   imatrix_path: Path | None = None, force: bool = False) -> list[Path]:
    """Quantize `src_gguf` to `out`, written under temp names and renamed when complete.

    A split source (first shard, -00001-of-0000N.gguf) gives a split output with the same
    tensor grouping (llama.cpp's keep_split), named -0000i-of-0000N after `out`. `imatrix`: an
    Imatrix (converters.gguf.imatrix_file) to weight the quantization error by; `imatrix_path`
    is recorded in the build's metadata.
    """
    import ctypes
    import logging

    import llama_cpp

    from registry.hub.integrity import split_parts

    from .core import prepare_out
    from .writer import final_names

    q = llama_quant_name(quant)
    require_imatrix(q, imatrix is not None)
    out, src = prepare_out(out, force), Path(src_gguf)  # refuses `out` and its split parts alike
    if not src.is_file():
        raise RegistryError(f"{src} does not exist; convert the checkpoint to F16 GGUF first")
    n_split = len(split_parts(src))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{Q8_EDGES.get(q, q)}")
    if q in Q8_EDGES:
        params.token_embedding_type = params.output_tensor_type = llama_cpp.GGML_TYPE_Q8_0
    params.nthread = nthread or usable_cpus()
    params.keep_split = n_split > 1
    keep = _imatrix_params(params, imatrix, imatrix_path) if imatrix is not None else None  # noqa: F841
    from ..claims import partial_tag

    prefix = out.parent / f".{out.stem}.{partial_tag()}"
    tmp_target = prefix if n_split > 1 else prefix.with_name(prefix.name + ".gguf")
    produced = final_names(prefix.with_name(prefix.name + ".gguf"), n_split)
    free_before = _free(out.parent)
    log = logging.getLogger("llama-cpp-python")  # llama.cpp's per-tensor log: errors only
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        rc = _in_thread(lambda: llama_cpp.llama_model_quantize(str(src).encode(), str(tmp_target).encode(),
                                                               ctypes.byref(params)))
        if rc != 0 or not all(p.is_file() for p in produced):
            hint = "; the imatrix may not cover every weight of this model (collect it from this F16 build)" \
                if imatrix is not None else ""
            full = _disk_full(src, out, q, free_before)
            raise full or RegistryError(f"llama.cpp could not quantize {src} to {q} (code {rc}){hint}")
        finals = final_names(out, n_split)
        for a, b in zip(produced, finals):
            os.replace(a, b)
        return finals
    finally:
        log.setLevel(level)
        for p in produced:
            p.unlink(missing_ok=True)


def _in_thread(call):
    """Run a long llama.cpp call off the main thread. In the main thread a Ctrl-C was raised inside
    llama.cpp's ctypes log callback, where ctypes swallows it: the quantization ran on to the end. Here
    the main thread waits and takes the signal at once; the worker (a daemon) dies with the process."""
    import threading

    box: dict = {}

    def work():
        try:
            box["rc"] = call()
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=work, name="llama-quantize", daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.05)
    if "error" in box:
        raise box["error"]
    return box["rc"]
