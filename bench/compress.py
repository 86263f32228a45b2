"""compressed-tensors FP8_DYNAMIC by shard: peak memory flat in the model size, time against model_free_ptq.

Writes synthetic GLM-4-0414-architecture checkpoints (bf16, random weights, hub layout) whose shards
all have the same size, with 2, 4 and 8 shards, then in the same run, for each:
  * `registry convert <family> --to compressed-tensors --quant FP8_DYNAMIC` (the CLI, in process);
  * llm-compressor's `model_free_ptq(..., scheme="FP8_DYNAMIC", ignore=["lm_head"])` called directly
    (it quantizes by name, so it also quantizes embed_tokens; the registry's build leaves it bf16 as
    the loaded build does: a little less work for the registry);
each in a fresh process that imports torch, transformers, llm-compressor and the registry first (the
"import-only" floor, also measured alone), timed from after the imports; peak RSS is the child's
own VmHWM. Rounds interleave the two so both see the same page-cache conditions; each reports its
fastest round and its largest peak.

Goals (issue 14): registry peak RSS flat across the sizes (within 10%), at most 1.5x the largest
shard plus the import-only floor; registry time at most 1.1x the direct call.

Run:  PYTHONPATH=$PWD .venv/bin/python bench/compress.py [--shard-mb 200] [--rounds 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import re, sys, time
from pathlib import Path
mode, src, out = sys.argv[1], sys.argv[2], sys.argv[3]
import torch, transformers, llmcompressor, compressed_tensors  # every mode: the floor
from llmcompressor import model_free_ptq
from registry.cli import app
import registry.cli.convert_cmds
t = time.perf_counter()
if mode == "registry":
    try:
        app(["convert", "glm-4-9b-0414", "--from", src, "--to", "compressed-tensors", "--quant", "FP8_DYNAMIC",
             "--out", out, "--no-record", "--json"], standalone_mode=False)
    except SystemExit as e:
        if e.code:
            raise
elif mode == "direct":
    model_free_ptq(src, out, scheme="FP8_DYNAMIC", ignore=["lm_head"], device="cpu", max_workers=1)
secs = time.perf_counter() - t
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
print("RESULT", secs, hwm)
"""


def child(mode: str, src: Path, out: Path, home: Path) -> tuple[float, int]:
    os.sync()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REGISTRY_HOME": str(home), "TQDM_DISABLE": "1"}
    r = subprocess.run([sys.executable, "-c", CHILD, mode, str(src), str(out)], capture_output=True, text=True,
                       env=env)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT")), None)
    if r.returncode != 0 or line is None:
        sys.exit(f"{mode} on {src} failed:\n{r.stderr[-3000:]}")
    _, secs, rss = line.split()
    return float(secs), int(rss)


def synthetic(dest: Path, shards: int, shard_bytes: int) -> Path:
    """A glm4 checkpoint of `shards` equal shards (layers grouped per shard; embed and lm_head small)."""
    import torch
    from safetensors.torch import save_file

    from converters.tiny import _hub_config

    h, ff, heads, kv, hd, vocab = 1024, 3584, 8, 2, 128, 2048
    layer = {
        "input_layernorm.weight": (h,), "post_attention_layernorm.weight": (h,),
        "post_self_attn_layernorm.weight": (h,), "post_mlp_layernorm.weight": (h,),
        "self_attn.q_proj.weight": (heads * hd, h), "self_attn.q_proj.bias": (heads * hd,),
        "self_attn.k_proj.weight": (kv * hd, h), "self_attn.k_proj.bias": (kv * hd,),
        "self_attn.v_proj.weight": (kv * hd, h), "self_attn.v_proj.bias": (kv * hd,),
        "self_attn.o_proj.weight": (h, heads * hd),
        "mlp.gate_up_proj.weight": (2 * ff, h), "mlp.down_proj.weight": (h, ff),
    }
    per_layer = sum(2 * torch.Size(s).numel() for s in layer.values())
    per_shard = max(1, round(shard_bytes / per_layer))
    n_layers = per_shard * shards
    cfg = _hub_config("glm4", {"hidden_size": h, "intermediate_size": ff, "num_attention_heads": heads,
                               "num_key_value_heads": kv, "head_dim": hd, "vocab_size": vocab,
                               "num_hidden_layers": n_layers})
    dest.mkdir(parents=True)
    (dest / "config.json").write_text(json.dumps(cfg, indent=2))
    gen = torch.Generator().manual_seed(0)
    wm = {}
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        tensors = {}
        if s == 0:
            tensors["model.embed_tokens.weight"] = (vocab, h)
        if s == shards - 1:
            tensors["model.norm.weight"] = (h,)
            tensors["lm_head.weight"] = (vocab, h)
        for i in range(s * per_shard, (s + 1) * per_shard):
            tensors.update({f"model.layers.{i}.{k}": v for k, v in layer.items()})
        out = {}
        for k, shape in tensors.items():
            t = torch.randn(shape, generator=gen) * (1.0 if len(shape) == 1 else 0.02)
            out[k] = (t + 1 if k.endswith("norm.weight") else t).to(torch.bfloat16)
            wm[k] = name
        save_file(out, dest / name, metadata={"format": "pt"})
        del out
    (dest / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    return dest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shard-mb", type=float, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sizes", default="2,4,8")
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="ct-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"
    sizes = [int(x) for x in a.sizes.split(",")]
    srcs = {}
    for n in sizes:
        src = work / f"src-{n}"
        if not (src / "config.json").exists():
            shutil.rmtree(src, ignore_errors=True)
            synthetic(src, n, int(a.shard_mb * 2**20))
        srcs[n] = src
    _, floor = child("import", srcs[sizes[0]], work / "none", home)
    rows = []
    for n in sizes:
        src = srcs[n]
        shard_sizes = [p.stat().st_size for p in src.glob("*.safetensors")]
        for p in src.glob("*.safetensors"):  # page cache warm for both
            with open(p, "rb") as f:
                while f.read(1 << 24):
                    pass
        reg, direct = [], []
        for _ in range(a.rounds):
            for mode, acc in (("registry", reg), ("direct", direct)):
                out = work / f"out-{mode}-{n}"
                shutil.rmtree(out, ignore_errors=True)
                acc.append(child(mode, src, out, home))
                shutil.rmtree(out, ignore_errors=True)
        rows.append({"shards": n, "total": sum(shard_sizes), "largest": max(shard_sizes),
                     "reg_s": min(r[0] for r in reg), "reg_rss": max(r[1] for r in reg),
                     "dir_s": min(r[0] for r in direct), "dir_rss": max(r[1] for r in direct),
                     "reg_rounds": [r[0] for r in reg], "dir_rounds": [r[0] for r in direct]})
    mb = 1 / 2**20
    print(f"import-only floor: {floor * mb:.0f} MiB peak RSS")
    print("| shards | checkpoint | largest shard | registry peak RSS | (RSS - floor) / shard | direct peak RSS "
          "| registry s | direct s | time ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['shards']} | {r['total'] * mb:.0f} MiB | {r['largest'] * mb:.0f} MiB | {r['reg_rss'] * mb:.0f} MiB "
              f"| {(r['reg_rss'] - floor) / r['largest']:.2f}x | {r['dir_rss'] * mb:.0f} MiB | {r['reg_s']:.2f} "
              f"| {r['dir_s']:.2f} | {r['reg_s'] / r['dir_s']:.2f}x |")
    rss = [r["reg_rss"] for r in rows]
    flat = (max(rss) - min(rss)) / min(rss)
    largest = max(r["largest"] for r in rows)
    bound = 1.5 * largest + floor
    worst = max(r["reg_s"] / r["dir_s"] for r in rows)
    print(f"rounds (s): " + "; ".join(f"{r['shards']} shards registry {r['reg_rounds']} direct {r['dir_rounds']}"
                                     for r in rows))
    print(f"goal RSS flat within 10%: spread {flat:.1%}: {'ok' if flat <= 0.10 else 'MISSED'}")
    print(f"goal RSS <= 1.5x largest shard + floor = {bound * mb:.0f} MiB: max {max(rss) * mb:.0f} MiB: "
          f"{'ok' if max(rss) <= bound else 'MISSED'}")
    print(f"goal time <= 1.1x direct: worst {worst:.2f}x: {'ok' if worst <= 1.1 else 'MISSED'}")


if __name__ == "__main__":
    main()
