"""GGUF arch `glm-dsa`: GLM-5 (GlmMoeDsaForCausalLM): MLA attention plus the DSA lightning indexer, GLM-4.5-style MoE.

From llama.cpp's loader (src/models/glm-dsa.cpp): MLA keys (q/kv LoRA ranks, key/value lengths
for the compressed and the MLA head sizes, one KV head), kv_b_proj split into attn_k_b (per
head, transposed) and attn_v_b, indexer head count / key length / top-k, interleaved (NORM)
rope on qk_rope_head_dim dims; MoE keys as glm4moe; MTP block at index num_hidden_layers.
"""

from __future__ import annotations

import re

from .. import expect
from ..arch import OutTensor, register
from ..reader import CheckpointError
from .glm4moe import Glm4Moe, write_moe


@register("GlmMoeDsaForCausalLM")
class GlmDsa(Glm4Moe):
    """glm4moe's MoE, experts, router and MTP handling; MLA attention and the indexer are what differ."""

    gguf_arch = "glm-dsa"

    def write_hparams(self, w) -> None:
        ck = self.ck
        rope, nope, v = ck.cfg_int("qk_rope_head_dim"), ck.cfg_int("qk_nope_head_dim"), ck.cfg_int("v_head_dim")
        kv_rank = ck.cfg_int("kv_lora_rank")
        # MLA runs as multi-query attention over the compressed KV: one KV head in llama.cpp's terms.
        self.write_common(w, ctx=ck.cfg_int("max_position_embeddings"), n_embd=ck.cfg_int("hidden_size"),
                          n_ff=ck.cfg_int("intermediate_size"), n_head=ck.cfg_int("num_attention_heads"), n_head_kv=1,
                          eps=ck.cfg_float("rms_norm_eps", default=1e-5, positive=True))
        w.add_vocab_size(ck.cfg_int("vocab_size"))
        w.add_q_lora_rank(ck.cfg_int("q_lora_rank"))
        w.add_kv_lora_rank(int(kv_rank))
        w.add_key_length(int(kv_rank + rope))
        w.add_value_length(int(kv_rank))
        w.add_key_length_mla(int(nope + rope))
        w.add_value_length_mla(int(v))
        w.add_rope_dimension_count(int(rope))
        w.add_rope_freq_base(ck.cfg_float("rope_theta", default=10000.0, positive=True))
        w.add_indexer_head_count(ck.cfg_int("index_n_heads"))
        w.add_indexer_key_length(ck.cfg_int("index_head_dim"))
        w.add_indexer_top_k(ck.cfg_int("index_topk"))
        write_moe(self, w)

    def expected_layer(self, e, b: int) -> None:
        """MLA attention with the DSA indexer, then glm4moe's dense or MoE FFN (and NextN at MTP layers)."""
        H = self.ck.cfg_int("hidden_size")
        p = f"model.layers.{b}."
        e.norm(f"{p}input_layernorm.weight", H, f"hidden_size {H}")
        expect.mla_dsa_attention(e, f"{p}self_attn.")
        e.norm(f"{p}post_attention_layernorm.weight", H, f"hidden_size {H}")
        expect.moe_or_dense(e, p, b)
        if b >= self.n_layers:
            expect.nextn(e, p)

    def special(self, name):
        m = re.match(r"model\.layers\.(\d+)\.self_attn\.kv_b_proj\.weight$", name)
        if m:
            return self.split_kv_b(int(m.group(1)), name)
        return super().special(name)

    def plain(self, hf_name, gguf_name):
        t = super().plain(hf_name, gguf_name)
        t.keep_f32 = t.keep_f32 or ".indexer.proj." in gguf_name  # the indexer's head weights stay exact too
        return t

    def split_kv_b(self, bid: int, name: str) -> list[OutTensor]:
        """kv_b_proj rows are per head [k_nope (nope rows); v (v rows)] x kv_lora_rank columns."""
        ck = self.ck
        n_head, nope, v = ck.cfg_int("num_attention_heads"), ck.cfg_int("qk_nope_head_dim"), ck.cfg_int("v_head_dim")
        rank = ck.cfg_int("kv_lora_rank")
        want = (n_head * (nope + v), rank)
        if ck.ref(name).shape != want:
            raise CheckpointError(
                f"{name} has shape {ck.ref(name).shape}, but {ck.dir / 'config.json'} implies {want} "
                f"(num_attention_heads {n_head} x (qk_nope_head_dim {nope} + v_head_dim {v}), kv_lora_rank {rank}); "
                f"config.json does not describe these weights: use the config.json that came with the checkpoint"
            )

        def k_b():
            for h in range(n_head):
                a = h * (nope + v)
                block = next(ck.blocks(name, (a, a + nope)))  # (nope, rank)
                yield block.T.copy()  # llama.cpp wants (rank, nope) per head

        def v_b():
            for h in range(n_head):
                a = h * (nope + v) + nope
                yield from ck.blocks(name, (a, a + v))

        return [OutTensor(f"blk.{bid}.attn_k_b.weight", (n_head, rank, nope), k_b),
                OutTensor(f"blk.{bid}.attn_v_b.weight", (n_head, v, rank), v_b)]

