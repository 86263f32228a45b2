"""The tiny checkpoints' config.json: the real repositories' keys with shrunk values (glm, glm4, glm4moe,
glm-dsa; ChatGLM's own names for chatglm), and the build options that are not config keys."""

from __future__ import annotations

from typing import Any

from registry.errors import RegistryError

from . import tokenizer as tt


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
