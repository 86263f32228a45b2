"""`registry demo`: the whole path on this machine, no hub needed.

1. load and validate the catalog and pin every seed system to its hub objects;
2. build a tiny random GLM-4 checkpoint (ChatGLMModel, the architecture of glm4-chat-1m) in the
   hub's file layout;
3. convert it to GGUF Q4_K (one F16 pass, then llama.cpp's quantizer), with the KL / top-1 report,
   and record both builds, marked as the demo's, in the demo's own store;
4. launch glm4-chat-1m ggufv2 Q4_K: the launcher finds the recorded build and starts llama.cpp's
   server on 127.0.0.1;
5. ask it one chat question over HTTP (through the GLM chat template), print the answer;
6. stop the server.

The checkpoint has random weights, so the answer is noise; the point is that every part is real.
Everything the demo makes lives in its own home (`demo/` under the registry home: database,
builds, logs), and its builds are marked as the demo's: `registry pull`, `launch` and `fit` in the
real home never see them.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

SEED_SYSTEMS = [
    ("the FP8 build of the GizzmoShifu/glm-4-9b-chat-hf-fp8 card", "glm-4-9b-chat", "compressed-tensors", "FP8_DYNAMIC"),
    ("a GLM-4.7 W4A16 branch of TheHouseOfTheDude's card", "glm-4.7", "compressed-tensors", "W4A16_GS32"),
    ("a GLM-4.7 W4A16 branch of TheHouseOfTheDude's card", "glm-4.7", "compressed-tensors", "W4A16_GS64"),
    ("a GLM-4.7 W4A16 branch of TheHouseOfTheDude's card", "glm-4.7", "compressed-tensors", "W4A16_GS128"),
    ("the bullpoint/GLM-4.6-AWQ card", "glm-4.6", "compressed-tensors", "AWQ"),
    ("the lukealonso/GLM-5-NVFP4 card", "glm-5", "modelopt", "NVFP4"),
    ("Model Spec 1 of the glm4-chat-1m docs page", "glm4-chat-1m", "pytorch", "none"),
    ("Model Spec 2 of the glm4-chat-1m docs page", "glm4-chat-1m", "ggufv2", "Q4_K"),
]

FAMILY, FORMAT, QUANT = "glm4-chat-1m", "ggufv2", "Q4_K"


def catalog_step(say: Callable[[str], None]) -> dict:
    from .catalog import load

    cat = load()
    say(f"catalog: {len(cat.names())} families validated ({', '.join(cat.names())})")
    resolved = []
    for seed, name, fmt, quant in SEED_SYSTEMS:
        r = cat.resolve(name, fmt, quant)
        hf = r.hubs.get("huggingface")
        where = f"{hf.model_id}@{hf.revision}" + (f" {hf.files[0]}" if hf and hf.files else "") if hf else "local build"
        say(f"{seed}: {name} {fmt} {r.quantization} -> {where}; engines: {', '.join(r.engines)}")
        resolved.append(r.to_dict())
    return {"families": cat.names(), "seed_systems": resolved}


def build_step(work: Path, say: Callable[[str], None]) -> Path:
    from converters.tiny import build_checkpoint

    ckpt = work / "glm-4-9b-chat-1m-tiny"
    if not (ckpt / "config.json").is_file():  # built once per REGISTRY_HOME
        build_checkpoint("chatglm", ckpt)
    say(f"checkpoint: tiny ChatGLMModel in the hub layout at {ckpt}")
    return ckpt


def convert_step(ckpt: Path, work: Path, say: Callable[[str], None], progress: bool) -> list:
    from converters.gguf import run_convert
    from converters.options import ConvertRequest

    from converters.options import record

    out = work / "builds"
    for old in out.glob("*.gguf"):  # a rerun rebuilds (and re-records) the same paths
        old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    req = ConvertRequest(family=FAMILY, source=ckpt, to=FORMAT, quant=QUANT, out=out, report=True,
                         progress=progress, say=say, record=False)
    results = run_convert(req)
    for r in results:  # recorded as the demo's toys: look-up outside the demo never takes them
        r.recipe = {**(r.recipe or {}), "demo": True, "weights": "random"}
    record(results)
    for r in results:
        rep = r.report or {}
        extra = (f", KL {rep['kl_divergence']:.4f}, top-1 {rep['top1_agreement']:.0%} vs {rep['reference']}"
                 if rep.get("kl_divergence") is not None else "")
        say(f"convert: {r.quantization} {r.path.name} {r.size_bytes / 2**20:.1f} MiB, recorded as artifact "
            f"{r.artifact_id}{extra}")
    return results


def launch_step(say: Callable[[str], None], spinner: bool) -> dict:
    from . import launcher

    plan = launcher.plan(FAMILY, FORMAT, QUANT, context=512)
    # the first reason per engine; `registry launch ... --dry-run` shows them all
    rejected = "; ".join(f"{x['engine']}: {x['reasons'][0]}" for x in plan.rejected if x["reasons"])
    say(f"launch: {plan.engine} chosen" + (f" (not: {rejected})" if rejected else ""))
    if plan.artifact.get("demo"):
        say(f"launch: {plan.artifact['path']} is the demo's random-weight toy, not the real {FAMILY}")
    dep = launcher.launch(plan, timeout=120, say=say, spinner=spinner)
    url = launcher.address(dep)
    say(f"launch: {FAMILY} answers at {url} (pid {dep.pid}, log {dep.log_path})")
    try:
        body = json.dumps({"messages": [{"role": "user", "content": "Hello! Who are you?"}],
                           "max_tokens": 16, "temperature": 0}).encode()
        req = urllib.request.Request(f"{url}/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        t0 = time.monotonic()
        with urllib.request.urlopen(req, timeout=60) as resp:
            answer = json.load(resp)
        text = answer["choices"][0]["message"]["content"]
        say(f"chat: {text!r} ({answer['usage']['completion_tokens']} tokens in {time.monotonic() - t0:.2f} s; "
            "random weights, so noise)")
    finally:
        say(f"stop: {launcher.stop(dep)}")
    return {"engine": plan.engine, "url": url, "answer": answer}


def run(say: Callable[[str], None] = print, progress: bool = False) -> dict[str, object]:
    from . import paths

    out: dict[str, object] = catalog_step(say)
    home = paths.demo_home()
    with demo_env(home):
        say(f"demo: its state lives apart in {home} (REGISTRY_HOME={home} registry ps --all shows it); "
            "the real store is not touched")
        ckpt = build_step(home, say)
        from .catalog import load
        from .views import with_quant_names

        fam = load().get(FAMILY)
        out["builds"] = [with_quant_names(r.to_dict(), fam) for r in convert_step(ckpt, home, say, progress)]
        out["launch"] = launch_step(say, spinner=progress)
    out["home"] = str(home)
    return out


@contextmanager
def demo_env(home: Path):
    """The demo's own home while it runs: its SQLite database (even where REGISTRY_DATABASE_URL names a
    shared server), builds and logs; REGISTRY_DEMO lets look-up take its marked toys."""
    from . import paths

    keys = ("REGISTRY_HOME", "REGISTRY_DATABASE_URL", paths.DEMO_ENV)
    saved = {k: os.environ.get(k) for k in keys}
    home.mkdir(parents=True, exist_ok=True)
    os.environ["REGISTRY_HOME"] = str(home)
    os.environ.pop("REGISTRY_DATABASE_URL", None)
    os.environ[paths.DEMO_ENV] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
