"""The CLI as a person and a script use it: tables, --json, exit codes, user families."""

from __future__ import annotations

import json
import sys
import subprocess

import yaml

from conftest import ROOT, SPECS, run_cli


def test_show_json_carries_every_fact_of_seed_004():
    r = run_cli("show", "glm4-chat-1m", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["name"], d["model_name"], d["context_length"]) == ("glm4-chat-1m", "glm4-chat-1m", 1048576)
    assert d["languages"] == ["en", "zh"] and d["abilities"] == ["chat", "tools"]
    assert d["description"].startswith("GLM4 is the open source version of the latest generation")
    s1, s2 = d["specs"]
    assert s1["title"] == "Model Spec 1 (pytorch, 9 Billion)"
    assert (s1["format"], s1["size_in_billions"], s1["quantizations"]) == ("pytorch", 9, ["4-bit", "8-bit", "none"])
    assert s1["engine_titles"] == ["vLLM", "Transformers"]
    assert s1["engine_note"] == "vLLM only available for quantization none"
    assert s1["model_id"] == "THUDM/glm-4-9b-chat-1m"
    assert s1["hubs"]["huggingface"]["url"] == "https://huggingface.co/THUDM/glm-4-9b-chat-1m"
    assert s1["hubs"]["modelscope"]["url"] == "https://modelscope.cn/models/ZhipuAI/glm-4-9b-chat-1m"
    assert s2["title"] == "Model Spec 2 (ggufv2, 9 Billion)"
    assert s2["engines"] == ["llama.cpp"] and s2["quantizations"][0] == "Q2_K" and s2["quantizations"][-1] == "FP16"
    assert s2["hubs"]["huggingface"]["model_id"] == "legraphista/glm-4-9b-chat-1m-GGUF"
    assert s2["hubs"]["modelscope"]["model_id"] == "LLM-Research/glm-4-9b-chat-1m-GGUF"
    assert s2["quantization_aliases"] == {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M", "FP16": "F16"}


def test_show_table_for_people():
    r = run_cli("show", "glm-4.7", env={"COLUMNS": "200"})
    assert r.returncode == 0
    assert "W4A16_GS64 @ W4A16_GS64" in r.stdout and "Glm4MoeForCausalLM" in r.stdout


def test_list_filters_and_json():
    r = run_cli("list", "--format", "ggufv2", "--quant", "Q4_K", "--json")
    names = [x["name"] for x in json.loads(r.stdout)]
    assert "glm4-chat-1m" in names and "glm-5" in names and "glm-4.5v" not in names
    r = run_cli("list", "--engine", "sglang", "--ability", "reasoning", "--json")
    assert {x["name"] for x in json.loads(r.stdout)} >= {"glm-5", "glm-4.6"}
    r = run_cli("list", env={"COLUMNS": "200"})
    assert r.returncode == 0 and "glm4-chat-1m" in r.stdout and "1,048,576" in r.stdout


def test_search_finds_builds_by_uploader_format_and_quantization():
    rows = json.loads(run_cli("search", "unsloth", "--json").stdout)
    assert {r["name"] for r in rows} >= {"glm-5", "glm-5.1"}
    assert all(r["uploaders"] == ["unsloth"] and r["format"] == "ggufv2" for r in rows)
    rows = json.loads(run_cli("search", "mlx", "4bit", "--json").stdout)
    assert {r["name"] for r in rows} >= {"glm-4.7", "glm-4.5-air", "glm-4-9b-chat"}
    assert all(r["format"] == "mlx" and r["quantizations"] == ["4bit"] for r in rows)
    air = next(r for r in rows if r["name"] == "glm-4.5-air")
    assert air["model_ids"] == ["mlx-community/GLM-4.5-Air-4bit"]  # the 4-bit repository, not the 2-8 bit siblings
    rows = json.loads(run_cli("search", "quanttrio", "int4-int8mix", "--json").stdout)
    assert {r["name"] for r in rows} == {"glm-4.1v-9b-thinking", "glm-4.5", "glm-4.5-air", "glm-4.6", "glm-4.7"}
    assert all(r["format"] == "gptq" for r in rows)
    r = run_cli("search", "unsloth", "mlx")
    assert r.returncode == 1 and "no build matches 'unsloth mlx'" in r.stderr and not r.stdout
    r = run_cli("search", "unsloth", "mlx", "--json")  # scripts get an empty list, and the same exit code
    assert r.returncode == 1 and json.loads(r.stdout) == []
    table = run_cli("search", "legraphista", env={"COLUMNS": "200"}).stdout
    assert "glm4-chat-1m" in table and "legraphista/glm-4-9b-chat-1m-GGUF" in table


def test_search_and_resolve():
    r = run_cli("search", "nvfp4", "--json")  # hub ids lukealonso/GLM-5-NVFP4, RadixArk/GLM-5.3(-Flash)-NVFP4
    assert [x["name"] for x in json.loads(r.stdout)] == ["glm-5", "glm-5.3", "glm-5.3-flash"]
    r = run_cli("resolve", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", "--json")
    d = json.loads(r.stdout)
    assert d["hubs"]["huggingface"]["files"] == ["glm-4-9b-chat-1m.Q4_K.gguf"]
    assert d["canonical_quantization"] == "Q4_K_M"


def test_exit_codes():
    r = run_cli("show", "glm4-chat-1")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "nearest: glm4-chat-1m" in r.stderr
    assert "Traceback" not in r.stderr
    assert run_cli("show").returncode == 2  # usage error
    assert run_cli("list", "--bogus").returncode == 2
    r = run_cli("resolve", "glm4-chat-1m", "--format", "pytorch", "--quant", "Q4_K")
    assert r.returncode == 1 and "pytorch has: 4-bit, 8-bit, none" in r.stderr


def test_schema_command():
    r = run_cli("schema")
    s = json.loads(r.stdout)
    assert s["title"] == "Family" and "specs" in s["properties"]


def test_validate_shipped_files():
    files = sorted(str(p) for p in SPECS.glob("*.yaml"))
    r = run_cli("validate", *files)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("ok: ") == len(files)


def test_register_list_show_unregister(tmp_path):
    d = yaml.safe_load((SPECS / "glm4-chat-1m.yaml").read_text())
    d["name"] = "glm4-chat-1m-finetune"
    d["description"] = "A local fine-tune."
    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump(d))
    r = run_cli("register", str(p))
    assert r.returncode == 0, r.stderr
    rows = json.loads(run_cli("list", "--json").stdout)
    assert {"name": "glm4-chat-1m-finetune", "origin": "user"}.items() <= next(
        x for x in rows if x["name"] == "glm4-chat-1m-finetune").items()
    assert json.loads(run_cli("show", "glm4-chat-1m-finetune", "--json").stdout)["origin"] == "user"
    r = run_cli("register", str(p))
    assert r.returncode == 1 and "already registered" in r.stderr
    assert run_cli("unregister", "glm4-chat-1m-finetune").returncode == 0
    assert run_cli("show", "glm4-chat-1m-finetune").returncode == 1


def test_user_family_cannot_shadow_shipped(tmp_path):
    p = tmp_path / "shadow.yaml"
    p.write_text((SPECS / "glm-5.yaml").read_text())
    r = run_cli("register", str(p))
    assert r.returncode == 1 and "a shipped family has this name" in r.stderr
    r = run_cli("unregister", "glm-5")
    assert r.returncode == 1 and "only families added with `registry register`" in r.stderr


HEAVY = ("torch", "transformers", "llama_cpp", "sqlalchemy", "sqlmodel", "numpy", "gguf")


def imported_by(*argv: str) -> list[str]:
    """The heavy modules that `registry ARGV` imports, run in a fresh interpreter."""
    code = (
        f"import sys; sys.argv=['registry', *{list(argv)!r}]\n"
        "from registry.cli import main\n"
        "try:\n main()\nexcept SystemExit: pass\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    line = next(x for x in r.stderr.splitlines() if x.startswith("HEAVY "))
    return eval(line[len("HEAVY "):])  # a list literal we printed ourselves


def test_show_path_imports_no_heavy_library():
    assert imported_by("show", "glm4-chat-1m", "--json") == []


def test_python_m_registry_works():
    r = subprocess.run([sys.executable, "-m", "registry", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "show" in r.stdout


def test_show_of_shipped_family_skips_the_database_even_when_it_exists(tmp_path, registry_home):
    d = yaml.safe_load((SPECS / "glm4-chat-1m.yaml").read_text())
    d["name"] = "mine"
    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump(d))
    assert run_cli("register", str(p)).returncode == 0
    assert imported_by("show", "glm-5", "--json") == []
    # ...while a user family is still found through the store
    assert json.loads(run_cli("show", "mine", "--json").stdout)["origin"] == "user"


def test_convert_refuses_unknown_target_and_bad_size(tmp_path):
    r = run_cli("convert", "glm4-chat-1m", "--from", str(tmp_path), "--to", "onnx", "--quant", "Q4_K")
    assert r.returncode == 1 and "--to 'onnx'" in r.stderr and "ggufv2, compressed-tensors" in r.stderr
    r = run_cli("convert", "glm4-chat-1m", "--from", str(tmp_path), "--to", "ggufv2", "--quant", "Q4_K",
                "--split-max-size", "2X")
    assert r.returncode == 1 and "not a size" in r.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_launch_plan_of_a_local_gguf_imports_no_heavy_library(tiny_gguf):
    # `registry launch` hands the prestarted server its argv after the plan: the plan's store look-up
    # (stdlib sqlite3) and GGUF header read (registry.gguf_header) keep SQLAlchemy and numpy off that path.
    from registry.store import Store

    g = tiny_gguf("chatglm", "F16")
    Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="FP16", path=str(g),
                         sha256="0" * 64, size_bytes=g.stat().st_size)
    plan = run_cli("launch", "glm4-chat-1m", "--format", "ggufv2", "--quant", "FP16", "--dry-run", "--json")
    assert plan.returncode == 0 and json.loads(plan.stdout)["artifact"]["path"] == str(g)
    assert json.loads(plan.stdout)["estimate"]["weights_bytes"] > 0
    assert imported_by("launch", "glm4-chat-1m", "--format", "ggufv2", "--quant", "FP16", "--dry-run", "--json") == []
