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
import threading
from pathlib import Path
from typing import Callable

from registry.errors import RegistryError

from .arch import OutTensor
from .bf16 import to_f16
from ..writes import write_error
from .digest import BuildDigest, NoDigest
from .workers import pool as _pool

OUTTYPES = ("F16", "BF16", "Q8_0", "F32")


class _Stream:
    """Duck-types the ndarray that GGUFWriter.write_tensor_data expects (nbytes, tofile)."""

    def __init__(self, t: OutTensor, qtype, nbytes: int, on_bytes: Callable[[int], None], digest: BuildDigest,
                 slots: list):
        import gguf

        self.t, self.qtype, self.nbytes, self.on_bytes, self.digest = t, qtype, nbytes, on_bytes, digest
        self.slots = slots  # the write's free block buffers, shared by its tensors
        # Source already in the output type (bf16 -> BF16, f16 -> F16, f32 -> F32): copy the bytes.
        Q = gguf.GGMLQuantizationType
        self.raw = {"BF16": Q.BF16, "F16": Q.F16, "F32": Q.F32}.get(t.src_dtype or "") == qtype
        # bf16 -> F16, the usual conversion of a GLM checkpoint: bf16.to_f16 (ggml's SIMD rows or a table)
        # on whole source tensors (spans); a tensor assembled from parts takes the float32 path below
        self.bf16_to_f16 = t.src_dtype == "BF16" and qtype == Q.F16

    def convert(self, block):
        import gguf
        import numpy as np

        if self.raw:
            return block
        block = np.ascontiguousarray(block, dtype=np.float32)
        if self.qtype == gguf.GGMLQuantizationType.F32:
            return block
        if self.qtype == gguf.GGMLQuantizationType.F16:
            return block.astype(np.float16)
        return gguf.quants.quantize(block.reshape(-1, self.t.shape[-1]), self.qtype)

    def tofile(self, fp) -> None:
        self.digest.at(fp)
        if self.t.spans is not None and (self.raw or self.bf16_to_f16):
            return self._by_spans(fp, _copy_block if self.raw else _bf16_block)
        # Convert the next block on a worker thread while this one is written (numpy releases the
        # GIL); at most PREFETCH blocks are in flight, so memory stays bounded.
        from collections import deque

        written = 0
        pending: deque = deque()

        def drain_one() -> None:
            nonlocal written
            import numpy as np

            data = np.ascontiguousarray(pending.popleft().result())
            data.tofile(fp)
            self.digest.feed(data)
            written += data.nbytes
            self.on_bytes(data.nbytes)

        for block in (self.t.chunks(raw=True) if self.raw else self.t.chunks()):
            pending.append(_pool().submit(self.convert, block))
            if len(pending) > PREFETCH:
                drain_one()
        while pending:
            drain_one()
        if written != self.nbytes:
            raise RegistryError(f"tensor {self.t.name}: wrote {written} bytes, expected {self.nbytes}")

    def _by_spans(self, fp, work) -> None:
        """Whole source tensors (spans) go to the output block by block on worker threads: each worker reads
        a block into a buffer of its own, converts it (_bf16_block) or not (_copy_block) into one of the
        write's reusable slots, writes the slot at its place in the output (pwrite with an offset) and then,
        once the block before it is hashed, feeds the slot to the build's sha256 itself (_hashed). So blocks
        are converted and written in any order, hashed in order, and each is hashed on the core that just
        wrote it, from that core's cache: hashing on one thread from the other core's cache took a third
        longer, and that thread set the pace. At most WINDOW blocks are in flight, so memory stays bounded."""
        import threading
        from collections import deque

        fp.flush()
        out_fd = fp.fileno()
        base = os.lseek(out_fd, 0, os.SEEK_CUR)
        files: dict = {}
        pending: deque = deque()
        pos = base
        chain = _Chain() if self.digest.hashing else None
        prev = None

        def drain_one() -> None:
            job, n = pending.popleft()
            self.slots.append(job.result())
            self.on_bytes(n)

        try:
            for path, offset, length in self.t.spans():
                if path not in files:
                    files[path] = os.open(path, os.O_RDONLY)
                for a in range(offset, offset + length, BLOCK_BYTES):
                    n = min(BLOCK_BYTES, offset + length - a)
                    slot = self.slots.pop() if self.slots else bytearray(BLOCK_BYTES)
                    args = (self.t.name, out_fd, files[path], a, n, pos, slot)
                    if chain is None:
                        job = _pool().submit(work, *args)
                    else:
                        mine = threading.Lock()
                        mine.acquire()  # released once this block is hashed (or the write stops)
                        job = _pool().submit(_hashed, work, args, self.digest, chain, prev, mine)
                        prev = mine
                    pending.append((job, n))
                    pos += n  # the output is as wide as the source (same type, or bf16 -> F16)
                    if len(pending) > WINDOW:
                        drain_one()
            while pending:
                drain_one()
        finally:
            if chain is not None:
                chain.stopped = True  # a worker waiting for a block that will never be hashed gives up
            for job, _ in pending:
                job.cancel()
            for job, _ in pending:  # no worker may still write once this returns
                job.wait()
            for fd in files.values():
                os.close(fd)
        fp.seek(pos)  # the buffered file object learns where the tensor ends
        if pos - base != self.nbytes:
            raise RegistryError(f"tensor {self.t.name}: wrote {pos - base} bytes, expected {self.nbytes}")


class _Chain:
    """The hashing order of one tensor's blocks: `stopped` once the write ends early (an error or a cancel), so
    that no worker waits for its turn for ever and nothing more is hashed."""

    __slots__ = ("stopped",)

    def __init__(self) -> None:
        self.stopped = False


def _hashed(work, args: tuple, digest, chain: _Chain, prev, mine) -> bytearray:
    """A block's work, then its bytes fed to the digest after those of the block before it (`prev`, a lock
    released once that block is hashed; None for a tensor's first block); `mine` is released in turn."""
    try:
        slot = work(*args)
        while prev is not None and not prev.acquire(timeout=0.05):  # waits in C, without the GIL
            if chain.stopped:
                raise RegistryError("cancelled")
        if chain.stopped:  # an earlier block failed: the digest would miss its bytes
            raise RegistryError("cancelled")
        digest.feed(memoryview(slot)[:args[4]])
        return slot
    except BaseException:
        chain.stopped = True
        raise
    finally:
        mine.release()


PREFETCH = 2
# Source bytes per job of the span pipeline: a block's source, its F16 and the cast's float32 temporary stay
# in the core's cache while it is converted, written and hashed there. With the hash on the workers, 1 MiB
# blocks took 0.55 s for a 716 MiB F16 build, 512 KiB 0.58 s and 256 KiB 0.67 s (fewer jobs, fewer handovers)
BLOCK_BYTES = 1 << 20
WINDOW = 8  # span blocks in flight (converted, or waiting for their turn to be hashed), in WINDOW + 1 reused slots
_local = threading.local()  # each worker's read buffer


def _ended(name: str, at: int) -> RegistryError:
    return RegistryError(f"{name}: the checkpoint ended early at byte {at}; did it change meanwhile?")


def _pwrite_all(out_fd: int, view: memoryview, at: int) -> None:
    while view:  # pwrite may write less than asked
        k = os.pwrite(out_fd, view, at)
        view, at = view[k:], at + k


def _pread_all(name: str, src_fd: int, view: memoryview, at: int) -> None:
    done = 0
    while done < len(view):  # pread may read less than asked
        k = os.preadv(src_fd, [view[done:]], at + done)
        if k == 0:
            raise _ended(name, at + done)
        done += k


def _copy_block(name: str, out_fd: int, src_fd: int, offset: int, n: int, out_pos: int, slot: bytearray) -> bytearray:
    """n bytes at `offset` of src_fd to out_pos of out_fd, through `slot`; returns it (the digest takes it next)."""
    view = memoryview(slot)[:n]
    _pread_all(name, src_fd, view, offset)
    _pwrite_all(out_fd, view, out_pos)
    return slot


def _bf16_block(name: str, out_fd: int, src_fd: int, offset: int, n: int, out_pos: int, slot: bytearray) -> bytearray:
    """n bytes of bf16 at `offset` of src_fd as F16 in `slot`, written at out_pos of out_fd; returns the slot."""
    import numpy as np

    src = getattr(_local, "src", None)
    if src is None:
        src = _local.src = np.empty(BLOCK_BYTES // 2, np.uint16)
    s = src[: n // 2]
    _pread_all(name, src_fd, memoryview(s).cast("B"), offset)
    dst = np.frombuffer(slot, np.float16, n // 2)
    to_f16(s, dst)
    _pwrite_all(out_fd, memoryview(slot)[:n], out_pos)
    return slot


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
               split_max_size: int | None, progress, hashed: bool = True) -> tuple[list[Path], str | None]:
    """Write the GGUF (one file, or shards above split_max_size); return the final paths and the
    sha256 of their bytes in order, taken while writing (None when not `hashed`)."""
    from ..claims import partial_tag

    out = Path(out)
    try:
        # whose it is in its name: a later run removes it once that process is gone (converters/claims.py)
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{out.stem}.{partial_tag()}-", dir=out.parent))
    except OSError as e:
        raise write_error(e, out, None) from None
    try:
        return _write(out, tmpdir, arch_name, meta, tensors, outtype, split_max_size, progress, hashed)
    except OSError as e:
        total = sum(_nbytes(t.shape, _qtype(t, outtype)) for t in tensors)
        raise write_error(e, out, total) from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _write(out: Path, tmpdir: Path, arch_name: str, meta: Callable, tensors: list[OutTensor], outtype: str,
           split_max_size: int | None, progress, hashed: bool) -> tuple[list[Path], str | None]:
    w = _writer_class()(tmpdir / out.name, arch_name, split_max_size=split_max_size or 0)
    try:
        return _write_all(w, out, tmpdir, meta, tensors, outtype, progress, hashed)
    except BaseException:
        for f in w.fout or []:  # close now: a buffered file flushed at exit would fail (disk full) a second time
            try:
                f.close()
            except OSError:
                pass
        raise


def _writer_class():
    """gguf's GGUFWriter, with arrays of plain str, int or float (the vocabulary's tokens, merges and types)
    packed in one go, to the same bytes: gguf packs each element through several calls, ~0.1 s for a
    32k vocabulary and over a second for GLM's 151k tokens and 318k merges."""
    import struct

    import gguf

    V = gguf.GGUFValueType
    length = struct.Struct("<Q").pack

    def pack_array(val) -> bytes | None:
        kind = type(val[0])
        if not all(type(x) is kind for x in val):
            return None
        n = len(val)
        if kind is str:
            return struct.pack("<IQ", V.STRING, n) + b"".join([length(len(b)) + b for b in (x.encode("utf-8") for x in val)])
        if kind is int:  # not bool: type() is exact
            return struct.pack(f"<IQ{n}i", V.INT32, n, *val)
        if kind is float:
            return struct.pack(f"<IQ{n}f", V.FLOAT32, n, *val)
        return None

    class Writer(gguf.GGUFWriter):
        def _pack_val(self, val, vtype, add_vtype: bool, sub_type=None) -> bytes:
            if (vtype == V.ARRAY and sub_type is None and isinstance(val, (list, tuple)) and val
                    and self.endianess == gguf.GGUFEndian.LITTLE):
                packed = pack_array(val)
                if packed is not None:
                    return (struct.pack("<I", V.ARRAY) if add_vtype else b"") + packed
            return super()._pack_val(val, vtype, add_vtype, sub_type)

    return Writer


def _write_all(w, out: Path, tmpdir: Path, meta: Callable, tensors: list[OutTensor], outtype: str,
               progress, hashed: bool) -> tuple[list[Path], str | None]:
    import gguf
    import numpy as np

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
    digest = BuildDigest(w.fout) if hashed else NoDigest()
    progress.start(len(plan), total)
    slots: list = []
    for i, (t, q, nb) in enumerate(plan, 1):
        progress.tensor(i, t.name)
        w.write_tensor_data(_Stream(t, q, nb, progress.advance, digest, slots))
    w.close()
    sha = digest.finish()
    tmp_files = final_names(tmpdir / out.name, n_shards)
    finals = final_names(out, n_shards)
    for src, dst in zip(tmp_files, finals):
        os.replace(src, dst)
    return finals, sha


def sha256_of(paths: list[Path]) -> str:
    """sha256 of one file, or of the shards' bytes in order for a split build (as `registry verify` checks)."""
    from registry.hub.integrity import sha256_files

    return sha256_files(paths)
