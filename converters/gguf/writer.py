"""Streaming GGUF writer: header and tensor index first, then each tensor's data block by block.

Uses gguf's GGUFWriter (which also splits output in llama.cpp's -0000N-of-0000M convention); a
tensor is handed over as a stream object whose tofile() converts and writes one row block at a
time, so memory holds one block, not the tensor. Files are written in a temporary directory next
to the output and renamed into place only when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from registry.errors import RegistryError

from .arch import OutTensor

OUTTYPES = ("F16", "BF16", "Q8_0", "F32")


class _Stream:
    """Duck-types the ndarray that GGUFWriter.write_tensor_data expects (nbytes, tofile)."""

    def __init__(self, t: OutTensor, qtype, nbytes: int, on_bytes: Callable[[int], None]):
        import gguf

        self.t, self.qtype, self.nbytes, self.on_bytes = t, qtype, nbytes, on_bytes
        # Source already in the output type (bf16 -> BF16, f16 -> F16, f32 -> F32): copy the bytes.
        Q = gguf.GGMLQuantizationType
        self.raw = {"BF16": Q.BF16, "F16": Q.F16, "F32": Q.F32}.get(t.src_dtype or "") == qtype
        # bf16 -> F16 (the usual conversion of a GLM checkpoint) maps each 16-bit pattern through a table
        # instead of widening to float32 and casting back: ~5x faster than numpy's float32 -> float16.
        self.bf16_to_f16 = t.src_dtype == "BF16" and qtype == Q.F16

    def convert(self, block):
        import gguf
        import numpy as np

        if self.raw:
            return block
        if self.bf16_to_f16:
            return bf16_to_f16(block)
        block = np.ascontiguousarray(block, dtype=np.float32)
        if self.qtype == gguf.GGMLQuantizationType.F32:
            return block
        if self.qtype == gguf.GGMLQuantizationType.F16:
            return block.astype(np.float16)
        return gguf.quants.quantize(block.reshape(-1, self.t.shape[-1]), self.qtype)

    def tofile(self, fp) -> None:
        if self.raw and self.t.spans is not None:
            return self._copy(fp)
        # Convert the next block on a worker thread while this one is written (numpy releases the
        # GIL); at most PREFETCH blocks are in flight, so memory stays bounded.
        from collections import deque

        written = 0
        pending: deque = deque()

        def drain_one() -> None:
            nonlocal written
            data = pending.popleft().result()
            data.tofile(fp)
            written += data.nbytes
            self.on_bytes(data.nbytes)

        for block in (self.t.chunks(raw=True) if self.raw or self.bf16_to_f16 else self.t.chunks()):
            pending.append(_pool().submit(self.convert, block))
            if len(pending) > PREFETCH:
                drain_one()
        while pending:
            drain_one()
        if written != self.nbytes:
            raise RegistryError(f"tensor {self.t.name}: wrote {written} bytes, expected {self.nbytes}")


    def _copy(self, fp) -> None:
        """Source bytes that pass through unchanged go file to file in the kernel (copy_file_range),
        never through Python's memory."""
        fp.flush()
        out = fp.fileno()
        written = 0
        for path, offset, length in self.t.spans():
            with open(path, "rb") as src:
                end = offset + length
                while offset < end:
                    n = os.copy_file_range(src.fileno(), out, min(end - offset, 1 << 30), offset)
                    if n == 0:
                        raise RegistryError(f"{path}: ended while copying {self.t.name}; the checkpoint changed meanwhile?")
                    offset += n
                    written += n
                    self.on_bytes(n)
        fp.seek(os.lseek(out, 0, os.SEEK_CUR))  # the buffered file object learns the position the kernel moved
        if written != self.nbytes:
            raise RegistryError(f"tensor {self.t.name}: wrote {written} bytes, expected {self.nbytes}")


PREFETCH = 2
_POOL = None
_BF16_F16 = None
_SUB = 1 << 17  # elements per table look-up: numpy widens the indices to intp, so keep that temporary small


def bf16_to_f16(bits: "np.ndarray") -> "np.ndarray":  # noqa: F821
    """bf16 bit patterns (uint16) -> float16, exactly as numpy's float32 -> float16 cast rounds
    (to nearest even; overflow to inf; NaN stays NaN), through a 65536-entry table built by that cast."""
    import numpy as np

    global _BF16_F16
    if _BF16_F16 is None:
        every = np.arange(1 << 16, dtype=np.uint32)
        with np.errstate(over="ignore"):  # bf16 beyond float16's range becomes inf, as intended
            _BF16_F16 = (every << 16).view(np.float32).astype(np.float16)
    flat = np.ascontiguousarray(bits).reshape(-1)
    out = np.empty(flat.shape, np.float16)
    for a in range(0, flat.size, _SUB):
        # mode="wrap": a uint16 index is always in the table, and wrap skips raise's bounds check
        np.take(_BF16_F16, flat[a:a + _SUB], out=out[a:a + _SUB], mode="wrap")
    return out.reshape(bits.shape)


def _pool():
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="gguf-convert")
    return _POOL


def _qtype(t: OutTensor, outtype: str):
    import gguf

    Q = gguf.GGMLQuantizationType
    if t.keep_f32 or len(t.shape) == 1 or outtype == "F32":
        return Q.F32
    if outtype == "Q8_0" and t.shape[-1] % 32 != 0:
        return Q.F16  # Q8_0 blocks are 32 wide; llama.cpp's converter falls back the same way
    return {"F16": Q.F16, "BF16": Q.BF16, "Q8_0": Q.Q8_0}[outtype]


def _nbytes(shape: tuple[int, ...], qtype) -> int:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n = 1
    for d in shape[:-1]:
        n *= d
    return n * (shape[-1] // block) * size


def final_names(out: Path, n_shards: int) -> list[Path]:
    import gguf

    if n_shards <= 1:
        return [out]
    return [out.with_name(gguf.SHARD_NAME_FORMAT.format(out.stem, i + 1, n_shards)) for i in range(n_shards)]


def write_gguf(out: Path, arch_name: str, meta: Callable, tensors: list[OutTensor], outtype: str,
               split_max_size: int | None, progress) -> list[Path]:
    """Write the GGUF (one file, or shards above split_max_size); return the final paths."""
    import gguf
    import numpy as np

    out = Path(out)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", suffix=".partial", dir=out.parent))
    try:
        w = gguf.GGUFWriter(tmpdir / out.name, arch_name, split_max_size=split_max_size or 0)
        meta(w)
        plan = []
        for t in tensors:
            q = _qtype(t, outtype)
            nb = _nbytes(t.shape, q)
            if q in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
                w.add_tensor_info(t.name, t.shape, np.dtype(np.float32 if q == gguf.GGMLQuantizationType.F32 else np.float16), nb)
            else:
                bshape = (*t.shape[:-1], t.shape[-1] // gguf.GGML_QUANT_SIZES[q][0] * gguf.GGML_QUANT_SIZES[q][1])
                w.add_tensor_info(t.name, bshape, np.dtype(np.uint8), nb, raw_dtype=q)
            plan.append((t, q, nb))
        total = sum(nb for _, _, nb in plan)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        n_shards = len(w.fout)
        progress.start(len(plan), total)
        for i, (t, q, nb) in enumerate(plan, 1):
            progress.tensor(i, t.name)
            w.write_tensor_data(_Stream(t, q, nb, progress.advance))
        w.close()
        tmp_files = final_names(tmpdir / out.name, n_shards)
        finals = final_names(out, n_shards)
        for src, dst in zip(tmp_files, finals):
            os.replace(src, dst)
        return finals
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def sha256_of(paths: list[Path]) -> str:
    """sha256 of one file, or of the shards' bytes in order for a split build (as `registry verify` checks)."""
    from registry.hub.integrity import sha256_files

    return sha256_files(paths)
