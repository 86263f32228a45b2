"""Read a GGUF file's header with the standard library: its metadata and where its tensor data starts.

The launcher reads a local build's header to estimate memory before it starts llama.cpp. gguf's
GGUFReader would do, but it costs numpy's import and builds an array per vocabulary string; this
reads the few scalars it needs and skips the rest. Layout (GGUF v2/v3, little-endian): magic,
version u32, tensor count u64, metadata count u64, the metadata (key string, value type u32,
value), the tensor infos (name, n_dims u32, dims u64 x n, type u32, offset u64), padding to
`general.alignment`, then the tensor data.

`read_stream` parses the same from any object with `read(n)`: `registry discover` reads a hub file's
header over HTTP range requests without downloading the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import RegistryError

# Value types: fixed-size scalars by struct format; 8 is a string, 9 an array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
DEFAULT_ALIGNMENT = 32


@dataclass(frozen=True)
class Header:
    path: Path | str  # a local file, or the URL a stream was read from
    version: int
    metadata: dict  # scalars and strings as values; arrays of scalars as lists; arrays of strings as their length
    tensors: dict  # name -> shape (ggml order: the fastest-varying dimension first)
    data_offset: int
    file_size: int

    @property
    def data_bytes(self) -> int:
        """The tensor data section: every tensor's bytes plus the alignment padding between them
        (what llama.cpp memory-maps)."""
        return self.file_size - self.data_offset


class _Buf:
    def __init__(self, f):
        self.f = f  # anything with read(n): a file, or registry.hub.discover's HTTP range reader
        self.buf = b""
        self.base = 0  # file offset of buf[0]
        self.pos = 0  # index into buf

    def need(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            chunk = self.f.read(max(n, 1 << 20))
            self.buf = self.buf[self.pos:] + chunk
            self.base += self.pos
            self.pos = 0
            if len(self.buf) < n:
                raise EOFError

    def unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        self.need(size)
        v = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return v[0] if len(v) == 1 else v

    def string(self) -> str:
        n = self.unpack("Q")
        self.need(n)
        s = self.buf[self.pos:self.pos + n].decode("utf-8", errors="replace")
        self.pos += n
        return s

    def skip_strings(self, count: int) -> None:
        for _ in range(count):
            self.need(8)
            n = int.from_bytes(self.buf[self.pos:self.pos + 8], "little")
            self.pos += 8
            self.need(n)
            self.pos += n

    def offset(self) -> int:
        return self.base + self.pos


def _value(b: _Buf, vtype: int):
    if vtype in _SCALARS:
        return b.unpack(_SCALARS[vtype])
    if vtype == _STRING:
        return b.string()
    if vtype == _ARRAY:
        itype, count = b.unpack("I"), b.unpack("Q")
        if itype == _STRING:
            b.skip_strings(count)  # vocabularies and merges: only their length is needed
            return count
        if itype in _SCALARS:
            fmt = _SCALARS[itype]
            b.need(struct.calcsize(fmt) * count)
            vals = list(struct.unpack_from(f"<{count}{fmt}", b.buf, b.pos))
            b.pos += struct.calcsize(fmt) * count
            return vals
        raise ValueError(f"array of value type {itype}")
    raise ValueError(f"value type {vtype}")


def read(path: str | Path) -> Header:
    """The header of one GGUF file (one part of a split build). Errors name the file and what to do."""
    path = Path(path)
    try:
        size = path.stat().st_size
        f = open(path, "rb")
    except OSError as e:
        raise RegistryError(f"cannot read {path}: {e.strerror}") from None
    with f:
        return _parse(_Buf(f), path, size, "convert or download it again")


def read_stream(f, where: str, size: int, fix: str = "check the file on its hub") -> Header:
    """The header of a GGUF file read through `f.read(n)` (e.g. HTTP range requests); `size` is the file's."""
    return _parse(_Buf(f), where, size, fix)


def _parse(b: _Buf, path, size: int, fix: str) -> Header:
    try:
        if b.unpack("4s") != b"GGUF":
            raise ValueError("no GGUF magic at the start")
        version = b.unpack("I")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} (this reader knows 2 and 3)")
        n_tensors, n_kv = b.unpack("Q"), b.unpack("Q")
        meta = {}
        for _ in range(n_kv):
            key = b.string()
            meta[key] = _value(b, b.unpack("I"))
        tensors = {}
        for _ in range(n_tensors):
            name = b.string()
            dims = [b.unpack("Q") for _ in range(b.unpack("I"))]
            b.unpack("I")  # ggml type
            b.unpack("Q")  # offset within the data section
            tensors[name] = tuple(dims)
        align = int(meta.get("general.alignment", DEFAULT_ALIGNMENT))
        end = b.offset()
        data_offset = end + (-end) % align
    except (EOFError, struct.error):
        raise RegistryError(f"{path}: truncated GGUF header ({size} bytes); {fix}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RegistryError(f"{path}: not a readable GGUF file ({e}); {fix}") from None
    if data_offset > size:
        raise RegistryError(f"{path}: truncated GGUF file (no tensor data); {fix}")
    return Header(path, version, meta, tensors, data_offset, size)
