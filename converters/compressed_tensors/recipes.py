"""llm-compressor recipes, one function per scheme, built from the spec's `recipe:` data.

A recipe here is plain data (JSON-able): it is what the artifact records and what `registry show`
prints. `modifiers()` turns it into llm-compressor modifier objects at the last moment, so this
module imports nothing heavy. Model facts (ignore lists, targets, group sizes, calibration sets)
come from the spec; the defaults below are the schemes' own conventions, not facts about a model.
"""

from __future__ import annotations

from typing import Any

from registry.errors import RegistryError
from registry.schema import GS_RE, Family, Recipe

# Schemes this converter builds, by the registry's quantization name.
SUPPORTED = ("FP8_DYNAMIC", "FP8_BLOCK", "W4A16_GS32", "W4A16_GS64", "W4A16_GS128", "AWQ", "NVFP4", "NVFP4A16")
METHODS = ("awq", "gptq", "rtn")  # W4A16: AWQ smoothing, GPTQ's error compensation, round-to-nearest

# Scheme conventions (seeds 000/001): every Linear layer, lm_head kept in high precision.
DEFAULT_TARGETS = ["Linear"]
DEFAULT_IGNORE = ["lm_head"]
# Seed 003's choice for NVFP4: only the routed experts' MLP projections (Hugging Face MoE naming).
EXPERT_MLP_TARGETS = [r"re:.*mlp\.experts\.\d+\.(gate|up|down)_proj$"]
EXPERT_MLP_IGNORE = [r"re:.*self_attn.*", "lm_head"]
# Calibration defaults when neither the spec nor the request says (seed 001's numbers).
DEFAULT_CALIBRATION = {"dataset": "neuralmagic/LLM_compression_calibration", "split": "train",
                       "samples": 512, "max_seq_length": 2048}


def spec_recipe(family: Family, quant: str) -> Recipe | None:
    """The recipe the family's specs give for this build, if any.

    First a compressed-tensors spec listing the quantization; else any spec whose recipe has the
    same scheme (GLM-5's NVFP4 recipe lives on its modelopt spec, seed 003).
    """
    scheme = "W4A16" if quant.startswith("W4A16") or quant == "AWQ" else quant
    for s in family.specs:
        if s.format == "compressed-tensors" and quant in s.quantizations and s.recipe is not None:
            return s.recipe
    for s in family.specs:
        if s.recipe is not None and s.recipe.scheme == scheme and quant in s.quantizations:
            return s.recipe
    return None


def _int4_weights(group_size: int, symmetric: bool = True) -> dict[str, Any]:
    return {"num_bits": 4, "type": "int", "symmetric": symmetric, "strategy": "group",
            "group_size": group_size, "dynamic": False}


def _base(quant: str, scheme: str, method: str, r: Recipe | None, targets: list[str], ignore: list[str]) -> dict:
    d: dict[str, Any] = {
        "tool": "llmcompressor", "quantization": quant, "scheme": scheme, "method": method,
        "targets": list(r.targets) if r and r.targets else targets,
        "ignore": list(r.ignore) if r and r.ignore else ignore,
        "save_compressed": True,
        "drop_mtp": bool(r.drop_mtp) if r else False,
    }
    if r is not None:
        d["spec_source"] = r.source
        if r.parent:
            d["parent"] = r.parent
    return d


def fp8_dynamic(r: Recipe | None) -> dict:
    """Seed 000: FP8 weights (per channel) with dynamic per-token FP8 activations; data-free."""
    d = _base("FP8_DYNAMIC", "FP8_DYNAMIC", "data-free", r, DEFAULT_TARGETS, DEFAULT_IGNORE)
    d.update(modifier="QuantizationModifier", preset="FP8_DYNAMIC", needs_calibration=False)
    return d


def fp8_block(r: Recipe | None) -> dict:
    """FP8 weights in 128x128 blocks with dynamic per-group-of-128 activations (compressed-tensors'
    FP8_BLOCK preset); data-free."""
    d = _base("FP8_BLOCK", "FP8_BLOCK", "data-free", r, DEFAULT_TARGETS, DEFAULT_IGNORE)
    d.update(modifier="QuantizationModifier", preset="FP8_BLOCK", needs_calibration=False)
    return d


def w4a16(quant: str, group_size: int, method: str, r: Recipe | None) -> dict:
    """Seed 001: int4 symmetric, weight-only, group size 32/64/128; AWQ, GPTQ or round-to-nearest."""
    if method not in METHODS:
        raise RegistryError(f"--method {method!r} is not a W4A16 method; use one of: {', '.join(METHODS)}")
    d = _base(quant, "W4A16", method, r, DEFAULT_TARGETS, DEFAULT_IGNORE)
    sym = r.symmetric if r and r.symmetric is not None else True
    d.update(
        modifier={"awq": "AWQModifier", "gptq": "GPTQModifier"}.get(method, "QuantizationModifier"),
        config_groups={"group_0": {"targets": d["targets"], "weights": _int4_weights(group_size, sym),
                                   "input_activations": None, "output_activations": None}},
        group_size=group_size, needs_calibration=method in ("awq", "gptq"),
    )
    return d


def awq_gs128(r: Recipe | None, method: str) -> dict:
    """Seed 002: AWQ W4A16 GS128 with the spec's explicit ignore list and target patterns."""
    if r is None or not r.ignore or not r.targets:
        raise RegistryError(
            "the AWQ build reproduces a spec recipe with an explicit ignore list and targets (as glm-4.6's, "
            "from the bullpoint/GLM-4.6-AWQ model card); this family's specs have none: use --quant W4A16_GS128 instead"
        )
    return w4a16("AWQ", r.group_size or 128, method, r)


def nvfp4(quant: str, r: Recipe | None) -> dict:
    """Seed 003's choice: NVFP4 (FP4 E2M1, FP8 scales per 16) on routed-expert MLPs only; attention BF16.

    NVFP4 quantizes activations too (a calibrated global input scale); NVFP4A16 is weight-only.
    """
    d = _base(quant, quant, "ptq", r, EXPERT_MLP_TARGETS, EXPERT_MLP_IGNORE)
    if r is not None and r.tool != "llmcompressor":
        d["spec_tool"] = r.tool  # the card's build used another tool; the scheme and layer choice carry over
    d.update(modifier="QuantizationModifier", preset=quant, needs_calibration=quant == "NVFP4",
             experts_only=True)
    return d


def build(family: Family, quant: str, method: str | None) -> dict:
    """The recipe for one build, from the family's spec recipe and the request's options."""
    if quant not in SUPPORTED:
        raise RegistryError(
            f"--quant {quant!r} is not a build this converter makes; compressed-tensors builds: {', '.join(SUPPORTED)}"
        )
    r = spec_recipe(family, quant)
    spec_method = r.method if r and r.method in METHODS else None
    if quant == "FP8_DYNAMIC":
        out = fp8_dynamic(r)
    elif quant == "FP8_BLOCK":
        out = fp8_block(r)
    elif quant == "AWQ":
        if method not in (None, "awq"):
            raise RegistryError(f"the AWQ build is AWQ by definition; --method {method} applies to W4A16_GS* builds")
        out = awq_gs128(r, "awq")
    elif quant.startswith("W4A16"):
        m = GS_RE.search(quant)
        gs = int(m.group(1)) if m else (r.group_size if r else None)
        out = w4a16(quant, gs, method or spec_method or "awq", r)
    else:
        out = nvfp4(quant, r)
    if method and quant in ("FP8_DYNAMIC", "FP8_BLOCK", "NVFP4", "NVFP4A16"):
        raise RegistryError(f"--method applies to W4A16 builds only; {quant} has one method")
    out["calibration_spec"] = r.calibration.model_dump(mode="json", exclude_defaults=True) if r and r.calibration else None
    return out


def modifiers(recipe: dict) -> list:
    """llm-compressor modifier objects for a recipe dict (heavy import)."""
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    if recipe["modifier"] == "GPTQModifier":
        # GPTQ quantizes each layer against the Hessian of its calibration inputs, compensating the
        # rounding error column by column; the sequential pipeline runs it layer by layer.
        return [GPTQModifier(ignore=recipe["ignore"], config_groups=_groups(recipe))]
    quant = QuantizationModifier(ignore=recipe["ignore"], config_groups=_groups(recipe)) \
        if "config_groups" in recipe else \
        QuantizationModifier(targets=recipe["targets"], scheme=recipe["preset"], ignore=recipe["ignore"])
    if recipe["modifier"] == "AWQModifier":
        # llm-compressor 0.14: AWQ smooths (a transform), then the quantization modifier quantizes.
        from llmcompressor.modifiers.transform.awq import AWQModifier

        from .awq_mappings import as_objects

        return [AWQModifier(mappings=as_objects(recipe.get("awq_mappings"))), quant]
    return [quant]


def _groups(recipe: dict) -> dict:
    return {k: dict(v) for k, v in recipe["config_groups"].items()}
