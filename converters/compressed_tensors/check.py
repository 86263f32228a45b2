"""Quality check: load a compressed-tensors build back, decompressed, and compare with its source.

The report has the shared format of converters.quality (which does the maths), with "source" as
the reference: KL(source || build) of next-token distributions over a fixed token sequence, and
the share of positions whose argmax agrees.

Loading: Transformers 5 fuses MoE experts into 3-D tensors while the build keeps vLLM's per-expert
Linear layout, so we build the model from its config, linearize the experts the way llm-compressor
did before saving, attach the quantization config, load the compressed tensors by name (every
tensor must be used and none missing) and let compressed-tensors decompress them.
"""

from __future__ import annotations

from pathlib import Path

from registry.errors import RegistryError

from ..quality import compare_logits, repeat_to

# Fixed text for the comparison (English and Chinese, as the GLM models are used).
FIXED_TEXT = (
    "Quantization stores the weights of a language model in fewer bits. A good build keeps the "
    "next-token distribution close to the original model on ordinary text, code and dialogue. "
    "def add(a, b):\n    return a + b\n"
    "量化把语言模型的权重存成更少的比特，好的量化结果和原始模型的预测几乎一样。"
)


def fixed_tokens(tokenizer, n: int) -> list[int]:
    ids = tokenizer(FIXED_TEXT, add_special_tokens=False)["input_ids"]
    if not ids:
        raise RegistryError("the tokenizer turns the check text into no tokens")
    return repeat_to(ids, n)


def load_decompressed(path: Path, dtype=None):
    """The build at `path` as a plain Transformers model with dequantized weights."""
    import glob

    import torch
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig, apply_quantization_config
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from .moe import linearize

    cfg = AutoConfig.from_pretrained(path)
    qdict = getattr(cfg, "quantization_config", None)
    if not qdict:
        raise RegistryError(f"{path}/config.json has no quantization_config: not a compressed-tensors build")
    qcfg = QuantizationConfig.model_validate(qdict)
    del cfg.quantization_config
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    linearize(model)
    apply_quantization_config(model, qcfg, show_progress=False)
    # Turn the targeted modules into their compressed layout so the saved tensors fit by name.
    ModelCompressor(quantization_config=qcfg).compress_model(model)
    state: dict = {}
    for f in sorted(glob.glob(str(path / "*.safetensors"))):
        state.update(load_file(f))
    res = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in res.missing_keys if not k.endswith("rotary_emb.inv_freq")]
    if missing or res.unexpected_keys:
        raise RegistryError(
            f"{path}: tensors do not fit the model: missing {missing[:5]}, unexpected {res.unexpected_keys[:5]}"
        )
    ModelCompressor(quantization_config=qcfg).decompress_model(model)
    model = model.to(dtype or torch.float32)
    model.eval()
    return model


def compare(source: Path, build: Path, tokens: int = 128) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source)
    ids = torch.tensor([fixed_tokens(tok, tokens)])
    ref = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    with torch.no_grad():
        ref_logits = ref(ids).logits[0].double().numpy()
    del ref
    got = load_decompressed(build)
    with torch.no_grad():
        got_logits = got(ids).logits[0].double().numpy()
    return compare_logits(ref_logits, got_logits, "source")
