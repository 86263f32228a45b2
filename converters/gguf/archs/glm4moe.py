"""GGUF arch `glm4moe`: GLM-4.5, 4.5-Air, 4.6, 4.7 (Glm4MoeForCausalLM).

From llama.cpp's loader (src/models/glm4-moe.cpp): leading dense layers (first_k_dense_replace),
then MoE layers with a sigmoid router plus expert-score bias (exp_probs_b), routed experts stacked
into one 3-D tensor per layer, shared experts, optional q/k norms, a post-attention norm before the
FFN, NEOX rope on head_dim * partial_rotary_factor dims. The MTP/NextN block sits at layer index
num_hidden_layers (eh_proj, enorm, hnorm, shared_head) and is written only on request.
"""

from __future__ import annotations

from .. import expect
from ..arch import GlmArch, exp_probs_b, register, stack_experts
from .glm4 import write_gqa_hparams


def write_moe(arch: GlmArch, w) -> None:
    import gguf

    ck = arch.ck
    w.add_expert_count(ck.cfg_int("n_routed_experts"))
    w.add_expert_used_count(ck.cfg_int("num_experts_per_tok"))
    w.add_expert_feed_forward_length(ck.cfg_int("moe_intermediate_size"))
    w.add_expert_shared_count(ck.cfg_int("n_shared_experts", default=0, low=0))
    w.add_leading_dense_block_count(ck.cfg_int("first_k_dense_replace", default=0, low=0))
    w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    w.add_expert_weights_scale(ck.cfg_float("routed_scaling_factor", default=1.0, positive=True))
    w.add_expert_weights_norm(bool(ck.cfg("norm_topk_prob", default=False)))
    if (g := ck.cfg_int("n_group", default=None)) and g > 1:
        w.add_expert_group_count(int(g))
        w.add_expert_group_used_count(ck.cfg_int("topk_group"))


@register("Glm4MoeForCausalLM")
class Glm4Moe(GlmArch):
    gguf_arch = "glm4moe"
    pre_tokenizer = "glm4"
    skip = (r"rotary_emb\.inv_freq$",)

    def write_hparams(self, w) -> None:
        write_gqa_hparams(self, w)
        write_moe(self, w)

    def expected(self, e) -> None:
        expect.hf_head(e, first=True)
        for b in range(self.n_layers + self.n_mtp):
            self.expected_layer(e, b)
        expect.hf_head(e, first=False)

    def expected_layer(self, e, b: int) -> None:
        ck = self.ck
        H, nh = ck.cfg_int("hidden_size"), ck.cfg_int("num_attention_heads")
        hd = ck.cfg_int("head_dim", default=H // nh)
        p = f"model.layers.{b}."
        e.norm(f"{p}input_layernorm.weight", H, f"hidden_size {H}")
        e.norm(f"{p}post_attention_layernorm.weight", H, f"hidden_size {H}")
        expect.gqa_attention(e, p)
        qk_norm = ck.cfg("use_qk_norm", default=False) is True
        for n in ("q_norm", "k_norm"):
            e.norm(f"{p}self_attn.{n}.weight", hd, f"head_dim {hd}", required=qk_norm)
        expect.moe_or_dense(e, p, b)
        if b >= self.n_layers:
            expect.nextn(e, p)

    def special(self, name):
        if name.endswith("mlp.gate.e_score_correction_bias"):
            return [exp_probs_b(self, name)]
        return stack_experts(self, name, self.ck.cfg_int("n_routed_experts"))

    def plain(self, hf_name, gguf_name):
        t = super().plain(hf_name, gguf_name)
        t.keep_f32 = t.keep_f32 or ".ffn_gate_inp." in gguf_name  # the router stays exact
        return t
