"""`registry discover`: new quantized uploads on the stand-in hub become specs the schema accepts.

The stand-in (tests/fixtures/hubserver.py) answers the Hub API's model search
(`/api/models?filter=base_model:quantized:REPO&expand=siblings...`), files and range requests as the hub does;
the GGUF uploads are real GGUF files (gguf's writer) whose headers are read over HTTP ranges.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from registry.catalog import load
from registry.hub.recognise import from_config, gguf_layout, gguf_quant
from registry.loader import read_spec_file
from registry.schema import Family, Spec

AIR = "zai-org/GLM-4.5-Air"
QUANTIZED = f"base_model:quantized:{AIR}"


def _gguf(file_type: int, tokens: int = 120_000) -> bytes:
    """A real GGUF file whose header (a vocabulary of `tokens` strings) is over 1 MiB, so that reading it takes
    several range requests."""
    import tempfile
    from pathlib import Path

    import gguf
    import numpy as np

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.gguf"
        w = gguf.GGUFWriter(str(path), "glm4moe")
        w.add_block_count(1)
        w.add_file_type(file_type)
        w.add_token_list([f"tok{i:07d}" for i in range(tokens)])
        w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path.read_bytes()


def _config(**quant) -> bytes:
    return json.dumps({"architectures": ["Glm4MoeForCausalLM"], "model_type": "glm4_moe", **quant}).encode()


@pytest.fixture
def hub(hub_server):
    """GLM-4.5-Air's model tree on the stand-in: two uploads the catalog has, three new ones, one it cannot read,
    and repositories of other trees that must not show."""
    q4, q8, q6 = _gguf(15), _gguf(7, tokens=10), _gguf(18, tokens=10)
    hub_server.add("ggufmaker/GLM-4.5-Air-GGUF", {
        "GLM-4.5-Air-Q4_K_M.gguf": q4, "GLM-4.5-Air-Q8_0.gguf": q8,
        "Q6_K/GLM-4.5-Air-Q6_K-00001-of-00002.gguf": q6[:100], "Q6_K/GLM-4.5-Air-Q6_K-00002-of-00002.gguf": q6[100:],
        "mmproj-GLM-4.5-Air-F16.gguf": q8, "README.md": b"# GGUF\n",
    }, tags=["gguf", f"base_model:{AIR}", QUANTIZED])
    hub_server.add("newquant/GLM-4.5-Air-AWQ", {
        "config.json": _config(quantization_config={"quant_method": "awq", "bits": 4, "group_size": 128}),
        "model.safetensors": b"\0" * 64,
    }, tags=["safetensors", "4-bit", "awq", QUANTIZED], library_name="transformers")
    hub_server.add("mlx-community/GLM-4.5-Air-6bit", {
        "config.json": _config(quantization={"group_size": 64, "bits": 6}), "model.safetensors": b"\0" * 64,
    }, tags=["mlx", QUANTIZED], library_name="mlx")
    hub_server.add("mlx-community/GLM-4.5-Air-4bit", {  # in the catalog
        "config.json": _config(quantization={"group_size": 64, "bits": 4}), "model.safetensors": b"\0" * 64,
    }, tags=["mlx", QUANTIZED], library_name="mlx")
    hub_server.add("QuantTrio/GLM-4.5-Air-GPTQ-Int4-Int8Mix", {  # in the catalog
        "config.json": _config(quantization_config={"quant_method": "gptq", "bits": 4}), "model.safetensors": b"\0",
    }, tags=["gptq", QUANTIZED])
    hub_server.add("plain/GLM-4.5-Air-copy", {"config.json": _config(), "model.safetensors": b"\0"},
                   tags=[QUANTIZED])
    hub_server.add("tuner/GLM-4.5-Air-finetune", {"config.json": _config()}, tags=[f"base_model:finetune:{AIR}"])
    hub_server.add("other/Other-GGUF", {"Other-Q4_K_M.gguf": q8}, tags=["base_model:quantized:other/base"])
    return hub_server


def _run(name="glm-4.5-air", **kw):
    from registry.hub.discover import discover

    cat = load(include_user=False)
    return discover(cat.get(name), cat, **kw)


def test_new_gguf_awq_and_mlx_uploads_become_valid_specs(hub):
    d = _run()
    by = {u.repo: u for u in d.uploads}
    assert set(by) == {"ggufmaker/GLM-4.5-Air-GGUF", "newquant/GLM-4.5-Air-AWQ", "mlx-community/GLM-4.5-Air-6bit",
                       "mlx-community/GLM-4.5-Air-4bit", "QuantTrio/GLM-4.5-Air-GPTQ-Int4-Int8Mix",
                       "plain/GLM-4.5-Air-copy"}  # not the fine-tune, not another model's tree
    assert by["QuantTrio/GLM-4.5-Air-GPTQ-Int4-Int8Mix"].status == "in catalog"
    assert by["QuantTrio/GLM-4.5-Air-GPTQ-Int4-Int8Mix"].where == "glm-4.5-air"
    assert by["mlx-community/GLM-4.5-Air-4bit"].status == "in catalog"
    assert by["plain/GLM-4.5-Air-copy"].status == "unrecognised"
    assert "no quantization_config" in by["plain/GLM-4.5-Air-copy"].note

    props = {tuple(p.repos): p for p in d.proposals}
    assert all(p.error is None for p in d.proposals), [p.error for p in d.proposals]
    gguf = props[("ggufmaker/GLM-4.5-Air-GGUF",)]
    assert gguf.replaces is None
    assert gguf.spec == {
        "format": "ggufv2", "size_in_billions": 106, "quantizations": ["Q4_K_M", "Q8_0", "Q6_K"],
        "engines": ["llama.cpp"],
        "hubs": {"huggingface": {"model_id": "ggufmaker/GLM-4.5-Air-GGUF", "file_template": "GLM-4.5-Air-{quantization}.gguf",
                                 "split_parts": {"Q6_K": 2}, "split_dir": True}},
    }
    spec = Spec.model_validate(gguf.spec)
    assert spec.hubs["huggingface"].files_for("Q6_K") == ["Q6_K/GLM-4.5-Air-Q6_K-00001-of-00002.gguf",
                                                          "Q6_K/GLM-4.5-Air-Q6_K-00002-of-00002.gguf"]
    assert any("architecture glm4moe, Q4_K_M" in n for n in gguf.notes), gguf.notes
    awq = props[("newquant/GLM-4.5-Air-AWQ",)]
    assert awq.spec == {"format": "awq", "size_in_billions": 106, "quantizations": ["Int4"],
                        "engines": ["vllm", "sglang"], "hubs": {"huggingface": {"model_id": "newquant/GLM-4.5-Air-AWQ"}}}
    mlx = props[("mlx-community/GLM-4.5-Air-6bit",)]  # mlx-community's spec gains the 6-bit repository
    fam = load(include_user=False).get("glm-4.5-air")
    assert fam.specs[mlx.replaces].format == "mlx"
    assert mlx.spec["quantizations"] == [*fam.specs[mlx.replaces].quantizations, "6bit"]
    assert mlx.spec["hubs"]["huggingface"]["model_ids"]["6bit"] == "mlx-community/GLM-4.5-Air-6bit"
    body = fam.model_dump(mode="json", exclude_none=True)
    from registry.hub.discover import proposed_family

    body["specs"] = proposed_family(fam, d.proposals)
    assert len(Family.model_validate(body).specs) == len(fam.specs) + 2  # the schema takes the whole family


def test_gguf_headers_are_read_over_ranges_not_downloaded(hub):
    _run()
    gets = [r for r in hub.gets() if r["path"].endswith(".gguf")]
    assert gets, "no GGUF header was read"
    assert all(r["range"] and r["range"].startswith("bytes=") and not r["range"].endswith("-") for r in gets)
    q4 = [r for r in gets if r["path"].endswith("GLM-4.5-Air-Q4_K_M.gguf")]
    assert len(q4) >= 2  # its vocabulary makes the header larger than one 1 MiB range
    _run(headers=False)
    assert len([r for r in hub.gets() if r["path"].endswith(".gguf")]) == len(gets)  # --no-headers reads none


def test_pages_of_the_model_search_are_followed(hub):
    hub.page_size = 2
    assert len(_run(headers=False).uploads) == 6
    assert sum(1 for r in hub.requests if r["path"] == "/api/models") >= 3


def test_known_gguf_repository_gets_its_missing_quantizations(hub_server):
    """An upload the catalog has, with a build its spec does not list: the spec, extended."""
    cat = load(include_user=False)
    fam = cat.get("glm-4-9b-chat")
    i, spec = next((i, s) for i, s in enumerate(fam.specs) if s.publisher == "legraphista")
    files = {f: b"x" for q in spec.quantizations for f in spec.hubs["huggingface"].files_for(q)}
    files["glm-4-9b-chat.IQ1_S.gguf"] = _gguf(24, tokens=10)
    hub_server.add("legraphista/glm-4-9b-chat-GGUF", files, tags=["base_model:quantized:THUDM/glm-4-9b-chat"])
    d = _run("glm-4-9b-chat", extra_bases=("THUDM/glm-4-9b-chat",), headers=False)
    (up,) = d.uploads
    assert up.status == "in catalog" and up.missing == ["IQ1_S"]
    (p,) = d.proposals
    assert p.replaces == i and p.error is None
    assert p.spec["quantizations"] == [*spec.quantizations, "IQ1_S"]
    assert d.bases[:2] == ["THUDM/glm-4-9b-chat-hf", "THUDM/glm-4-9b-chat"]


def test_cli_json_and_write_a_user_family_that_validates(hub, tmp_path):
    r = run_cli("discover", "glm-4.5-air", "--json", "--no-headers")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["family"] == "glm-4.5-air"
    status = {u["repo"]: u["status"] for u in out["uploads"]}
    assert status["QuantTrio/GLM-4.5-Air-GPTQ-Int4-Int8Mix"] == "in catalog"
    assert status["ggufmaker/GLM-4.5-Air-GGUF"] == "new"
    assert all(p["valid"] for p in out["proposals"])

    text = run_cli("discover", "glm-4.5-air", "--no-headers")
    assert text.returncode == 0, text.stderr
    assert "in catalog" in text.stdout and "  - format: ggufv2" in text.stdout
    assert "# new: https://huggingface.co/newquant/GLM-4.5-Air-AWQ" in text.stdout

    target = tmp_path / "found.yaml"
    w = run_cli("discover", "glm-4.5-air", "--no-headers", "--write", str(target))
    assert w.returncode == 0, w.stderr
    fam = read_spec_file(target)  # validates as written
    assert fam.name == "glm-4.5-air-discovered"
    assert {s.format for s in fam.specs} == {"ggufv2", "awq", "mlx"}
    assert "https://huggingface.co/ggufmaker/GLM-4.5-Air-GGUF" in target.read_text()
    again = run_cli("discover", "glm-4.5-air", "--no-headers", "--write", str(target))
    assert again.returncode == 1 and "exists" in again.stderr and "--force" in again.stderr


def test_cli_errors_are_one_line(hub):
    assert run_cli("discover").returncode == 2
    assert run_cli("discover", "glm-4.5-air", "--all").returncode == 2
    r = run_cli("discover", "no-such-family")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    off = run_cli("discover", "glm-4.5-air", env={"HF_HUB_OFFLINE": "1"})
    assert off.returncode == 1 and "offline" in off.stderr and "Traceback" not in off.stderr


def test_cli_all_families(hub):
    r = run_cli("discover", "--all", "--json", "--no-headers")
    assert r.returncode == 0, r.stderr
    fams = {f["family"]: f for f in json.loads(r.stdout)["families"]}
    assert len(fams) == len(load(include_user=False).names())
    assert len(fams["glm-4.5-air"]["uploads"]) == 6


@pytest.mark.parametrize("files, quants, template, extra", [
    (["glm-4-9b-chat.Q4_K.gguf", "glm-4-9b-chat.Q4_K_S.gguf", "glm-4-9b-chat.FP16.gguf"],
     ["FP16", "Q4_K", "Q4_K_S"], "glm-4-9b-chat.{quantization}.gguf", {}),
    (["THUDM_GLM-4-9B-0414-bf16.gguf", "THUDM_GLM-4-9B-0414-IQ2_M.gguf", "THUDM_GLM-4-9B-0414.imatrix"],
     ["bf16", "IQ2_M"], "THUDM_GLM-4-9B-0414-{quantization}.gguf", {}),
    (["GLM-5-UD-TQ1_0.gguf", "UD-Q4_K_XL/GLM-5-UD-Q4_K_XL-00001-of-00010.gguf",
      "UD-Q4_K_XL/GLM-5-UD-Q4_K_XL-00002-of-00010.gguf"],
     ["UD-TQ1_0", "UD-Q4_K_XL"], "GLM-5-{quantization}.gguf", {"split_parts": {"UD-Q4_K_XL": 10}, "split_dir": True}),
    (["m-q8_0.gguf.part1of2", "m-q8_0.gguf.part2of2"], ["Q8_0"], "m-{quantization}.gguf",
     {"split_parts": {"Q8_0": 2}, "split_style": "part"}),
])
def test_gguf_file_names(files, quants, template, extra):
    lay = gguf_layout(files)
    assert sorted(lay.quantizations) == sorted(quants) and lay.file_template == template
    for k, v in extra.items():
        assert getattr(lay, k) == v
    assert gguf_quant("model.gguf") is None
    assert gguf_layout(["config.json", "model.safetensors"]) is None


def test_a_gguf_name_without_quantization_is_not_guessed():
    lay = gguf_layout(["model.gguf", "ggml-model.gguf"])
    assert lay.quantizations == [] and lay.unnamed == ["ggml-model.gguf", "model.gguf"]


@pytest.mark.parametrize("repo, cfg, tags, lib, want", [
    ("QuantTrio/GLM-4.5-Air-GPTQ-Int4-Int8Mix", {"quantization_config": {"quant_method": "gptq", "bits": 4}}, [], None,
     ("gptq", "Int4-Int8Mix")),
    ("x/GLM-4.6-AWQ", {"quantization_config": {"quant_method": "awq", "bits": 4}}, [], None, ("awq", "Int4")),
    ("x/m-FP8-Dynamic", {"quantization_config": {"quant_method": "compressed-tensors"}}, [], None,
     ("compressed-tensors", "FP8_DYNAMIC")),
    ("x/m", {"quantization_config": {"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "weights": {"num_bits": 8, "type": "float", "strategy": "channel"},
        "input_activations": {"num_bits": 8, "type": "float", "dynamic": True}}}}}, [], None,
     ("compressed-tensors", "FP8_DYNAMIC")),
    ("x/m", {"quantization_config": {"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized",
                                     "config_groups": {"g": {"weights": {}, "input_activations": {"num_bits": 4}}}}},
     [], None, ("compressed-tensors", "NVFP4")),
    ("x/m", {"quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4"}}, [], None,
     ("modelopt", "NVFP4")),
    ("zai-org/GLM-4.5V-FP8", {"quantization_config": {"quant_method": "fp8"}}, [], None, ("fp8", "FP8")),
    ("mlx-community/GLM-5-8bit-MXFP8", {"quantization": {"bits": 8, "mode": "mxfp8"}}, ["mlx"], "mlx",
     ("mlx", "8bit-MXFP8")),
    ("someone/glm-mlx", {}, [], "mlx", ("mlx", "bf16")),
])
def test_formats_from_config(repo, cfg, tags, lib, want):
    assert from_config(repo, cfg, tags, lib) == want


def test_unknown_quant_method_says_so():
    got = from_config("x/m", {"quantization_config": {"quant_method": "bitsandbytes"}}, [], None)
    assert isinstance(got, str) and "bitsandbytes" in got


def test_an_unreadable_upload_is_reported_and_the_rest_are_read(hub_server):
    """A gated upload, a file that is no GGUF, and one whose header contradicts its name: each is said, none
    stops the others."""
    q4 = _gguf(15, tokens=10)
    hub_server.add("locked/GLM-4.5-Air-AWQ", {"config.json": _config(quantization_config={"quant_method": "awq"})},
                   tags=[QUANTIZED], gated=True)
    hub_server.add("broken/GLM-4.5-Air-GGUF", {"GLM-4.5-Air-Q4_K_M.gguf": b"not a gguf file at all"}, tags=[QUANTIZED])
    hub_server.add("mislabel/GLM-4.5-Air-GGUF", {"GLM-4.5-Air-Q8_0.gguf": q4}, tags=[QUANTIZED])
    by = {u.repo: u for u in _run().uploads}
    assert by["locked/GLM-4.5-Air-AWQ"].status == "unrecognised"
    assert "401" in by["locked/GLM-4.5-Air-AWQ"].note and "gated" in by["locked/GLM-4.5-Air-AWQ"].note
    assert by["broken/GLM-4.5-Air-GGUF"].status == "unrecognised"
    assert "not a readable GGUF file" in by["broken/GLM-4.5-Air-GGUF"].note
    assert by["mislabel/GLM-4.5-Air-GGUF"].status == "new"
    assert "its file type Q4_K_M is not what the name Q8_0 says" in by["mislabel/GLM-4.5-Air-GGUF"].note


def test_bases_are_the_publishers_own_releases():
    from registry.hub.discover import bases

    cat = load(include_user=False)
    assert bases(cat.get("glm-5.3")) == ["zai-org/GLM-5.3-BF16", "zai-org/GLM-5.3"]  # its FP8 release is unsuffixed
    assert bases(cat.get("glm-4.5-air")) == ["zai-org/GLM-4.5-Air", "zai-org/GLM-4.5-Air-FP8"]  # not QuantTrio's
    assert bases(cat.get("glm4-chat-1m")) == ["THUDM/glm-4-9b-chat-1m", "zai-org/glm-4-9b-chat-1m"]  # renamed org
