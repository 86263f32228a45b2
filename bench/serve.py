"""The router's cost: 64 concurrent streamed chats through `registry serve` against the same requests
sent directly to the llama.cpp deployment, same run, all on loopback. Goal: at most 1.1x at p50/p99.

    PYTHONPATH=$PWD python bench/serve.py [--gguf PATH] [--streams 64] [--rounds 2] [--max-tokens 16]
                                          [--engine-threads N]

Without --gguf a tiny Q4_K_M GGUF is built (converters/gguf/llama_check.py). It is launched by the
registry in a throwaway REGISTRY_HOME, `registry serve` runs as its own process, and rounds alternate
direct / router so that drift on the machine hits both sides. Per request: time to the first content
token and to the end of the stream. Every stream must end with a finish reason and [DONE] (else
"dropped"), and its text must equal the direct answer to the same prompt (temperature 0; else
"mixed"). llama-cpp-python's server decodes one request at a time, so 64 concurrent streams queue
there: both sides see the same queue, and the ratio is what the router adds. By default llama.cpp takes
a thread per core, so on a small machine every millisecond of router CPU is taken from the engine;
--engine-threads 1 on a 2-core machine leaves the router a core, as a machine with cores to spare does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, env: dict) -> dict:
    r = subprocess.run([sys.executable, "-m", "registry", *args, "--json"], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    if r.returncode != 0:
        sys.exit(f"registry {' '.join(args)} failed: {r.stderr}")
    return json.loads(r.stdout)


async def _one(client, url: str, model: str, prompt: str, max_tokens: int) -> dict:
    body = {"model": model, "stream": True, "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": prompt}]}
    t0 = time.perf_counter()
    first, text, finish, done = None, [], None, False
    async with client.stream("POST", url + "/chat/completions", json=body) as r:
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                continue
            ch = json.loads(data)["choices"][0]
            piece = (ch.get("delta") or {}).get("content")
            if piece:
                first = first or time.perf_counter()
                text.append(piece)
            finish = ch.get("finish_reason") or finish
    end = time.perf_counter()
    return {"prompt": prompt, "ttft": (first or end) - t0, "total": end - t0, "text": "".join(text),
            "ok": done and finish is not None}


async def _round(url: str, model: str, prompts: list[str], max_tokens: int) -> list[dict]:
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=10), limits=limits) as c:
        return await asyncio.gather(*(_one(c, url, model, p, max_tokens) for p in prompts))


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", type=Path)
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--engine-threads", type=int, help="llama.cpp's threads (default: one per core)")
    a = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    env = {**os.environ, "REGISTRY_HOME": str(home)}
    os.environ["REGISTRY_HOME"] = str(home)
    gguf = a.gguf
    if gguf is None:
        from converters.gguf.llama_check import build_tiny_q4k

        gguf = build_tiny_q4k(home / "tiny")
    from registry.store import Store

    Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K", path=str(gguf),
                         sha256="0" * 64, size_bytes=gguf.stat().st_size)
    threads = ["--threads", str(a.engine_threads)] if a.engine_threads else []
    dep = _cli("launch", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", "--context", "2048", *threads, env=env)
    serve = None
    try:
        serve = _cli("serve", env=env)
        direct, routed = dep["address"], serve["address"]
        prompts = [f"Tell me about the number {i % 16}" for i in range(a.streams)]
        alone = asyncio.run(_round(direct, "glm4-chat-1m", sorted(set(prompts)), a.max_tokens))
        want = {r["prompt"]: r["text"] for r in alone}
        asyncio.run(_round(routed, "glm4-chat-1m:Q4_K", prompts[:2], 2))  # the router's first-request imports
        sides: dict[str, list[dict]] = {"direct": [], "router": []}
        per_round: list[dict[str, list[dict]]] = []  # each round's pair: drift between rounds cancels
        wall = {"direct": 0.0, "router": 0.0}
        cpu0 = _cpu(serve["pid"])
        for i in range(a.rounds):
            pair = {}
            order = (("direct", direct, "glm4-chat-1m"), ("router", routed, "glm4-chat-1m:Q4_K"))
            for side, url, model in order if i % 2 == 0 else order[::-1]:  # neither side always goes first
                t = time.perf_counter()
                pair[side] = asyncio.run(_round(url, model, prompts, a.max_tokens))
                sides[side] += pair[side]
                wall[side] += time.perf_counter() - t
            per_round.append(pair)
        print(f"{a.streams} concurrent streamed chats x {a.rounds} rounds, {a.max_tokens} tokens each, "
              f"{gguf.name} ({gguf.stat().st_size / 2**20:.1f} MiB) on llama.cpp, "
              f"{a.engine_threads or 'a thread per core'} thread(s), {os.cpu_count()} CPUs")
        print(f"{'':16}{'direct':>10}{'router':>10}{'ratio':>8}  {'rounds: median (min-max)':>26}")
        for key, label in (("ttft", "first token"), ("total", "total")):
            for q in (0.5, 0.99):
                d = _pct([r[key] for r in sides["direct"]], q)
                r = _pct([r[key] for r in sides["router"]], q)
                each = sorted(_pct([x[key] for x in p["router"]], q) / _pct([x[key] for x in p["direct"]], q)
                              for p in per_round)
                print(f"{label + f' p{round(q * 100)}':16}{d:>9.3f}s{r:>9.3f}s{r / d:>7.2f}x  "
                      f"{_pct(each, 0.5):>13.2f}x ({each[0]:.2f}-{each[-1]:.2f})")
        cpu = _cpu(serve["pid"]) - cpu0
        print(f"router process CPU: {cpu:.2f} s for {len(sides['router'])} streams "
              f"({cpu / len(sides['router']) * 1e3:.1f} ms a stream)")
        print(f"{'wall, all rounds':16}{wall['direct']:>9.2f}s{wall['router']:>9.2f}s{wall['router'] / wall['direct']:>7.2f}x")
        for side, rows in sides.items():
            dropped = sum(not r["ok"] for r in rows)
            mixed = sum(r["ok"] and r["text"] != want[r["prompt"]] for r in rows)
            print(f"{side}: {len(rows)} streams, {dropped} dropped, {mixed} mixed up")
    finally:
        if serve:
            subprocess.run([sys.executable, "-m", "registry", "stop", "--all"], env=env, cwd=ROOT, capture_output=True)
        else:
            subprocess.run([sys.executable, "-m", "registry", "stop", "glm4-chat-1m"], env=env, cwd=ROOT,
                           capture_output=True)


if __name__ == "__main__":
    main()
