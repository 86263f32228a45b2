"""GGUF arch `glm4`: GLM-4-0414 (Glm4ForCausalLM), e.g. THUDM/GLM-4-9B-0414, GLM-4-32B-0414.

From llama.cpp's loader (src/models/glm4.cpp): separate q/k/v with bias, fused ffn_up of width
2*n_ff, a post-attention norm and a post-FFN norm ("sandwich" norms), NORM (interleaved) rope on
head_dim * partial_rotary_factor (0.5) dimensions.
"""

from __future__ import annotations

from .. import expect
from ..arch import GlmArch, register


@register("Glm4ForCausalLM")
class Glm4(GlmArch):
    gguf_arch = "glm4"
    pre_tokenizer = "glm4"
    skip = (r"rotary_emb\.inv_freq$",)

    def write_hparams(self, w) -> None:
        write_gqa_hparams(self, w)

    def expected(self, e) -> None:
        expect.hf_dense(e, self.n_layers, ("input_layernorm", "post_self_attn_layernorm", "post_attention_layernorm",
                                           "post_mlp_layernorm"))


def write_gqa_hparams(arch: GlmArch, w) -> None:
    """The HF-format GLM-4 attention block (GQA, partial rotary): shared by glm4 and glm4moe."""
    ck = arch.ck
    n_embd, n_head = ck.cfg_int("hidden_size"), ck.cfg_int("num_attention_heads")
    head_dim = ck.cfg_int("head_dim", default=n_embd // n_head)
    arch.write_common(w, ctx=ck.cfg_int("max_position_embeddings"), n_embd=n_embd, n_ff=ck.cfg_int("intermediate_size"),
                      n_head=n_head, n_head_kv=ck.cfg_int("num_key_value_heads", default=n_head),
                      eps=ck.cfg_float("rms_norm_eps", default=1e-5, positive=True))
    w.add_key_length(int(head_dim))
    w.add_value_length(int(head_dim))
    w.add_rope_dimension_count(int(head_dim * ck.cfg_float("partial_rotary_factor", default=0.5, positive=True)))
    w.add_rope_freq_base(ck.cfg_float("rope_theta", default=10000.0, positive=True))
