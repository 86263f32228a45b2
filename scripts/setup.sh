#!/usr/bin/env bash
# Sets up .venv with everything the project and its tests need, from the project's own files.
# Idempotent: a second run only checks. Debian packages come first (as root), then Python.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# The docs tests render the built HTML in headless Chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install these Debian packages (as root): ${need_apt[*]}" >&2
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: the CPU build on this machine; a bare 'torch' would pull CUDA wheels.
.venv/bin/python -m pip install -q torch==2.13.0
# llama-cpp-python compiles from source (about 9 minutes on 2 cores) with -march=native; pip
# caches the wheel. On x86-64 ggml's AMX kernels are kept out: they segfault on Q4_K weights on
# Sapphire Rapids and later (llama.cpp issue 20824). Explicit -mno-* win over -march=native in
# GCC and Clang, whatever their order; CMake takes CFLAGS/CXXFLAGS into a fresh build's flags.
case "$(uname -m)" in
  x86_64|amd64) no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" ;;
  *) no_amx="" ;;
esac
export CFLAGS="${CFLAGS:+$CFLAGS }$no_amx" CXXFLAGS="${CXXFLAGS:+$CXXFLAGS }$no_amx"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
.venv/bin/python -m pip install -q -e '.[all]'

# pip reuses a cached wheel whatever the flags say, so check the library that was installed: no
# AMX kernels on a CPU that has AMX, and a tiny Q4_K_M build that evaluates in a subprocess. A
# wheel that fails is dropped from pip's cache and rebuilt once; a second failure stops setup.
if ! .venv/bin/python -m converters.gguf.llama_check; then
  echo "setup: rebuilding llama-cpp-python without AMX (the installed build has it; about 9 minutes)"
  llama_version=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
  .venv/bin/python -m pip cache remove 'llama_cpp_python*' >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q --force-reinstall --no-deps "llama-cpp-python==$llama_version"
  if ! .venv/bin/python -m converters.gguf.llama_check; then
    echo "setup: llama-cpp-python still fails its check (above); rebuild it by hand with CFLAGS/CXXFLAGS='$no_amx' and 'pip install --no-cache-dir --force-reinstall llama-cpp-python==$llama_version'" >&2
    exit 1
  fi
fi
# CI: the engines' environment for the test that parses every launch plan with vLLM's, SGLang's and
# ray's own parsers (tests/test_engine_parsers.py), and a real vLLM (its CPU build) that loads the
# converters' builds and serves them through `registry launch` (tests/test_vllm.py). Locally those
# tests skip, naming these commands, until run.
case "${CI:-}" in
  ""|0|false|no) ;;
  *) bash scripts/engines-env.sh && bash scripts/vllm-env.sh ;;
esac
echo "setup: ready (.venv/bin/registry)"
