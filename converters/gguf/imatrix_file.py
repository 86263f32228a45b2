"""Importance-matrix files: llama.cpp's imatrix GGUF and its legacy .dat, read and written.

What an imatrix holds, per weight matrix that a matmul reads (llama.cpp tools/imatrix): for each
input column j the sum over evaluated tokens of x_j^2, and the number of tokens; a MoE expert
tensor [cols, rows, n_expert] has one row of sums and one count per expert.

GGUF layout (tools/imatrix/imatrix.cpp save_imatrix): general.type = "imatrix",
imatrix.datasets (array of strings), imatrix.chunk_count and imatrix.chunk_size (u32), and per
matrix NAME two F32 tensors: NAME.in_sum2 [ne0, n_mat] and NAME.counts [1, n_mat] (newer
builds add NAME.in_sum, the plain sums, which quantization does not use).

Legacy .dat (save_imatrix_legacy): int32 n_entries; per entry int32 name length, the name,
int32 ncall, int32 nval, nval float32 (already mean * ncall); then int32 chunk count and int32
length + dataset name. Quantization uses sums / count per matrix (tools/quantize load_imatrix),
sums / ncall for legacy files.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from registry.errors import RegistryError

KV_DATASETS, KV_CHUNK_COUNT, KV_CHUNK_SIZE = "imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"


@dataclass
class Imatrix:
    # name -> (sums float64 [n_mat, ne0], counts float64 [n_mat])
    entries: dict = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0
    legacy: bool = False  # read from a .dat: sums are mean * ncall, counts hold ncall

    @property
    def tokens(self) -> int:
        """Tokens evaluated: the largest count of any dense (single-matrix) entry."""
        dense = [int(c[0]) for s, c in self.entries.values() if len(c) == 1]
        return max(dense, default=0)

    def values(self) -> dict:
        """name -> float32 [n_mat * ne0]: what llama_model_quantize_params.imatrix carries (sums / count)."""
        import numpy as np

        out = {}
        for name, (sums, counts) in self.entries.items():
            if self.legacy:
                n = float(counts[0])
                v = sums / n if n > 0 else sums
            else:
                c = counts.reshape(-1, 1)
                # a matrix (an expert) that saw no token: 1 for every column, as llama-quantize does
                v = np.where(c > 0, sums / np.where(c > 0, c, 1), 1.0)
            out[name] = np.ascontiguousarray(v, dtype=np.float32).reshape(-1)
        return out


def read_imatrix(path: Path) -> Imatrix:
    path = Path(path)
    if not path.is_file():
        raise RegistryError(f"imatrix file {path} does not exist; collect one with `registry imatrix` or pass another --imatrix")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    im = _read_gguf(path) if magic == b"GGUF" else _read_legacy(path)
    if not im.entries:
        raise RegistryError(f"{path}: the imatrix holds no entries; collect it again over more calibration text")
    return im


def _read_gguf(path: Path) -> Imatrix:
    import numpy as np
    from gguf import GGUFReader

    try:
        r = GGUFReader(path)
    except Exception as e:  # gguf raises ValueError/struct errors on damaged files
        raise RegistryError(f"{path}: not a readable GGUF imatrix ({e})") from None
    kv = {f.name: f.contents() for f in r.fields.values() if not f.name.startswith("GGUF.")}
    missing = [k for k in (KV_DATASETS, KV_CHUNK_COUNT, KV_CHUNK_SIZE) if k not in kv]
    if missing:
        raise RegistryError(f"{path}: missing imatrix metadata ({', '.join(missing)}); is it an imatrix GGUF "
                            "(llama-imatrix or `registry imatrix` writes one)?")
    sums, counts = {}, {}
    for t in r.tensors:
        a = np.asarray(t.data, dtype=np.float64)
        if t.name.endswith(".in_sum2"):
            sums[t.name[: -len(".in_sum2")]] = a.reshape(-1, int(t.shape[0]))
        elif t.name.endswith(".counts"):
            counts[t.name[: -len(".counts")]] = a.reshape(-1)
    entries = {}
    for name in sorted(sums):
        if name not in counts:
            raise RegistryError(f"{path}: {name}.in_sum2 has no {name}.counts tensor; the file is incomplete")
        if len(counts[name]) != sums[name].shape[0]:
            raise RegistryError(f"{path}: {name} has {sums[name].shape[0]} matrices but {len(counts[name])} counts")
        entries[name] = (sums[name], counts[name])
    ds = kv[KV_DATASETS]
    return Imatrix(entries, [ds] if isinstance(ds, str) else list(ds), int(kv[KV_CHUNK_COUNT]),
                   int(kv[KV_CHUNK_SIZE]))


def _read_legacy(path: Path) -> Imatrix:
    import numpy as np

    data = path.read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise RegistryError(f"{path}: truncated legacy imatrix (.dat) at byte {pos}; the file is damaged")
        vals = struct.unpack_from(fmt, data, pos)
        pos += size
        return vals

    (n,) = take("<i")
    if n < 1 or n > 1_000_000:
        raise RegistryError(f"{path}: neither an imatrix GGUF nor a legacy .dat (entry count {n}); pass an imatrix file")
    entries = {}
    for _ in range(n):
        (ln,) = take("<i")
        if not 0 < ln < 4096:
            raise RegistryError(f"{path}: bad tensor-name length {ln} in legacy imatrix; the file is damaged")
        name = take(f"<{ln}s")[0].decode(errors="replace")
        ncall, nval = take("<ii")
        vals = np.array(take(f"<{nval}f"), dtype=np.float64)
        entries[name] = (vals.reshape(1, -1), np.array([float(ncall)]))
    chunks, datasets = 0, []
    if pos + 4 <= len(data):
        (chunks,) = take("<i")
        if pos + 4 <= len(data):
            (ln,) = take("<i")
            if 0 < ln <= len(data) - pos:
                datasets = [take(f"<{ln}s")[0].decode(errors="replace")]
    return Imatrix(entries, datasets, chunks, 0, legacy=True)


def write_imatrix(im: Imatrix, path: Path) -> Path:
    """Write `im` as an imatrix GGUF (or legacy .dat when `path` ends in .dat), under a temp name first."""
    import os

    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        (_write_legacy if path.suffix == ".dat" else _write_gguf)(im, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_gguf(im: Imatrix, path: Path) -> None:
    import numpy as np
    from gguf import GGUFWriter

    w = GGUFWriter(path, arch="")
    w.kv_data[0].pop("general.architecture", None)  # llama-imatrix writes none; its files have only these keys
    w.add_type("imatrix")
    w.add_array(KV_DATASETS, list(im.datasets))
    w.add_uint32(KV_CHUNK_COUNT, int(im.chunk_count))
    w.add_uint32(KV_CHUNK_SIZE, int(im.chunk_size))
    for name in sorted(im.entries):
        sums, counts = im.entries[name]
        w.add_tensor(f"{name}.in_sum2", np.ascontiguousarray(sums, dtype=np.float32))
        w.add_tensor(f"{name}.counts", np.ascontiguousarray(counts, dtype=np.float32).reshape(-1, 1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _write_legacy(im: Imatrix, path: Path) -> None:
    import numpy as np

    size = max(im.chunk_size, 1)
    out = [struct.pack("<i", len(im.entries))]
    for name in sorted(im.entries):
        sums, counts = im.entries[name]
        ncall = int((counts.max() + size - 1) // size)  # ceiling, as llama-imatrix writes it
        c = np.where(counts > 0, counts, 1.0).reshape(-1, 1)
        mean = np.where(counts.reshape(-1, 1) > 0, sums / c, 1.0) * ncall
        b = name.encode()
        out += [struct.pack("<i", len(b)), b, struct.pack("<ii", ncall, mean.size),
                np.ascontiguousarray(mean, dtype="<f4").tobytes()]
    ds = (im.datasets[-1] if im.datasets else "").encode()
    out += [struct.pack("<i", int(im.chunk_count)), struct.pack("<i", len(ds)), ds]
    path.write_bytes(b"".join(out))
