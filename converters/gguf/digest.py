"""The sha256 of a GGUF build taken while it is written, so the output is never read a second time.

The digest is over the files' bytes in order (one file, or the shards of a split build one after
another), as `registry verify` checks. Tensor data, nearly all of a build, is fed from the buffers
the writer holds; the few regions gguf's GGUFWriter writes itself (header, key-values, tensor index,
alignment padding: KBs to a few MB for the vocabulary) are read back just before the next tensor
starts, from the page cache. GGUFWriter writes every tensor of shard 1 before any of shard 2, so one
running hash can follow it.
"""

from __future__ import annotations

import hashlib
import os

_READ = 1 << 20


class BuildDigest:
    hashing = True

    def __init__(self, files):
        self.files = list(files)  # GGUFWriter's open file objects, in shard order
        self.h = hashlib.sha256()
        self.i = 0  # the file being hashed
        self.pos = 0  # bytes of it hashed so far

    def at(self, fp) -> None:
        """Tensor data is about to be written to fp at its current position: hash what lies before it."""
        fp.flush()
        j = next(k for k, f in enumerate(self.files) if f is fp)
        if j < self.i:
            raise RuntimeError("GGUF shards written out of order; the running digest can't follow")
        while self.i < j:  # earlier shards are complete: hash their rest
            self._read_to(None)
            self.i, self.pos = self.i + 1, 0
        self._read_to(fp.tell())

    def feed(self, data) -> None:
        """Bytes written at the current position (a buffer: bytes, bytearray, memoryview or ndarray); from any
        thread, one call at a time, in the order of the file."""
        view = memoryview(data).cast("B")
        self.h.update(view)  # hashlib drops the GIL for large updates: the writers go on meanwhile
        self.pos += view.nbytes

    def finish(self) -> str:
        """After the writer closed its files: hash every byte not yet hashed; the hex digest."""
        while self.i < len(self.files):
            self._read_to(None)
            self.i, self.pos = self.i + 1, 0
        return self.h.hexdigest()

    def _read_to(self, end: int | None) -> None:
        f = self.files[self.i]
        if not f.closed:
            f.flush()
        fd = os.open(f.name, os.O_RDONLY)
        try:
            while end is None or self.pos < end:
                want = _READ if end is None else min(_READ, end - self.pos)
                chunk = os.pread(fd, want, self.pos)
                if not chunk:
                    if end is not None:
                        raise RuntimeError(f"{f.name}: ends at {self.pos}, before {end}")
                    break
                self.h.update(chunk)
                self.pos += len(chunk)
        finally:
            os.close(fd)


class NoDigest:
    """For a build whose sha256 nobody keeps (a first pass quantized and then removed, or convert() that
    returns paths only): the hash would take a core for as long as the conversion runs."""

    hashing = False

    def at(self, fp) -> None:
        pass

    def feed(self, data) -> None:
        pass

    def finish(self) -> None:
        return None
