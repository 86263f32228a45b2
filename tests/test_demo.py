"""`registry demo`, the README's main job where no hub can be reached: the whole path for real
(tiny checkpoint -> GGUF Q4_K with report -> recorded -> llama.cpp server -> one chat answer -> stop)."""

from __future__ import annotations

import json
import os

import pytest

from conftest import run_cli


@pytest.mark.slow
def test_demo_runs_the_whole_path(registry_home):
    r = run_cli("demo", "--json", env={"REGISTRY_HOME": str(registry_home)})
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert {s["family"] for s in out["seed_systems"]} >= {"glm4-chat-1m", "glm-4.7", "glm-5"}
    builds = {b["gguf_type"]: b for b in out["builds"]}  # the catalog's names beside llama.cpp's
    assert set(builds) == {"F16", "Q4_K_M"} and {b["quantization"] for b in out["builds"]} == {"FP16", "Q4_K"}
    assert builds["Q4_K_M"]["size_bytes"] < builds["F16"]["size_bytes"]
    rep = builds["Q4_K_M"]["report"]
    assert rep["reference"] == "F16" and 0 < rep["kl_divergence"] and 0 <= rep["top1_agreement"] <= 1
    launch = out["launch"]
    assert launch["engine"] == "llama.cpp" and launch["url"].startswith("http://127.0.0.1:")
    answer = launch["answer"]
    assert answer["usage"]["completion_tokens"] > 0
    assert answer["usage"]["prompt_tokens"] > 5  # the GLM chat template wrapped the question
    # the demo's state lives in its own home; the server was stopped and its store says so
    demo_home = registry_home / "demo"
    assert out["home"] == str(demo_home)
    ps = json.loads(run_cli("ps", "--all", "--json", env={"REGISTRY_HOME": str(demo_home)}).stdout)
    assert ps and all(d["status"] == "stopped" for d in ps)
    for d in ps:
        assert d["pid"] is None or not os.path.exists(f"/proc/{d['pid']}") or \
            open(f"/proc/{d['pid']}/stat").read().split()[2] == "Z"
    # a second run, as a person reads it, rebuilds in place and records the same paths again, not
    # new rows; it prints the registry's lines only, no llama.cpp log noise
    r = run_cli("demo", env={"REGISTRY_HOME": str(registry_home)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "chat:" in r.stdout and "is the demo's random-weight toy, not the real glm4-chat-1m" in r.stdout
    noise = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith(("llama_", "ggml_", "load", "print_info"))]
    assert not noise, noise
    arts = json.loads(run_cli("show", "glm4-chat-1m", "--artifacts", "--json",
                              env={"REGISTRY_HOME": str(demo_home)}).stdout)["artifacts"]
    assert sorted(a["gguf_type"] for a in arts) == ["F16", "Q4_K_M"]
    assert all(a["demo"] and a["recipe"]["demo"] for a in arts)
    # the real store never sees the toy: no artifact, no deployment; pull/launch/fit look at the hub
    env = {"REGISTRY_HOME": str(registry_home), "HF_HUB_CACHE": str(registry_home / "hf")}
    assert json.loads(run_cli("show", "glm4-chat-1m", "--artifacts", "--json", env=env).stdout)["artifacts"] == []
    assert json.loads(run_cli("ps", "--all", "--json", env=env).stdout) == []
    _assert_real_lookups_skip_the_toy(env)


def _assert_real_lookups_skip_the_toy(env: dict) -> None:
    r = run_cli("pull", "glm4-chat-1m", "-f", "ggufv2", "-q", "Q4_K", "--offline", "--json", env=env)
    assert r.returncode == 1 and "not on this machine" in r.stderr, r.stdout + r.stderr
    plan = json.loads(run_cli("launch", "glm4-chat-1m", "-f", "ggufv2", "-q", "Q4_K", "--dry-run", "--json",
                              env=env).stdout)
    assert plan["artifact"]["source"] == "hub" and plan["artifact"]["path"] is None
    fit = json.loads(run_cli("fit", "glm4-chat-1m", "--quant", "auto", "--hardware", "cpu-64GB", "--json",
                             env=env).stdout)
    q4 = next(b for b in fit["builds"] if b["format"] == "ggufv2" and b["quantization"] == "Q4_K")
    assert q4["weights_bytes"] > 5e9  # a 9B model at ~4.9 bits, not the 1 MiB toy


def test_an_older_demos_rows_in_the_real_store_are_never_picked(registry_home, tiny_gguf):
    # Demos before this change recorded their toy in the real store, at REGISTRY_HOME/demo/builds:
    # look-up must not take those rows (nor any row marked as the demo's) for the real build.
    import shutil

    from registry.store import Store

    builds = registry_home / "demo" / "builds"
    builds.mkdir(parents=True)
    old = builds / "glm4-chat-1m.Q4_K_M.gguf"
    shutil.copy(tiny_gguf("chatglm", "Q4_K_M"), old)
    marked = registry_home / "elsewhere.Q4_K_M.gguf"
    shutil.copy(old, marked)
    for p, recipe in ((old, {"converter": "gguf"}), (marked, {"converter": "gguf", "demo": True})):
        Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K_M", path=str(p),
                             sha256="0" * 64, size_bytes=p.stat().st_size, recipe=recipe)
    env = {"REGISTRY_HOME": str(registry_home), "HF_HUB_CACHE": str(registry_home / "hf")}
    _assert_real_lookups_skip_the_toy(env)
    arts = json.loads(run_cli("show", "glm4-chat-1m", "--artifacts", "--json", env=env).stdout)["artifacts"]
    assert [a["demo"] for a in arts] == [True, True]
