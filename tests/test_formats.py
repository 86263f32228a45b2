"""Formats as data (registry/formats.py): every quantization name has its bits per weight and engines,
the engines take their flags from the table, mlx-lm plans only for Apple silicon, modalities are checked."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from conftest import SPECS, run_cli
from registry import engines
from registry.catalog import resolved_build
from registry.engines.base import Request, modality_notes
from registry.formats import FORMATS, GGUF_UD_QUANTS, bits_per_weight, engine_flags, gguf_base, loaders
from registry.hardware import profile
from registry.schema import Family, json_schema


def test_every_quantization_has_bits_and_engines_that_exist():
    for fmt, d in FORMATS.items():
        assert loaders(fmt) and set(loaders(fmt)) <= set(engines.MODULES), fmt
        for q in d["quantizations"]:
            bpw = bits_per_weight(fmt, q)
            assert bpw is not None and 1.5 <= bpw <= 32, (fmt, q, bpw)
    assert set(json_schema()["$defs"]["Spec"]["properties"]["format"]["enum"]) == set(FORMATS)


@pytest.mark.parametrize("name,base", [("UD-Q4_K_XL", "Q4_K_M"), ("Q6_K_L", "Q6_K"), ("Q4_K", "Q4_K_M"),
                                       ("UD-IQ1_S", "IQ1_S"), ("Q3_K_XL", "Q3_K_L"), ("BF16", "BF16"),
                                       ("bf16", "BF16"), ("Q4_K_L", "Q4_K_M"), ("Q2_K_L", "Q2_K")])
def test_gguf_build_names_stand_on_a_llama_cpp_type(name, base):
    assert gguf_base(name) == base
    assert bits_per_weight("ggufv2", name) == bits_per_weight("ggufv2", base)


def test_unsloth_dynamic_names_are_gguf_quantizations():
    assert {"UD-Q4_K_XL", "UD-TQ1_0", "UD-Q6_K", "UD-IQ4_NL", "UD-Q3_K_S"} <= set(GGUF_UD_QUANTS)
    assert "UD-BF16" not in GGUF_UD_QUANTS and "UD-bf16" not in GGUF_UD_QUANTS
    assert bits_per_weight("ggufv2", "UD-Q9_X") is None


def test_bartowski_names_are_gguf_quantizations_as_his_files_spell_them():
    """bartowski's ladder (_L mixes, Q4_0/Q4_1, IQ quants, lower-case bf16) validates in a ggufv2 spec."""
    from registry.formats import QUANTS_BY_FORMAT

    ladder = {"IQ2_M", "IQ3_XXS", "IQ4_NL", "Q2_K_L", "Q3_K_XL", "Q4_0", "Q4_1", "Q4_K_L", "Q5_K_L", "Q6_K_L", "bf16"}
    assert ladder <= set(QUANTS_BY_FORMAT["ggufv2"])


def _family_with(*specs: dict) -> Family:
    d = yaml.safe_load((SPECS / "glm-4.5-air.yaml").read_text())
    d["specs"] = [d["specs"][0], *specs]
    return Family.model_validate(d)


@pytest.mark.parametrize("fmt,quant,flag", [
    ("awq", "Int4", "awq_marlin"), ("gptq", "Int4-Int8Mix", "gptq_marlin"), ("fp8", "FP8", None),
    ("compressed-tensors", "FP8", "compressed-tensors"), ("modelopt", "FP8", "modelopt"),
    ("modelopt", "NVFP4", "modelopt_fp4")])
@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_server_commands_take_the_format_quantization_method(fmt, quant, flag, engine):
    """The generic command (no launch profile) passes the table's --quantization for the format."""
    spec = {"format": fmt, "size_in_billions": 106, "quantizations": [quant], "engines": [engine],
            "hubs": {"huggingface": {"model_id": "someone/GLM-4.5-Air-x"}}}
    fam = _family_with(spec)
    hw = profile("8xB200")
    req = Request(resolved_build(fam, fam.specs[1], quant), hw)
    mod = engines.get(engine)
    verdict = mod.can_serve(req)
    assert verdict.ok, verdict.reasons
    (cmd,) = mod.command(req, "someone/GLM-4.5-Air-x", "127.0.0.1", None, verdict)
    if flag is None:  # the method comes from the checkpoint's config.json
        assert "--quantization" not in cmd.argv and engine_flags(fmt, quant, engine) == {}
        return
    assert cmd.argv[cmd.argv.index("--quantization") + 1] == flag
    assert engine_flags(fmt, quant, engine) == {"--quantization": flag}


def test_a_spec_cannot_list_an_engine_that_does_not_load_its_format():
    spec = {"format": "mlx", "size_in_billions": 106, "quantizations": ["4bit"], "engines": ["vllm"]}
    with pytest.raises(ValueError, match=r"engine vllm does not load mlx builds \(they load in mlx-lm\)"):
        _family_with(spec)


def test_mlx_lm_plans_for_apple_silicon_only(tmp_path):
    r = run_cli("launch", "glm-4-9b-chat", "--format", "mlx", "--quant", "bf16", "--hardware", "M3-Ultra-96G",
                "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["engine"] == "mlx-lm"
    argv = plan["argv"]
    assert argv[0].endswith("mlx_lm.server") and argv[argv.index("--model") + 1] == "mlx-community/glm-4-9b-chat-bf16"
    assert plan["health_url"].endswith("/v1/models")

    r = run_cli("launch", "glm-4-9b-chat", "--format", "mlx", "--quant", "4bit", "--hardware", "8xH100-80G", "--dry-run")
    assert r.returncode == 1 and "mlx-lm runs on Apple silicon only" in r.stderr

    small = tmp_path / "mac.json"  # a 16 GB Mac: 9B at bf16 (18 GB) does not fit Metal's working set
    small.write_text(json.dumps({"name": "mac16", "apple": {"chip": "Apple M4", "unified_memory_gb": 16}}))
    r = run_cli("launch", "glm-4-9b-chat", "--format", "mlx", "--quant", "bf16", "--hardware", str(small), "--dry-run")
    assert r.returncode == 1 and "not enough unified memory" in r.stderr
    r = run_cli("launch", "glm-4-9b-chat", "--format", "mlx", "--quant", "4bit", "--hardware", str(small), "--dry-run",
                "--json")
    assert r.returncode == 0, r.stderr


def test_modalities_match_the_vision_ability_and_engines_say_what_they_take():
    d = yaml.safe_load((SPECS / "glm-4-9b-chat.yaml").read_text())
    bad = copy.deepcopy(d)
    bad["abilities"] = ["chat", "vision"]
    with pytest.raises(ValueError, match="abilities lists vision exactly when modalities list image"):
        Family.model_validate(bad)
    d["abilities"] = ["chat", "tools", "vision"]
    d["modalities"] = ["text", "image"]
    fam = Family.model_validate(d)
    assert fam.engine_takes("vllm") == [] and fam.engine_takes("llama.cpp") == ["image"]
    req = Request(resolved_build(fam, fam.specs[0], "none"), profile("8xH100-80G"))
    assert modality_notes(req, "vllm") == []
    (note,) = modality_notes(req, "mlx-lm")
    assert "text-only" in note and "vllm" in note
