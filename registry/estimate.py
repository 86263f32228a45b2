"""Memory estimates from the architecture and the quantization (no files needed).

Weights: parameters x bits per weight. KV cache per token: GQA keeps K and V for every KV head
(2 x layers x kv_heads x head_dim x bytes); MLA keeps one compressed latent plus the rope key
(layers x (kv_lora_rank + qk_rope_head_dim) x bytes); DSA adds its indexer's key per token.
The launcher refines these (exact GGUF sizes from the file header, engine overheads).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RegistryError

# Bits per weight, block layouts of ggml's quant types (scale + data per 256- or 32-weight block).
_GGML_BPW = {
    "F32": 32.0, "F16": 16.0, "BF16": 16.0, "Q8_0": 8.5, "Q6_K": 6.5625, "Q5_K": 5.5, "Q4_K": 4.5,
    "Q3_K": 3.4375, "Q2_K": 2.625, "IQ4_NL": 4.5, "IQ4_XS": 4.25, "IQ3_S": 3.4375, "IQ3_XXS": 3.0625,
}
# The K-quant mixes keep some tensors (attn_v, ffn_down, output) at a higher type; their whole-model
# bits per weight, from llama.cpp's quantize table (examples/quantize/README.md, Llama-3-8B row).
GGUF_BPW = {
    **{k: v for k, v in _GGML_BPW.items() if k not in ("Q3_K", "Q4_K", "Q5_K")},
    "Q2_K": 3.00, "Q3_K_S": 3.50, "Q3_K_M": 3.91, "Q3_K_L": 4.27, "Q4_K_S": 4.67, "Q4_K_M": 4.89,
    "Q5_K_S": 5.57, "Q5_K_M": 5.70, "IQ3_XS": 3.3, "IQ3_M": 3.66,
}
# Other formats: weight bits plus the per-group scale (fp16 per group of G: 16/G bits).
OTHER_BPW = {
    ("pytorch", "none"): 16.0, ("pytorch", "8-bit"): 8.0, ("pytorch", "4-bit"): 4.5,
    ("compressed-tensors", "FP8_DYNAMIC"): 8.0, ("compressed-tensors", "FP8"): 8.0,
    ("compressed-tensors", "W8A8"): 8.0, ("compressed-tensors", "W8A16"): 8.0,
    ("compressed-tensors", "W4A16"): 4 + 16 / 128, ("compressed-tensors", "W4A16_GS32"): 4 + 16 / 32,
    ("compressed-tensors", "W4A16_GS64"): 4 + 16 / 64, ("compressed-tensors", "W4A16_GS128"): 4 + 16 / 128,
    ("compressed-tensors", "AWQ"): 4 + 16 / 128 + 4 / 128,  # + packed zero points
    # NVFP4: 4-bit values, an fp8 scale per 16 weights
    ("compressed-tensors", "NVFP4"): 4 + 8 / 16, ("compressed-tensors", "NVFP4A16"): 4 + 8 / 16,
    ("modelopt", "NVFP4"): 4 + 8 / 16, ("modelopt", "FP8"): 8.0,
    ("awq", "Int4"): 4 + 16 / 128 + 4 / 128, ("gptq", "Int4"): 4 + 16 / 128, ("gptq", "Int8"): 8 + 16 / 128,
}

KV_BYTES = {"f16": 2, "bf16": 2, "auto": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "q8_0": 1.0625, "f32": 4}


def bits_per_weight(fmt: str, quant: str) -> float:
    from .schema import GGUF_ALIASES

    if fmt == "ggufv2":
        q = GGUF_ALIASES.get(quant, quant)
        if q in GGUF_BPW:
            return GGUF_BPW[q]
    elif (fmt, quant) in OTHER_BPW:
        return OTHER_BPW[(fmt, quant)]
    raise RegistryError(f"no bits-per-weight figure for {fmt} {quant}; add it to registry/estimate.py")


def weights_bytes(params_b: float, fmt: str, quant: str) -> int:
    """Bytes of weights for params_b billion parameters in this format and quantization."""
    return int(params_b * 1e9 * bits_per_weight(fmt, quant) / 8)


def kv_bytes_per_token(arch, kv_dtype: str = "f16") -> float:
    """KV cache bytes per token of context, all layers (the MTP layer keeps no cache here)."""
    b = KV_BYTES.get(kv_dtype)
    if b is None:
        raise RegistryError(f"unknown KV cache dtype {kv_dtype!r}; use one of: {', '.join(KV_BYTES)}")
    if arch.attention == "gqa":
        kv_heads = arch.kv_heads or arch.attention_heads
        head_dim = arch.head_dim or arch.hidden_size // arch.attention_heads
        return 2 * arch.layers * kv_heads * head_dim * b
    per_layer = (arch.kv_lora_rank or 0) + (arch.qk_rope_head_dim or 0)
    if arch.attention == "dsa":
        per_layer += arch.indexer_head_dim or 0
    return arch.layers * per_layer * b


@dataclass
class Estimate:
    weights: int
    kv_cache: int
    context: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache

    def to_dict(self) -> dict:
        return {"weights_bytes": self.weights, "kv_cache_bytes": self.kv_cache, "context": self.context,
                "total_bytes": self.total}


def estimate(family, spec, quant: str, context: int | None = None, kv_dtype: str = "f16") -> Estimate:
    """Weights of this build plus the KV cache for `context` tokens (default: the family's full context)."""
    ctx = context or family.context_length
    w = weights_bytes(family.architecture.total_params_b, spec.format, quant)
    kv = int(kv_bytes_per_token(family.architecture, kv_dtype) * ctx)
    return Estimate(weights=w, kv_cache=kv, context=ctx)
