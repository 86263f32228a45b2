"""Lazy reading of a Hugging Face checkpoint in the hub layout (config.json + safetensors shards).

Headers are parsed and checked up front (missing shard, truncated file, corrupt header, index
naming a tensor its shard lacks), so a bad checkpoint fails before any output is written.
Tensor data is memory-mapped one row block at a time and unmapped right after, so resident
memory stays bounded by the block, not by the tensor or the model.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from registry.errors import RegistryError


class CheckpointError(RegistryError):
    """The source checkpoint is missing, incomplete or malformed."""


_DTYPES = {"F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("uint16", 2)}
BLOCK_ELEMENTS = 1 << 22  # rows are read in blocks of about 4M elements (16 MiB as float32)


@dataclass(frozen=True)
class TensorRef:
    name: str
    path: Path
    dtype: str  # safetensors dtype name
    shape: tuple[int, ...]
    offset: int  # absolute byte offset of the data in the file

    @property
    def nbytes(self) -> int:
        n = _DTYPES[self.dtype][1]
        for d in self.shape:
            n *= d
        return n


def _read_header(path: Path) -> dict[str, TensorRef]:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes); download it again")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100 << 20):
                raise CheckpointError(f"{path}: corrupt safetensors header (claims {n} bytes); download it again")
            meta = json.loads(f.read(n))
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: corrupt safetensors header (not JSON); download it again") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (a JSON {type(meta).__name__}, not an object); "
                              "download it again")
    base = 8 + n
    out: dict[str, TensorRef] = {}
    for name, info in meta.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: corrupt safetensors header entry for {name!r}") from None
        # JSON gives any types: offsets and dims must be non-negative integers (bool is an int in Python)
        if not all(_nat(x) for x in (begin, end, *shape)) or begin > end or not isinstance(dtype, str):
            raise CheckpointError(
                f"{path}: corrupt safetensors header entry for {name!r} (dtype {dtype!r}, shape {list(shape)}, "
                f"data_offsets {[begin, end]}: need non-negative integers); download it again"
            )
        if dtype not in _DTYPES:
            raise CheckpointError(
                f"{path}: tensor {name!r} has dtype {dtype}; the GGUF converter reads F32, F16 and BF16 checkpoints"
            )
        ref = TensorRef(name, path, dtype, shape, base + begin)
        if end - begin != ref.nbytes:
            raise CheckpointError(f"{path}: corrupt safetensors header: {name!r} spans {end - begin} bytes, shape needs {ref.nbytes}")
        if base + end > size:
            raise CheckpointError(
                f"{path}: truncated safetensors file: {name!r} ends at byte {base + end} but the file has {size}; download it again"
            )
        out[name] = ref
    return out


_ABSENT = object()


def _nat(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


class Checkpoint:
    """A checkpoint directory: its config and the tensors of all its shards, by name."""

    def __init__(self, src: Path):
        src = Path(src)
        if not src.is_dir():
            raise CheckpointError(f"checkpoint directory {src} does not exist; pass the directory that holds config.json")
        self.dir = src
        cfg_path = src / "config.json"
        if not cfg_path.is_file():
            raise CheckpointError(f"{src} has no config.json; is it a Hugging Face checkpoint directory?")
        try:
            self.config: dict = json.loads(cfg_path.read_text())
        except ValueError as e:
            raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from None
        if not isinstance(self.config, dict):
            raise CheckpointError(f"{cfg_path}: expected a JSON object, got a {type(self.config).__name__}")
        self.tensors: dict[str, TensorRef] = {}
        index = src / "model.safetensors.index.json"
        if index.is_file():
            try:
                weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError, TypeError):
                raise CheckpointError(f"{index} is not a safetensors index (no weight_map)") from None
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{index}: weight_map is a {type(weight_map).__name__}; it must map "
                                      "tensor names to shard file names")
            bad = next(((k, v) for k, v in weight_map.items() if not isinstance(v, str) or not v.endswith(".safetensors")
                        or Path(v).name != v), None)
            if bad:
                raise CheckpointError(f"{index}: weight_map puts {bad[0]!r} in {bad[1]!r}, which is not a shard file name "
                                      "(model-0000i-of-0000N.safetensors beside the index)")
            headers: dict[str, dict[str, TensorRef]] = {}
            for shard in sorted(set(weight_map.values())):
                p = src / shard
                if not p.is_file():
                    raise CheckpointError(f"shard {shard} named by {index.name} is missing from {src}; download it again")
                headers[shard] = _read_header(p)
            for name, shard in weight_map.items():
                ref = headers[shard].get(name)
                if ref is None:
                    raise CheckpointError(f"{index.name} puts tensor {name!r} in {shard}, but that shard does not hold it")
                self.tensors[name] = ref
        else:
            shards = sorted(src.glob("*.safetensors"))
            if not shards:
                raise CheckpointError(f"{src} has no model.safetensors.index.json and no *.safetensors files")
            for p in shards:
                self.tensors.update(_read_header(p))

    def cfg(self, *keys: str, default=...):
        """The first of `keys` present in config.json (or its rope_parameters); error if none and no default."""
        rope = self.config.get("rope_parameters") or {}
        for k in keys:
            if k in self.config and self.config[k] is not None:
                return self.config[k]
            if k in rope and rope[k] is not None:
                return rope[k]
        if default is ...:
            raise CheckpointError(f"{self.dir / 'config.json'} is missing {' or '.join(keys)}")
        return default

    def cfg_int(self, *keys: str, default=..., low: int = 1, high: int = 2**32 - 1) -> int:
        """An integer hyper-parameter: JSON may hold a string, a float or a bool there; GGUF wants a uint32."""
        v = self.cfg(*keys, default=_ABSENT)
        if v is _ABSENT:
            return self.cfg(*keys, default=default)  # the default, or the 'missing' error
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise CheckpointError(
                f"{self.dir / 'config.json'}: {self._key(keys)} is {v!r}; it must be an integer from {low} to {high}: "
                "use the config.json that came with the checkpoint"
            )
        return v

    def cfg_float(self, *keys: str, default=..., positive: bool = False) -> float:
        import math

        v = self.cfg(*keys, default=_ABSENT)
        if v is _ABSENT:
            return self.cfg(*keys, default=default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
            raise CheckpointError(
                f"{self.dir / 'config.json'}: {self._key(keys)} is {v!r}; it must be a finite{' positive' if positive else ''} "
                "number: use the config.json that came with the checkpoint"
            )
        return float(v)

    def _key(self, keys: tuple[str, ...]) -> str:
        return next((k for k in keys if self.config.get(k) is not None), keys[0])

    def ref(self, name: str) -> TensorRef:
        try:
            return self.tensors[name]
        except KeyError:
            raise CheckpointError(f"checkpoint {self.dir} has no tensor {name!r}") from None

    def has(self, name: str) -> bool:
        return name in self.tensors

    def span(self, name: str) -> tuple[Path, int, int]:
        """Where tensor `name`'s bytes lie: (file, offset, length), for copies that bypass Python."""
        ref = self.ref(name)
        return ref.path, ref.offset, ref.nbytes

    def blocks(self, name: str, row_slice: tuple[int, int] | None = None, raw: bool = False) -> Iterator["np.ndarray"]:  # noqa: F821
        """Rows of tensor `name` as float32 blocks (2-D: rows x last dim), memory-mapped one block at a time.

        raw=True: the blocks as stored (float32, float16, or bf16 bits as uint16), for pass-through writes.
        """
        import numpy as np

        ref = self.ref(name)
        np_dtype, width = _DTYPES[ref.dtype]
        cols = ref.shape[-1] if ref.shape else 1
        rows = max(1, ref.nbytes // width // cols)
        r0, r1 = row_slice or (0, rows)
        step = max(1, BLOCK_ELEMENTS // cols)
        for a in range(r0, r1, step):
            b = min(r1, a + step)
            mm = np.memmap(ref.path, dtype=np_dtype, mode="r", offset=ref.offset + a * cols * width, shape=(b - a, cols))
            if raw:
                block = mm  # written straight from the mapping; unmapped when the writer drops it
            elif ref.dtype == "BF16":
                # bf16 is the top half of a float32: widen with one shift into a fresh buffer.
                block = np.left_shift(mm, np.uint32(16), out=np.empty(mm.shape, np.uint32)).view(np.float32)
            else:
                block = np.array(mm, dtype=np.float32)  # one copy out of the mapping (widened if float16)
            del mm  # unmap now: resident pages of the source go with it
            yield block
