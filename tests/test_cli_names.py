"""Names as people type them (issue 16, point 3): build tags FAMILY:QUANT, any case, `gguf`, `vLLM`,
the format inferred from the quantization, one spelling of a quantization in JSON, `-a` = --all."""

from __future__ import annotations

import json

from conftest import run_cli


def _plan(*args: str) -> dict:
    r = run_cli("launch", *args, "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_launch_infers_the_format_and_takes_a_tag_in_any_case():
    # `registry launch glm4-chat-1m -q Q4_K` used to fail "Missing option --format"
    base = _plan("glm4-chat-1m", "-q", "Q4_K")
    assert (base["format"], base["quantization"], base["gguf_type"]) == ("ggufv2", "Q4_K", "Q4_K_M")
    for args in (["glm4-chat-1m:Q4_K"], ["glm4-chat-1m:q4_k_m"], ["glm4-chat-1m", "-q", "q4_k_m", "-f", "gguf"],
                 ["glm4-chat-1m", "--quant", "Q4_K_M", "--format", "GGUFv2"]):
        p = _plan(*args)
        assert (p["format"], p["quantization"], p["argv"]) == ("ggufv2", "Q4_K", base["argv"]), args
    # engines in any case
    p = _plan("glm-4.6:awq", "--engine", "vLLM", "--hardware", "4xH100-80G")
    assert (p["engine"], p["quantization"]) == ("vllm", "AWQ")
    assert _plan("glm4-chat-1m:Q4_K", "-e", "LLAMA.CPP")["engine"] == "llama.cpp"


def test_tag_errors_say_what_to_do():
    r = run_cli("launch", "glm4-chat-1m:Q4_K", "--quant", "Q8_0", "--dry-run")
    assert r.returncode == 1 and "names quantization Q4_K but --quant says Q8_0" in r.stderr
    r = run_cli("resolve", "glm4-chat-1m")  # `launch FAMILY` picks a build (tests/test_daily.py); resolve asks
    assert r.returncode == 1 and "give a quantization: glm4-chat-1m:QUANT or --quant" in r.stderr
    # the same quantization in two formats: which ones, and the flag that picks
    r = run_cli("resolve", "glm-4-9b-chat", "-q", "bf16")
    assert r.returncode == 1 and "formats ggufv2, mlx; pass --format" in r.stderr, r.stderr
    assert json.loads(run_cli("resolve", "glm-4-9b-chat:bf16", "-f", "mlx", "--json").stdout)["quantization"] == "bf16"


def test_every_build_command_takes_the_tag(registry_home):
    env = {"HF_HUB_CACHE": str(registry_home / "hf")}
    d = json.loads(run_cli("resolve", "glm4-chat-1m:fp16", "--json").stdout)
    assert (d["format"], d["quantization"], d["canonical_quantization"], d["gguf_type"]) == \
        ("ggufv2", "FP16", "F16", "F16")
    r = run_cli("pull", "glm4-chat-1m:q4_k", "--offline", env=env)
    assert r.returncode == 1 and "glm4-chat-1m ggufv2 Q4_K is not on this machine" in r.stderr, r.stderr
    r = run_cli("verify", "glm4-chat-1m:Q4_K", "--json", env=env)
    assert "Missing" not in r.stderr and "give a" not in r.stderr
    fit = json.loads(run_cli("fit", "glm4-chat-1m:q4_k_m", "--hardware", "cpu-64GB", "--json").stdout)
    assert [(b["quantization"], b["gguf_type"]) for b in fit["builds"]] == [("Q4_K", "Q4_K_M")]
    show = json.loads(run_cli("show", "glm4-chat-1m:Q4_K", "--json").stdout)
    assert show["name"] == "glm4-chat-1m" and show["build"]["hubs"]["huggingface"]["files"] == \
        ["glm-4-9b-chat-1m.Q4_K.gguf"]
    r = run_cli("convert", "glm4-chat-1m:Q4_K", "--from", str(registry_home / "nowhere"))
    assert r.returncode == 1 and "--from" in r.stderr and "Missing option" not in r.stderr, r.stderr


def test_list_filters_in_any_case_and_finding_nothing_fails():
    names = {x["name"] for x in json.loads(run_cli("list", "--quant", "q4_k_m", "--json").stdout)}
    assert "glm4-chat-1m" in names  # its spec says Q4_K: the same build
    assert names == {x["name"] for x in json.loads(run_cli("list", "--quant", "Q4_K", "--json").stdout)}
    assert {x["name"] for x in json.loads(run_cli("list", "-f", "gguf", "-e", "LlamaCpp", "--json").stdout)} >= names
    r = run_cli("list", "--quant", "q4_k_m", "--format", "pytorch")
    assert r.returncode == 1 and "no family matches --format pytorch --quant q4_k_m" in r.stderr
    r = run_cli("list", "--quant", "Q4_KX")
    assert r.returncode == 1 and "unknown quantization 'Q4_KX'" in r.stderr


def test_artifacts_carry_the_catalogs_and_llama_cpps_names(tiny_gguf):
    from registry.store import Store

    g = tiny_gguf("chatglm", "F16")
    Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="F16", path=str(g),
                         sha256="0" * 64, size_bytes=g.stat().st_size)  # a converter records llama.cpp's name
    a = json.loads(run_cli("show", "glm4-chat-1m", "--artifacts", "--json").stdout)["artifacts"][0]
    assert (a["quantization"], a["gguf_type"]) == ("FP16", "F16")
    p = _plan("glm4-chat-1m:f16")
    assert (p["quantization"], p["gguf_type"], p["artifact"]["path"]) == ("FP16", "F16", str(g))


def test_dash_a_means_all():
    assert run_cli("ps", "-a").returncode == 0
    r = run_cli("stop", "-a")
    assert r.returncode == 0 and "nothing running" in r.stdout, r.stderr
    for cmd in (["list", "-a", "chat"], ["show", "glm4-chat-1m", "-a"]):
        r = run_cli(*cmd)
        assert r.returncode == 2 and "-a" in r.stderr, cmd


def test_prestart_guesses_a_gguf_launch_from_the_names_people_type(monkeypatch):
    # `registry launch` starts llama.cpp's interpreter before planning (registry/prestart.py): a tag, `gguf`, a
    # GGUF quantization without --format or `-e LLAMA.CPP` is a GGUF launch too; vLLM and AWQ are not
    from registry.prestart import LLAMA_CPP_SERVER, guess

    monkeypatch.delenv("REGISTRY_NO_PRESTART", raising=False)
    for line in ("launch glm4-chat-1m:Q4_K", "launch glm4-chat-1m -q q4_k_m", "launch glm4-chat-1m -f gguf -q Q4_K",
                 "launch glm4-chat-1m -q Q4_K -e LLAMA.CPP", "launch glm4-chat-1m --format ggufv2 --quant FP16"):
        assert guess(["registry", *line.split()]) == LLAMA_CPP_SERVER, line
    for line in ("launch glm-4.6:AWQ", "launch glm4-chat-1m -q Q4_K -e vLLM", "launch glm-4.7 -q W4A16_GS64",
                 "launch glm4-chat-1m:Q4_K --dry-run"):
        assert guess(["registry", *line.split()]) is None, line
