"""The installed llama.cpp never runs ggml's AMX kernels (they segfault on Q4_K weights, llama.cpp
issue 20824), and a tiny Q4_K_M build evaluates. On a CPU without AMX the AMX assertion holds
trivially; the evaluation runs everywhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

from converters.gguf import llama_check


def test_installed_llama_cpp_has_no_amx_kernels_on_an_amx_cpu():
    info = llama_check.system_info()
    assert "CPU" in info  # the library answered with its real system info
    if llama_check.cpu_has_amx():
        assert "AMX_INT8 = 1" not in info, f"AMX kernels compiled in: {info}"
        assert not llama_check.amx_kernels()


@pytest.mark.slow
def test_tiny_q4_k_m_build_evaluates_in_a_child(tiny_gguf, tmp_path):
    q4 = tiny_gguf("chatglm", "Q4_K_M")
    assert llama_check.evaluate_in_child(q4) is None


def test_a_crash_in_the_child_is_reported_as_its_signal(tmp_path):
    import os

    # a file llama.cpp can't load is an error line, not a crash
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(64))
    why = llama_check.evaluate_in_child(bad)
    assert why and why.startswith("failed (exit")
    # a child killed by SIGSEGV is named by its signal
    r = subprocess.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
    assert llama_check.describe(r.returncode, "") == "crashed with SIGSEGV"


def test_cpu_flags_and_system_info_parsing(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 amx_bf16 amx_tile amx_int8\n\n"
                    "processor\t: 1\nflags\t\t: fpu sse avx2 amx_bf16 amx_tile amx_int8\n")
    assert {"amx_tile", "avx2"} <= llama_check.cpu_flags(info)
    assert llama_check.cpu_flags(tmp_path / "missing") == set()
    assert llama_check.amx_kernels("CPU : SSE3 = 1 | AVX2 = 1 | AMX_INT8 = 1 | ")
    assert not llama_check.amx_kernels("CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | ")
