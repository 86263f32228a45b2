"""The tiny models in memory: transformers' own classes, randomly initialised under a seed, their hub
state dict (MTP layer included) and ChatGLM's re-layout of the glm twin's weights. Heavy imports inside."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .config import ARCHS, TinyCheckpointError, _glm_overrides_from_chatglm, _hub_config, _split_options


def _torch_dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def _make_model(cfg: dict[str, Any], seed: int, dtype: str, n_extra_layers: int):
    """The transformers model with `n_extra_layers` more layers (the MTP layers), randomly
    initialized, 1-D weights perturbed, values rounded to `dtype` (kept in float32)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = {k: v for k, v in cfg.items() if k not in ("architectures", "model_type", "transformers_version",
                                                         "torch_dtype", "dtype")}
    kwargs["num_hidden_layers"] = cfg["num_hidden_layers"] + n_extra_layers
    config = AutoConfig.for_model(cfg["model_type"], **kwargs)
    config.architectures = list(cfg["architectures"])
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.ndim != 1 or not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=gen)
            if name.endswith("e_score_correction_bias"):
                t.copy_(0.1 * noise)
            elif name.endswith("bias"):
                t.copy_(t + 0.02 * noise)
            else:  # norm weights (ones at init)
                t.copy_(t + 0.1 * noise)
        target = _torch_dtype(dtype)
        for name, t in model.state_dict().items():
            if t.is_floating_point() and not name.endswith("e_score_correction_bias"):
                t.copy_(t.to(target).to(torch.float32))
    return model


def _hub_state_dict(model) -> dict[str, Any]:
    """The model's tensors under the names save_pretrained writes (the hub's)."""
    from safetensors.torch import load_file
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its shard bar is noise for a few-MB model
    with tempfile.TemporaryDirectory(prefix="tiny-save-") as tmp:
        model.save_pretrained(tmp)
        out = {}
        for f in sorted(Path(tmp).glob("*.safetensors")):
            out.update(load_file(str(f)))
    return out


def _truncate(model, n_layers: int):
    """Drop the trailing (MTP) layers from the in-memory model."""
    import torch

    model.model.layers = torch.nn.ModuleList(list(model.model.layers)[:n_layers])
    model.config.num_hidden_layers = n_layers
    for key in ("layer_types", "mlp_layer_types", "indexer_types"):
        val = getattr(model.config, key, None)
        if isinstance(val, list):
            setattr(model.config, key, val[:n_layers])
    return model


def _mtp_extras(cfg: dict[str, Any], seed: int, dtype: str, shared_tensors: bool) -> dict[str, Any]:
    """NextN-only tensors of each MTP layer (the decoder layer itself comes from the model)."""
    import torch

    gen = torch.Generator().manual_seed(seed + 2)
    h, v, std = cfg["hidden_size"], cfg["vocab_size"], cfg["initializer_range"]
    out = {}
    for i in range(cfg.get("num_nextn_predict_layers", 0)):
        p = f"model.layers.{cfg['num_hidden_layers'] + i}."
        out[p + "eh_proj.weight"] = torch.randn(h, 2 * h, generator=gen) * std
        for norm in ("enorm", "hnorm", "shared_head.norm"):
            out[p + norm + ".weight"] = 1 + 0.1 * torch.randn(h, generator=gen)
        if shared_tensors:
            out[p + "embed_tokens.weight"] = torch.randn(v, h, generator=gen) * std
            out[p + "shared_head.head.weight"] = torch.randn(v, h, generator=gen) * std
    target = _torch_dtype(dtype)
    return {k: t.to(target).to(torch.float32) for k, t in out.items()}


def build_model(arch: str, *, seed: int = 0, **overrides):
    """The in-memory transformers model whose weights `build_checkpoint` writes (float32 tensors
    holding the saved dtype's values). For "chatglm" it is the GlmForCausalLM twin."""
    model, _cfg, _sd = _build(arch, seed, overrides)
    return model


def _build(arch: str, seed: int, overrides: dict[str, Any]):
    if arch not in ARCHS:
        raise TinyCheckpointError(f"unknown tiny architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    cfg_over, opts = _split_options(overrides)
    if arch == "chatglm":
        cfg_over = _glm_overrides_from_chatglm(cfg_over)
        base = "glm"
    else:
        base = arch
    cfg = _hub_config(base, cfg_over)
    n_mtp = int(cfg.get("num_nextn_predict_layers", 0))
    model = _make_model(cfg, seed, opts["dtype"], n_mtp)
    sd = _hub_state_dict(model)
    if n_mtp:
        sd.update(_mtp_extras(cfg, seed, opts["dtype"], bool(opts["mtp_shared_tensors"])))
        _truncate(model, cfg["num_hidden_layers"])
    return model, cfg, sd


def chatglm_state_dict(glm_sd: dict[str, Any], glm_cfg: dict[str, Any]) -> dict[str, Any]:
    """GlmForCausalLM tensors (hub names) re-laid into ChatGLMModel's names and fused layouts."""
    import torch

    out = {"transformer.embedding.word_embeddings.weight": glm_sd["model.embed_tokens.weight"]}
    for i in range(glm_cfg["num_hidden_layers"]):
        g, c = f"model.layers.{i}.", f"transformer.encoder.layers.{i}."
        out[c + "input_layernorm.weight"] = glm_sd[g + "input_layernorm.weight"]
        for kind in ("weight", "bias"):
            out[c + f"self_attention.query_key_value.{kind}"] = torch.cat(
                [glm_sd[g + f"self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")], dim=0
            )
        out[c + "self_attention.dense.weight"] = glm_sd[g + "self_attn.o_proj.weight"]
        out[c + "post_attention_layernorm.weight"] = glm_sd[g + "post_attention_layernorm.weight"]
        out[c + "mlp.dense_h_to_4h.weight"] = glm_sd[g + "mlp.gate_up_proj.weight"]
        out[c + "mlp.dense_4h_to_h.weight"] = glm_sd[g + "mlp.down_proj.weight"]
    out["transformer.encoder.final_layernorm.weight"] = glm_sd["model.norm.weight"]
    out["transformer.output_layer.weight"] = glm_sd["lm_head.weight"]
    rot = glm_cfg["head_dim"] // 2  # ChatGLM rotates half of each head
    out["transformer.rotary_pos_emb.inv_freq"] = 1.0 / (
        10000 ** (torch.arange(0, rot, 2, dtype=torch.float32) / rot)
    )
    return out
