"""Data-free builds one safetensors shard at a time: memory is about one shard, whatever the model size.

Schemes that need no activations (FP8_DYNAMIC, W4A16 round-to-nearest, NVFP4A16) quantize each
weight from the weight alone, so the model never has to be loaded. For every source shard we read
its tensors one by one, quantize the ones the recipe targets with llm-compressor's model-free
lifecycle (the same observers, qparams and compressors `oneshot` uses), cast the rest to the dtype
the model holds them in, and write the shard under the same file name. Which tensors are targeted,
which share an NVFP4 global scale, and the quantization_config come from the meta-device model
(layout.py), so the output matches a build that loads the whole model.

Fused sets (q/k/v, gate/up) whose members sit in different shards are read by the shard that holds
the set's first member. A background thread writes and hashes shard k while shard k+1 is quantized.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

from registry.errors import RegistryError

from .layout import INDEX, Layout, SourceIndex


@dataclass
class Job:
    shard: str  # output file name (the source shard's)
    names: list[str]  # tensors to write, in source order (fused partners from other shards included)


def jobs(index: SourceIndex, lay: Layout) -> list[Job]:
    """One job per source shard; each tensor in exactly one job."""
    owner: dict[str, str] = {}  # fused partner tensor -> shard of its set's first member
    for group in lay.fused:
        names = [f"{m}.weight" for m in group]
        first = index.weight_map[min(names, key=lambda n: (index.weight_map[n], n))]
        for n in names:
            owner[n] = first
    per: dict[str, list[str]] = {s: [] for s in index.shards}
    for name, shard in index.weight_map.items():
        if name in lay.keep:
            per[owner.get(name, shard)].append(name)
    return [Job(s, names) for s, names in per.items() if names]


_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64", "I64": "int64",
           "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
           "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


class _Reader:
    """Tensors read one by one with plain reads into their own buffers.

    Not safe_open: it maps the files, and mapped pages that were read stay resident while the file
    is open, so memory would follow the shards rather than the tensor being worked on.
    """

    def __init__(self, index: SourceIndex):
        from .layout import _header

        self.index = index
        self._headers: dict[str, tuple[dict, int]] = {}
        self._header = _header

    def _entry(self, f: str):
        if f not in self._headers:
            path = self.index.root / f
            h = self._header(path)
            with open(path, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
            self._headers[f] = (h, 8 + n)
        return self._headers[f]

    def get(self, name: str):
        import torch

        f = self.index.weight_map[name]
        header, base = self._entry(f)
        meta = header[name]
        dtype = _DTYPES.get(meta["dtype"])
        if dtype is None:
            raise RegistryError(f"{self.index.root / f}: tensor {name} has dtype {meta['dtype']}, "
                                "which this converter does not read")
        start, end = meta["data_offsets"]
        buf = torch.empty(end - start, dtype=torch.uint8)
        with open(self.index.root / f, "rb", buffering=0) as fh:
            fh.seek(base + start)
            got = fh.readinto(memoryview(buf.numpy()))
        if got != end - start:
            raise RegistryError(f"{self.index.root / f}: tensor {name} is truncated; re-download the shard")
        return buf.view(getattr(torch, dtype)).reshape(meta["shape"])

    def close(self) -> None:
        self._headers.clear()


def _linear(weight, scheme):
    """A Linear holding `weight` itself, set up for `scheme`. llm-compressor's
    initialize_quantized_linear builds an nn.Linear (random-initialising its weight, ~40% of an
    FP8 build's time on CPU) and copies the weight in; here neither happens."""
    import torch
    from compressed_tensors.quantization import initialize_module_for_quantization

    out_f, in_f = weight.shape
    m = torch.nn.utils.skip_init(torch.nn.Linear, in_f, out_f, bias=False, device="meta", dtype=weight.dtype)
    m.weight = torch.nn.Parameter(weight, requires_grad=False)
    initialize_module_for_quantization(m, scheme, force_zero_point=False)
    return m


def _quantize(weights: dict[str, object], lay: Layout, device) -> dict[str, object]:
    """Quantize and compress Linear weights {module name: tensor}; one fused set or one module."""
    from compressed_tensors.compressors import compress_module
    from llmcompressor.entrypoints.model_free.lifecycle import calibrate_weight
    from llmcompressor.modifiers.quantization.calibration import (
        apply_calibration_status,
        freeze_module_quantization,
        initialize_observer,
        observe,
        update_qparams,
    )
    from llmcompressor.observers import FusionHandler

    mods = {}
    for name, w in weights.items():
        mods[name] = _linear(w.to(device), lay.schemes[name])
    if len(mods) == 1:
        calibrate_weight(next(iter(mods.values())))
    else:  # one global scale over the set, as oneshot's fuse_weight_observers does
        for m in mods.values():
            initialize_observer(m, "weight")
            apply_calibration_status(m)
        FusionHandler.fuse([(m.weight_observer, m) for m in mods.values()])
        observe(mods.values(), base_name="weight")
        update_qparams(mods.values(), base_name="weight")
        for m in mods.values():
            freeze_module_quantization(m)
    out = {}
    for name, m in mods.items():
        compress_module(m)
        for k, v in m.state_dict().items():
            out[f"{name}.{k}"] = v.detach().to("cpu").contiguous()
    return out


def _run_job(job: Job, reader: _Reader, lay: Layout, fused_of: dict[str, list[str]], device) -> dict:
    out: dict[str, object] = {}
    done: set[str] = set()
    for name in job.names:
        if name in done:
            continue
        module, _, param = name.rpartition(".")
        if param == "weight" and module in lay.schemes:
            group = fused_of.get(module, [module])
            ws = {m: reader.get(f"{m}.weight").to(lay.keep[f"{m}.weight"]) for m in group}
            out.update(_quantize(ws, lay, device))
            done.update(f"{m}.weight" for m in group)
            del ws
        else:
            t = reader.get(name)
            want = lay.keep[name]
            out[name] = t if t.dtype == want else t.to(want)
    return out


def _writer(q: queue.Queue, dest: Path, digests: dict, weight_map: dict, sizes: list, errors: list) -> None:
    from safetensors.torch import save_file

    while True:
        item = q.get()
        if item is None:
            q.task_done()
            return
        shard, tensors = item
        del item
        if errors:
            del tensors
            q.task_done()
            continue
        try:
            path = dest / shard
            save_file(tensors, str(path), metadata={"format": "pt"})
            sizes.append(sum(t.nbytes for t in tensors.values()))
            weight_map.update(dict.fromkeys(tensors, shard))
            del tensors
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 24):
                    h.update(chunk)
            digests[shard] = h.hexdigest()
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)
        finally:
            tensors = None
            q.task_done()


def _malloc_release():
    """glibc raises its mmap threshold each time a large block is freed, after which tensor-sized
    blocks come from heaps it keeps: resident memory then ratchets up shard after shard. A fixed
    threshold keeps every tensor-sized block in its own mapping, returned to the system when freed.
    Returns malloc_trim (None off glibc)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: 1 MiB, fixed
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def build(index: SourceIndex, lay: Layout, dest: Path, device: str = "cpu", progress=None) -> dict[str, str]:
    """Write the quantized shards and their index into `dest`; returns {file name: sha256}."""
    import torch

    trim = _malloc_release()

    fused_of = {m: g for g in lay.fused for m in g}
    todo = jobs(index, lay)
    reader = _Reader(index)
    digests: dict[str, str] = {}
    weight_map: dict[str, str] = {}
    sizes: list[int] = []
    errors: list[BaseException] = []
    # The next shard is filled while the last one is written, never more: about two output shards.
    q: queue.Queue = queue.Queue(maxsize=1)
    t = threading.Thread(target=_writer, args=(q, dest, digests, weight_map, sizes, errors), daemon=True)
    t.start()
    try:
        with torch.no_grad():
            for i, job in enumerate(todo):
                if errors:
                    break
                tensors = _run_job(job, reader, lay, fused_of, torch.device(device))
                reader.close()
                q.join()  # the previous shard is on disk before this one is handed over
                if trim:
                    trim(0)
                q.put((job.shard, tensors))
                del tensors
                if progress:
                    progress(i + 1, len(todo), job.shard)
    finally:
        q.put(None)
        t.join()
        reader.close()
    if errors:
        raise errors[0]
    idx = {"metadata": {"total_size": sum(sizes)}, "weight_map": dict(sorted(weight_map.items()))}
    (dest / INDEX).write_text(json.dumps(idx, indent=2) + "\n")
    return digests


def check_device(device: str) -> str:
    """'cpu' or 'cuda:N' that this machine has; errors otherwise."""
    import torch

    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RegistryError(f"--device {device}: this machine has no CUDA device (torch sees none); use --device cpu")
        n = torch.cuda.device_count()
        idx = int(device.partition(":")[2] or 0) if device.partition(":")[2].isdigit() or device == "cuda" else -1
        if not 0 <= idx < n:
            raise RegistryError(f"--device {device}: not a CUDA device here (cuda:0..cuda:{n - 1})")
        return f"cuda:{idx}"
    raise RegistryError(f"--device {device!r}: use cpu or cuda:N")
