"""AWQ smoothing pairs for GLM layouts that llm-compressor 0.14 does not map correctly.

These describe Transformers' module layouts (class names), not any model's sizes: which norm or
projection feeds which Linear layers, so AWQ can move scale between them.
- GlmForCausalLM / Glm4ForCausalLM fuse gate and up into `mlp.gate_up_proj`; llm-compressor's
  defaults look for separate gate_proj/up_proj and fail.
- Glm4MoeForCausalLM: llm-compressor maps post_attention_layernorm onto the router and experts,
  which matches nothing on the leading dense layers (first_k_dense_replace) and aborts; we leave
  that norm unsmoothed and smooth attention and each expert's up->down instead.
Other classes use llm-compressor's own registry (None here).
"""

from __future__ import annotations

from registry.errors import RegistryError

_ATTN = [("re:.*input_layernorm$", ["re:.*q_proj$", "re:.*k_proj$", "re:.*v_proj$"]),
         ("re:.*v_proj$", ["re:.*o_proj$"])]

_TABLE: dict[str, list[tuple[str, list[str]]]] = {
    "GlmForCausalLM": _ATTN + [("re:.*post_attention_layernorm$", ["re:.*gate_up_proj$"])],
    "Glm4ForCausalLM": _ATTN + [("re:.*post_attention_layernorm$", ["re:.*gate_up_proj$"])],
    "Glm4MoeForCausalLM": _ATTN + [("re:.*up_proj$", ["re:.*down_proj$"])],
}


def mappings_for(arch: str) -> list[tuple[str, list[str]]] | None:
    """Our pairs for `arch`, None to use llm-compressor's registry; error if neither covers it."""
    if arch in _TABLE:
        return _TABLE[arch]
    from llmcompressor.modifiers.transform.awq.mappings import AWQ_MAPPING_REGISTRY

    if arch in AWQ_MAPPING_REGISTRY:
        return None
    raise RegistryError(
        f"the AWQ recipe does not cover {arch}: no smoothing mappings for it; use --method rtn "
        "(round-to-nearest W4A16) or FP8_DYNAMIC"
    )


def as_objects(pairs: list[tuple[str, list[str]]] | None):
    if pairs is None:
        return None
    from llmcompressor.modifiers.transform.awq.mappings import AWQMapping

    return [AWQMapping(smooth, list(balance)) for smooth, balance in pairs]
