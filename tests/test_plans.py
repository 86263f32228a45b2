"""Launch plans on the hardware people have: hardware strings, GPU offload for GGUF, --quant auto by speed,
multi-node layouts, entry points for other machines, remote code, context limits, a clean environment for
llama.cpp, and a second launch of a running build reusing it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

GB = 10**9


def _plan(*args):
    r = run_cli("launch", *args, "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# --- hardware strings --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,count,name,mem_gb,cc", [
    ("1xH100-80G", 1, "NVIDIA H100 80GB HBM3", 80, 9.0),
    ("8xH200", 8, "NVIDIA H200", 141, 9.0),
    ("1xRTX-4090", 1, "NVIDIA GeForce RTX 4090", 24, 8.9),
    ("2xL40S", 2, "NVIDIA L40S", 48, 8.9),
    ("4xA100-40G", 4, "NVIDIA A100-SXM4-40GB", 40, 8.0),
    ("4xa100", 4, "NVIDIA A100-SXM4-80GB", 80, 8.0),
    ("24GB", 1, "GPU (24 GB)", 24, None),
    ("2x80GB", 2, "GPU (80 GB)", 80, None),
])
def test_hardware_strings(text, count, name, mem_gb, cc):
    from registry import hardware

    hw = hardware.get(text)
    assert hw.gpu_count == count and hw.gpus[0].name == name and hw.min_compute_capability == cc
    assert hw.gpu_memory_bytes == mem_gb * GB and not hw.local
    assert hw.host_memory_bytes >= 64 * GB


def test_cpu_with_ram_and_unknown_gpu():
    from registry import hardware
    from registry.errors import RegistryError

    hw = hardware.get("cpu-64GB")
    assert hw.gpus == [] and hw.host_memory_bytes == 64 * GB
    with pytest.raises(RegistryError) as e:
        hardware.get("3xFOO")
    assert "RTX-4090" in str(e.value) and "cpu-64GB" in str(e.value)


def test_hardware_json_is_accepted_back(tmp_path):
    r = run_cli("hardware", "--hardware", "2xL40S", "--json")
    f = tmp_path / "hw.json"
    f.write_text(r.stdout)
    fit = json.loads(run_cli("fit", "glm4-chat-1m", "--hardware", str(f), "--json").stdout)
    assert fit["hardware"]["gpu_count"] == 2 and fit["hardware"]["gpus"][1]["name"] == "NVIDIA L40S"
    here = tmp_path / "here.json"
    here.write_text(run_cli("hardware", "--json").stdout)
    assert run_cli("fit", "glm4-chat-1m", "--hardware", str(here), "--json").returncode == 0


def test_physical_cores_from_cpuinfo():
    from registry.hardware import physical_cores

    # two packages x two cores x two threads, as /proc/cpuinfo lists them
    blocks = []
    for cpu, (pkg, core) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)] * 2):
        blocks.append(f"processor\t: {cpu}\nphysical id\t: {pkg}\ncore id\t\t: {core}\n")
    info = "\n".join(blocks)
    assert physical_cores(info, set(range(8))) == 4
    assert physical_cores(info, {0, 4}) == 1  # siblings of one core
    assert physical_cores("", None) == 0


# --- llama.cpp on GPUs ---------------------------------------------------------------------------------------


def test_gguf_on_gpus_offloads_layers():
    full = _plan("glm4-chat-1m", "-f", "ggufv2", "-q", "Q4_K", "--hardware", "1xRTX-4090")
    argv = full["argv"]
    assert argv[argv.index("--n_gpu_layers") + 1] == "-1" and argv[0] == "python3"
    assert full["estimate"]["gpus"] == 1 and full["estimate"]["host_bytes"] == 0
    assert not any("runs on the CPU" in n for n in full["notes"])
    # BF16 (18 GB) with a 200K context does not fit a 24 GB L4: some layers stay on the host
    part = _plan("glm4-chat-1m", "-f", "ggufv2", "-q", "BF16", "--hardware", "1xL4", "--context", "200000")
    k = int(part["argv"][part["argv"].index("--n_gpu_layers") + 1])
    e = part["estimate"]
    assert 0 < k < 40 and e["host_bytes"] > 0
    per_layer = (e["weights_bytes"] + e["kv_cache_bytes"]) / 40
    assert abs(e["host_bytes"] - (40 - k) * per_layer) < per_layer  # the layers not offloaded
    assert e["per_gpu_bytes"] <= 24 * GB - GB  # what the GPU holds stays within its memory
    assert any(f"{k} of 40 layers" in n for n in part["notes"])
    # a CPU profile: no GPU flags
    cpu = _plan("glm4-chat-1m", "-f", "ggufv2", "-q", "Q4_K", "--hardware", "cpu-64GB")
    assert "--n_gpu_layers" not in cpu["argv"]


def test_quant_auto_ranks_by_decode_speed():
    r = run_cli("fit", "glm4-chat-1m", "--quant", "auto", "--hardware", "cpu-64GB", "--json")
    d = json.loads(r.stdout)["auto"]
    # all builds fit 64 GB, none reaches 10 tok/s on ~10 GB/s per core: the most bits within half the
    # fastest build's speed. Q2_K reads 3.0 bits a weight, Q5_K_M 5.7 (<= 2x), Q6_K 6.56 (> 2x).
    assert d["quantization"] == "Q5_K" and d["format"] == "ggufv2" and d["context"] == 4096
    assert d["command"] == "registry launch glm4-chat-1m --format ggufv2 --quant Q5_K --hardware cpu-64GB"
    # on GPUs every build is fast: the most bits that fit win
    g = json.loads(run_cli("fit", "glm4-chat-1m", "--quant", "auto", "--hardware", "8xH200", "--json").stdout)
    assert g["auto"]["quantization"] in ("BF16", "FP16", "none") and g["auto"]["decode_tok_s_bound"] > 10
    text = run_cli("fit", "glm4-chat-1m", "--quant", "auto", "--hardware", "cpu-64GB").stdout
    assert "context 4,096" in text and "registry launch glm4-chat-1m --format ggufv2 --quant Q5_K" in text


# --- multi-node ----------------------------------------------------------------------------------------------


def test_vllm_multi_node_uses_every_gpu():
    p = _plan("glm-4.6", "-f", "compressed-tensors", "-q", "AWQ", "--hardware", "4xH100-80G", "--nodes", "2")
    argv = p["argv"]
    assert argv[0] == "vllm" and argv[1] == "serve"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"
    assert argv[argv.index("--pipeline-parallel-size") + 1] == "2"
    assert p["estimate"]["gpus"] == 8
    ray = [c for c in p["commands"] if c["argv"][0] == "ray"]
    assert len(ray) == 2 and all(not c["argv"][0].startswith("/") for c in p["commands"])
    assert any("ray" in n and "install" in n for n in p["notes"])


def test_sglang_tp_size_counts_every_node_and_drops_single_box_nccl():
    one = _plan("glm-5", "-f", "modelopt", "-q", "NVFP4", "--hardware", "8xB200")
    assert one["env"].get("NCCL_IB_DISABLE") == "1"  # seed 003's single-box command keeps them
    p = _plan("glm-5", "-f", "modelopt", "-q", "NVFP4", "--hardware", "8xB200", "--nodes", "2")
    for c in p["commands"]:
        argv = c["argv"]
        assert argv[:3] == ["python3", "-m", "sglang.launch_server"]
        assert argv[argv.index("--tp-size") + 1] == "16" and "--tp" not in argv
        assert "NCCL_IB_DISABLE" not in c["env"] and "NCCL_P2P_LEVEL" not in c["env"]
    assert p["estimate"]["gpus"] == 16
    assert any("NCCL_IB_DISABLE" in n for n in p["notes"])


# --- flags derived from the spec -----------------------------------------------------------------------------


def test_remote_code_and_version_floors():
    p = _plan("glm4-chat-1m", "-f", "pytorch", "-q", "none", "--engine", "vllm", "--hardware", "1xH100-80G",
              "--context", "32768")
    assert "--trust-remote-code" in p["argv"]
    hf = _plan("glm-4-9b-chat", "-f", "pytorch", "-q", "none", "--engine", "vllm", "--hardware", "1xH100-80G",
               "--context", "32768")
    assert "--trust-remote-code" not in hf["argv"]  # the -hf repository is Transformers-native
    # a plan for another machine names the vLLM release that can load GLM-5 (GlmMoeDsaForCausalLM)
    g = _plan("glm-5", "-f", "pytorch", "-q", "none", "--engine", "vllm", "--hardware", "8xB200", "--nodes", "2")
    hint = " ".join(g["notes"])
    assert "vllm>=0.16.0" in hint and "GlmMoeDsa" in hint and "ray" in hint


def test_a_family_floor_from_its_spec_is_named_in_plans():
    # glm-5.2's README asks for vLLM 0.23.0+ and SGLang 0.5.13.post1+ (registry/specs/glm-5.2.yaml engine_floors)
    v = _plan("glm-5.2", "-f", "fp8", "-q", "FP8", "--engine", "vllm", "--hardware", "8xB200", "--nodes", "2")
    notes = " ".join(v["notes"])
    assert "glm-5.2 needs vLLM >= 0.23.0 on 8xB200" in notes and "'vllm>=0.23.0'" in notes
    s = _plan("glm-5.2", "-f", "fp8", "-q", "FP8", "--engine", "sglang", "--hardware", "8xB200", "--nodes", "2")
    assert "glm-5.2 needs SGLang >= 0.5.13.post1 on 8xB200" in " ".join(s["notes"])
    g5 = _plan("glm-5", "-f", "fp8", "-q", "FP8", "--engine", "vllm", "--hardware", "8xB200", "--nodes", "2")
    assert "vllm>=0.16.0" in " ".join(g5["notes"]) and "0.23.0" not in " ".join(g5["notes"])  # glm-5 names none


def _standin_engine(root: Path, module: str, release: str) -> str:
    """An installed distribution of `module` at `release` (its package and dist-info), for PYTHONPATH."""
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text("")
    info = root / f"{module}-{release}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: {release}\n")
    return f"{ROOT}{os.pathsep}{root}"


@pytest.mark.parametrize("release,below", [("0.5.13", True), ("0.5.13.post1", False), ("0.6.0", False)])
def test_an_installed_engine_below_the_family_floor_is_a_reason(tmp_path, release, below):
    path = _standin_engine(tmp_path / "site", "sglang", release)
    r = run_cli("launch", "glm-5.2", "-f", "fp8", "-q", "FP8", "--engine", "sglang", "--dry-run",
                env={"PYTHONPATH": path})
    assert r.returncode == 1 and "Traceback" not in r.stderr  # this machine has no GPU either way
    reason = f"SGLang {release} is installed; glm-5.2 needs SGLang >= 0.5.13.post1"
    assert (reason in r.stderr) == below, r.stderr


def test_release_order_is_pep440():
    from registry.engines.base import version_below

    assert version_below("0.5.13", "0.5.13.post1") and version_below("0.9.2", "0.23.0")
    assert not version_below("0.23.0", "0.23.0") and not version_below("0.23.1", "0.23.0")
    assert version_below("0.23.0.dev1+cu129", "0.23.0")  # a nightly comes before its release


def test_context_above_the_family_maximum():
    r = run_cli("launch", "glm-4.6", "-f", "compressed-tensors", "-q", "AWQ", "--context", "10000000", "--dry-run")
    assert r.returncode == 1 and "202,752" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("fit", "glm4-chat-1m", "--context", "2000000")
    assert r.returncode == 1 and "1048576" in r.stderr


# --- starting llama.cpp --------------------------------------------------------------------------------------


def test_llamacpp_env_list_matches_the_installed_server():
    pytest.importorskip("llama_cpp.server.settings")
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    from registry.prestart import LLAMA_CPP_ENV

    fields = {f.upper() for f in (*ServerSettings.model_fields, *ModelSettings.model_fields)}
    assert fields | {"CONFIG_FILE"} == set(LLAMA_CPP_ENV)


def _record(gguf: Path) -> None:
    from registry.store import Store

    Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="FP16", path=str(gguf),
                         sha256="0" * 64, size_bytes=gguf.stat().st_size)


@pytest.mark.slow
@pytest.mark.parametrize("prestart", [True, False])
def test_user_environment_cannot_move_the_server_and_a_second_launch_reuses(tiny_gguf, prestart):
    _record(tiny_gguf("chatglm", "F16"))
    hostile = {"PORT": "5999", "HOST": "0.0.0.0", "n_ctx": "64", "CONFIG_FILE": "/nonexistent.json",
               "MODEL": "/nonexistent.gguf"}
    if not prestart:
        hostile["REGISTRY_NO_PRESTART"] = "1"
    args = ("launch", "glm4-chat-1m", "-f", "ggufv2", "-q", "FP16", "--context", "256", "--timeout", "120")
    try:
        r = run_cli(*args, "--json", env=hostile)
        assert r.returncode == 0, r.stderr
        dep = json.loads(r.stdout)
        assert dep["host"] == "127.0.0.1" and dep["reused"] is False
        env = Path(f"/proc/{dep['pid']}/environ").read_bytes().split(b"\0")
        for k in hostile:
            if k != "REGISTRY_NO_PRESTART":
                assert not any(e.upper().startswith(k.upper().encode() + b"=") for e in env), k
        import urllib.request

        with urllib.request.urlopen(dep["address"] + "/models", timeout=30) as resp:
            assert resp.status == 200
        again = run_cli(*args, "--json")
        assert again.returncode == 0 and json.loads(again.stdout)["id"] == dep["id"]
        assert json.loads(again.stdout)["reused"] is True
        text = run_cli(*args)
        assert "reusing it" in text.stderr and "model: glm4-chat-1m" in text.stdout and "curl " in text.stdout
        rows = json.loads(run_cli("ps", "--json").stdout)
        assert [d["id"] for d in rows] == [dep["id"]]
    finally:
        run_cli("stop", "--all")
