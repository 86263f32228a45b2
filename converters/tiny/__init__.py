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
  ``_hub_config``; generation_config.json; tokenizer files (see converters/tiny/tokenizer.py).

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

Modules: config (config.json and options), model (the transformers models and state dicts), write (the
files), tokenizer (the small GLM-style tokenizer).
"""

from __future__ import annotations

from .config import ARCHS, TinyCheckpointError, _hub_config
from .model import build_model, chatglm_state_dict
from .write import build_checkpoint, skew_norms

__all__ = ["ARCHS", "TinyCheckpointError", "_hub_config", "build_checkpoint", "build_model", "chatglm_state_dict",
           "skew_norms"]
