"""Collect an importance matrix: evaluate an F16/BF16 GGUF in llama.cpp over calibration tokens and
accumulate, for every matmul weight, the sum of squared input activations per input column and
the token count (per expert for MoE expert tensors).

How: llama_context_params.cb_eval, ggml's scheduler callback. It is asked about every graph node
(ask=True); answering yes for MUL_MAT / MUL_MAT_ID nodes makes the scheduler compute the graph up
to that node and call again (ask=False) with the node, whose src[0] is the weight, src[1] the
input activations (F32, host memory on the CPU backend) and, for MUL_MAT_ID, src[2] the expert
ids. The tensors are read in place through ctypes (struct ggml_tensor from ggml.h) as numpy
views. Which nodes count follows llama.cpp's tools/imatrix collect_imatrix: MUL_MAT of a
`blk.*` weight with at least 16 input rows of F32, every MUL_MAT_ID.

Every position asks for logits, as llama-imatrix does (it scores perplexity): otherwise the last
layer's FFN would see only the positions that produce output.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from pathlib import Path

from registry.errors import RegistryError
from registry.hardware import usable_cpus

from .imatrix_file import Imatrix

GGML_MAX_DIMS, GGML_MAX_SRC, GGML_MAX_OP_PARAMS, GGML_MAX_NAME = 4, 10, 64, 64
GGML_TYPE_F32, GGML_TYPE_I32 = 0, 26
MIN_ROWS = 16  # llama-imatrix ignores MUL_MATs of fewer input rows


class GgmlTensor(ctypes.Structure):
    """struct ggml_tensor (ggml.h of the installed llama.cpp), read-only."""


GgmlTensor._fields_ = [
    ("type", ctypes.c_int),
    ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
    ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
    ("op", ctypes.c_int),
    ("op_params", ctypes.c_int32 * (GGML_MAX_OP_PARAMS // 4)),
    ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(GgmlTensor) * GGML_MAX_SRC),
    ("view_src", ctypes.POINTER(GgmlTensor)),
    ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p),
    ("name", ctypes.c_char * GGML_MAX_NAME),
    ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]


def _ggml():
    from llama_cpp import _ggml

    lib = _ggml.libggml
    lib.ggml_op_name.restype, lib.ggml_op_name.argtypes = ctypes.c_char_p, [ctypes.c_int]
    lib.ggml_nbytes.restype, lib.ggml_nbytes.argtypes = ctypes.c_size_t, [ctypes.c_void_p]
    lib.ggml_backend_buffer_is_host.restype, lib.ggml_backend_buffer_is_host.argtypes = ctypes.c_bool, [ctypes.c_void_p]
    lib.ggml_backend_tensor_get.restype = None
    lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    return lib


def _op_ids(lib) -> tuple[int, int]:
    """GGML_OP_MUL_MAT and GGML_OP_MUL_MAT_ID by name (early in enum ggml_op, so no out-of-range lookup)."""
    ids = {}
    for i in range(80):
        n = lib.ggml_op_name(i).decode()
        ids.setdefault(n, i)
        if "MUL_MAT" in ids and "MUL_MAT_ID" in ids:
            return ids["MUL_MAT"], ids["MUL_MAT_ID"]
    raise RegistryError("the installed ggml names no MUL_MAT / MUL_MAT_ID op; this llama.cpp cannot collect an imatrix")


def weight_name(raw: bytes) -> str:
    """Strip backend decorations: CUDA0#blk.0.attn_k.weight#0 -> blk.0.attn_k.weight."""
    s = raw.decode(errors="replace")
    if "#" in s:
        s = s.split("#")[1]
    return s


class Collector:
    """The cb_eval callback and the sums it accumulates."""

    def __init__(self):
        self.lib = _ggml()
        self.mul_mat, self.mul_mat_id = _op_ids(self.lib)
        self.sums: dict = {}  # name -> float64 [n_mat, ne0]
        self.counts: dict = {}  # name -> float64 [n_mat]
        self.error: BaseException | None = None
        self.callback = _cb_type()(self._cb)  # kept referenced: ggml holds only the C pointer

    def _cb(self, t_ptr, ask, _user):
        try:
            t = GgmlTensor.from_address(t_ptr)
            op = t.op
            if ask:
                if op == self.mul_mat_id:
                    return True
                if op != self.mul_mat:
                    return False
                src1 = t.src[1].contents
                if src1.ne[1] < MIN_ROWS or src1.type != GGML_TYPE_F32:
                    return False
                return weight_name(t.src[0].contents.name).startswith("blk.")
            self._collect(t, op == self.mul_mat_id)
            return True
        except BaseException as e:  # an exception must not cross into C: stop the graph and re-raise after
            self.error = e
            return False

    def _array(self, t: GgmlTensor, dtype):
        """Tensor `t` as a numpy view [ne3, ne2, ne1, ne0] honouring its byte strides (copied off-host)."""
        import numpy as np

        nbytes = self.lib.ggml_nbytes(ctypes.addressof(t))
        if t.buffer and not self.lib.ggml_backend_buffer_is_host(t.buffer):
            buf = np.empty(nbytes, dtype=np.uint8)
            self.lib.ggml_backend_tensor_get(ctypes.addressof(t), buf.ctypes.data, 0, nbytes)
        else:
            buf = np.frombuffer((ctypes.c_char * nbytes).from_address(t.data), dtype=np.uint8)
        item = np.dtype(dtype).itemsize
        if t.nb[0] != item:
            raise RegistryError(f"tensor {t.name.decode()} is not contiguous in its rows; cannot read its activations")
        return np.lib.stride_tricks.as_strided(buf.view(dtype) if nbytes % item == 0 else buf[: nbytes // item * item].view(dtype),
                                               shape=tuple(t.ne[i] for i in (3, 2, 1, 0)),
                                               strides=tuple(t.nb[i] for i in (3, 2, 1, 0)), writeable=False)

    def _entry(self, name: str, n_mat: int, cols: int):
        import numpy as np

        s = self.sums.get(name)
        if s is None:
            s = self.sums[name] = np.zeros((n_mat, cols))
            self.counts[name] = np.zeros(n_mat)
        elif s.shape != (n_mat, cols):
            raise RegistryError(f"{name}: inconsistent matmul shapes ({s.shape} vs {(n_mat, cols)})")
        return s, self.counts[name]

    def _collect(self, t: GgmlTensor, indirect: bool) -> None:
        import numpy as np

        src0, src1 = t.src[0].contents, t.src[1].contents
        name = weight_name(src0.name)
        x = self._array(src1, np.float32)  # [ne13, ne12, ne11, ne10]
        cols = int(src1.ne[0])
        if indirect:
            # src1 [cols, ne11 (1 or n_used), n_tokens], ids [n_used, n_tokens]: row `idx` of token r goes to ids[r, idx]
            n_as = int(src0.ne[2])
            ids = self._array(t.src[2].contents, np.int32)[0, 0]  # [n_tokens, n_used]
            n_used = ids.shape[1]
            e = np.ascontiguousarray(ids).reshape(-1).astype(np.int64)
            if e.size and (e.min() < 0 or e.max() >= n_as):
                raise RegistryError(f"{name}: expert id out of range in MUL_MAT_ID")
            s, c = self._entry(name, n_as, cols)
            ne11 = x.shape[2]
            sq = np.square(x[0])  # [n_tokens, ne11, cols], float32: squared once, not per routed copy
            # Routed rows grouped by expert: row j is token j // n_used, slot j % n_used (which reads row
            # slot % ne11: gate/up share the token's one row, down has one per slot). Gathered in float32
            # and summed in float64; no BLAS, whose threads would fight llama.cpp's inside the callback.
            order = np.argsort(e, kind="stable")
            experts, starts = np.unique(e[order], return_index=True)
            rows = sq[order // n_used, (order % n_used) % ne11]
            s[experts] += np.add.reduceat(rows, starts, axis=0, dtype=np.float64)
            c += np.bincount(e, minlength=n_as)
            return
        ne02, ne03 = int(src0.ne[2]), int(src0.ne[3])
        n_mat = ne02 * ne03
        s, c = self._entry(name, n_mat, cols)
        if n_mat == 1:
            rows = x.reshape(-1, cols)
            s[0] += np.einsum("ij,ij->j", rows, rows, dtype=np.float64)
        else:  # a 3-D weight: activations broadcast over its matrices as ggml_mul_mat does
            for i3 in range(x.shape[0]):
                for i2 in range(x.shape[1]):
                    m = (i3 % ne03) * ne02 + (i2 % ne02)
                    rows = x[i3, i2]
                    s[m] += np.einsum("ij,ij->j", rows, rows, dtype=np.float64)
        c += x.shape[0] * x.shape[1] * x.shape[2] / n_mat


def _cb_type():
    import llama_cpp

    return llama_cpp.ggml_backend_sched_eval_callback


@dataclass
class EvalStats:
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def chunks_of(tokens: list[int], chunk_size: int, n_chunks: int | None, bos: int | None) -> list[list[int]]:
    """Whole chunks of `chunk_size` tokens (the remainder dropped, as llama-imatrix does), BOS first when the model adds one."""
    n = len(tokens) // chunk_size
    if n == 0:
        raise RegistryError(f"the calibration text has {len(tokens)} tokens, fewer than one chunk of {chunk_size}; "
                            "give more text or a smaller --chunk-size")
    if n_chunks is not None:
        if n_chunks < 1:
            raise RegistryError(f"--chunks {n_chunks}: give at least 1")
        n = min(n, n_chunks)
    out = [list(tokens[i * chunk_size:(i + 1) * chunk_size]) for i in range(n)]
    if bos is not None and bos >= 0:
        for ch in out:
            ch[0] = bos
    return out


def evaluate(model_path: Path, chunks: list[list[int]], *, collect: bool, n_threads: int | None = None):
    """Run every chunk through llama.cpp (a fresh KV cache each, logits for every position).

    Returns (Collector or None, EvalStats); collect=False is the plain evaluation the benchmark compares with.
    """
    import logging

    import llama_cpp
    from llama_cpp import _internals

    log = logging.getLogger("llama-cpp-python")  # the loader's and scheduler's info log: errors only
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return _evaluate(model_path, chunks, collect, n_threads, llama_cpp, _internals)
    finally:
        log.setLevel(level)


def _evaluate(model_path, chunks, collect, n_threads, llama_cpp, _internals):
    n_ctx = len(chunks[0])
    mparams = llama_cpp.llama_model_default_params()
    model = _internals.LlamaModel(path_model=str(model_path), params=mparams, verbose=False)
    col = Collector() if collect else None
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = n_ctx
    cparams.n_seq_max = 1
    cparams.n_threads = cparams.n_threads_batch = n_threads or usable_cpus()
    if col is not None:
        cparams.cb_eval = col.callback
        cparams.cb_eval_user_data = None
    ctx = batch = None
    try:
        ctx = _internals.LlamaContext(model=model, params=cparams, verbose=False)
        batch = _internals.LlamaBatch(n_tokens=n_ctx, embd=0, n_seq_max=1, verbose=False)
        t0 = time.perf_counter()
        for ch in chunks:
            ctx.kv_cache_clear()
            batch.set_batch(ch, n_past=0, logits_all=True)
            rc = llama_cpp.llama_decode(ctx.ctx, batch.batch)
            if col is not None and col.error is not None:
                raise col.error
            if rc != 0:
                raise RegistryError(f"llama.cpp could not evaluate {model_path} (llama_decode returned {rc})")
        secs = time.perf_counter() - t0
    finally:
        if batch is not None:
            batch.close()
        if ctx is not None:
            ctx.close()
        model.close()
    return col, EvalStats(sum(len(c) for c in chunks), secs)


def collect_imatrix(model_path: Path, tokens: list[int], *, dataset: str, chunk_size: int = 512,
                    n_chunks: int | None = None, bos: int | None = None, n_threads: int | None = None) -> Imatrix:
    chunks = chunks_of(tokens, chunk_size, n_chunks, bos)
    col, _ = evaluate(model_path, chunks, collect=True, n_threads=n_threads)
    if not col.sums:
        raise RegistryError(f"{model_path}: no matmul weight was seen while evaluating; is it a GLM GGUF build?")
    entries = {n: (col.sums[n], col.counts[n]) for n in sorted(col.sums)}
    return Imatrix(entries, [dataset], len(chunks), chunk_size)
