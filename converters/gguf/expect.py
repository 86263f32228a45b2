"""Which HF tensors config.json implies, with their shapes: checked before anything is written.

A checkpoint whose config contradicts its weights (layers, hidden size, heads, head_dim), that
lacks a tensor, or holds one transposed, converts to a GGUF that llama.cpp refuses to load (it
checks every tensor's shape and count). Each architecture module lists what it expects through
an Expect; `check` names the first tensor that is missing, extra or of the wrong shape.
"""

from __future__ import annotations

from .reader import Checkpoint, CheckpointError


class Expect:
    """HF tensor name -> (shape, why: the config values that give it, required), in checkpoint order."""

    def __init__(self, ck: Checkpoint):
        self.ck = ck
        self.want: dict[str, tuple[tuple[int, ...], str, bool]] = {}

    def add(self, name: str, shape: tuple[int, ...], why: str, required: bool = True) -> None:
        self.want[name] = (tuple(int(d) for d in shape), why, required)

    def norm(self, name: str, n: int, why: str, required: bool = True) -> None:
        self.add(name, (n,), why, required)


def check(exp: Expect, *, n_blocks: int, n_layers: int, n_mtp: int, skip, layer_of) -> None:
    ck = exp.ck
    cfg = ck.dir / "config.json"
    for name, (shape, why, required) in exp.want.items():
        ref = ck.tensors.get(name)
        if ref is None:
            if required:
                raise CheckpointError(
                    f"{ck.dir}: tensor {name!r} is missing (from the shards and the index); {cfg} implies it "
                    f"with shape {shape} ({why}): the checkpoint is incomplete: download it again"
                )
            continue
        if ref.shape != shape:
            hint = " (transposed)" if ref.shape == shape[::-1] and len(shape) == 2 else ""
            raise CheckpointError(
                f"{ck.dir}: tensor {name!r} has shape {ref.shape}{hint}, but {cfg} implies {shape} ({why}); "
                "config.json does not describe these weights: use the config.json that came with the checkpoint"
            )
    for name in sorted(ck.tensors, key=lambda n: (layer_of(n) if layer_of(n) is not None else -1, n)):
        if name in exp.want or any(s.search(name) for s in skip):
            continue
        b = layer_of(name)
        if b is not None and b >= n_blocks:
            raise CheckpointError(
                f"{ck.dir}: tensor {name!r} is in layer {b}, but {cfg} says num_hidden_layers {n_layers}"
                + (f" plus {n_mtp} MTP layer{'s' if n_mtp > 1 else ''}" if n_mtp else "")
                + ": use the config.json that came with the checkpoint"
            )
        raise CheckpointError(
            f"{ck.dir}: tensor {name!r} is not one {cfg} implies (llama.cpp refuses a GGUF with tensors it does "
            "not expect); is config.json's architectures right for these weights?"
        )


# -- pieces shared by the HF-format GLM architectures --


def hf_head(e: Expect, first: bool) -> None:
    """Token embeddings (first) or the final norm and output head (last)."""
    ck = e.ck
    H, V = ck.cfg_int("hidden_size"), ck.cfg_int("vocab_size")
    if first:
        e.add("model.embed_tokens.weight", (V, H), f"vocab_size {V} x hidden_size {H}")
        return
    e.norm("model.norm.weight", H, f"hidden_size {H}")
    tied = ck.cfg("tie_word_embeddings", default=False) is True
    e.add("lm_head.weight", (V, H), f"vocab_size {V} x hidden_size {H}", required=not tied)


def gqa_attention(e: Expect, p: str) -> None:
    """q/k/v/o projections (optional biases) of the HF GLM-4 attention block; p = 'model.layers.N.'."""
    ck = e.ck
    H, nh = ck.cfg_int("hidden_size"), ck.cfg_int("num_attention_heads")
    hd = ck.cfg_int("head_dim", default=H // nh)
    nkv = ck.cfg_int("num_key_value_heads", default=nh)
    bias = ck.cfg("attention_bias", default=False) is True
    q, kv = f"num_attention_heads {nh} x head_dim {hd}", f"num_key_value_heads {nkv} x head_dim {hd}"
    for proj, rows, why in (("q", nh * hd, q), ("k", nkv * hd, kv), ("v", nkv * hd, kv)):
        e.add(f"{p}self_attn.{proj}_proj.weight", (rows, H), f"{why}, hidden_size {H}")
        e.norm(f"{p}self_attn.{proj}_proj.bias", rows, why, required=bias)
    e.add(f"{p}self_attn.o_proj.weight", (H, nh * hd), f"hidden_size {H}, {q}")


def dense_mlp(e: Expect, p: str, fused: bool) -> None:
    ck = e.ck
    H, ff = ck.cfg_int("hidden_size"), ck.cfg_int("intermediate_size")
    why = f"intermediate_size {ff}, hidden_size {H}"
    if fused:
        e.add(f"{p}mlp.gate_up_proj.weight", (2 * ff, H), f"2 x {why}")
    else:
        e.add(f"{p}mlp.gate_proj.weight", (ff, H), why)
        e.add(f"{p}mlp.up_proj.weight", (ff, H), why)
    e.add(f"{p}mlp.down_proj.weight", (H, ff), f"hidden_size {H}, intermediate_size {ff}")


def moe_mlp(e: Expect, p: str) -> None:
    """Router, expert-score bias, per-expert and shared-expert projections of a GLM-4.5+ MoE layer."""
    ck = e.ck
    H, E = ck.cfg_int("hidden_size"), ck.cfg_int("n_routed_experts")
    mff, ns = ck.cfg_int("moe_intermediate_size"), ck.cfg_int("n_shared_experts", default=0, low=0)
    e.add(f"{p}mlp.gate.weight", (E, H), f"n_routed_experts {E} x hidden_size {H}")
    e.norm(f"{p}mlp.gate.e_score_correction_bias", E, f"n_routed_experts {E}", required=False)
    why = f"moe_intermediate_size {mff}, hidden_size {H}"
    for x in range(E):
        e.add(f"{p}mlp.experts.{x}.gate_proj.weight", (mff, H), why)
        e.add(f"{p}mlp.experts.{x}.up_proj.weight", (mff, H), why)
        e.add(f"{p}mlp.experts.{x}.down_proj.weight", (H, mff), why)
    if ns:
        why = f"n_shared_experts {ns} x moe_intermediate_size {mff}, hidden_size {H}"
        e.add(f"{p}mlp.shared_experts.gate_proj.weight", (ns * mff, H), why)
        e.add(f"{p}mlp.shared_experts.up_proj.weight", (ns * mff, H), why)
        e.add(f"{p}mlp.shared_experts.down_proj.weight", (H, ns * mff), why)


def moe_or_dense(e: Expect, p: str, bid: int) -> None:
    if bid < e.ck.cfg_int("first_k_dense_replace", default=0, low=0):
        dense_mlp(e, p, fused=False)
    else:
        moe_mlp(e, p)


def nextn(e: Expect, p: str) -> None:
    """The NextN-only tensors of an MTP layer (GLM-4.5 also carried embed_tokens and shared_head.head)."""
    ck = e.ck
    H, V = ck.cfg_int("hidden_size"), ck.cfg_int("vocab_size")
    e.add(f"{p}eh_proj.weight", (H, 2 * H), f"hidden_size {H} x 2 hidden_size")
    for n in ("enorm", "hnorm", "shared_head.norm"):
        e.norm(f"{p}{n}.weight", H, f"hidden_size {H}")
    e.add(f"{p}embed_tokens.weight", (V, H), f"vocab_size {V} x hidden_size {H}", required=False)
    e.add(f"{p}shared_head.head.weight", (V, H), f"vocab_size {V} x hidden_size {H}", required=False)


def mla_dsa_attention(e: Expect, a: str) -> None:
    """GLM-5's MLA projections (q and kv LoRA) and the DSA lightning indexer; a = 'model.layers.N.self_attn.'."""
    ck = e.ck
    H, nh = ck.cfg_int("hidden_size"), ck.cfg_int("num_attention_heads")
    rope, nope, v = ck.cfg_int("qk_rope_head_dim"), ck.cfg_int("qk_nope_head_dim"), ck.cfg_int("v_head_dim")
    qr, kvr = ck.cfg_int("q_lora_rank"), ck.cfg_int("kv_lora_rank")
    ih, ihd = ck.cfg_int("index_n_heads"), ck.cfg_int("index_head_dim")
    e.add(f"{a}q_a_proj.weight", (qr, H), f"q_lora_rank {qr}, hidden_size {H}")
    e.norm(f"{a}q_a_layernorm.weight", qr, f"q_lora_rank {qr}")
    e.add(f"{a}q_b_proj.weight", (nh * (nope + rope), qr),
          f"num_attention_heads {nh} x (qk_nope_head_dim {nope} + qk_rope_head_dim {rope}), q_lora_rank {qr}")
    e.add(f"{a}kv_a_proj_with_mqa.weight", (kvr + rope, H),
          f"kv_lora_rank {kvr} + qk_rope_head_dim {rope}, hidden_size {H}")
    e.norm(f"{a}kv_a_layernorm.weight", kvr, f"kv_lora_rank {kvr}")
    e.add(f"{a}kv_b_proj.weight", (nh * (nope + v), kvr),
          f"num_attention_heads {nh} x (qk_nope_head_dim {nope} + v_head_dim {v}), kv_lora_rank {kvr}")
    e.add(f"{a}o_proj.weight", (H, nh * v), f"hidden_size {H}, num_attention_heads {nh} x v_head_dim {v}")
    e.add(f"{a}indexer.wq_b.weight", (ih * ihd, qr), f"index_n_heads {ih} x index_head_dim {ihd}, q_lora_rank {qr}")
    e.add(f"{a}indexer.wk.weight", (ihd, H), f"index_head_dim {ihd}, hidden_size {H}")
    e.norm(f"{a}indexer.k_norm.weight", ihd, f"index_head_dim {ihd}")
    e.norm(f"{a}indexer.k_norm.bias", ihd, f"index_head_dim {ihd}", required=False)
    e.add(f"{a}indexer.weights_proj.weight", (ih, H), f"index_n_heads {ih}, hidden_size {H}")


def hf_dense(e: Expect, n_layers: int, norms: tuple[str, ...]) -> None:
    """A dense HF GLM checkpoint (GlmForCausalLM, Glm4ForCausalLM): GQA attention, fused gate_up, `norms` per layer."""
    H = e.ck.cfg_int("hidden_size")
    hf_head(e, first=True)
    for b in range(n_layers):
        p = f"model.layers.{b}."
        for n in norms:
            e.norm(f"{p}{n}.weight", H, f"hidden_size {H}")
        gqa_attention(e, p)
        dense_mlp(e, p, fused=True)
    hf_head(e, first=False)


def chatglm_hub(e: Expect, n_layers: int, nkv: int) -> None:
    """THUDM/glm-4-9b-chat's own layout (ChatGLMModel): fused query_key_value and dense_h_to_4h."""
    ck = e.ck
    H, nh = ck.cfg_int("hidden_size"), ck.cfg_int("num_attention_heads")
    hd = ck.cfg_int("kv_channels", default=H // nh)
    V, ff = ck.cfg_int("padded_vocab_size", "vocab_size"), ck.cfg_int("ffn_hidden_size")
    t = "transformer."
    e.add(f"{t}embedding.word_embeddings.weight", (V, H), f"padded_vocab_size {V} x hidden_size {H}")
    qkv = f"(num_attention_heads {nh} + 2 x multi_query_group_num {nkv}) x kv_channels {hd}"
    for b in range(n_layers):
        p = f"{t}encoder.layers.{b}."
        e.norm(f"{p}input_layernorm.weight", H, f"hidden_size {H}")
        e.add(f"{p}self_attention.query_key_value.weight", ((nh + 2 * nkv) * hd, H), f"{qkv}, hidden_size {H}")
        e.norm(f"{p}self_attention.query_key_value.bias", (nh + 2 * nkv) * hd, qkv,
               required=ck.cfg("add_qkv_bias", default=False) is True)
        e.add(f"{p}self_attention.dense.weight", (H, nh * hd), f"hidden_size {H}, num_attention_heads {nh} x kv_channels {hd}")
        e.norm(f"{p}post_attention_layernorm.weight", H, f"hidden_size {H}")
        e.add(f"{p}mlp.dense_h_to_4h.weight", (2 * ff, H), f"2 x ffn_hidden_size {ff}, hidden_size {H}")
        e.add(f"{p}mlp.dense_4h_to_h.weight", (H, ff), f"hidden_size {H}, ffn_hidden_size {ff}")
    e.norm(f"{t}encoder.final_layernorm.weight", H, f"hidden_size {H}")
    e.add(f"{t}output_layer.weight", (V, H), f"padded_vocab_size {V} x hidden_size {H}")
