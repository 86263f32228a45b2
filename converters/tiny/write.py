"""Writing a tiny checkpoint in the hub's layout: safetensors shards and their index, config.json,
generation_config.json and the tokenizer files, into a temporary directory renamed into place."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from . import tokenizer as tt
from .config import TinyCheckpointError, _chatglm_config, _split_options
from .model import _build, _torch_dtype, chatglm_state_dict


def _layer_order(name: str) -> tuple:
    """Hub-like tensor order: embeddings, layers by number, then final norm and head."""
    parts = name.split(".")
    for j, p in enumerate(parts):
        if p == "layers" and j + 1 < len(parts) and parts[j + 1].isdigit():
            return (1, int(parts[j + 1]), name)
    if "embed" in name:
        return (0, 0, name)
    return (2, 0, name)


def _write_shards(dest: Path, sd: dict[str, Any], dtype: str, n_shards: int) -> None:
    import torch
    from safetensors.torch import save_file

    target = _torch_dtype(dtype)
    tensors = {}
    for k, t in sd.items():
        keep32 = k.endswith("e_score_correction_bias")
        tensors[k] = t.detach().to(torch.float32 if keep32 else target).contiguous()
    names = sorted(tensors, key=_layer_order)
    sizes = {k: tensors[k].numel() * tensors[k].element_size() for k in names}
    total = sum(sizes.values())
    budget = max(max(sizes.values()), -(-total // n_shards))
    groups: list[list[str]] = [[]]
    used = 0
    for k in names:
        if groups[-1] and used + sizes[k] > budget:
            groups.append([])
            used = 0
        groups[-1].append(k)
        used += sizes[k]
    if len(groups) < 2:  # one tensor holds everything: split the list in two
        groups = [names[: len(names) // 2], names[len(names) // 2:]]
    n = len(groups)
    weight_map = {}
    for i, group in enumerate(groups, 1):
        fname = f"model-{i:05d}-of-{n:05d}.safetensors"
        save_file({k: tensors[k] for k in group}, str(dest / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in group})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (dest / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _generation_config(cfg: dict[str, Any], arch: str) -> dict[str, Any]:
    gen = {"eos_token_id": cfg["eos_token_id"], "pad_token_id": cfg["pad_token_id"],
           "transformers_version": cfg["transformers_version"]}
    if arch in ("glm", "chatglm", "glm4"):
        gen.update({"do_sample": True, "temperature": 0.8, "top_p": 0.8, "max_length": 128000})
    else:
        gen.update({"_from_model_config": True, "do_sample": True, "temperature": 1.0, "top_p": 0.95})
    return dict(sorted(gen.items()))


def _write_tokenizer(dest: Path, arch: str) -> None:
    if arch == "chatglm":
        tt.write_chatglm_tokenizer(dest, model_max_length=128000)
    elif arch == "glm":
        tt.write_hf_tokenizer(dest, specials=tt.GLM4_SPECIALS, chat_template=tt.GLM4_CHAT_TEMPLATE,
                              template_file=False, model_max_length=128000)
    elif arch == "glm4":
        tt.write_hf_tokenizer(dest, specials=tt.GLM4_SPECIALS, chat_template=tt.GLM4_0414_CHAT_TEMPLATE,
                              template_file=False, model_max_length=128000)
    else:
        tt.write_hf_tokenizer(dest, specials=tt.GLM45_SPECIALS, chat_template=tt.GLM45_CHAT_TEMPLATE,
                              template_file=True, model_max_length=128000)


def _write_dir(dest: Path, arch: str, cfg: dict[str, Any], sd: dict[str, Any], opts: dict[str, Any]) -> Path:
    """Write the checkpoint into a temp dir beside `dest`, then move it to `dest` whole."""
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise TinyCheckpointError(f"{dest} exists and is not an empty directory; pick a new path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        _write_shards(tmp, sd, opts["dtype"], int(opts["shards"]))
        cfg = dict(cfg)
        if "torch_dtype" in cfg:
            cfg["torch_dtype"] = opts["dtype"]
        if "dtype" in cfg:
            cfg["dtype"] = opts["dtype"]
        _write_json(tmp / "config.json", cfg)
        _write_json(tmp / "generation_config.json", _generation_config(cfg, arch))
        _write_tokenizer(tmp, arch)
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def build_checkpoint(arch: str, dest: Path, *, seed: int = 0, twin: Path | None = None, **overrides) -> Path:
    """Write a tiny random `arch` checkpoint at `dest` (a new or empty directory); return `dest`.

    `overrides` are config.json keys of that arch (for chatglm its own names, e.g. num_layers,
    ffn_hidden_size, rope_ratio, or the glm twin's) and the options dtype ("bfloat16" default,
    "float16", "float32"), shards (target shard count, >= 2), mtp_shared_tensors (GLM-4.5 MTP
    layout). For chatglm, `twin` also writes the equivalent GlmForCausalLM checkpoint there.
    """
    if twin is not None and arch != "chatglm":
        raise TinyCheckpointError("twin= is only for arch 'chatglm' (its GlmForCausalLM twin)")
    model, cfg, sd = _build(arch, seed, overrides)
    _, opts = _split_options(overrides)
    del model
    if arch == "chatglm":
        if twin is not None:
            _write_dir(Path(twin), "glm", cfg, sd, opts)
        return _write_dir(Path(dest), "chatglm", _chatglm_config(cfg), chatglm_state_dict(sd, cfg), opts)
    return _write_dir(Path(dest), arch, cfg, sd, opts)


def skew_norms(src: Path, dest: Path, *, every: int = 16, high: float = 8.0, low: float = 0.25) -> Path:
    """Copy checkpoint `src` to `dest` with its pre-attention and pre-MLP RMSNorm weights skewed.

    Channel c of every input_layernorm / post_attention_layernorm is scaled by `high` when
    c % every == 0, else by `low`: the matmuls after them see a few loud input columns, as trained
    models do (random init gives near-uniform activations, where an importance matrix has nothing
    to weigh). The imatrix quality test builds from this.
    """
    import torch
    from safetensors.torch import load_file, save_file

    src, dest = Path(src), Path(dest)
    shutil.copytree(src, dest)
    for shard in sorted(dest.glob("*.safetensors")):
        sd = load_file(shard)
        for name, t in sd.items():
            if name.endswith(("input_layernorm.weight", "post_attention_layernorm.weight")):
                scale = torch.full((t.shape[-1],), low, dtype=torch.float32)
                scale[::every] = high
                sd[name] = (t.float() * scale).to(t.dtype)
        save_file(sd, shard, metadata={"format": "pt"})
    return dest
