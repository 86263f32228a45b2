"""A calibration dataset named on the hub, with no hub to reach: one line at once, saying to pass --calibration FILE
(not datasets' five retries, seconds apart). No test here touches the internet: HF_ENDPOINT is a closed local port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_cli


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket closes


@pytest.mark.parametrize("offline", [False, True], ids=["hub-unreachable", "HF_HUB_OFFLINE"])
def test_hub_calibration_without_network_fails_at_once(tiny_checkpoint, tmp_path, offline):
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "1" if offline else "0", "HF_DATASETS_OFFLINE": "0",
           "HTTPS_PROXY": "", "https_proxy": ""}
    out = tmp_path / "build"
    # glm-4.7's recipe calibrates on neuralmagic/LLM_compression_calibration (its spec, seed 001)
    r = run_cli("convert", "glm-4.7", "--from", str(tiny_checkpoint("glm4moe")), "--to", "compressed-tensors",
                "--quant", "W4A16_GS64", "--samples", "4", "--max-seq-len", "32", "--out", str(out), env=env)
    assert r.returncode == 1, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0] == r.stderr.strip().splitlines()[-1], r.stderr
    assert "neuralmagic/LLM_compression_calibration" in errors[0] and "pass --calibration FILE" in errors[0]
    assert ("HF_HUB_OFFLINE" in errors[0]) and (("out of reach" in errors[0]) != offline)
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_unreachable_hub_is_found_before_datasets_retries(tmp_path):
    """The library call alone, timed in a fresh interpreter: datasets' own retries took 27 s on this VM."""
    import os

    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "0", "HTTPS_PROXY": "", "https_proxy": "", "PYTHONPATH": str(ROOT)}
    code = ("import time, datasets\n"  # imported first so the timing is of the look-up only
            "from converters.compressed_tensors.calibration import read_conversations\n"
            "from registry.errors import RegistryError\n"
            "t = time.monotonic()\n"
            "try:\n read_conversations('neuralmagic/LLM_compression_calibration', 'train')\n"
            "except RegistryError as e:\n print(f'{time.monotonic() - t:.3f}', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    took, msg = r.stdout.split(" ", 1)
    assert "pass --calibration FILE" in msg, r.stdout + r.stderr
    assert float(took) < 3.5, f"{took} s"  # one refused TCP connection (the probe's timeout is 3 s)
