"""GPU detection from nvidia-smi (registry/hardware.py), on recorded outputs of real machines.

A stand-in `nvidia-smi` on PATH answers exactly the query the registry makes with what that machine's
nvidia-smi printed (tests/data/nvidia-smi/, sources in its README); any other arguments are an error,
so a changed query fails here instead of silently finding no GPUs on a real machine.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

RECORDED = ROOT / "tests" / "data" / "nvidia-smi"
QUERY = "--query-gpu=index,name,memory.total"
FORMAT = "--format=csv,noheader,nounits"

STAND_IN = f"""#!{sys.executable}
import os, sys
from pathlib import Path
rec = Path({str(RECORDED)!r}) / os.environ["NVSMI_MACHINE"]
args = sys.argv[1:]
if not rec.with_name(rec.name + ".txt").exists():  # what nvidia-smi says when the driver is not loaded
    print("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the "
          "latest NVIDIA driver is installed and running.")
    sys.exit(9)
if args == ["{QUERY},compute_cap", "{FORMAT}"]:
    err = rec.with_name(rec.name + ".compute_cap.txt")
    if err.exists():  # an old driver: no such field
        sys.stdout.write(err.read_text())
        sys.exit(2)
    sys.stdout.write(rec.with_name(rec.name + ".txt").read_text())
elif args == ["{QUERY}", "{FORMAT}"]:
    sys.stdout.write(rec.with_name(rec.name + ".txt").read_text())
else:
    sys.stderr.write("stand-in nvidia-smi: no recording for " + " ".join(args) + "\\n")
    sys.exit(2)
"""


@pytest.fixture
def nvidia_smi(tmp_path, monkeypatch):
    """Put the stand-in nvidia-smi first on PATH; call it with a recording's name."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "nvidia-smi"
    exe.write_text(STAND_IN)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")

    def use(machine: str) -> None:
        monkeypatch.setenv("NVSMI_MACHINE", machine)

    return use


MIB = 2**20


@pytest.mark.parametrize("machine, n, name, mib, cap", [
    ("8xH100-SXM", 8, "NVIDIA H100 80GB HBM3", 81559, 9.0),
    ("4xA100-SXM4-80GB", 4, "NVIDIA A100-SXM4-80GB", 81920, 8.0),
    ("2xRTX-4090", 2, "NVIDIA GeForce RTX 4090", 24564, 8.9),
    ("driver-470", 1, "Tesla T4", 15360, None),  # no compute_cap field before driver 510
])
def test_detect_reads_recorded_nvidia_smi(nvidia_smi, machine, n, name, mib, cap):
    from registry import hardware

    nvidia_smi(machine)
    hw = hardware.detect()
    assert hw.local and hw.gpu_count == n
    assert [g.index for g in hw.gpus] == list(range(n))
    assert {(g.name, g.memory_bytes, g.compute_capability) for g in hw.gpus} == {(name, mib * MIB, cap)}
    assert hw.gpu_memory_bytes == mib * MIB and hw.min_compute_capability == cap


def test_hardware_command_and_a_plan_use_the_detected_gpus(nvidia_smi):
    nvidia_smi("2xRTX-4090")
    r = run_cli("hardware", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["gpu_count"] == 2 and d["gpus"][1]["name"] == "NVIDIA GeForce RTX 4090"
    assert d["gpus"][1]["memory_bytes"] == 24564 * MIB and d["gpus"][1]["compute_capability"] == 8.9
    table = run_cli("hardware")
    assert "NVIDIA GeForce RTX 4090" in table.stdout and "24.0 GiB" in table.stdout and "8.9" in table.stdout
    # The same machine seen by the launcher: a plan for "here" names the detected GPUs and their compute
    # capability (FP8 on Ada, 8.9, runs natively; not the Marlin fallback of Ampere).
    p = run_cli("launch", "glm-4-9b-chat", "--format", "compressed-tensors", "--quant", "FP8_DYNAMIC",
                "--engine", "vllm", "--dry-run", "--json")
    if p.returncode == 0:
        plan = json.loads(p.stdout)
        assert plan["hardware"]["gpu_count"] == 2 and not any("Marlin" in n for n in plan["notes"])
    else:  # vLLM is not installed here: the reason is that, not the hardware
        assert "vllm is not installed here" in p.stderr and "compute capability" not in p.stderr


def test_no_nvidia_smi_means_no_gpus(monkeypatch, tmp_path):
    from registry import hardware

    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no nvidia-smi
    assert hardware.detect().gpus == []


def test_a_failing_nvidia_smi_means_no_gpus(nvidia_smi, monkeypatch):
    # e.g. "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver" (exit 9)
    from registry import hardware

    nvidia_smi("no-such-recording")
    assert hardware.detect().gpus == []
