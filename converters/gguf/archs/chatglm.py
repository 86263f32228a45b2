"""GGUF arch `chatglm`: THUDM/glm-4-9b-chat(-1m) (ChatGLMModel, hub code) and glm-4-9b-chat-hf (GlmForCausalLM).

Facts from llama.cpp's loader (src/models/chatglm.cpp) and its reference converter: fused
attn_qkv (separate q/k/v also accepted), fused ffn_up = [gate; up] of width 2*n_ff, RMS norm,
rotary on the first half of each head (rope dimension = head_dim / 2, interleaved pairs, which
is llama.cpp's NORM rope), rope base = 10000 * rope_ratio.
"""

from __future__ import annotations

from .. import expect
from ..arch import GlmArch, register


@register("ChatGLMModel", "ChatGLMForConditionalGeneration", "GlmForCausalLM")
class ChatGLM(GlmArch):
    gguf_arch = "chatglm"
    skip = (r"rotary_pos_emb\.inv_freq$", r"rotary_emb\.inv_freq$")

    def __init__(self, ck, keep_mtp=False):
        self.hub_layout = "transformer.embedding.word_embeddings.weight" in ck.tensors
        # gguf-py's names for the hub layout are llama.cpp's converter's: `transformer.` stripped
        self.hf_prefix = "transformer." if self.hub_layout else ""
        super().__init__(ck, keep_mtp)

    def n_kv(self) -> int:
        ck = self.ck
        if self.hub_layout:
            mqa = ck.cfg("multi_query_attention", default=True) is not False
            return ck.cfg_int("multi_query_group_num") if mqa else ck.cfg_int("num_attention_heads")
        return ck.cfg_int("num_key_value_heads", default=ck.cfg_int("num_attention_heads"))

    def expected(self, e) -> None:
        if self.hub_layout:
            expect.chatglm_hub(e, self.n_layers, self.n_kv())
        else:  # GlmForCausalLM: the HF names, fused gate_up
            expect.hf_dense(e, self.n_layers, ("input_layernorm", "post_attention_layernorm"))

    @property
    def pre_tokenizer(self) -> str:
        # llama.cpp's names: chatglm-bpe for the tiktoken-file hub release, glm4 for HF tokenizer.json.
        return "chatglm-bpe" if self.hub_layout else "glm4"

    def write_hparams(self, w) -> None:
        ck = self.ck
        n_embd = ck.cfg_int("hidden_size")
        n_head = ck.cfg_int("num_attention_heads")
        head_dim = ck.cfg_int("kv_channels", "head_dim", default=n_embd // n_head)
        if self.hub_layout:
            ctx = ck.cfg_int("seq_length")
            n_ff = ck.cfg_int("ffn_hidden_size")
            n_kv = self.n_kv()
            eps = ck.cfg_float("layernorm_epsilon", default=1e-5, positive=True)
            base = 10000.0 * ck.cfg_float("rope_ratio", default=1.0, positive=True)
            partial = 0.5
        else:
            ctx = ck.cfg_int("max_position_embeddings")
            n_ff = ck.cfg_int("intermediate_size")
            n_kv = self.n_kv()
            eps = ck.cfg_float("rms_norm_eps", default=1e-5, positive=True)
            base = ck.cfg_float("rope_theta", default=10000.0, positive=True)
            partial = ck.cfg_float("partial_rotary_factor", default=0.5, positive=True)
        self.write_common(w, ctx=ctx, n_embd=n_embd, n_ff=n_ff, n_head=n_head, n_head_kv=n_kv, eps=eps)
        w.add_key_length(int(head_dim))
        w.add_value_length(int(head_dim))
        w.add_rope_dimension_count(int(head_dim * partial))
        w.add_rope_freq_base(base)

    def special(self, name):
        # GlmForCausalLM splits ChatGLM's query_key_value; fuse it back so both layouts give the same GGUF.
        if self.hub_layout:
            return None
        for part in ("weight", "bias"):
            for proj in ("q", "k", "v"):
                if name.endswith(f".self_attn.{proj}_proj.{part}"):
                    if proj != "q":
                        return []
                    stem = name[: -len(f"q_proj.{part}")]
                    bid = int(name.split(".")[2])
                    return [self.concat_rows(f"blk.{bid}.attn_qkv.{part}", [f"{stem}{p}_proj.{part}" for p in "qkv"],
                                             keep_f32=part == "bias")]
        return None
