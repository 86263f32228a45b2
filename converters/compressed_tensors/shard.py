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


class _Reader:
    """Open safetensors handles, one per source file, for tensor-by-tensor reads."""

    def __init__(self, index: SourceIndex):
        self.index = index
        self._open: dict[str, object] = {}

    def get(self, name: str):
        from safetensors import safe_open

        f = self.index.weight_map[name]
        if f not in self._open:
            self._open[f] = safe_open(str(self.index.root / f), framework="pt")
        return self._open[f].get_tensor(name)

    def close(self) -> None:
        self._open.clear()


def _quantize(weights: dict[str, object], lay: Layout, device) -> dict[str, object]:
    """Quantize and compress Linear weights {module name: tensor}; one fused set or one module."""
    from compressed_tensors.compressors import compress_module
    from llmcompressor.entrypoints.model_free.lifecycle import calibrate_weight, initialize_quantized_linear
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
        mods[name] = initialize_quantized_linear(w.to(device), lay.schemes[name], device)
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
            return
        shard, tensors = item
        if errors:
            continue
        try:
            path = dest / shard
            save_file(tensors, str(path), metadata={"format": "pt"})
            sizes.append(sum(t.nbytes for t in tensors.values()))
            weight_map.update(dict.fromkeys(tensors, shard))
            del tensors, item
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 24):
                    h.update(chunk)
            digests[shard] = h.hexdigest()
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)


def build(index: SourceIndex, lay: Layout, dest: Path, device: str = "cpu", progress=None) -> dict[str, str]:
    """Write the quantized shards and their index into `dest`; returns {file name: sha256}."""
    import torch

    fused_of = {m: g for g in lay.fused for m in g}
    todo = jobs(index, lay)
    reader = _Reader(index)
    digests: dict[str, str] = {}
    weight_map: dict[str, str] = {}
    sizes: list[int] = []
    errors: list[BaseException] = []
    # One shard waiting to be written at most: memory stays at about two output shards.
    q: queue.Queue = queue.Queue(maxsize=1)
    t = threading.Thread(target=_writer, args=(q, dest, digests, weight_map, sizes, errors), daemon=True)
    t.start()
    try:
        with torch.no_grad():
            for i, job in enumerate(todo):
                if errors:
                    break
                tensors = _run_job(job, reader, lay, fused_of, torch.device(device))
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
