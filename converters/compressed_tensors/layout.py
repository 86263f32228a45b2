"""The model's layout without its weights: a meta-device model, the source's tensor index, and what
the recipe quantizes. Both build paths (by shard, by layer) and `--dry-run` start here.

A meta-device model costs no memory whatever the model size, yet it has every module name, class,
shape and dtype, so llm-compressor's own matching (targets, ignore, group-size checks, fused
global-scale sets) and compressed-tensors' config writer run on it exactly as on a loaded model.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from registry.errors import RegistryError

INDEX = "model.safetensors.index.json"


@dataclass
class SourceIndex:
    """Which shard file holds each tensor, and each tensor's size in bytes (from the file headers)."""

    root: Path
    weight_map: dict[str, str]  # tensor name -> shard file name
    nbytes: dict[str, int] = field(default_factory=dict)

    @property
    def shards(self) -> list[str]:
        return sorted(set(self.weight_map.values()))

    def shard_bytes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, f in self.weight_map.items():
            out[f] = out.get(f, 0) + self.nbytes.get(name, 0)
        return out


def _header(path: Path) -> dict:
    """A safetensors file's JSON header (8-byte little-endian length, then JSON): no tensor is read."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise RegistryError(f"{path}: not a safetensors file (shorter than its header); re-download it")
        n = int.from_bytes(raw, "little")
        if n <= 0 or n > 100 * 2**20:
            raise RegistryError(f"{path}: not a safetensors file (header length {n}); re-download it")
        try:
            return json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RegistryError(f"{path}: safetensors header is not JSON; re-download it") from None


def read_index(source: Path) -> SourceIndex:
    source = Path(source)
    idx = source / INDEX
    if idx.is_file():
        try:
            wm = json.loads(idx.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise RegistryError(f"{idx}: no weight_map; re-download the checkpoint's index file") from None
    else:
        files = sorted(p.name for p in source.glob("*.safetensors"))
        if len(files) != 1:
            raise RegistryError(f"{source}: {len(files)} .safetensors files and no {INDEX}; add the index file")
        wm = {k: files[0] for k in _header(source / files[0]) if k != "__metadata__"}
    sizes: dict[str, int] = {}
    for f in sorted(set(wm.values())):
        p = source / f
        if not p.is_file():
            raise RegistryError(f"{idx} names {f}, which is not in {source}; download the missing shard")
        for k, v in _header(p).items():
            if k != "__metadata__":
                off = v["data_offsets"]
                sizes[k] = off[1] - off[0]
    missing = [k for k in wm if k not in sizes]
    if missing:
        raise RegistryError(f"{source}: {len(missing)} tensors of the index are in no shard (e.g. {missing[0]}); "
                            "re-download the checkpoint")
    return SourceIndex(source, wm, sizes)


@contextmanager
def _no_offload_on_meta():
    """llm-compressor's linearize copies offloading from the fused experts; meta has none."""
    import llmcompressor.modeling.moe.linear_experts as le
    from compressed_tensors.utils import patch_attr

    with patch_attr(le, "offload_module", lambda *a, **k: None):
        yield


def meta_model(source: Path, dtype_name: str = "bfloat16"):
    """The model on the meta device, MoE experts as per-expert Linear (as the builds save them)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from .moe import linearize

    cfg = AutoConfig.from_pretrained(source)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, dtype_name))
        with _no_offload_on_meta():
            linearize(model)
    return model


@dataclass
class Layout:
    """What a data-free or calibrated build does with each source tensor."""

    keep: dict[str, object]  # tensor name -> torch dtype the model holds it in (what the build writes)
    dropped: list[str]  # source tensors the model does not have (MTP / NextN layers)
    schemes: dict[str, object]  # quantized module name -> QuantizationScheme
    fused: list[list[str]]  # module names sharing one global scale (NVFP4 q/k/v, gate/up)
    compressor: object  # compressed-tensors ModelCompressor: writes quantization_config
    layers: int  # decoder layers the model has


def layout(model, index: SourceIndex, quant_modifier) -> Layout:
    """Apply the recipe's quantization to the meta model and map it onto the source's tensors."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationStatus, QuantizationStrategy
    from compressed_tensors.quantization.utils import is_module_quantized
    from llmcompressor.observers.helpers import FUSED_LAYER_NAMES

    params = dict(model.named_parameters(remove_duplicate=False))
    state = model.state_dict()
    keep = {k: v.dtype for k, v in state.items()}
    # Tied parameters (one Parameter under two names): the hub files carry one of them.
    by_id: dict[int, list[str]] = {}
    for k, p in params.items():
        by_id.setdefault(id(p), []).append(k)
    missing = [k for k in keep if k not in index.weight_map
               and not any(o in index.weight_map for o in by_id.get(id(params.get(k)), []) if o != k)]
    if missing:
        raise RegistryError(
            f"{index.root}: {len(missing)} tensors of {type(model).__name__} are not in the checkpoint "
            f"(e.g. {missing[0]}); re-download it, or convert the checkpoint this family's config describes"
        )
    keep = {k: v for k, v in keep.items() if k in index.weight_map}
    dropped = sorted(k for k in index.weight_map if k not in keep)

    quant_modifier.initialize_quantization(model)
    schemes = {n: m.quantization_scheme for n, m in model.named_modules() if is_module_quantized(m)}
    fused: list[list[str]] = []
    names = {id(m): n for n, m in model.named_modules()}
    for parent in model.modules():
        for group in FUSED_LAYER_NAMES:
            if not all(hasattr(parent, a) for a in group):
                continue
            members = [names[id(getattr(parent, a))] for a in group if getattr(parent, a) is not None]
            tg = [n for n in members if n in schemes
                  and schemes[n].weights is not None and schemes[n].weights.strategy == QuantizationStrategy.TENSOR_GROUP]
            if tg and len(tg) != len(members):
                raise RegistryError(f"the recipe quantizes {', '.join(tg)} but not all of {', '.join(members)}, "
                                    "which must share one global scale; target or ignore them together")
            if tg:
                fused.append(tg)
    for m in model.modules():
        if is_module_quantized(m):
            m.quantization_status = QuantizationStatus.FROZEN
    comp = ModelCompressor.from_pretrained_model(model, quantization_format=None)
    comp.quantization_config.quantization_status = QuantizationStatus.COMPRESSED
    n_layers = int(getattr(model.config.get_text_config(), "num_hidden_layers", 0) or 0)
    return Layout(keep=keep, dropped=dropped, schemes=schemes, fused=fused, compressor=comp, layers=n_layers)


def disk_offloaded_model(source: Path, index: SourceIndex, folder: Path, onload_device: str):
    """The model with no weight in memory: built on the meta device (buffers computed at init kept,
    as the rotary tables are not in the checkpoint), every parameter and checkpoint buffer offloaded
    to disk as a link into `folder` pointing at the source shard that holds it. compressed-tensors
    reads a tensor from its shard when its layer is onloaded and writes updated ones into `folder`.
    """
    import torch
    from accelerate import init_empty_weights
    from compressed_tensors.offload.cache.disk import DiskCache
    from compressed_tensors.offload.module import offload_module
    from transformers import AutoConfig, AutoModelForCausalLM

    from .moe import linearize

    cfg = AutoConfig.from_pretrained(source)
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    with torch.device("meta"), _no_offload_on_meta():
        linearize(model)
    folder.mkdir(parents=True, exist_ok=True)
    linked: set[int] = set()
    for mod_name, module in model.named_modules():
        if not module._parameters and not module._buffers:
            continue
        prefix = f"{mod_name}." if mod_name else ""
        for store in (module._parameters, module._buffers):
            for key, t in list(store.items()):
                full = prefix + key
                if t is None or full not in index.weight_map:
                    continue  # a buffer computed at init (not saved): kept as it is
                if t.device.type != "meta":  # a checkpoint buffer: read from the file instead
                    t = torch.empty_like(t, device="meta")
                    store[key] = t
                if id(t) not in linked:
                    DiskCache.create_checkpoint_symlink(
                        t, {"safetensors_file": str(index.root / index.weight_map[full]), "weight_name": full,
                            "dtype": str(t.dtype).removeprefix("torch.")}, str(folder))
                    linked.add(id(t))
        offload_module(module, onload_device=onload_device, offload_device="disk", offload_dir=str(folder))
    return model
