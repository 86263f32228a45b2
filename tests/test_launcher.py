"""The launcher: seed commands flag by flag, engine choice with reasons, memory figures, bad input,
and a real llama.cpp server on a tiny GLM GGUF (chat completion through the GLM template, ps/logs/stop,
RSS against the estimate)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import run_cli

# --- the seed commands, copied from the seed documents (not from registry/specs/) ----------------------------

SEED_000 = {  # seed 000: python3 -m vllm.entrypoints.openai.api_server --model /mnt/models/glm-4-9b-chat-hf-fp8 ...
    "--served-model-name": "glm-4-9b-chat", "--port": "8080", "--quantization": "compressed-tensors",
    "--kv-cache-dtype": "fp8", "--max-model-len": "32768", "--max-num-seqs": "64",
    "--gpu-memory-utilization": "0.75",
}
SEED_001 = {  # seed 001 Quickstart: CUDA_VISIBLE_DEVICES=0,...,7 vllm serve TheHouseOfTheDude/GLM-4.7_Compressed-Tensors
    "--quantization": "compressed-tensors", "--tensor-parallel-size": "8", "--max-model-len": "2048",
    "--gpu-memory-utilization": "0.70", "--dtype": "bfloat16",
}
SEED_002_COMMON = {
    "--tensor-parallel-size": "4", "--tool-call-parser": "glm45", "--reasoning-parser": "glm45",
    "--enable-auto-tool-choice": True, "--served-model-name": "glm-4.6-awq", "--max-model-len": "131072",
    "--gpu-memory-utilization": "0.9", "--trust-remote-code": True, "--port": "8000",
}
SEED_003 = {
    "--model": "lukealonso/GLM-5-NVFP4", "--served-model-name": "glm-5", "--reasoning-parser": "glm45",
    "--tool-call-parser": "glm47", "--trust-remote-code": True, "--tp": "8", "--mem-fraction-static": "0.95",
    "--max-running-requests": "8", "--kv-cache-dtype": "fp8_e4m3", "--quantization": "modelopt_fp4",
    "--attention-backend": "flashinfer", "--moe-runner-backend": "flashinfer_cutlass",
    "--disable-custom-all-reduce": True, "--enable-flashinfer-allreduce-fusion": True,
    "--host": "0.0.0.0", "--port": "8000",
}
SEED_003_ENV = {"NCCL_IB_DISABLE": "1", "NCCL_P2P_LEVEL": "PHB", "NCCL_ALLOC_P2P_NET_LL_BUFFERS": "1",
                "NCCL_MIN_NCHANNELS": "8", "OMP_NUM_THREADS": "8", "SAFETENSORS_FAST_GPU": "1"}


def flags(argv: list[str]) -> dict:
    """Flag -> value (True for a bare flag), numbers normalised ('0.70' == '0.7')."""
    out: dict = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                assert a not in out, f"{a} given twice"
                out[a] = _norm(argv[i + 1])
                i += 2
                continue
            out[a] = True
        i += 1
    return out


def _norm(v):
    try:
        return repr(float(v)) if "." in v else v
    except ValueError:
        return v


def norm(d: dict) -> dict:
    return {k: (_norm(v) if isinstance(v, str) else v) for k, v in d.items()}


def dry(*args: str) -> dict:
    r = run_cli("launch", *args, "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_seed_000_vllm_fp8():
    p = dry("glm-4-9b-chat", "--format", "compressed-tensors", "--quant", "FP8_DYNAMIC", "--hardware", "4xH100-80G")
    assert p["engine"] == "vllm" and p["argv"][1:3] == ["serve", "GizzmoShifu/glm-4-9b-chat-hf-fp8"]
    got = flags(p["argv"][3:])
    # The seed binds the container's port; we bind 127.0.0.1 explicitly unless --host says otherwise.
    assert got.pop("--host") == "127.0.0.1"
    assert got == norm(SEED_000)
    assert p["port"] == 8080 and p["env"] == {}
    assert any("not installed here and need not be" in n for n in p["notes"])  # a plan for another machine


def test_seed_001_vllm_tp8_on_its_branch():
    p = dry("glm-4.7", "--format", "compressed-tensors", "--quant", "W4A16_GS64", "--hardware", "8xB200")
    assert p["argv"][1:3] == ["serve", "TheHouseOfTheDude/GLM-4.7_Compressed-Tensors"]
    got = flags(p["argv"][3:])
    got.pop("--host")
    # The seed's command serves `main`, a landing page; the runnable build is on the quant's branch.
    assert got.pop("--revision") == "W4A16_GS64"
    assert got.pop("--port") == "8000"
    assert got == norm(SEED_001)
    assert p["env"] == {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
    assert p["artifact"]["revision"] == "W4A16_GS64"


@pytest.mark.parametrize("profile, ep", [("expert-parallel", True), ("default", False)])
def test_seed_002_both_tp4_variants(profile, ep):
    p = dry("glm-4.6", "--format", "compressed-tensors", "--quant", "AWQ", "--hardware", "4xH100-80G",
            "--profile", profile)
    got = flags(p["argv"][3:])
    got.pop("--host")
    want = norm(SEED_002_COMMON) | ({"--enable-expert-parallel": True} if ep else {})
    assert got == want
    assert p["estimate"]["gpus"] == 4


def test_seed_002_default_is_the_recommended_expert_parallel():
    p = dry("glm-4.6", "--format", "compressed-tensors", "--quant", "AWQ", "--hardware", "4xH100-80G")
    assert p["profile"] == "expert-parallel" and "--enable-expert-parallel" in p["argv"]


def test_seed_003_sglang_with_nccl_env():
    p = dry("glm-5", "--format", "modelopt", "--quant", "NVFP4", "--hardware", "8xB200", "--host", "0.0.0.0")
    assert p["engine"] == "sglang"
    assert p["argv"][1:3] == ["-m", "sglang.launch_server"]
    # the seed's `--tp 8` is argparse's abbreviation of SGLang's --tp-size: the plan writes the full name
    want = {("--tp-size" if k == "--tp" else k): v for k, v in norm(SEED_003).items()}
    assert flags(p["argv"][3:]) == want
    assert p["env"] == SEED_003_ENV


def test_context_reaches_the_engine_argv():
    # --context overrides the launch profile's own length (seed 000: --max-model-len 32768) and the
    # memory estimate follows it; without a profile the generic command carries it too.
    p = dry("glm-4-9b-chat", "--format", "compressed-tensors", "--quant", "FP8_DYNAMIC", "--hardware", "4xH100-80G",
            "--context", "8192")
    assert flags(p["argv"][3:])["--max-model-len"] == "8192" and p["estimate"]["context"] == 8192
    g = dry("glm4-chat-1m", "--format", "pytorch", "--quant", "none", "--engine", "vllm", "--hardware", "4xH100-80G",
            "--context", "65536")
    assert flags(g["argv"][3:])["--max-model-len"] == "65536" and g["estimate"]["context"] == 65536
    s = dry("glm-5", "--format", "modelopt", "--quant", "NVFP4", "--hardware", "8xB200", "--context", "16384")
    assert s["engine"] == "sglang" and flags(s["argv"][3:])["--context-length"] == "16384"
    assert s["estimate"]["context"] == 16384
    # a smaller context needs less KV cache: the estimate is not the profile's
    full = dry("glm-5", "--format", "modelopt", "--quant", "NVFP4", "--hardware", "8xB200")
    assert "--context-length" not in full["argv"] and full["estimate"]["kv_cache_bytes"] > s["estimate"]["kv_cache_bytes"]


def test_multi_node_plans():
    p = dry("glm-5", "--format", "modelopt", "--quant", "NVFP4", "--hardware", "8xB200", "--nodes", "2", "--gpus", "8")
    ranks = [flags(c["argv"])["--node-rank"] for c in p["commands"]]
    assert ranks == ["0", "1"]
    for c in p["commands"]:
        f = flags(c["argv"])
        assert f["--nnodes"] == "2" and f["--tp-size"] == "16" and f["--dist-init-addr"].endswith(":5000")
        # seed 003's NCCL settings are for one PCIe box; across machines they are left out
        assert c["env"] == {k: v for k, v in SEED_003_ENV.items() if k not in ("NCCL_IB_DISABLE", "NCCL_P2P_LEVEL")}
    # the plan's own command is the node that serves the API: SGLang's rank 0, with the health URL
    assert flags(p["argv"])["--node-rank"] == "0" and p["health_url"].endswith("/health")
    v = dry("glm-4.6", "--format", "pytorch", "--quant", "none", "--hardware", "8xH100-80G", "--nodes", "2")
    serve = [c for c in v["commands"] if "serve" in c["argv"]]
    assert len(serve) == 1 and v["argv"] == serve[0]["argv"]  # vLLM's head (serve) is the plan's command
    f = flags(serve[0]["argv"])
    assert (f["--tensor-parallel-size"], f["--pipeline-parallel-size"], f["--distributed-executor-backend"]) == ("8", "2", "ray")
    assert sum("--address=HEAD_IP:6379" in c["argv"] for c in v["commands"]) == 1  # the worker joins the head's Ray
    # Without --nodes the same build does not fit one 8x80 GB machine, and the reason says so.
    r = run_cli("launch", "glm-4.6", "--format", "pytorch", "--quant", "none", "--hardware", "8xH100-80G", "--dry-run")
    assert r.returncode == 1 and "not enough GPU memory" in r.stderr


# --- rejection reasons ------------------------------------------------------------------------------


def test_nvfp4_on_hopper_is_rejected_for_compute():
    r = run_cli("launch", "glm-5", "--format", "modelopt", "--quant", "NVFP4", "--hardware", "4xH100-80G", "--dry-run")
    assert r.returncode == 1
    assert "NVFP4 needs Blackwell GPUs (compute capability 10.0+)" in r.stderr and "has 9.0" in r.stderr


def test_vllm_rule_for_glm4_chat_1m_4bit():
    r = run_cli("launch", "glm4-chat-1m", "--format", "pytorch", "--quant", "4-bit", "--engine", "vllm",
                "--hardware", "4xH100-80G", "--dry-run")
    assert r.returncode == 1
    assert "vllm cannot serve" in r.stderr and "only for quantization none, not 4-bit" in r.stderr
    # without forcing: Transformers takes it, vLLM is listed with the rule
    p = dry("glm4-chat-1m", "--format", "pytorch", "--quant", "4-bit", "--hardware", "4xH100-80G")
    assert p["engine"] == "transformers" and "--quantization" in p["argv"] and "bnb-4bit" in p["argv"]
    assert {"engine": "vllm", "reasons": ["spec rule: vllm serves glm4-chat-1m pytorch only for quantization none, not 4-bit"]} in p["rejected"]


def test_cpu_profile():
    r = run_cli("launch", "glm-4.6", "--format", "compressed-tensors", "--quant", "AWQ", "--hardware", "cpu", "--dry-run")
    assert r.returncode == 1 and "vllm needs NVIDIA GPUs; cpu has none" in r.stderr
    p = dry("glm4-chat-1m", "--format", "pytorch", "--quant", "none", "--hardware", "cpu")
    assert p["engine"] == "transformers" and "--device" in p["argv"]
    assert any(x["engine"] == "vllm" and "needs NVIDIA GPUs" in x["reasons"][0] for x in p["rejected"])


def test_fp8_marlin_fallback_and_too_old(tmp_path):
    a100 = dry("glm-4-9b-chat", "--format", "compressed-tensors", "--quant", "FP8_DYNAMIC", "--hardware", "4xA100-80G")
    assert any("Marlin fallback" in n for n in a100["notes"])
    old = tmp_path / "v100.json"
    old.write_text(json.dumps({"name": "1xV100", "gpus": 1, "gpu": {"name": "Tesla V100", "memory_gb": 32,
                                                                      "compute_capability": 7.0}}))
    r = run_cli("launch", "glm-4-9b-chat", "--format", "compressed-tensors", "--quant", "FP8_DYNAMIC",
                "--hardware", str(old), "--dry-run")
    assert r.returncode == 1 and "needs compute capability 8.9+" in r.stderr and "Tesla V100 has 7.0" in r.stderr
    r = run_cli("launch", "glm-4.6", "--format", "compressed-tensors", "--quant", "AWQ", "--hardware", str(old), "--dry-run")
    assert "AWQ needs Marlin kernels (compute capability 8.0+)" in r.stderr and "needs 4 GPUs per node" in r.stderr


def test_engine_not_installed_names_the_extra():
    # vLLM is not installed in this project's environment: for this machine that is a real reason.
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here: 'not installed' is not a reason on this machine")
    r = run_cli("launch", "glm-4-9b-chat", "--format", "compressed-tensors", "--quant", "FP8_DYNAMIC", "--dry-run")
    assert r.returncode == 1
    assert "vllm is not installed here" in r.stderr and "pip install 'glm-registry[vllm]'" in r.stderr


# --- memory figures (seed 002) ----------------------------------------------------------------------


def test_seed_002_memory_and_bandwidth():
    """Seed 002: 176 GB of AWQ weights; ~47 GB per GPU with expert parallel on 4 GPUs.

    weights: 357B x (4 + 16/128 + 4/128) bits = 185.5 GB, +5% on the card's 176 GB (which counts the
    dropped MTP layer out and may be du's GiB) -> tolerance 10%.
    per GPU: weights/4 + KV for 32768 fp16 tokens /4 + 2 GB runtime = 51.5 GB vs the card's ~47 GB
    (its own table: 12 + 28 GB weights, 5 GB KV, 2 GB activations) -> tolerance 12%. The card's ~95 GB
    per GPU without EP is vLLM's --gpu-memory-utilization reservation, not what the model needs.
    """
    r = run_cli("fit", "glm-4.6", "--hardware", "4xRTX-PRO-6000", "--context", "32768", "--json")
    assert r.returncode == 0, r.stderr
    awq = next(b for b in json.loads(r.stdout)["builds"] if b["quantization"] == "AWQ")
    assert awq["fits"] and awq["gpus"] == 4
    assert abs(awq["weights_bytes"] / 176e9 - 1) < 0.10
    assert abs(awq["per_gpu_bytes"] / 47e9 - 1) < 0.12

    # tok/s = bandwidth / bytes read per token (28.72B active at AWQ's bits). The card's figures are
    # ~50.3% of that bound ("Memory Bandwidth Efficiency: 50.3%"); its "theoretical maximum 130 tok/s"
    # at 1.75 TB/s is the bound itself.
    import registry
    from registry.estimate import decode_bound_tok_s

    res = registry.resolve("glm-4.6", "compressed-tensors", "AWQ")
    bound = lambda bw: decode_bound_tok_s(res.family, res.spec, "AWQ", bw)  # noqa: E731
    assert abs(bound(1.75e12) / 130 - 1) < 0.12
    for bw, seed in ((3.35e12, 120), (4.8e12, 165), (1.75e12, 60)):
        assert abs(0.503 * bound(bw) / seed - 1) < 0.10, (bw, 0.503 * bound(bw), seed)


def test_fit_auto_picks_the_best_quant_that_fits(tmp_path):
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"name": "laptop", "gpus": 0, "host_memory_gb": 8, "cpu_cores": 8}))
    r = run_cli("fit", "glm4-chat-1m", "--hardware", str(small), "--quant", "auto", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    by_q = {b["quantization"]: b for b in d["builds"] if b["format"] == "ggufv2"}
    assert by_q["Q4_K"]["fits"] and not by_q["Q8_0"]["fits"] and not by_q["FP16"]["fits"]
    assert "not enough host memory" in " ".join(by_q["Q8_0"]["reasons"])
    # Q5_K (5.7 bpw, 6.4 GB + KV + ~0.7 GB compute buffer) is the most bits per weight that fits in 8 GB;
    # Q6_K (7.4 GB + the same) does not
    assert {k: d["auto"][k] for k in ("format", "quantization", "engine")} == {
        "format": "ggufv2", "quantization": "Q5_K", "engine": "llama.cpp"}
    assert not by_q["Q6_K"]["fits"]


def test_fit_with_an_uploader_has_that_uploaders_builds_only():
    r = run_cli("fit", "bartowski/glm-4-9b-0414", "--format", "ggufv2", "--hardware", "1xH100-80G", "--json")
    assert r.returncode == 0, r.stderr
    from registry.catalog import load

    fam = load(include_user=False).get("glm-4-9b-0414")
    (spec,) = [s for s in fam.specs if s.publisher == "bartowski"]
    assert [b["quantization"] for b in json.loads(r.stdout)["builds"]] == list(spec.quantizations)
    r = run_cli("fit", "nobody/glm-4-9b-0414")
    assert r.returncode == 1 and r.stderr.startswith("error: unknown uploader 'nobody'") and "bartowski" in r.stderr


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["glm4-chat", "--format", "ggufv2", "--quant", "Q4_K"], ["unknown family 'glm4-chat'", "glm4-chat-1m"]),
    (["glm4-chat-1m", "--format", "onnx", "--quant", "Q4_K"], ["unknown format 'onnx'", "ggufv2"]),
    (["glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_KX"], ["unknown quantization 'Q4_KX'", "Q4_K"]),  # (Q4_KM is Q4_K_M)
    (["glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", "--engine", "vlm"], ["unknown engine 'vlm'", "vllm"]),
    (["glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", "--hardware", "4xH1000"], ["unknown hardware '4xH1000'", "1xRTX-4090"]),
    (["glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", "--engine", "vllm"], ["vllm cannot serve", "lists engines llama.cpp"]),
])
def test_bad_input(args, words):
    r = run_cli("launch", *args, "--dry-run")
    assert r.returncode == 1 and r.stderr.startswith("error: ")
    for w in words:
        assert w in r.stderr, r.stderr


def test_stop_with_nothing_launched_and_unknown_name():
    r = run_cli("stop", "glm4-chat-1m")
    assert r.returncode == 1 and "nothing has been launched" in r.stderr
    assert run_cli("ps").returncode == 0


# --- real launches ----------------------------------------------------------------------------------

# A tiny chatglm (glm4-chat-1m's architecture) made wider than the fixture's default so that the
# model's own memory, not the interpreter's, is what the RSS check measures.
BIG = {"hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 2816, "num_hidden_layers": 4}
N_CTX = 512


def _record(gguf: Path, quant: str = "FP16") -> None:
    from registry.store import Store

    Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization=quant, path=str(gguf),
                         sha256="0" * 64, size_bytes=gguf.stat().st_size)


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _baseline_rss() -> int:
    """RSS of an interpreter with the server's modules and libllama loaded, but no model."""
    code = ("import llama_cpp, llama_cpp.server.app, uvicorn, numpy;"
            "print([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) * 1024


@pytest.mark.slow
def test_real_llamacpp_launch(tiny_gguf):
    gguf = tiny_gguf("chatglm", "F16", **BIG)
    _record(gguf)
    r = run_cli("launch", "glm4-chat-1m", "--format", "ggufv2", "--quant", "FP16", "--context", str(N_CTX),
                "--json", "--timeout", "120")
    assert r.returncode == 0, r.stderr
    dep = json.loads(r.stdout)
    try:
        assert dep["status"] == "running" and dep["host"] == "127.0.0.1" and dep["engine"] == "llama.cpp"
        assert str(gguf) in dep["argv"]
        # The server runs in the interpreter `registry launch` prestarted (registry/prestart.py) with the
        # recorded argv; its own cmdline says so.
        assert dep["argv"][1:3] == ["-m", "llama_cpp.server"]
        assert b"registry.prestart" in Path(f"/proc/{dep['pid']}/cmdline").read_bytes()
        assert not list((Path(os.environ["REGISTRY_HOME"]) / "logs").glob(".prestart-*"))
        base = dep["address"]

        # A chat completion goes through the GGUF's GLM chat template: the same tokens, rendered by hand
        # from that template, give the same greedy completion through the plain completions endpoint.
        from gguf import GGUFReader

        template = GGUFReader(str(gguf)).fields["tokenizer.chat_template"].contents()
        assert template.startswith("[gMASK]<sop>") and "<|assistant|>" in template and "<|system|>" in template
        msgs = [{"role": "user", "content": "Hello GLM"}]
        chat = _post(base + "/chat/completions", {"messages": msgs, "max_tokens": 8, "temperature": 0, "seed": 1})
        assert chat["object"] == "chat.completion" and chat["choices"][0]["message"]["role"] == "assistant"
        import jinja2

        prompt = jinja2.Environment().from_string(template).render(messages=msgs, add_generation_prompt=True)
        assert prompt.startswith("[gMASK]<sop>") and "<|user|>" in prompt and prompt.rstrip().endswith("<|assistant|>")
        comp = _post(base + "/completions", {"prompt": prompt, "max_tokens": 8, "temperature": 0, "seed": 1,
                                             "stop": ["<|endoftext|>", "<|user|>", "<|observation|>"]})
        assert comp["usage"]["prompt_tokens"] == chat["usage"]["prompt_tokens"]
        assert comp["choices"][0]["text"] == chat["choices"][0]["message"]["content"]

        # RSS vs estimate. What is compared: the server's RSS growth over an interpreter that has loaded the
        # same modules and libllama (measured, not guessed), against weights (exact tensor bytes from the
        # GGUF header; mmap'd, all touched by a decode) + KV for n_ctx + llama.cpp's compute/output buffers.
        # RSS counts touched pages only, and a short prompt touches a sliver of the compute buffer that
        # llama.cpp reserves for a full micro-batch; so first a prompt that nearly fills the context (the
        # worst case the estimate is for), then the measurement.
        long = _post(base + "/completions", {"prompt": "hello world, " * 30, "max_tokens": 1, "temperature": 0})
        assert N_CTX // 2 < long["usage"]["prompt_tokens"] < N_CTX
        from registry.estimate import gguf_info, llamacpp_estimate

        est = llamacpp_estimate(gguf_info(gguf), N_CTX)
        growth = _rss(dep["pid"]) - _baseline_rss()
        print("RSS growth", growth, "estimate", est.to_dict())
        assert abs(growth / est.total - 1) < 0.15, (growth, est.to_dict())

        ps = json.loads(run_cli("ps", "--json").stdout)
        assert [d["id"] for d in ps] == [dep["id"]] and ps[0]["status"] == "running"
        logs = run_cli("logs", "glm4-chat-1m")
        assert logs.returncode == 0 and "llama" in logs.stdout.lower()
    finally:
        r = run_cli("stop", "glm4-chat-1m")
    assert r.returncode == 0 and "stopped" in r.stdout
    assert not Path(f"/proc/{dep['pid']}").exists() or "Z" in Path(f"/proc/{dep['pid']}/stat").read_text().split(")")[-1][:3]
    rows = json.loads(run_cli("ps", "--all", "--json").stdout)
    assert rows[0]["status"] == "stopped" and rows[0]["stopped"]
    # stopping again: already stopped, not an error
    again = run_cli("stop", "glm4-chat-1m")
    assert again.returncode == 0 and "already stopped" in again.stdout


def _busy_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


def _prestarts_left() -> list:
    """Prestarted interpreters (registry/prestart.py) of this test's REGISTRY_HOME still running, or their logs."""
    home = os.environ["REGISTRY_HOME"].encode()
    left = list((Path(os.environ["REGISTRY_HOME"]) / "logs").glob(".prestart-*"))
    for proc in Path("/proc").iterdir():
        try:
            if (proc.name.isdigit() and b"registry.prestart" in (proc / "cmdline").read_bytes()
                    and b"REGISTRY_HOME=" + home + b"\0" in (proc / "environ").read_bytes()):
                left.append(proc.name)
        except OSError:
            pass
    return left


def test_a_failed_plan_leaves_no_prestarted_server():
    logs = Path(os.environ["REGISTRY_HOME"]) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    orphan = logs / f".prestart-{2**22 + 7}-x.log"  # a pid above the kernel's default pid_max: no such process
    orphan.write_text("left by a registry that was killed\n")
    mine = logs / f".prestart-{os.getpid()}-x.log"  # its registry runs: kept
    mine.write_text("")
    r = run_cli("launch", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q9_K")
    assert r.returncode == 1 and "Q9_K" in r.stderr
    assert not orphan.exists() and mine.exists()
    mine.unlink()
    assert _prestarts_left() == []


@pytest.mark.slow
def test_port_in_use(tiny_gguf):
    gguf = tiny_gguf("chatglm", "F16")
    _record(gguf)
    s = _busy_port()
    port = s.getsockname()[1]
    try:
        r = run_cli("launch", "glm4-chat-1m", "--format", "ggufv2", "--quant", "FP16", "--port", str(port),
                    "--context", "256")
        assert r.returncode == 1 and f"port {port} on 127.0.0.1 is in use" in r.stderr
        assert json.loads(run_cli("ps", "--all", "--json").stdout) == []  # nothing recorded, nothing started
        assert _prestarts_left() == []  # the interpreter prestarted for it has gone, with its log
        # Without --port: the default (8080) may be free here, so take the busy one as the spec's default
        # by asking the launcher directly.
        from registry import launcher

        said = []
        assert launcher.choose_port("127.0.0.1", port, False, said.append) != port
        assert said and f"port {port} is in use; using" in said[0]
    finally:
        s.close()


def test_a_port_claim_holds_across_homes_and_goes_with_its_process(tmp_path):
    """Two launches at once both took 8080: the claim file was empty for a moment and the second read it as
    abandoned. A claim now holds from the instant it is taken, for every registry home of this user, and
    ends with the process that took it (killed, it leaves nothing to clear)."""
    from registry.launching import ports

    s = socket.socket()  # a port number nothing listens on
    s.bind(("127.0.0.1", 0))
    free = s.getsockname()[1]
    s.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from registry.launching import ports; "
         f"print(ports._reserve({free}), flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "REGISTRY_HOME": str(tmp_path / "other-home")})
    try:
        assert holder.stdout.readline().strip() == "True"
        assert ports._reserve(free) is False  # held by a process with another home
        said = []
        assert ports.choose_port("127.0.0.1", free, False, said.append) != free
        assert f"port {free} is in use" in said[0]
    finally:
        holder.kill()
        holder.wait()
        ports.release_ports()
    assert ports._reserve(free) is True  # its holder is gone: nothing stale to clear
    ports.release_ports()


def _models(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=30) as r:
        return json.loads(r.read())


def _gone(pid: int) -> bool:
    p = Path(f"/proc/{pid}/stat")
    return not p.exists() or p.read_text().split(")")[-1].split()[0] == "Z"


@pytest.mark.slow
def test_next_free_port_no_prestart_and_stop_all(tiny_gguf):
    """Two real launches of one build: the spec's port is taken, so the first moves to the next free
    one (and says so); REGISTRY_NO_PRESTART=1 starts its server the ordinary way, the second launch
    runs in the prestarted interpreter; `registry stop --all` stops both."""
    gguf = tiny_gguf("chatglm", "F16")
    _record(gguf)
    args = ["glm4-chat-1m", "--format", "ggufv2", "--quant", "FP16", "--context", "256", "--timeout", "120"]
    default = dry(*args)["port"]
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a connection in TIME_WAIT does not take the port
    try:
        s.bind(("127.0.0.1", default))  # taken by someone else already is as good
        s.listen(1)
    except OSError:
        pass
    deps = []
    try:
        r = run_cli("launch", *args, "--json", env={"REGISTRY_NO_PRESTART": "1"})
        assert r.returncode == 0, r.stderr
        first = json.loads(r.stdout)
        deps.append(first)
        assert first["port"] > default and f"port {default} is in use; using {first['port']}" in r.stderr
        assert f"--port {first['port']}" in " ".join(first["argv"])  # the recorded argv is what runs
        cmdline = Path(f"/proc/{first['pid']}/cmdline").read_bytes().split(b"\0")
        assert b"registry.prestart" not in b" ".join(cmdline) and cmdline[1:3] == [b"-m", b"llama_cpp.server"]
        assert _models(first["port"])["data"]

        r = run_cli("launch", *args, "--new", "--json")  # --new: a running build is otherwise reused
        assert r.returncode == 0, r.stderr
        second = json.loads(r.stdout)
        deps.append(second)
        assert second["port"] not in (default, first["port"])
        assert b"registry.prestart" in Path(f"/proc/{second['pid']}/cmdline").read_bytes()
        assert _models(second["port"])["data"]
        running = json.loads(run_cli("ps", "--json").stdout)
        assert sorted(d["id"] for d in running) == sorted(d["id"] for d in deps)

        both = run_cli("stop", "glm4-chat-1m", "--all")
        assert both.returncode == 1 and "not both or neither" in both.stderr
        stop = run_cli("stop", "--all")
        assert stop.returncode == 0, stop.stderr
        for d in deps:
            assert f"(deployment {d['id']}, pid {d['pid']}): stopped" in stop.stdout
    finally:
        s.close()
        if deps:
            run_cli("stop", "--all")
        gone = [_gone(d["pid"]) for d in deps]
        for d, g in zip(deps, gone):
            if not g:  # stop --all failed them: leave no server running after the test
                import signal

                os.killpg(d["pid"], signal.SIGKILL)
    assert all(gone)
    rows = {d["id"]: d for d in json.loads(run_cli("ps", "--all", "--json").stdout)}
    assert all(rows[d["id"]]["status"] == "stopped" for d in deps)
    again = run_cli("stop", "--all")
    assert again.returncode == 0 and "nothing running" in again.stdout


@pytest.mark.slow
def test_server_dies_at_start(tmp_path):
    # A well-formed GGUF of an architecture llama.cpp does not know: the header reads (the plan is made),
    # and the server exits while loading it.
    import numpy as np
    from gguf import GGUFWriter

    bad = tmp_path / "unknown-arch.F16.gguf"
    w = GGUFWriter(str(bad), "no-such-arch")
    w.add_tensor("token_embd.weight", np.zeros((8, 4), np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    _record(bad)
    r = run_cli("launch", "glm4-chat-1m", "--format", "ggufv2", "--quant", "FP16", "--context", "256",
                "--timeout", "60")
    assert r.returncode == 1
    assert "exited with code" in r.stderr and "last lines of" in r.stderr
    assert "no-such-arch" in r.stderr  # the log's tail carries llama.cpp's own complaint
    rows = json.loads(run_cli("ps", "--all", "--json").stdout)
    assert len(rows) == 1 and rows[0]["status"] == "failed" and rows[0]["stopped"]
    assert not Path(f"/proc/{rows[0]['pid']}").exists() or "Z" in Path(f"/proc/{rows[0]['pid']}/stat").read_text()


def test_launch_refuses_a_plan_for_another_machine():
    r = run_cli("launch", "glm-4.6", "--format", "compressed-tensors", "--quant", "AWQ", "--hardware", "4xH100-80G")
    assert r.returncode == 1 and "this plan is for 4xH100-80G, not this machine" in r.stderr


def test_hardware_command():
    r = run_cli("hardware", "--json")
    assert r.returncode == 0
    d = json.loads(r.stdout)
    assert d["local"] and d["cpu_cores"] >= 1 and d["host_memory_bytes"] > 2**30
    assert {"8xB200", "4xH100-80G", "2xH200", "cpu"} <= set(d["profiles"])
    p = json.loads(run_cli("hardware", "--hardware", "8xB200", "--json").stdout)
    assert p["gpu_count"] == 8 and p["gpus"][0]["compute_capability"] == 10.0


def test_launch_size_picks_the_spec_as_seed_004_does():
    # seed 004's command names the size (--size-in-billions 9); ours is --size, as in `registry pull`
    r = run_cli("launch", "glm4-chat-1m", "--size", "9", "--format", "ggufv2", "--quant", "Q4_K",
                "--dry-run", "--json", "--hardware", "cpu")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["engine"] == "llama.cpp"
    r = run_cli("launch", "glm4-chat-1m", "--size", "32", "--format", "ggufv2", "--quant", "Q4_K",
                "--dry-run", "--hardware", "cpu")
    assert r.returncode == 1 and "no ggufv2 spec of 32B" in r.stderr and "sizes: 9" in r.stderr


def test_threads_reach_llamacpp_and_only_llamacpp():
    # A hub GGUF planned for a 64 GB CPU machine: one thread per physical core unless --threads says less.
    base = ("glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", "--hardware", "cpu-64GB")
    default = flags(dry(*base)["argv"])
    two = flags(dry(*base, "--threads", "2")["argv"])
    assert two.pop("--n_threads") == "2"
    assert {k: v for k, v in default.items() if k != "--n_threads"} == two
    r = run_cli("launch", *base, "--threads", "0", "--dry-run")
    assert r.returncode == 1 and "--threads must be at least 1" in r.stderr
    r = run_cli("launch", "glm-4-9b-chat", "--format", "compressed-tensors", "--quant", "FP8_DYNAMIC",
                "--hardware", "4xH100-80G", "--threads", "4", "--dry-run")
    assert r.returncode == 1 and "--threads sets llama.cpp's CPU threads" in r.stderr and "vllm" in r.stderr


# --- engines bound beyond loopback get a key -------------------------------------------------------------


def _status(url: str, key: str | None = None) -> int:
    import urllib.error

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _home_bytes() -> bytes:
    home = Path(os.environ["REGISTRY_HOME"])
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file() and p.suffix != ".gguf")


@pytest.mark.slow
def test_an_engine_bound_beyond_loopback_gets_a_key_printed_once(tiny_gguf):
    _record(tiny_gguf("chatglm", "F16"))
    serve_key = "serve-" + os.urandom(6).hex()
    r = run_cli("launch", "glm4-chat-1m", "--format", "ggufv2", "--quant", "FP16", "--context", "512",
                "--host", "0.0.0.0", "--json", "--timeout", "120", env={"REGISTRY_API_KEY": serve_key})
    assert r.returncode == 0, r.stderr
    dep = json.loads(r.stdout)
    try:
        key = r.stderr.split("it is not stored, keep it): ")[1].split()[0]
        assert len(key) >= 24 and key not in r.stdout
        assert dep["host"] == "0.0.0.0" and dep["api_key"] == "set"
        base = f"http://127.0.0.1:{dep['port']}/v1"
        assert _status(base + "/models") == 401
        assert _status(base + "/models", "wrong") == 401
        assert _status(base + "/models", key) == 200
        environ = Path(f"/proc/{dep['pid']}/environ").read_bytes()
        assert serve_key.encode() not in environ  # `registry serve`'s key is not the engine's business
        assert key.encode() not in Path(f"/proc/{dep['pid']}/cmdline").read_bytes()
        for args in (("ps", "--json"), ("ps", "--all", "--json"), ("logs", str(dep["id"]))):
            assert key not in run_cli(*args).stdout, args
        assert key.encode() not in _home_bytes() and serve_key.encode() not in _home_bytes()
    finally:
        run_cli("stop", "--all")

    # a key given is used as it is, and on loopback too when asked for
    r = run_cli("launch", "glm4-chat-1m", "--format", "ggufv2", "--quant", "FP16", "--context", "512",
                "--api-key", "given-key-123", "--json", "--timeout", "120")
    assert r.returncode == 0, r.stderr
    dep = json.loads(r.stdout)
    try:
        assert "given-key-123" not in r.stdout + r.stderr
        base = f"http://127.0.0.1:{dep['port']}/v1"
        assert _status(base + "/models") == 401 and _status(base + "/models", "given-key-123") == 200
    finally:
        run_cli("stop", "--all")


def test_an_engine_without_a_key_option_is_not_bound_beyond_loopback():
    from registry.engines.base import Command
    from registry.engines.keys import protect
    from registry.errors import RegistryError

    cmd = Command(["python", "-m", "x"], {}, "0.0.0.0", 1, "")
    with pytest.raises(RegistryError) as e:
        protect("transformers", cmd, "::", None)
    assert "--host ::" in str(e.value) and "127.0.0.1" in str(e.value) and "--api-key" in str(e.value)
    assert protect("transformers", cmd, "127.0.0.1", None) == (None, False)  # loopback: nothing to do
    key, made = protect("sglang", cmd, "0.0.0.0", None)
    assert made and cmd.argv[-2:] == ["--api-key", key]
    from registry import redact

    assert key not in redact.argv(cmd.argv) and key not in str(redact.env({"VLLM_API_KEY": key}))
