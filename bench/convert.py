"""GGUF conversion: throughput and peak memory against baselines measured in the same run.

Builds a GLM-4-0414-architecture checkpoint of about --size-gb GB (bf16, hub layout, built with
converters/tiny/ and larger dimensions), then reports:
  * F16 and BF16 conversion time vs a plain copy of the same safetensors shards (ratio; goal <= 1.5x);
  * peak RSS of the converting process vs the largest tensor (goal: < 2x largest tensor + 400 MB),
    next to the peak RSS of a process that only imports the converter (interpreter overhead);
  * quantize time F16 -> Q4_K_M (llama_model_quantize, all cores).

  * with --cli: `registry convert --to ggufv2 --quant FP16` end to end (a fresh process: start-up,
    conversion, the build's sha256, the store row; the registry home already used once, as a user's is)
    against `cp -r` of the same shards, paired rounds: wall time, CPU time (the ratio a machine busy with
    other work sees) and the convert's peak RSS.

Run:  PYTHONPATH=$PWD .venv/bin/python bench/convert.py --size-gb 2 [--workdir DIR] [--cli [--rounds N]]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import re, sys, time
from pathlib import Path
mode, src, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
import numpy, gguf, llama_cpp  # in every mode: "import" is the baseline RSS of interpreter + imports
from converters.gguf.core import convert
from converters.gguf.quantize import quantize
t = time.perf_counter()
if mode == "convert":
    convert(src, out, "F16")
elif mode == "convert-bf16":
    convert(src, out, "BF16")
elif mode == "quantize":
    quantize(src, out, "Q4_K_M")
secs = time.perf_counter() - t
# VmHWM: this process's own peak RSS (ru_maxrss would include the parent's, inherited over exec).
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
print(secs, hwm)
"""


def child(mode: str, src: Path, out: Path) -> tuple[float, int]:
    os.sync()  # every timed run starts with no dirty pages of an earlier one being written back
    r = subprocess.run([sys.executable, "-c", CHILD, mode, str(src), str(out)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    if r.returncode != 0:
        sys.exit(r.stderr)
    secs, rss = r.stdout.split()[-2:]
    return float(secs), int(rss)


def build(dest: Path, size_gb: float) -> Path:
    from converters.tiny import build_checkpoint

    h, ff, vocab = 2048, 6144, 32768
    per_layer = 2 * (h * h * 2 + h * 512 * 2 + 3 * h * ff)  # bf16 bytes: q,o + k,v (4 kv heads x 128) + mlp
    layers = max(1, int((size_gb * 1e9 - 4 * h * vocab) / per_layer))
    return build_checkpoint("glm4", dest, hidden_size=h, intermediate_size=ff, num_hidden_layers=layers,
                            num_attention_heads=16, num_key_value_heads=4, head_dim=128, vocab_size=vocab, shards=4)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--cli", action="store_true", help="time the whole `registry convert` command against cp -r")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="gguf-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "src"
    if not (src / "config.json").exists():
        t = time.perf_counter()
        build(src, a.size_gb)
        print(f"built {src} in {time.perf_counter() - t:.0f} s")
    if a.cli:
        return cli_rounds(src, work, a.rounds)
    idx = json.loads((src / "model.safetensors.index.json").read_text())
    shards = sorted(set(idx["weight_map"].values()))
    total = sum((src / s).stat().st_size for s in shards)
    from converters.gguf.reader import Checkpoint

    largest = max(r.nbytes for r in Checkpoint(src).tensors.values())

    copy_dir = work / "copy"
    shutil.rmtree(copy_dir, ignore_errors=True)
    copy_dir.mkdir()
    for s in shards:  # warm the page cache so both runs read from memory
        with open(src / s, "rb") as f:
            while f.read(1 << 24):
                pass
    # Three rounds of copy, F16 and BF16, interleaved so that all three see the same page-cache and
    # writeback conditions; each reports its fastest round (this VM's disk and reclaim make single
    # runs vary by 2x or more).
    copies, f16, bf16 = [], [], []
    for _ in range(3):
        os.sync()
        t = time.perf_counter()
        for s in shards:
            shutil.copyfile(src / s, copy_dir / s)
        copies.append(time.perf_counter() - t)
        for s in shards:
            (copy_dir / s).unlink()
        for p in (work / "m.F16.gguf", work / "m.BF16.gguf", work / "m.Q4_K_M.gguf"):
            p.unlink(missing_ok=True)
        f16.append(child("convert", src, work / "m.F16.gguf"))
        bf16.append(child("convert-bf16", src, work / "m.BF16.gguf"))
        (work / "m.BF16.gguf").unlink()
    shutil.rmtree(copy_dir)
    copy_s = min(copies)
    conv_s, conv_rss = min(r[0] for r in f16), max(r[1] for r in f16)
    bf_s, bf_rss = min(r[0] for r in bf16), max(r[1] for r in bf16)
    _, base_rss = child("import", src, work / "none")
    q_s, q_rss = child("quantize", work / "m.F16.gguf", work / "m.Q4_K_M.gguf")
    mb = 1 / 2**20
    print(f"checkpoint: {total * mb:.0f} MiB in {len(shards)} shards; largest tensor {largest * mb:.0f} MiB (bf16)")
    print(f"plain copy of the shards:  {copy_s:.2f} s ({total / copy_s * mb:.0f} MiB/s)  "
          f"(rounds: {', '.join(f'{x:.2f}' for x in copies)})")
    print(f"convert -> F16 GGUF:       {conv_s:.2f} s ({total / conv_s * mb:.0f} MiB/s) = {conv_s / copy_s:.2f}x the copy  "
          f"(rounds: {', '.join(f'{x[0]:.2f}' for x in f16)})")
    print(f"convert -> BF16 GGUF:      {bf_s:.2f} s ({total / bf_s * mb:.0f} MiB/s) = {bf_s / copy_s:.2f}x the copy "
          f"(bytes pass through; rounds: {', '.join(f'{x[0]:.2f}' for x in bf16)}; peak RSS {bf_rss * mb:.0f} MiB)")
    print(f"peak RSS convert:          {conv_rss * mb:.0f} MiB; import-only process {base_rss * mb:.0f} MiB; "
          f"convert - import = {(conv_rss - base_rss) * mb:.0f} MiB = {(conv_rss - base_rss) / largest:.2f}x the largest tensor")
    print(f"goal check: peak RSS < 2x largest + 400 MiB = {(2 * largest + 400 * 2**20) * mb:.0f} MiB: "
          f"{'ok' if conv_rss < 2 * largest + 400 * 2**20 else 'MISSED'}")
    print(f"quantize F16 -> Q4_K_M:    {q_s:.2f} s (peak RSS {q_rss * mb:.0f} MiB)")


def cli_rounds(src: Path, work: Path, rounds: int) -> None:
    """`registry convert` end to end against `cp -r`, alternating which goes first; each round's ratio."""
    import statistics

    home, out, dst = work / "home", work / "cli-out", work / "cp-dst"
    env = {**os.environ, "REGISTRY_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    cmd = [sys.executable, "-m", "registry", "convert", "glm-4-9b-0414", "--from", str(src), "--to", "ggufv2",
           "--quant", "FP16", "--out", str(out), "--json"]
    total = sum(f.stat().st_size for f in src.iterdir() if f.is_file())

    def timed(argv, **kw) -> tuple[float, float, int]:
        """Wall seconds, CPU seconds (user + system) and peak RSS (bytes) of one run."""
        os.sync()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%M", *argv] if Path("/usr/bin/time").exists() else argv,
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        last = r.stderr.strip().splitlines()[-1:] or ["0"]
        rss = int(last[0]) * 1024 if last[0].isdigit() else 0  # GNU time's %M: KiB
        return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, rss

    ratios, cps, cvs, cpu_cp, cpu_cv, rss = [], [], [], [], [], []
    # The registry home as a user's is after the first command: its compiled catalog and database exist (an
    # untimed first convert makes them); each round rebuilds the same output, whose row is replaced in place.
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    def clear() -> None:
        """No output of an earlier command left: at several GB its pages in the page cache were reclaimed inside
        the next command (`cp -r` of 3 GB took 0.9 s first in a round and 3.5-4.7 s second)."""
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(dst, ignore_errors=True)
        out.mkdir()

    for i in range(rounds):
        pair = [("cp", ["cp", "-r", str(src), str(dst)], {}), ("convert", cmd, {"env": env})]
        got = {}
        for name, argv, kw in (pair if i % 2 == 0 else pair[::-1]):
            clear()
            got[name] = timed(argv, **kw)
        cps.append(got["cp"][0])
        cvs.append(got["convert"][0])
        cpu_cp.append(got["cp"][1])
        cpu_cv.append(got["convert"][1])
        rss.append(got["convert"][2])
        ratios.append(got["convert"][0] / got["cp"][0])
    mb = 1 / 2**20
    med = statistics.median
    print(f"checkpoint: {total * mb:.0f} MiB")
    print(f"cp -r:            median {med(cps):.2f} s (rounds {', '.join(f'{x:.2f}' for x in cps)}); CPU {med(cpu_cp):.2f} s")
    print(f"registry convert: median {med(cvs):.2f} s (rounds {', '.join(f'{x:.2f}' for x in cvs)}); CPU {med(cpu_cv):.2f} s"
          + (f"; peak RSS {max(rss) * mb:.0f} MiB" if max(rss) else ""))
    print(f"ratio convert/cp: median {med(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f}); "
          f"CPU time {med(cpu_cv) / med(cpu_cp):.2f}x (what a machine busy with other work sees)")
    shutil.rmtree(dst, ignore_errors=True)


if __name__ == "__main__":
    main()
