"""`registry convert --to compressed-tensors --dry-run`: what a build needs, before any weight is read.

Sizes come from the source's safetensors headers and the meta-device model (layout.py): which
tensors the recipe quantizes and to what (bits, scales), the largest shard, the largest decoder
layer. The memory floor is this process's own resident size once torch, transformers and
llm-compressor are imported (what every build pays before the first weight). What the machine has
comes from registry/hardware.py (GPUs), psutil (available RAM) and the free space of the output's
and the offload folder's filesystems.

Estimates (bytes):
* by shard:  floor + 2 x the largest output shard (one written while the next is filled)
             + 4 x the largest quantized weight (its copy in a Linear and fp32 observer temporaries).
* by layer:  the model's layers wait on CPU, or on disk with --offload-dir; one layer at a time is
             on the device with the calibration activations (samples x tokens x hidden, in and out)
             and AWQ's fp32 copies (GPTQ: plus an fp32 in x in Hessian per quantized
             Linear of that layer); the output is saved in shards no larger than the source's;
             the offload folder holds links to the source shards and the tensors calibration
             rewrites (at most the model).
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from registry.errors import RegistryError

_LAYER = re.compile(r"^(.*?layers\.\d+)\.")
GiB = 2**30


@dataclass
class Plan:
    family: str
    quantization: str
    path: str  # by-shard | by-layer
    device: str
    source_bytes: int
    shards: int
    largest_shard_bytes: int
    largest_layer_bytes: int
    output_bytes: int
    peak_ram_bytes: int
    gpu_bytes: int
    disk_output_bytes: int
    disk_offload_bytes: int
    floor_bytes: int
    out: str
    offload_dir: str | None
    available_ram_bytes: int
    gpu_memory_bytes: int | None
    free_output_disk_bytes: int
    free_offload_disk_bytes: int | None
    reasons: list[str] = field(default_factory=list)  # why this machine cannot, empty when it can

    @property
    def fits(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fits"] = self.fits
        return d


def quantized_bytes(shape, scheme) -> int:
    """Bytes a compressed weight takes on disk (data, scales, zero points, packed shape)."""
    rows, cols = int(shape[0]), int(shape[1])
    w = scheme.weights
    n = rows * cols
    data = n * w.num_bits // 8
    strat = str(getattr(w.strategy, "value", w.strategy))
    if strat == "channel":
        scales = rows * 2
    elif strat == "group":
        scales = rows * math.ceil(cols / w.group_size) * 2 * (1 if w.symmetric else 2)
    elif strat == "tensor_group":
        scales = rows * math.ceil(cols / w.group_size) + 4
    elif strat == "block":
        b0, b1 = w.block_structure
        scales = math.ceil(rows / b0) * math.ceil(cols / b1) * 2
    else:
        scales = 4
    return data + scales + (16 if w.num_bits < 8 else 0)


def _floor() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _existing(path: Path) -> Path:
    p = Path(path).expanduser().absolute()
    while not p.exists():
        p = p.parent
    return p


def _free_disk(path: Path) -> int:
    return shutil.disk_usage(_existing(path)).free


def plan_one(req, family, quant: str, out: Path, src_cfg: dict, arch: str) -> Plan:
    import psutil
    import torch

    from registry import hardware

    from . import build as b
    from . import layout, recipes, shard

    recipe = recipes.build(family, quant, req.method)
    calibrated = bool(recipe.get("needs_calibration"))
    path = req.path or ("by-layer" if calibrated else "by-shard")
    device = req.device or "cpu"
    reasons: list[str] = []
    try:
        device = shard.check_device(device)
    except RegistryError as e:
        reasons.append(str(e))
    index = layout.read_index(Path(req.source))
    model = layout.meta_model(Path(req.source))
    b.resolve_targets(model, recipe, arch)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    hidden = int(getattr(model.config.get_text_config(), "hidden_size", 0) or 0)
    lay = layout.layout(model, index, recipes.modifiers(recipe)[-1])
    del model

    def out_size(name: str) -> int:
        module = name.rpartition(".")[0]
        if name.endswith(".weight") and module in lay.schemes:
            return quantized_bytes(shapes[name], lay.schemes[module])
        return math.prod(shapes[name]) * torch.empty((), dtype=lay.keep[name]).element_size()

    shard_bytes = index.shard_bytes()
    out_by_job = [sum(out_size(n) for n in j.names) for j in shard.jobs(index, lay)]
    output = sum(out_by_job)
    targets = [index.nbytes[f"{m}.weight"] for m in lay.schemes if f"{m}.weight" in index.nbytes]
    largest_target = max(targets, default=0)
    layers: dict[str, int] = {}
    for name in lay.keep:
        m = _LAYER.match(name)
        if m:
            layers[m.group(1)] = layers.get(m.group(1), 0) + index.nbytes[name]
    largest_layer = max(layers.values(), default=0)
    hessians: dict[str, int] = {}  # GPTQ: one fp32 in x in Hessian per quantized Linear of the layer at once
    if recipe["modifier"] == "GPTQModifier":
        for m in lay.schemes:
            w = shapes.get(f"{m}.weight")
            hit = _LAYER.match(f"{m}.weight")
            if w and hit:
                hessians[hit.group(1)] = hessians.get(hit.group(1), 0) + 4 * w[-1] ** 2
    source_bytes = sum(index.nbytes[n] for n in lay.keep)
    floor = _floor()
    gpu = 0
    offload = 0
    if path == "by-shard":
        peak = floor + 2 * max(out_by_job, default=0) + 4 * largest_target
        if device != "cpu":
            gpu = 4 * largest_target
    else:
        plan = b.plan_calibration(req, recipe) if calibrated else None
        samples, seq = (plan.samples, plan.max_seq_len) if plan else (0, 0)
        acts = 2 * samples * seq * hidden * 2  # a layer's inputs and outputs, bf16, kept on CPU
        work = 4 * largest_layer + 2 * seq * hidden * 4 * 8  # the onloaded layer, fp32 copies, one batch
        work += max(hessians.values(), default=0)
        rest = 0 if req.offload_dir else source_bytes
        largest_out = max(shard_bytes.values(), default=0)
        peak = floor + rest + acts + largest_out + (work if device == "cpu" else largest_layer)
        if device != "cpu":
            gpu = work
        if req.offload_dir:
            # links to the source shards, plus the tensors calibration rewrites (AWQ-smoothed
            # weights, qparams): at most the model
            offload = source_bytes
    avail = psutil.virtual_memory().available
    if peak > avail:
        hint = ("use --offload-dir DIR to keep the model's layers on disk, or " if path == "by-layer"
                and not req.offload_dir else "")
        reasons.append(f"needs {peak / GiB:.1f} GiB of RAM at peak; {avail / GiB:.1f} GiB is available here: "
                       f"{hint}build on a machine with more memory")
    gpu_mem = None
    if device.startswith("cuda"):
        hw = hardware.detect()
        idx = int(device.partition(":")[2] or 0)
        g = next((g for g in hw.gpus if g.index == idx), None)
        gpu_mem = g.memory_bytes if g else None
        if gpu_mem is not None and gpu > gpu_mem:
            reasons.append(f"needs {gpu / GiB:.1f} GiB on {device}; it has {gpu_mem / GiB:.1f} GiB: use a larger GPU "
                           "or --device cpu")
    free_out = _free_disk(out.parent)
    if output > free_out:
        reasons.append(f"the output needs {output / GiB:.1f} GiB; {out.parent} has {free_out / GiB:.1f} GiB free: "
                       "free space or choose another --out")
    free_off = None
    if req.offload_dir:
        free_off = _free_disk(Path(req.offload_dir))
        same_fs = _existing(Path(req.offload_dir)).stat().st_dev == _existing(out.parent).stat().st_dev
        need = offload + (output if same_fs else 0)
        if need > free_off:
            reasons.append(f"the offload folder needs {need / GiB:.1f} GiB; {req.offload_dir} has "
                           f"{free_off / GiB:.1f} GiB free: choose another --offload-dir")
    return Plan(family=family.name, quantization=quant, path=path, device=device, source_bytes=source_bytes,
                shards=len(index.shards), largest_shard_bytes=max(shard_bytes.values(), default=0),
                largest_layer_bytes=largest_layer, output_bytes=output, peak_ram_bytes=peak, gpu_bytes=gpu,
                disk_output_bytes=output, disk_offload_bytes=offload, floor_bytes=floor, out=str(out),
                offload_dir=str(req.offload_dir) if req.offload_dir else None, available_ram_bytes=avail,
                gpu_memory_bytes=gpu_mem, free_output_disk_bytes=free_out, free_offload_disk_bytes=free_off,
                reasons=reasons)


def run_plan(req) -> list[Plan]:
    import contextlib
    import sys

    from . import build as b

    family = b.family_of(req.family)
    quants = b.quants_for(family, req.quant)
    src_cfg, arch = b.source_config(Path(req.source), family)
    outs = [b.output_dir(req, q, len(quants) > 1, create=False) for q in quants]
    plans = []
    for q, out in zip(quants, outs):
        with contextlib.redirect_stdout(sys.stderr), b._quiet(req.progress):
            plans.append(plan_one(req, family, q, out, src_cfg, arch))
    return plans


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / GiB:.2f} GiB"


def print_plans(plans: list[Plan]) -> None:
    for p in plans:
        print(f"{p.family} {p.quantization}: {p.path} on {p.device}")
        print(f"  source        {_gib(p.source_bytes)} in {p.shards} shards (largest {_gib(p.largest_shard_bytes)}, "
              f"largest layer {_gib(p.largest_layer_bytes)})")
        print(f"  peak RAM      {_gib(p.peak_ram_bytes)} (floor {_gib(p.floor_bytes)}; available {_gib(p.available_ram_bytes)})")
        if p.device != "cpu":
            print(f"  GPU memory    {_gib(p.gpu_bytes)} on {p.device} (has {_gib(p.gpu_memory_bytes)})")
        print(f"  disk, output  {_gib(p.disk_output_bytes)} in {p.out} (free {_gib(p.free_output_disk_bytes)})")
        if p.offload_dir:
            print(f"  disk, offload {_gib(p.disk_offload_bytes)} in {p.offload_dir} (free {_gib(p.free_offload_disk_bytes)})")
        for r in p.reasons:
            print(f"  cannot: {r}")
        print(f"  {'fits this machine' if p.fits else 'does not fit this machine'}")
