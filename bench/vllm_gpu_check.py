"""GPU check, for a CUDA machine: the seed recipes built on tiny MoE checkpoints and loaded in CUDA vLLM (and
SGLang where installed) through `registry launch`, one table row each.

    PYTHONPATH=$PWD .venv/bin/python bench/vllm_gpu_check.py [--engines vllm,sglang] [--work DIR] [--timeout 900]
    PYTHONPATH=$PWD .venv/bin/python bench/vllm_gpu_check.py --dry-run    # any machine: builds, plans for 1xH100-80G

vLLM and SGLang are found as `registry launch` finds them (REGISTRY_VLLM / REGISTRY_SGLANG, this environment,
PATH). Rows (Glm4MoeForCausalLM tiny checkpoints from converters/tiny/, calibrated on
tests/data/calibration_chat.jsonl):
  glm-4.7 W4A16_GS32 / GS64 / GS128   seed 001: AWQ smoothing, every expert calibrated
  glm-4.6 AWQ                          seed 002: asymmetric int4, the card's ignore list
  glm-4.7 FP8_DYNAMIC                  seed 000's scheme on a MoE (data-free)
  glm-4.7 NVFP4                        seed 003: FP4 routed-expert MLPs only (Blackwell for W4A4 kernels)
Each row: `registry convert`, `registry launch TAG --engine E --context 256`, one chat request, `registry stop`.

The registry plans from a family's real size (355B does not fit one GPU), so each row runs under a tiny twin
of its family, written to a copy of the catalog (REGISTRY_SPECS_DIR): the tiny checkpoint's architecture and
size, the family's chat settings and recipe, one compressed-tensors spec with that row's quantization and no
launch profile (the generic command on one GPU). Everything lives in --work (a throwaway REGISTRY_HOME too).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALIB = ROOT / "tests" / "data" / "calibration_chat.jsonl"
# (row name, family, quantization, method, tiny overrides, keep the family's recipe)
ROWS = [
    ("glm-4.7 W4A16_GS32", "glm-4.7", "W4A16_GS32", None, {}, True),
    ("glm-4.7 W4A16_GS64", "glm-4.7", "W4A16_GS64", None, {}, True),
    ("glm-4.7 W4A16_GS128", "glm-4.7", "W4A16_GS128", None, {}, True),
    ("glm-4.6 AWQ", "glm-4.6", "AWQ", None, {"num_hidden_layers": 4}, True),
    ("glm-4.7 FP8_DYNAMIC (MoE)", "glm-4.7", "FP8_DYNAMIC", None, {}, False),
    ("glm-4.7 NVFP4", "glm-4.7", "NVFP4", None, {}, False),
]


def run(args: list[str], env: dict, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "registry", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def last_line(text: str) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return lines[-1][:160] if lines else ""


def twin(family: str, quant: str, src: Path, keep_recipe: bool) -> dict:
    """The tiny twin of `family` for one quantization: its spec as a dict (see the module docstring)."""
    import yaml

    base = yaml.safe_load((ROOT / "registry" / "specs" / f"{family}.yaml").read_text())
    cfg = json.loads((src / "config.json").read_text())
    size_b = sum(f.stat().st_size for f in src.glob("*.safetensors")) / 2 / 1e9  # bfloat16 parameters
    arch = dict(base["architecture"])
    arch.update(total_params_b=size_b, active_params_b=size_b, layers=cfg["num_hidden_layers"],
                hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
                moe_intermediate_size=cfg["moe_intermediate_size"], attention_heads=cfg["num_attention_heads"],
                kv_heads=cfg["num_key_value_heads"], head_dim=cfg["head_dim"], experts=cfg["n_routed_experts"],
                experts_per_token=cfg["num_experts_per_tok"], shared_experts=cfg["n_shared_experts"],
                dense_layers=cfg["first_k_dense_replace"], vocab_size=cfg["vocab_size"],
                mtp_layers=cfg.get("num_nextn_predict_layers", 0))
    ct = next((s for s in base["specs"] if s["format"] == "compressed-tensors" and quant in s["quantizations"]), None)
    spec = {"format": "compressed-tensors", "size_in_billions": size_b, "quantizations": [quant],
            "engines": ["vllm", "sglang"]}
    if keep_recipe and ct and ct.get("recipe"):
        spec["recipe"] = ct["recipe"]
    out = {k: v for k, v in base.items() if k not in ("specs", "architecture", "name", "context_length")}
    out.update(name=f"tiny-{family}-{quant.lower().replace('_', '-')}", architecture=arch, context_length=4096,
               specs=[spec], description=f"Tiny twin of {family} for the GPU check ({quant}).")
    return out


def chat(address: str, model: str) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "Hello GLM"}], "max_tokens": 8, "temperature": 0}
    req = urllib.request.Request(address + "/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["choices"][0]["message"]["content"] or ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="vllm,sglang", help="engines to load each build in (default vllm,sglang)")
    ap.add_argument("--work", help="working folder (default: a new temporary one)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for each server")
    ap.add_argument("--dry-run", action="store_true", help="build and plan for 1xH100-80G; start nothing")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import yaml

    from converters.tiny import build_checkpoint
    from registry.engines import found

    work = Path(a.work or tempfile.mkdtemp(prefix="glmreg-gpu-check-"))
    specs = work / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    (work / "builds").mkdir(exist_ok=True)
    for f in (ROOT / "registry" / "specs").glob("*.yaml"):
        shutil.copy(f, specs / f.name)
    env = {**os.environ, "REGISTRY_HOME": str(work / "home"), "REGISTRY_SPECS_DIR": str(specs),
           "PYTHONPATH": str(ROOT)}
    engines = [e for e in a.engines.split(",") if e]
    for e in engines:
        inst = found.find(e, ())
        print(f"{e}: {inst.describe() if isinstance(inst, found.Installation) else 'not found: ' + (inst.why or 'set REGISTRY_' + e.upper())}")
    rows = []
    for name, family, quant, method, over, keep in ROWS:
        src = work / "src" / ("glm4moe" + "".join(f"-{k}{v}" for k, v in over.items()))
        if not src.exists():
            build_checkpoint("glm4moe", src, **over)
        fam = twin(family, quant, src, keep)
        (specs / f"{fam['name']}.yaml").write_text(yaml.safe_dump(fam, sort_keys=False))
        out = work / "builds" / fam["name"]
        t0 = time.monotonic()
        if not out.exists():
            r = run(["convert", fam["name"], "--from", str(src), "--to", "compressed-tensors", "--quant", quant,
                     "--calibration", str(CALIB), "--samples", "16", "--max-seq-len", "64", "--out", str(out),
                     *(["--method", method] if method else []), "--json"], env)
            if r.returncode:
                rows.append((name, "-", "build failed", "", last_line(r.stderr)))
                continue
        built = f"{time.monotonic() - t0:.0f} s"
        tag = f"{fam['name']}:{quant}"
        for engine in engines:
            launch = ["launch", tag, "--engine", engine, "--context", "256", "--json"]
            if a.dry_run:
                r = run([*launch, "--dry-run", "--hardware", "1xH100-80G"], env)
                rows.append((name, engine, built, "planned" if r.returncode == 0 else "refused",
                             " ".join(json.loads(r.stdout)["argv"][:4]) if r.returncode == 0 else last_line(r.stderr)))
                continue
            t1 = time.monotonic()
            r = run([*launch, "--timeout", str(a.timeout)], env, timeout=a.timeout + 120)
            if r.returncode:
                rows.append((name, engine, built, "failed to start", last_line(r.stderr)))
                continue
            dep = json.loads(r.stdout)
            started = f"started in {time.monotonic() - t1:.0f} s"
            try:
                argv = dep["argv"]
                model = argv[argv.index("--served-model-name") + 1] if "--served-model-name" in argv else fam["name"]
                text = chat(dep["address"], model)
                rows.append((name, engine, built, started + ", answered", repr(text[:40])))
            except (OSError, ValueError, KeyError) as e:
                rows.append((name, engine, built, started + ", no answer", str(e)[:120]))
            finally:
                run(["stop", str(dep["id"])], env)
    width = [max(len(str(r[i])) for r in rows + [("row", "engine", "build", "result", "detail")]) for i in range(5)]
    print()
    for r in [("row", "engine", "build", "result", "detail"), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, width)))
    print(f"\nwork folder: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
