"""Importance-matrix collection: throughput against plain llama.cpp evaluation, and peak RSS.

Builds small GLM checkpoints (random weights; a dense GLM-4-0414 and a GLM-4.5-style MoE, so both
MUL_MAT and MUL_MAT_ID nodes are collected), converts each to an F16 GGUF, tokenizes the same
calibration text once, then in the same run, for each model, in fresh processes:
  * "plain":   converters.gguf.collect.evaluate(..., collect=False): llama_decode over the chunks
               with logits for every position, which is what llama-imatrix evaluates;
  * "collect": the same chunks with the cb_eval collector on (`registry imatrix`'s work);
timed around the decode loop only (the model load and imports are not the thing compared); peak
RSS is the child's own VmHWM. Rounds interleave the two; each reports its fastest round.

Goal (issue 18): collection at most 1.3x slower than plain evaluation (time ratio <= 1.3).

Run:  PYTHONPATH=$PWD .venv/bin/python bench/imatrix.py [--rounds 3] [--chunks 8] [--chunk-size 256]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALIB = ROOT / "tests" / "data" / "seed_004.txt"

CHILD = """
import json, re, sys
from pathlib import Path
mode, gguf, toks = sys.argv[1], Path(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text())
from converters.gguf.collect import evaluate
col, stats = evaluate(gguf, toks, collect=mode == "collect")
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
print("RESULT", stats.seconds, stats.tokens, hwm, len(col.sums) if col else 0)
"""

# (label, tiny arch, config overrides): big enough that matmuls, not Python, dominate a decode
MODELS = [
    ("dense glm4", "glm4", {"hidden_size": 1024, "intermediate_size": 3072, "num_attention_heads": 8,
                            "num_key_value_heads": 2, "head_dim": 128, "num_hidden_layers": 6}),
    ("moe glm4moe", "glm4moe", {"hidden_size": 768, "moe_intermediate_size": 512, "intermediate_size": 2048,
                                "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 96,
                                "num_hidden_layers": 5, "n_routed_experts": 16, "num_experts_per_tok": 4}),
]


def child(mode: str, gguf: Path, toks: Path) -> tuple[float, int, int, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", CHILD, mode, str(gguf), str(toks)], capture_output=True, text=True,
                       env=env)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT")), None)
    if r.returncode != 0 or line is None:
        sys.exit(f"{mode} on {gguf} failed:\n{r.stderr[-3000:]}")
    _, secs, n, rss, entries = line.split()
    return float(secs), int(n), int(rss), int(entries)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from converters.gguf.calibration import calibration_tokens
    from converters.gguf.collect import chunks_of
    from converters.gguf.core import convert
    from converters.tiny import build_checkpoint

    work = Path(a.workdir or tempfile.mkdtemp(prefix="imatrix-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, arch, over in MODELS:
        src = work / arch
        if not (src / "config.json").exists():
            build_checkpoint(arch, src, **over)
        gguf = work / f"{arch}.F16.gguf"
        if not gguf.exists():
            convert(src, gguf, "F16")
        toks, bos = calibration_tokens(CALIB, gguf)
        need = a.chunks * a.chunk_size
        toks = (toks * (need // max(1, len(toks)) + 1))[:need]  # the text repeated to fill the chunks
        tf = work / f"{arch}.tokens.json"
        tf.write_text(json.dumps(chunks_of(toks, a.chunk_size, a.chunks, bos)))
        plain, coll = [], []
        for _ in range(a.rounds):
            plain.append(child("plain", gguf, tf))
            coll.append(child("collect", gguf, tf))
        p, c = min(plain), min(coll)
        rows.append({"model": label, "gguf_mib": gguf.stat().st_size / 2**20, "tokens": p[1],
                     "plain_tps": p[1] / p[0], "collect_tps": c[1] / c[0], "ratio": c[0] / p[0],
                     "plain_rss": max(r[2] for r in plain), "collect_rss": max(r[2] for r in coll),
                     "entries": c[3], "plain_rounds": [round(r[0], 3) for r in plain],
                     "collect_rounds": [round(r[0], 3) for r in coll]})
    mb = 1 / 2**20
    print(f"{a.chunks} chunks x {a.chunk_size} tokens, {os.cpu_count()} CPUs, best of {a.rounds} rounds")
    print("| model | F16 GGUF | tokens | plain tok/s | collect tok/s | time ratio | plain peak RSS | collect peak RSS "
          "| imatrix entries |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['gguf_mib']:.0f} MiB | {r['tokens']} | {r['plain_tps']:.0f} | {r['collect_tps']:.0f} "
              f"| {r['ratio']:.2f}x | {r['plain_rss'] * mb:.0f} MiB | {r['collect_rss'] * mb:.0f} MiB | {r['entries']} |")
    print("rounds (s): " + "; ".join(f"{r['model']} plain {r['plain_rounds']} collect {r['collect_rounds']}"
                                     for r in rows))
    worst = max(r["ratio"] for r in rows)
    print(f"goal collection <= 1.3x plain evaluation: worst {worst:.2f}x: {'ok' if worst <= 1.3 else 'MISSED'}")


if __name__ == "__main__":
    main()
