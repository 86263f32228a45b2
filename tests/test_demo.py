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
    builds = {b["quantization"]: b for b in out["builds"]}
    assert set(builds) == {"F16", "Q4_K_M"}
    assert builds["Q4_K_M"]["size_bytes"] < builds["F16"]["size_bytes"]
    rep = builds["Q4_K_M"]["report"]
    assert rep["reference"] == "F16" and 0 < rep["kl_divergence"] and 0 <= rep["top1_agreement"] <= 1
    launch = out["launch"]
    assert launch["engine"] == "llama.cpp" and launch["url"].startswith("http://127.0.0.1:")
    answer = launch["answer"]
    assert answer["usage"]["completion_tokens"] > 0
    assert answer["usage"]["prompt_tokens"] > 5  # the GLM chat template wrapped the question
    # the server was stopped and the store says so
    ps = json.loads(run_cli("ps", "--all", "--json", env={"REGISTRY_HOME": str(registry_home)}).stdout)
    assert ps and all(d["status"] == "stopped" for d in ps)
    for d in ps:
        assert d["pid"] is None or not os.path.exists(f"/proc/{d['pid']}") or \
            open(f"/proc/{d['pid']}/stat").read().split()[2] == "Z"
    # a second run, as a person reads it, rebuilds in place and records the same paths again, not
    # new rows; it prints the registry's lines only, no llama.cpp log noise
    r = run_cli("demo", env={"REGISTRY_HOME": str(registry_home)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "chat:" in r.stdout
    noise = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith(("llama_", "ggml_", "load", "print_info"))]
    assert not noise, noise
    arts = json.loads(run_cli("show", "glm4-chat-1m", "--artifacts", "--json",
                              env={"REGISTRY_HOME": str(registry_home)}).stdout)["artifacts"]
    assert sorted(a["quantization"] for a in arts) == ["F16", "Q4_K_M"]
