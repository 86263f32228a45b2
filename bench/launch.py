"""Launch time: `registry launch` to the first answered chat request, against starting the same
llama.cpp server directly (same machine, same run, same GGUF), as a ratio. Goal: under 1.1x.

    PYTHONPATH=$PWD python bench/launch.py --gguf PATH/TO/model.gguf [--repeat 3]

The GGUF is recorded as glm4-chat-1m ggufv2 FP16 in a throwaway REGISTRY_HOME. The direct side runs the
very argv the registry's plan gives (same flags, threads and context). Each side: wall time from starting
the process to the first successful /v1/chat/completions answer (1 token); best of --repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "temperature": 0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chat(port: int) -> bool:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(CHAT).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status == 200
    except OSError:
        return False


def planned_argv(env: dict) -> list[str]:
    """The exact server command `registry launch` runs (its dry-run plan), so both sides start the same server."""
    r = subprocess.run([sys.executable, "-m", "registry", "launch", "glm4-chat-1m", "--format", "ggufv2", "--quant", "FP16",
                        "--dry-run", "--json"], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["argv"]


def direct(argv: list[str], port: int) -> float:
    argv = list(argv)
    argv[argv.index("--port") + 1] = str(port)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not _chat(port):
            if proc.poll() is not None:
                raise SystemExit("llama_cpp.server exited")
            time.sleep(0.05)
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def via_registry(env: dict, port: int) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "registry", "launch", "glm4-chat-1m", "--format", "ggufv2",
                        "--quant", "FP16", "--port", str(port), "--json"], env=env, cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr)
    try:
        assert _chat(port)
        return time.perf_counter() - t0
    finally:
        subprocess.run([sys.executable, "-m", "registry", "stop", "--all"], env=env, cwd=ROOT, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    home = tempfile.mkdtemp(prefix="glmreg-bench-")
    env = {**os.environ, "REGISTRY_HOME": home, "PYTHONPATH": str(ROOT)}
    sys.path.insert(0, str(ROOT))
    os.environ["REGISTRY_HOME"] = home
    from registry.store import Store

    g = Path(a.gguf).resolve()
    Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="FP16", path=str(g),
                         sha256="0" * 64, size_bytes=g.stat().st_size)
    argv = planned_argv(env)
    print("server command:", " ".join(argv))
    d, r = [], []
    for _ in range(a.repeat):  # interleaved so that page-cache warmth is shared
        d.append(direct(argv, _free_port()))
        r.append(via_registry(env, _free_port()))
    print(f"direct llama_cpp.server: best {min(d):.2f} s  (all: {', '.join(f'{x:.2f}' for x in d)})")
    print(f"registry launch:         best {min(r):.2f} s  (all: {', '.join(f'{x:.2f}' for x in r)})")
    print(f"ratio: {min(r) / min(d):.2f}x (goal < 1.1x)")


if __name__ == "__main__":
    main()
