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
# llama-cpp-python compiles from source (about 9 minutes on 2 cores); pip caches the wheel.
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
  .venv/bin/python -m pip install -q -e '.[all]'
echo "setup: ready (.venv/bin/registry)"
