"""The shipped catalog: every seed system is there with the facts its document gives."""

from __future__ import annotations

import pytest

import registry
from registry.catalog import shipped
from registry.errors import NotFoundError, RegistryError
from registry.schema import QUANTS_BY_FORMAT, json_schema


def test_every_shipped_spec_validates_and_names_are_unique():
    names = [e.family.name for e in shipped()]
    assert len(names) == len(set(names))
    assert {"glm4-chat-1m", "glm-4-9b-chat", "glm-4.6", "glm-4.7", "glm-5"} <= set(names)
    for e in shipped():
        fam = e.family
        assert any(s.format == "pytorch" and "none" in s.quantizations for s in fam.specs), fam.name
        assert fam.sources, f"{fam.name}: say where the facts come from"


def test_seed_004_glm4_chat_1m():
    f = registry.get("glm4-chat-1m")
    assert (f.context_length, f.languages, f.abilities) == (1048576, ["en", "zh"], ["chat", "tools"])
    assert f.description.startswith("GLM4 is the open source version")
    pt, gg = f.specs
    assert (pt.format, pt.size_in_billions, pt.quantizations) == ("pytorch", 9, ["4-bit", "8-bit", "none"])
    assert pt.engines_for("none") == ["vllm", "transformers"]
    assert pt.engines_for("4-bit") == ["transformers"]
    assert pt.engine_rule_text() == "vLLM only available for quantization none"
    assert pt.hubs["huggingface"].model_id == "THUDM/glm-4-9b-chat-1m"
    assert pt.hubs["modelscope"].model_id == "ZhipuAI/glm-4-9b-chat-1m"
    assert gg.quantizations == ["Q2_K", "IQ3_XS", "IQ3_S", "IQ3_M", "Q3_K_S", "Q3_K_L", "Q3_K", "IQ4_XS",
                                "IQ4_NL", "Q4_K_S", "Q4_K", "Q5_K_S", "Q5_K", "Q6_K", "Q8_0", "BF16", "FP16"]
    assert list(gg.engines) == ["llama.cpp"]
    assert gg.hubs["huggingface"].model_id == "legraphista/glm-4-9b-chat-1m-GGUF"
    assert gg.hubs["modelscope"].model_id == "LLM-Research/glm-4-9b-chat-1m-GGUF"


def test_seed_000_fp8_dynamic_build():
    f = registry.get("glm-4-9b-chat")
    assert f.architecture.layers == 40 and f.architecture.kind == "dense"
    lic = f.licence
    assert (lic.name, lic.attribution, lic.required_prefix, lic.commercial_use) == (
        "glm-4", "Built with glm-4", "glm-4", "registration-required")
    r = registry.resolve("glm-4-9b-chat", "compressed-tensors", "FP8_DYNAMIC")
    assert r.engines == ["vllm"]
    (prof,) = r.spec.profiles("vllm")
    assert prof.args == {"--served-model-name": "glm-4-9b-chat", "--quantization": "compressed-tensors",
                         "--kv-cache-dtype": "fp8", "--max-model-len": 32768, "--max-num-seqs": 64,
                         "--gpu-memory-utilization": 0.75}
    rec = r.spec.recipe_for("FP8_DYNAMIC")
    assert (rec.tool, rec.scheme, rec.ignore) == ("llmcompressor", "FP8_DYNAMIC", ["lm_head"])
    assert [(b.min_tokens, b.max_tokens, b.fraction) for b in rec.calibration.length_mix] == [
        (256, 1024, 0.9), (1024, 2048, 0.1)]


@pytest.mark.parametrize("gs", [32, 64, 128])
def test_seed_001_branch_per_group_size(gs):
    q = f"W4A16_GS{gs}"
    r = registry.resolve("glm-4.7", "compressed-tensors", q)
    hf = r.hubs["huggingface"]
    assert (hf.model_id, hf.revision, hf.files) == ("TheHouseOfTheDude/GLM-4.7_Compressed-Tensors", q, [])
    rec = r.spec.recipe_for(q)
    assert (rec.group_size, rec.calibration.all_experts, rec.ignore) == (gs, True, ["lm_head"])
    (prof,) = r.spec.profiles("vllm")
    assert prof.args["--tensor-parallel-size"] == 8


def test_seed_002_awq_build():
    f = registry.get("glm-4.6")
    a = f.architecture
    assert (a.total_params_b, a.experts, a.experts_per_token, a.layers, a.hidden_size, a.attention_heads,
            a.kv_heads, a.vocab_size, a.mtp_layers) == (355, 160, 8, 92, 5120, 96, 8, 151552, 1)
    assert a.active_params_b == 32  # Z.ai's figures; the AWQ card's 357B / 28.72B are its own count
    r = registry.resolve("glm-4.6", "compressed-tensors", "AWQ")
    assert r.hubs["huggingface"].model_id == "bullpoint/GLM-4.6-AWQ"
    assert (r.spec.size_in_billions, r.spec.total_params_b, r.spec.active_params_b) == (355, 357, 28.72)
    rec = r.spec.recipe
    assert rec.group_size == 128 and rec.drop_mtp and "re:.*shared_experts.*" in rec.ignore
    assert "re:model.layers.[0-2]\\." in rec.ignore
    names = sorted(p.name for p in r.spec.profiles("vllm"))
    assert names == ["default", "expert-parallel"]
    ep = next(p for p in r.spec.launch if p.name == "expert-parallel")
    assert ep.args["--enable-expert-parallel"] is True and ep.args["--tool-call-parser"] == "glm45"


def test_seed_003_nvfp4_blackwell_only():
    r = registry.resolve("glm-5", "modelopt", "NVFP4")
    assert r.engines == ["sglang"]
    assert r.spec.min_compute_capability("sglang") == 10.0
    (prof,) = r.spec.profiles("sglang")
    assert prof.env["NCCL_P2P_LEVEL"] == "PHB" and prof.args["--quantization"] == "modelopt_fp4"
    a = registry.get("glm-5").architecture
    assert (a.attention, a.experts, a.total_params_b, a.active_params_b) == ("dsa", 256, 744, 40)


def test_get_unknown_lists_nearest():
    with pytest.raises(NotFoundError, match=r"unknown family 'glm4-chat-1n'; nearest: glm4-chat-1m"):
        registry.get("glm4-chat-1n")


def test_resolve_errors_list_what_exists():
    with pytest.raises(NotFoundError, match=r"unknown quantization 'Q4_K_X'; nearest: Q4_K_S, Q4_K.*"
                                            r"\(glm4-chat-1m ggufv2 has: Q2_K, IQ3_XS"):
        registry.resolve("glm4-chat-1m", "ggufv2", "Q4_K_X")
    with pytest.raises(NotFoundError, match=r"unknown format 'onnx'.*ggufv2"):
        registry.resolve("glm4-chat-1m", "onnx", "Q4_K")
    # `gguf` is people's name for ggufv2 (issue 16)
    assert registry.resolve("glm4-chat-1m", "gguf", "Q4_K").spec.format == "ggufv2"


def test_gguf_aliases_resolve_both_ways():
    r = registry.resolve("glm4-chat-1m", "ggufv2", "Q4_K_M")
    assert (r.quantization, r.canonical) == ("Q4_K", "Q4_K_M")
    assert r.hubs["huggingface"].files == ["glm-4-9b-chat-1m.Q4_K.gguf"]
    assert registry.resolve("glm4-chat-1m", "ggufv2", "FP16").canonical == "F16"


def test_every_gguf_quant_and_revision_resolves():
    for fam in registry.families():
        for spec in fam.specs:
            for q in spec.quantizations:
                r = registry.resolve(fam.name, spec.format, q, size=spec.size_in_billions, uploader=spec.publisher)
                assert r.spec is spec  # every build is reachable through its uploader
                for name, hub in r.hubs.items():
                    src = spec.hubs[name]
                    if spec.format == "ggufv2":
                        # a split build may sit in a folder of its own (unsloth: UD-Q4_K_XL/...-00001-of-00011.gguf)
                        assert hub.files and all(f.endswith(".gguf") and ".." not in f and not f.startswith("/")
                                                 for f in hub.files)
                        assert len(hub.files) == src.split_parts.get(q, 1)
                    # the branch of this quantization (seed 001's W4A16_* branches), not the repo's default
                    assert (hub.model_id, hub.revision) == (src.model_ids.get(q, src.model_id), src.revisions.get(q, src.revision))


def test_split_parts(tmp_path):
    from registry.schema import HubSource

    h = HubSource(model_id="a/b", file_template="m.{quantization}.gguf", split_parts={"F16": 3})
    assert h.files_for("F16") == ["m.F16-00001-of-00003.gguf", "m.F16-00002-of-00003.gguf", "m.F16-00003-of-00003.gguf"]
    h2 = HubSource(model_id="a/b", file_template="m.{quantization}.gguf", split_parts={"F16": 2}, split_style="part")
    assert h2.files_for("F16") == ["m.F16.gguf.part1of2", "m.F16.gguf.part2of2"]


def test_filters():
    names = lambda fs: [f.name for f in fs]  # noqa: E731
    assert "glm4-chat-1m" in names(registry.families(format="ggufv2", quant="Q4_K"))
    assert "glm-4.5v" not in names(registry.families(format="ggufv2")) and "glm-5" in names(registry.families(format="ggufv2"))
    assert names(registry.families(engine="sglang", format="modelopt")) == ["glm-5", "glm-5.3", "glm-5.3-flash"]
    assert "glm4-chat-1m" not in names(registry.families(engine="vllm", quant="4-bit"))
    assert names(registry.families(min_context=1_000_000)) == ["glm-4-9b-chat-1m-hf", "glm-5.2", "glm-5.3",
                                                               "glm-5.3-flash", "glm4-chat-1m"]
    assert "glm-4-9b-chat" not in names(registry.families(ability="reasoning"))
    assert names(registry.search("AWQ glm-4.6")) == ["glm-4.6"]
    with pytest.raises(NotFoundError, match="unknown engine 'vlm'; nearest: vllm"):
        registry.families(engine="vlm")


def test_catalog_is_parsed_once_per_process():
    from registry.catalog import _load_shipped

    _load_shipped.cache_clear()
    first = registry.catalog(include_user=False).get("glm-5")
    again = registry.catalog(include_user=False).get("glm-5")
    assert first is again  # the same parsed object: the files were read once
    assert _load_shipped.cache_info().misses == 1


def test_json_schema_forbids_unknown_keys():
    s = json_schema()
    assert s["additionalProperties"] is False
    assert "context_length" in s["required"]
    assert set(QUANTS_BY_FORMAT) == set(s["$defs"]["Spec"]["properties"]["format"]["enum"])


def test_chat_templates_and_parsers_follow_the_model_generation():
    """GLM-4.7 and GLM-5 have their own template and tool parser (glm47); GLM-4.5 / 4.6 keep glm45;
    every one reasons through glm45 (SGLang PR #15333)."""
    for name, template, tools in (("glm-4.5", "glm45", "glm45"), ("glm-4.5-air", "glm45", "glm45"),
                                  ("glm-4.6", "glm45", "glm45"), ("glm-4.7", "glm47", "glm47"), ("glm-5", "glm47", "glm47")):
        chat = registry.get(name).chat
        assert (chat.template, chat.tool_parser_for("vllm"), chat.tool_parser_for("sglang"), chat.reasoning_parser) == (
            template, tools, tools, "glm45"), name


def test_every_tools_family_decides_a_parser_for_each_server_engine():
    """A family that lists tools says, for vLLM and SGLang, which parser they run, or that they have none and why."""
    from registry.schema import TOOL_PARSER_ENGINES

    seen = 0
    for fam in registry.families(ability="tools"):
        for engine in TOOL_PARSER_ENGINES:
            if engine not in fam.engines():
                continue
            seen += 1
            if fam.chat.tool_parser_for(engine) is None:
                assert engine in fam.chat.tool_call_parsers and fam.chat.tool_call_note, (fam.name, engine)
    assert seen >= 10
    # GLM-4-9B-Chat's "name\n{json}" tool calls: neither engine parses them (zai-org/GLM-4 issue #768)
    for name in ("glm-4-9b-chat", "glm4-chat-1m"):
        chat = registry.get(name).chat
        assert chat.tool_call_parsers == {"vllm": None, "sglang": None}
        assert "no parser" in chat.tool_call_note


@pytest.mark.parametrize("family,engine,parser", [
    ("glm-4.7", "vllm", "glm47"), ("glm-4.7", "sglang", "glm47"), ("glm-4.6", "vllm", "glm45"),
    ("glm-4-9b-chat", "vllm", None), ("glm-4-9b-chat", "sglang", None)])
def test_planned_commands_carry_the_family_parser(family, engine, parser):
    """The server command a plan builds names the family's parser, or no parser (and no auto tool choice) at all."""
    import json

    from conftest import run_cli

    r = run_cli("launch", family, "--engine", engine, "--format", "pytorch", "--quant", "none",
                "--hardware", "8xB200", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    argv = json.loads(r.stdout)["argv"]
    if parser is None:
        assert "--tool-call-parser" not in argv and "--enable-auto-tool-choice" not in argv
    else:
        assert argv[argv.index("--tool-call-parser") + 1] == parser


def test_new_families_carry_their_sourced_shapes():
    f = registry.get("glm-4.7-flash").architecture
    assert (f.hf_classes, f.attention, f.layers, f.experts, f.experts_per_token, f.kv_lora_rank, f.vocab_size) == (
        ["Glm4MoeLiteForCausalLM"], "mla", 47, 64, 4, 512, 154880)
    assert (f.total_params_b, f.active_params_b) == (30, 3)
    assert registry.get("glm-4.7-flash").context_length == 202752
    assert [registry.get(n).context_length for n in ("glm-z1-9b-0414", "glm-z1-32b-0414", "glm-z1-rumination-32b-0414")] == [
        32768, 32768, 131072]
    assert "tools" not in registry.get("glm-z1-rumination-32b-0414").abilities  # its four tools are fixed
    hf1m = registry.get("glm-4-9b-chat-1m-hf")
    assert (hf1m.architecture.hf_classes, hf1m.context_length, hf1m.specs[0].hubs["huggingface"].model_id) == (
        ["GlmForCausalLM"], 1048576, "THUDM/glm-4-9b-chat-1m-hf")


@pytest.mark.parametrize("name", ["glm-4.1v-9b-thinking", "glm-4.5v"])
def test_vision_families_take_images_and_the_engines_say_whether_they_do(name):
    fam = registry.get(name)
    assert "vision" in fam.abilities and "image" in fam.modalities
    assert fam.engine_takes("vllm") == [] and fam.engine_takes("sglang") == []
    assert "image" in fam.engine_takes("llama.cpp") and "image" in fam.engine_takes("mlx-lm")
    assert name in [f.name for f in registry.families(ability="vision")]


def test_split_builds_in_sub_folders_resolve_to_every_part():
    r = registry.resolve("glm-5.1", "ggufv2", "UD-Q4_K_XL")
    files = r.hubs["huggingface"].files
    assert len(files) == 11 and files[0] == "UD-Q4_K_XL/GLM-5.1-UD-Q4_K_XL-00001-of-00011.gguf"
    assert files[-1] == "UD-Q4_K_XL/GLM-5.1-UD-Q4_K_XL-00011-of-00011.gguf"
    assert len(registry.resolve("glm-5.1", "ggufv2", "BF16").hubs["huggingface"].files) == 33
    official = registry.resolve("codegeex4-all-9b", "ggufv2", "Q6_K_L").hubs["huggingface"]
    assert (official.model_id, official.files) == ("zai-org/codegeex4-all-9b-GGUF", ["codegeex4-all-9b-Q6_K_L.gguf"])
    assert registry.resolve("glm-5.1", "mlx", "8bit-MXFP8").hubs["huggingface"].model_id == "mlx-community/GLM-5.1-8bit-MXFP8"


def test_uploaders_choose_among_the_gguf_builds_of_one_size():
    """Several uploaders publish GLM-4-9B-0414 as GGUF at 9B: the first listed answers a plain look-up where a hub
    publishes its build, else the first uploader that publishes it; --from (uploader=) or an uploader-qualified name
    picks another, and each build names its own files."""
    own = registry.resolve("glm-4-9b-0414", "ggufv2", "Q4_K_M", uploader="local")
    assert (own.spec.publisher, own.hubs) == ("local", {})  # the registry's own conversion, listed first
    plain = registry.resolve("glm-4-9b-0414", "ggufv2", "Q4_K_M")  # ... which no hub publishes: bartowski's
    assert plain.spec.publisher == "bartowski"
    official = registry.resolve("codegeex4-all-9b", "ggufv2", "Q4_K_M")  # the first listed publishes it: that one
    assert official.hubs["huggingface"].model_id == "zai-org/codegeex4-all-9b-GGUF"
    bart = registry.resolve("glm-4-9b-0414", "ggufv2", "Q4_K_M", uploader="bartowski")
    assert bart.hubs["huggingface"].files == ["THUDM_GLM-4-9B-0414-Q4_K_M.gguf"]
    assert registry.resolve("bartowski/glm-4-9b-0414", "ggufv2", "Q4_K").to_dict() == bart.to_dict()
    assert bart.to_dict()["uploader"] == "bartowski"
    # a quantization only bartowski publishes needs no selector; bf16 is spelled as the repository does
    only = registry.resolve("glm-4-9b-0414", "ggufv2", "Q6_K_L")
    assert (only.spec.publisher, only.hubs["huggingface"].files) == ("bartowski", ["THUDM_GLM-4-9B-0414-Q6_K_L.gguf"])
    bf = registry.resolve("glm-4-9b-0414", "ggufv2", "BF16", uploader="bartowski")
    assert (bf.quantization, bf.canonical, bf.hubs["huggingface"].files) == ("bf16", "BF16", ["THUDM_GLM-4-9B-0414-bf16.gguf"])
    big = registry.resolve("glm-4-32b-0414", "ggufv2", "IQ2_XS")
    assert (big.hubs["huggingface"].model_id, big.hubs["huggingface"].revision) == (
        "bartowski/THUDM_GLM-4-32B-0414-GGUF", "b650220dbf94ac4b4423e9aaa2f230629929e65f")
    leg = registry.resolve("glm-4-9b-chat", "ggufv2", "Q4_K_M", uploader="LEGRAPHISTA")  # case does not matter
    assert leg.hubs["huggingface"].files == ["glm-4-9b-chat.Q4_K.gguf"]
    with pytest.raises(NotFoundError, match=r"unknown uploader 'bartowsky'; nearest: bartowski .*local, bartowski"):
        registry.resolve("glm-4-9b-0414", "ggufv2", "Q4_K_M", uploader="bartowsky")
    with pytest.raises(RegistryError, match="names uploader 'bartowski' but --from says 'unsloth'"):
        registry.resolve("bartowski/glm-4-9b-0414", "ggufv2", "Q4_K_M", uploader="unsloth")
    with pytest.raises(NotFoundError, match="unknown quantization 'Q6_K_L'"):
        registry.resolve("glm-4-9b-0414", "ggufv2", "Q6_K_L", uploader="local")
    fam = registry.get("glm-4-9b-0414")
    assert [fam.launch_name(s) for s in fam.specs] == [
        "glm-4-9b-0414", "local/glm-4-9b-0414", "glm-4-9b-0414", "bartowski/glm-4-9b-0414"]


def test_search_finds_builds_by_uploader():
    hits = registry.catalog().search_builds("bartowski")
    assert {(h.family.name, h.spec.publisher) for h in hits} == {
        ("glm-4-9b-0414", "bartowski"), ("glm-4-32b-0414", "bartowski"), ("glm-4-9b-chat", "bartowski"),
        ("glm-z1-32b-0414", "bartowski"), ("glm-z1-rumination-32b-0414", "bartowski")}
    (leg,) = [h for h in registry.catalog().search_builds("legraphista q4_k_s") if h.family.name == "glm-4-9b-chat"]
    assert leg.quantizations == ["Q4_K_S"] and leg.to_dict()["uploader"] == "legraphista"


def test_glm_5_2_carries_its_sourced_facts():
    fam = registry.get("glm-5.2")
    a = fam.architecture
    assert (fam.context_length, a.hf_classes, a.total_params_b, a.active_params_b, a.layers) == (
        1048576, ["GlmMoeDsaForCausalLM"], 744, 40, 78)
    assert fam.chat.template == "glm47" and fam.chat.tool_parser_for("vllm") == "glm47"
    assert registry.resolve("glm-5.2", "fp8", "FP8").hubs["huggingface"].model_id == "zai-org/GLM-5.2-FP8"
    files = registry.resolve("glm-5.2", "ggufv2", "UD-IQ3_S").hubs["huggingface"].files
    assert len(files) == 8 and files[0] == "UD-IQ3_S/GLM-5.2-UD-IQ3_S-00001-of-00008.gguf"
    assert len(registry.resolve("glm-5.2", "ggufv2", "BF16").hubs["huggingface"].files) == 33
    assert registry.resolve("glm-5.2", "mlx", "mxfp4").hubs["huggingface"].model_id == "mlx-community/GLM-5.2-mxfp4"


def test_a_file_name_per_quantization():
    from registry.schema import HubSource

    h = HubSource(model_id="zai-org/glm-edge-4b-chat-gguf", file_template="ggml-model-{quantization}.gguf",
                  file_templates={"F16": "glm-edge-4B-chat-{quantization}.gguf"})
    assert h.files_for("Q4_0") == ["ggml-model-Q4_0.gguf"] and h.files_for("F16") == ["glm-edge-4B-chat-F16.gguf"]
