"""Tiny random checkpoints of the real GLM architectures, in the Hugging Face hub's file layout.

`build_checkpoint(arch, dest, seed=0, **overrides)` writes one; the same arch, seed and overrides
give byte-identical weights. Converter tests build these instead of downloading real models.

Archs and the repositories they imitate:

* "glm"      GlmForCausalLM       THUDM/glm-4-9b-chat-hf
* "chatglm"  ChatGLMModel         THUDM/glm-4-9b-chat, glm-4-9b-chat-1m (code lives on the hub)
* "glm4"     Glm4ForCausalLM      THUDM/GLM-4-9B-0414
* "glm4moe"  Glm4MoeForCausalLM   zai-org/GLM-4.5, GLM-4.6, GLM-4.7
* "glm-dsa"  GlmMoeDsaForCausalLM zai-org/GLM-5 (MLA attention + the DSA sparse-attention indexer)

What a checkpoint directory holds (as on the hub) and what a converter has to read:

* ``model-0000i-of-0000N.safetensors`` (N >= 2) and ``model.safetensors.index.json``
  ({"metadata": {"total_size"}, "weight_map": {tensor: shard}}). Weights are bfloat16 (the hub's
  dtype; ``dtype="float32"`` as an override), except MoE ``e_score_correction_bias`` which stays
  float32 as transformers keeps it.
* HF archs: the tensor names ``save_pretrained`` writes for the transformers class, which are the
  hub's. MoE experts are per-expert 2-D tensors
  ``model.layers.N.mlp.experts.E.{gate,up,down}_proj.weight`` (transformers 5 fuses them in memory
  and splits them again on save), plus ``mlp.gate.weight``, ``mlp.gate.e_score_correction_bias``
  and ``mlp.shared_experts.*``; the first ``first_k_dense_replace`` layers have a dense
  ``mlp.{gate,up,down}_proj``. glm and glm4 fuse gate and up in ``mlp.gate_up_proj``.
* MTP / NextN (glm4moe, glm-dsa; ``num_nextn_predict_layers`` = 1): one extra layer
  ``model.layers.{L}`` with L = num_hidden_layers: a full decoder layer (attention, MoE, norms)
  plus ``eh_proj`` [H, 2H], ``enorm``, ``hnorm`` and ``shared_head.norm``, as in GLM-4.6. GLM-4.5
  also carried ``model.layers.{L}.embed_tokens`` and ``shared_head.head``: override
  ``mtp_shared_tensors=True`` for that layout. Transformers ignores the layer on load.
* ChatGLMModel names and fused layouts: ``transformer.embedding.word_embeddings.weight``,
  ``transformer.encoder.layers.N.input_layernorm.weight``,
  ``...self_attention.query_key_value.{weight,bias}`` (rows q | k | v),
  ``...self_attention.dense.weight``, ``...post_attention_layernorm.weight``,
  ``...mlp.dense_h_to_4h.weight`` (rows gate | up; silu(gate) * up),
  ``...mlp.dense_4h_to_h.weight``, ``transformer.encoder.final_layernorm.weight``,
  ``transformer.output_layer.weight`` and ``transformer.rotary_pos_emb.inv_freq`` (a buffer the
  hub files carry; computed with base 10000, rope_ratio is applied at run time; converters skip it).
* config.json with the keys of the real repository's config.json (values shrunk), see
  ``_hub_config``; generation_config.json; tokenizer files (see converters/tiny_tokenizer.py).

The chatglm checkpoint is the glm checkpoint of the same seed and overrides, re-laid: q/k/v rows
are concatenated, gate_up_proj is already ChatGLM's dense_h_to_4h layout, and no rows are
permuted, because both implementations apply rotary embedding to the first half of each head
(partial_rotary_factor 0.5) on interleaved pairs (x0, x1), (x2, x3), ... (ChatGLM's
apply_rotary_pos_emb reshapes to [..., rot_dim/2, 2]; transformers' Glm rotate_half takes
x[..., 0::2] and x[..., 1::2]). rope_theta = 10000 * rope_ratio, rms_norm_eps = layernorm_epsilon,
max_position_embeddings = seq_length. ``build_checkpoint("chatglm", dest, twin=dest2)`` also
writes that glm twin; ``build_model("chatglm")`` returns it in memory.

Random init: transformers' own initializer under torch.manual_seed(seed), then every 1-D weight
(norms, biases, the expert-score bias) is perturbed so that a converter that drops or mangles one
changes the logits. Heavy imports stay inside functions.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from registry.errors import RegistryError

from . import tiny_tokenizer as tt

ARCHS = ("glm", "chatglm", "glm4", "glm4moe", "glm-dsa")

# Options that are not config keys.
_OPTIONS = {"dtype": "bfloat16", "mtp_shared_tensors": False, "shards": 3}

# ChatGLM config names -> the glm twin's names (rope_ratio is handled apart).
_CHATGLM_TO_GLM = {
    "num_layers": "num_hidden_layers",
    "ffn_hidden_size": "intermediate_size",
    "kv_channels": "head_dim",
    "multi_query_group_num": "num_key_value_heads",
    "padded_vocab_size": "vocab_size",
    "seq_length": "max_position_embeddings",
    "layernorm_epsilon": "rms_norm_eps",
}


class TinyCheckpointError(RegistryError):
    """A tiny checkpoint could not be built as asked."""


def _specials(arch: str) -> list[str]:
    return tt.GLM45_SPECIALS if arch in ("glm4moe", "glm-dsa") else tt.GLM4_SPECIALS


def _vocab_default(arch: str) -> int:
    n = tt.NORMAL_VOCAB + len(_specials(arch))
    return (n + 63) // 64 * 64  # padded like the hub's 151552


def _transformers_version() -> str:
    from importlib.metadata import version

    return version("transformers")


def _hub_config(arch: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """config.json for `arch` with every key the real repository's has (values shrunk).

    Sources (the published config.json files): THUDM/glm-4-9b-chat-hf, THUDM/GLM-4-9B-0414,
    zai-org/GLM-4.6, zai-org/GLM-5(.1); THUDM/glm-4-9b-chat for chatglm (built in _chatglm_config).
    """
    ids = tt.special_ids(_specials(arch))
    eos = [ids[t] for t in tt.EOS_TOKENS]
    pad = ids["<|endoftext|>"]
    common = {
        "attention_dropout": 0.0,
        "eos_token_id": eos,
        "hidden_act": "silu",
        "hidden_size": 256,
        # Real: 0.02. Wider init gives peakier next-token distributions, so top-1 and KL
        # comparisons of converted builds are less dominated by near-ties.
        "initializer_range": 0.1,
        "intermediate_size": 512,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "pad_token_id": pad,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": _transformers_version(),
        "use_cache": True,
        "vocab_size": _vocab_default(arch),
    }
    if arch == "glm":
        cfg = {
            **common, "architectures": ["GlmForCausalLM"], "model_type": "glm",
            "attention_bias": True, "head_dim": 64, "max_position_embeddings": 131072,
            "num_key_value_heads": 2, "partial_rotary_factor": 0.5, "rms_norm_eps": 1.5625e-07,
            # The chatglm twin's rope_ratio 500 (glm-4-9b-chat) times ChatGLM's base 10000.
            "rope_theta": 5000000.0,
        }
    elif arch == "glm4":
        cfg = {
            **common, "architectures": ["Glm4ForCausalLM"], "model_type": "glm4",
            "attention_bias": True, "head_dim": 64, "max_position_embeddings": 32768,
            "num_key_value_heads": 2, "partial_rotary_factor": 0.5, "rms_norm_eps": 1e-05,
            "rope_theta": 10000.0,
        }
    elif arch == "glm4moe":
        cfg = {
            **common, "architectures": ["Glm4MoeForCausalLM"], "model_type": "glm4_moe",
            "attention_bias": True, "head_dim": 64, "max_position_embeddings": 202752,
            "num_key_value_heads": 2, "partial_rotary_factor": 0.5, "rms_norm_eps": 1e-05,
            "rope_scaling": None, "rope_theta": 1000000,
            "num_hidden_layers": 3, "first_k_dense_replace": 1, "moe_intermediate_size": 256,
            # Real: n_group 1. Two groups, one used, so that group-limited routing (llama.cpp's
            # expert_group_count) changes which experts run: a converter that drops it is caught.
            "n_group": 2, "topk_group": 1, "n_routed_experts": 8, "n_shared_experts": 1,
            "num_experts_per_tok": 2, "norm_topk_prob": True, "routed_scaling_factor": 2.5,
            "num_nextn_predict_layers": 1, "use_qk_norm": True,
        }
    elif arch == "glm-dsa":
        cfg = {
            **common, "architectures": ["GlmMoeDsaForCausalLM"], "model_type": "glm_moe_dsa",
            "attention_bias": False, "dtype": "bfloat16", "ep_size": 1,
            "num_hidden_layers": 3, "first_k_dense_replace": 1,
            # v_head_dim differs from qk_nope_head_dim as in GLM-5 (real: 256 vs 192), so a converter
            # that confuses the two writes a GGUF that llama.cpp refuses to load.
            "head_dim": 32, "qk_rope_head_dim": 32, "qk_nope_head_dim": 64, "qk_head_dim": 96,
            "v_head_dim": 128, "q_lora_rank": 256, "kv_lora_rank": 256,
            "num_key_value_heads": 4,
            # Real: 32 heads of 128, top 2048. Top 16 is below the test prompts' length (37 tokens), so
            # the indexer picks which keys each later query attends to and a wrong indexer changes
            # logits. 16 heads: with few heads many keys score exactly 0 (every head's ReLU is 0) and
            # the top-k among ties is up to the implementation.
            "index_head_dim": 64, "index_n_heads": 16, "index_topk": 16,
            "indexer_rope_interleave": True, "rope_interleave": True,
            "max_position_embeddings": 202752, "moe_intermediate_size": 256, "moe_layer_freq": 1,
            "n_group": 1, "topk_group": 1, "n_routed_experts": 8, "n_shared_experts": 1,
            "num_experts_per_tok": 2, "norm_topk_prob": True, "routed_scaling_factor": 2.5,
            "num_nextn_predict_layers": 1, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
            "rope_parameters": {"rope_theta": 1000000, "rope_type": "default"},
            "scoring_func": "sigmoid", "topk_method": "noaux_tc",
        }
        cfg.pop("torch_dtype")  # GLM-5's file says "dtype"
    else:
        raise TinyCheckpointError(f"unknown tiny architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise TinyCheckpointError(
            f"{arch}: unknown override(s) {', '.join(unknown)}; config keys are {', '.join(sorted(cfg))}"
        )
    cfg.update(overrides)
    if arch == "glm-dsa":
        cfg["qk_head_dim"] = cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
        cfg["head_dim"] = cfg["qk_rope_head_dim"]
    n_tokens = tt.NORMAL_VOCAB + len(_specials(arch))
    if cfg["vocab_size"] < n_tokens:
        raise TinyCheckpointError(f"vocab_size {cfg['vocab_size']} is below the tokenizer's {n_tokens} tokens")
    return dict(sorted(cfg.items()))


def _split_options(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    opts = dict(_OPTIONS)
    rest = {}
    for k, v in overrides.items():
        if k in opts:
            opts[k] = v
        else:
            rest[k] = v
    if opts["dtype"] not in ("bfloat16", "float16", "float32"):
        raise TinyCheckpointError(f"dtype {opts['dtype']!r}: use bfloat16, float16 or float32")
    if int(opts["shards"]) < 2:
        raise TinyCheckpointError("shards must be 2 or more (the hub layout is sharded)")
    return rest, opts


def _glm_overrides_from_chatglm(overrides: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in overrides.items():
        if k == "rope_ratio":
            out["rope_theta"] = 10000.0 * float(v)
        else:
            out[_CHATGLM_TO_GLM.get(k, k)] = v
    return out


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


# --- ChatGLM re-layout ------------------------------------------------------------------------


def _chatglm_config(glm_cfg: dict[str, Any]) -> dict[str, Any]:
    """config.json of THUDM/glm-4-9b-chat (every key it has), from the glm twin's values."""
    n = glm_cfg["num_hidden_layers"]
    return {
        "_name_or_path": "THUDM/glm-4-9b-chat",
        "add_bias_linear": False,
        "add_qkv_bias": True,
        "apply_query_key_layer_scaling": True,
        "apply_residual_connection_post_layernorm": False,
        "architectures": ["ChatGLMModel"],
        "attention_dropout": 0.0,
        "attention_softmax_in_fp32": True,
        "auto_map": {
            "AutoConfig": "configuration_chatglm.ChatGLMConfig",
            "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
            "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
            "AutoModelForSeq2SeqLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
            "AutoModelForSequenceClassification": "modeling_chatglm.ChatGLMForSequenceClassification",
        },
        "bias_dropout_fusion": True,
        "classifier_dropout": None,
        "eos_token_id": glm_cfg["eos_token_id"],
        "ffn_hidden_size": glm_cfg["intermediate_size"],
        "fp32_residual_connection": False,
        "hidden_dropout": 0.0,
        "hidden_size": glm_cfg["hidden_size"],
        "kv_channels": glm_cfg["head_dim"],
        "layernorm_epsilon": glm_cfg["rms_norm_eps"],
        "model_type": "chatglm",
        "multi_query_attention": True,
        "multi_query_group_num": glm_cfg["num_key_value_heads"],
        "num_attention_heads": glm_cfg["num_attention_heads"],
        "num_hidden_layers": n,
        "num_layers": n,
        "original_rope": True,
        "pad_token_id": glm_cfg["pad_token_id"],
        "padded_vocab_size": glm_cfg["vocab_size"],
        "post_layer_norm": True,
        "rmsnorm": True,
        "rope_ratio": glm_cfg["rope_theta"] / 10000.0,
        "seq_length": glm_cfg["max_position_embeddings"],
        "tie_word_embeddings": False,
        "torch_dtype": glm_cfg["torch_dtype"],
        "transformers_version": glm_cfg["transformers_version"],
        "use_cache": True,
        "vocab_size": glm_cfg["vocab_size"],
    }


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


# --- writing ----------------------------------------------------------------------------------


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
