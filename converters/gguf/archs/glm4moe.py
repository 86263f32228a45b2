"""GGUF arch `glm4moe`: GLM-4.5, 4.5-Air, 4.6, 4.7 (Glm4MoeForCausalLM).

From llama.cpp's loader (src/models/glm4-moe.cpp): leading dense layers (first_k_dense_replace),
then MoE layers with a sigmoid router plus expert-score bias (exp_probs_b), routed experts stacked
into one 3-D tensor per layer, shared experts, optional q/k norms, a post-attention norm before the
FFN, NEOX rope on head_dim * partial_rotary_factor dims. The MTP/NextN block sits at layer index
num_hidden_layers (eh_proj, enorm, hnorm, shared_head) and is written only on request.
"""

from __future__ import annotations

from ..arch import HF_COMMON, GlmArch, exp_probs_b, register, stack_experts
from .glm4 import write_gqa_hparams

MOE_RENAMES = [
    (r"model\.layers\.(\d+)\.mlp\.gate_proj", "FFN_GATE"),
    (r"model\.layers\.(\d+)\.mlp\.up_proj", "FFN_UP"),
    (r"model\.layers\.(\d+)\.mlp\.gate", "FFN_GATE_INP"),
    (r"model\.layers\.(\d+)\.mlp\.shared_experts\.gate_proj", "FFN_GATE_SHEXP"),
    (r"model\.layers\.(\d+)\.mlp\.shared_experts\.up_proj", "FFN_UP_SHEXP"),
    (r"model\.layers\.(\d+)\.mlp\.shared_experts\.down_proj", "FFN_DOWN_SHEXP"),
    (r"model\.layers\.(\d+)\.eh_proj", "NEXTN_EH_PROJ"),
    (r"model\.layers\.(\d+)\.enorm", "NEXTN_ENORM"),
    (r"model\.layers\.(\d+)\.hnorm", "NEXTN_HNORM"),
    (r"model\.layers\.(\d+)\.shared_head\.head", "NEXTN_SHARED_HEAD_HEAD"),
    (r"model\.layers\.(\d+)\.shared_head\.norm", "NEXTN_SHARED_HEAD_NORM"),
    (r"model\.layers\.(\d+)\.embed_tokens", "NEXTN_EMBED_TOKENS"),
]


def write_moe(arch: GlmArch, w) -> None:
    import gguf

    ck = arch.ck
    w.add_expert_count(int(ck.cfg("n_routed_experts")))
    w.add_expert_used_count(int(ck.cfg("num_experts_per_tok")))
    w.add_expert_feed_forward_length(int(ck.cfg("moe_intermediate_size")))
    w.add_expert_shared_count(int(ck.cfg("n_shared_experts", default=0)))
    w.add_leading_dense_block_count(int(ck.cfg("first_k_dense_replace", default=0)))
    w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    w.add_expert_weights_scale(float(ck.cfg("routed_scaling_factor", default=1.0)))
    w.add_expert_weights_norm(bool(ck.cfg("norm_topk_prob", default=False)))
    if (g := ck.cfg("n_group", default=None)) and g > 1:
        w.add_expert_group_count(int(g))
        w.add_expert_group_used_count(int(ck.cfg("topk_group")))


@register("Glm4MoeForCausalLM")
class Glm4Moe(GlmArch):
    gguf_arch = "glm4moe"
    pre_tokenizer = "glm4"
    skip = (r"rotary_emb\.inv_freq$",)
    renames = HF_COMMON + MOE_RENAMES + [
        (r"model\.layers\.(\d+)\.post_attention_layernorm", "ATTN_POST_NORM"),
        (r"model\.layers\.(\d+)\.self_attn\.q_norm", "ATTN_Q_NORM"),
        (r"model\.layers\.(\d+)\.self_attn\.k_norm", "ATTN_K_NORM"),
    ]

    def write_hparams(self, w) -> None:
        write_gqa_hparams(self, w)
        write_moe(self, w)

    def special(self, name):
        if name.endswith("mlp.gate.e_score_correction_bias"):
            return [exp_probs_b(self, name)]
        return stack_experts(self, name, int(self.ck.cfg("n_routed_experts")))

    def plain(self, hf_name, gguf_name):
        t = super().plain(hf_name, gguf_name)
        t.keep_f32 = t.keep_f32 or ".ffn_gate_inp." in gguf_name  # the router stays exact
        return t
