#!/usr/bin/env bash
# Creates .venv-engines: vLLM, SGLang and ray without their GPU dependencies, for the test that parses
# every launch plan with the engines' own argument parsers (tests/test_engine_parsers.py, marker
# `engines`). Separate from .venv so that the project's environment stays light. setup.sh runs it in
# CI (CI set); locally: bash scripts/engines-env.sh. Idempotent: a second run only checks the stamp.
set -euo pipefail
cd "$(dirname "$0")/.."

REQ=scripts/engines-requirements.txt
VENV=${ENGINES_VENV:-.venv-engines}  # the test reads the same variable
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "engines-env: ready ($VENV)"
  exit 0
fi
start=$(date +%s)
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first and pinned, the CPU build (as in setup.sh); the engines pin newer CUDA builds, which
# --no-deps below keeps out. Their parsers import torch but run no kernel.
"$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q --no-deps -r "$REQ"
echo "$want" > "$stamp"
echo "engines-env: ready ($VENV, $(( $(date +%s) - start ))s)"
