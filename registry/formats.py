"""Checkpoint formats as data: the quantization names of each, the engines that load it and the flags they
need, bits per weight for the estimates, and which engines take image input.

A new format or quantization is a row here, not a branch in engine code: the schema validates specs against
these tables, the engines read their flags from them, the estimates their bits per weight.
Pure data, no imports: the CLI reads it at start-up.

Sources:
  [vllm]  vLLM's --quantization methods (vllm/model_executor/layers/quantization): compressed-tensors, fp8,
          awq_marlin, gptq_marlin, modelopt (FP8), modelopt_fp4 (NVFP4); SGLang takes the same names.
  [ggml]  ggml block layouts (bytes per block / weights per block): Q4_0 18/32, Q4_1 20/32, Q5_0 22/32,
          Q5_1 24/32, Q8_0 34/32, Q6_K 210/256, IQ4_NL 18/32, IQ4_XS 136/256, IQ3_S 110/256, IQ3_XXS 98/256,
          IQ2_S 82/256, IQ2_XS 74/256, IQ2_XXS 66/256, IQ1_M 56/256, IQ1_S 50/256, TQ1_0 54/256, MXFP4 17/32.
  [quant] llama.cpp tools/quantize QUANT_OPTIONS (the mixes): IQ2_M 2.7 bpw, IQ3_XS 3.3, IQ3_M 3.66; K-quant mixes
          from its README's Llama-3-8B table (Q2_K 3.00 ... Q5_K_M 5.70), as registry/estimate.py had them.
  [bart]  bartowski's GGUF cards: "_L" quants are the K-quant "using Q8_0 for embed and output weights";
          unsloth's "UD-" (Dynamic 2.0) builds raise chosen layers above their base type. Both are counted
          at their base type's bits here: an under-estimate by the embedding/output share.
  [mlx]   mlx-lm's quantization: affine, group size 64 by default, an fp16 scale and bias per group
          (bits + 32/64 per weight); mxfp4 is 4-bit values with an 8-bit scale per 32.
"""

from __future__ import annotations

import re

# --- GGUF --------------------------------------------------------------------------------------

# llama.cpp's type names with their bits per weight (whole-model figures for the K-quant mixes).
GGUF_BASE_BPW: dict[str, float] = {
    "F32": 32.0, "F16": 16.0, "BF16": 16.0, "FP16": 16.0,                                    # [ggml]
    "Q8_0": 8.5, "Q6_K": 6.5625, "Q5_1": 6.0, "Q5_0": 5.5, "Q4_1": 5.0, "Q4_0": 4.5,        # [ggml]
    "Q5_K_M": 5.70, "Q5_K_S": 5.57, "Q4_K_M": 4.89, "Q4_K_S": 4.67,                          # [quant]
    "Q3_K_L": 4.27, "Q3_K_M": 3.91, "Q3_K_S": 3.50, "Q2_K": 3.00, "Q2_K_S": 2.95,  # [quant] (2.96 GB of 8.03B)
    "IQ4_NL": 4.5, "IQ4_XS": 4.25, "IQ3_M": 3.66, "IQ3_S": 3.4375, "IQ3_XS": 3.3,            # [ggml], [quant]
    "IQ3_XXS": 3.0625, "IQ2_M": 2.7, "IQ2_S": 2.5625, "IQ2_XS": 2.3125, "IQ2_XXS": 2.0625,   # [ggml], [quant]
    "IQ1_M": 1.75, "IQ1_S": 1.5625, "TQ1_0": 1.6875, "MXFP4_MOE": 4.25,                      # [ggml]
}
# The short K-quant names that hubs and seed 004 use stand for llama.cpp's _M variants.
GGUF_ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M", "FP16": "F16",
                "bf16": "BF16"}  # bartowski's file names spell it in lower case (THUDM_GLM-4-9B-0414-bf16.gguf)
# Named builds over a base type [bart]: bartowski's _L (Q8_0 embeddings/output), unsloth's _XL and UD- mixes.
_GGUF_VARIANTS = {
    "Q2_K_L": "Q2_K", "Q3_K_XL": "Q3_K_L", "Q4_K_L": "Q4_K_M", "Q5_K_L": "Q5_K_M", "Q6_K_L": "Q6_K",
    "Q2_K_XL": "Q2_K", "Q4_K_XL": "Q4_K_M", "Q5_K_XL": "Q5_K_M", "Q6_K_XL": "Q6_K", "Q8_K_XL": "Q8_0",
}
_UD = "UD-"
GGUF_QUANTS: tuple[str, ...] = (
    "Q2_K", "Q2_K_S", "Q2_K_L", "Q2_K_XL", "IQ1_S", "IQ1_M", "TQ1_0", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M",
    "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "Q3_K_S", "Q3_K", "Q3_K_M", "Q3_K_L", "Q3_K_XL",
    "IQ4_XS", "IQ4_NL", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K", "Q4_K_M", "Q4_K_L", "Q4_K_XL", "MXFP4_MOE",
    "Q5_0", "Q5_1", "Q5_K_S", "Q5_K", "Q5_K_M", "Q5_K_L", "Q5_K_XL", "Q6_K", "Q6_K_L", "Q6_K_XL",
    "Q8_0", "Q8_K_XL", "BF16", "bf16", "FP16", "F16", "F32",
)
# unsloth's Dynamic 2.0 names: "UD-" before a llama.cpp type or an _XL mix (UD-Q4_K_XL, UD-IQ1_S, UD-Q6_K ...).
_FLOATS = ("BF16", "bf16", "FP16", "F16", "F32", "Q3_K", "Q4_K", "Q5_K")  # no UD- form of floats or short aliases
GGUF_UD_QUANTS: tuple[str, ...] = tuple(_UD + q for q in GGUF_QUANTS if q not in _FLOATS)


def gguf_base(quant: str) -> str:
    """The llama.cpp type a GGUF build's name stands on (UD-Q4_K_XL -> Q4_K_M, Q6_K_L -> Q6_K, Q4_K -> Q4_K_M)."""
    q = quant[len(_UD):] if quant.startswith(_UD) else quant
    q = _GGUF_VARIANTS.get(q, q)
    return GGUF_ALIASES.get(q, q)


# --- every format ------------------------------------------------------------------------------

# format -> its quantization names, the engines that load it with the flags each needs, bits per weight.
# "flags" are added to a generic server command (a spec's launch profile wins); a quantization can
# override its format's flags under "quant_flags".
FORMATS: dict[str, dict] = {
    "pytorch": {
        "title": "PyTorch / safetensors (full precision)",
        "quantizations": ("none", "4-bit", "8-bit"),
        "engines": {"vllm": {}, "sglang": {}, "transformers": {}},
        "bpw": {"none": 16.0, "8-bit": 8.0, "4-bit": 4.5},
    },
    "ggufv2": {
        "title": "GGUF v2+ (llama.cpp)",
        "quantizations": GGUF_QUANTS + GGUF_UD_QUANTS,
        "engines": {"llama.cpp": {}},
        "bpw": {},  # from gguf_base() and GGUF_BASE_BPW
    },
    "compressed-tensors": {
        "title": "compressed-tensors (llm-compressor)",
        "quantizations": ("FP8_DYNAMIC", "FP8", "FP8_BLOCK", "W8A8", "W8A16", "W4A16", "W4A16_GS32", "W4A16_GS64",
                          "W4A16_GS128", "AWQ", "NVFP4", "NVFP4A16", "MXFP4"),
        "engines": {"vllm": {"--quantization": "compressed-tensors"}, "sglang": {"--quantization": "compressed-tensors"}},
        "bpw": {"FP8_DYNAMIC": 8.0, "FP8": 8.0, "FP8_BLOCK": 8.0 + 32 / 128**2, "W8A8": 8.0, "W8A16": 8.0,
                "W4A16": 4 + 16 / 128, "W4A16_GS32": 4 + 16 / 32, "W4A16_GS64": 4 + 16 / 64,
                "W4A16_GS128": 4 + 16 / 128, "AWQ": 4 + 16 / 128 + 4 / 128,  # + packed zero points
                "NVFP4": 4 + 8 / 16, "NVFP4A16": 4 + 8 / 16, "MXFP4": 4 + 8 / 32},
    },
    "fp8": {
        # Z.ai's own FP8 releases (GLM-5.x-FP8): the engines read the method from config.json's
        # quantization_config, so no flag is passed (a --quantization that disagrees with it is an error).
        "title": "FP8 (the publisher's FP8 checkpoint, method from its config.json)",
        "quantizations": ("FP8",),
        "engines": {"vllm": {}, "sglang": {}},
        "bpw": {"FP8": 8.0 + 32 / 128**2},  # a float32 scale per 128 x 128 block
    },
    "awq": {
        "title": "AWQ (AutoAWQ layout)",
        "quantizations": ("Int4", "AWQ-FP16Mix"),
        "engines": {"vllm": {"--quantization": "awq_marlin"}, "sglang": {"--quantization": "awq_marlin"}},
        # AWQ-FP16Mix: QuantTrio's build that keeps part of the model in FP16 (Xinference names it so); no
        # breakdown is published: 73.1 GB on disk for GLM-4.5-Air's 106B, as a public deployment note read it off
        # the Hugging Face listing, is 5.5 bits a weight.
        "bpw": {"Int4": 4 + 16 / 128 + 4 / 128, "AWQ-FP16Mix": 73.1e9 * 8 / 106e9},
    },
    "gptq": {
        "title": "GPTQ (GPTQModel / AutoGPTQ layout)",
        "quantizations": ("Int4", "Int8", "Int4-Int8Mix"),
        "engines": {"vllm": {"--quantization": "gptq_marlin"}, "sglang": {"--quantization": "gptq_marlin"}},
        # Int4-Int8Mix: QuantTrio's builds keep attention and shared experts at 8 bits, routed experts at 4.
        "bpw": {"Int4": 4 + 16 / 128, "Int8": 8 + 16 / 128, "Int4-Int8Mix": 4.5 + 16 / 128},
    },
    "modelopt": {
        "title": "NVIDIA ModelOpt",
        "quantizations": ("NVFP4", "FP8"),
        "engines": {"vllm": {"--quantization": "modelopt_fp4"}, "sglang": {"--quantization": "modelopt_fp4"}},
        "quant_flags": {"FP8": {"--quantization": "modelopt"}},
        "bpw": {"NVFP4": 4 + 8 / 16, "FP8": 8.0},
    },
    "mlx": {
        "title": "MLX (Apple silicon, mlx-lm)",
        "quantizations": ("2bit", "3bit", "4bit", "5bit", "6bit", "8bit", "8bit-MXFP8", "4bit-DWQ", "mxfp4", "bf16"),
        "engines": {"mlx-lm": {}},
        "bpw": {"2bit": 2.5, "3bit": 3.5, "4bit": 4.5, "5bit": 5.5, "6bit": 6.5, "8bit": 8.5, "8bit-MXFP8": 8 + 8 / 32, "4bit-DWQ": 4.5,
                "mxfp4": 4 + 8 / 32, "bf16": 16.0},  # [mlx]
    },
}

QUANTS_BY_FORMAT: dict[str, tuple[str, ...]] = {f: d["quantizations"] for f, d in FORMATS.items()}

# Input modalities each engine takes here (the family says what the model takes). llama-cpp-python's server
# needs a separate projector file and chat handler for images, and mlx-lm is text-only (mlx-vlm is the
# vision package): text here.
ENGINE_MODALITIES: dict[str, tuple[str, ...]] = {
    "vllm": ("text", "image", "video"), "sglang": ("text", "image", "video"),
    "transformers": ("text", "image", "video"), "llama.cpp": ("text",), "mlx-lm": ("text",),
}

_GS = re.compile(r"_GS(\d+)$")


def loaders(fmt: str) -> list[str]:
    """The engines that load `fmt`."""
    return list(FORMATS[fmt]["engines"])


def engine_flags(fmt: str, quant: str, engine: str) -> dict:
    """The flags `engine` needs for a `fmt` build of `quant` (e.g. vLLM's --quantization method)."""
    d = FORMATS.get(fmt, {})
    flags = dict(d.get("engines", {}).get(engine, {}))
    if engine in ("vllm", "sglang"):
        flags.update(d.get("quant_flags", {}).get(quant, {}))
    return flags


def bits_per_weight(fmt: str, quant: str) -> float | None:
    """Bits per weight of a `fmt` build of `quant`, or None when the table has no figure."""
    if fmt == "ggufv2":
        return GGUF_BASE_BPW.get(gguf_base(quant))
    return FORMATS.get(fmt, {}).get("bpw", {}).get(quant)
