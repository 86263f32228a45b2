"""What every engine shares: the verdict and command types, and the checks common to all of them.

An engine module answers two questions for one resolved build: can_serve(...) -> Verdict (ok, or the
reasons why not) and command(...) -> Command (argv list, environment, port, health URL).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..estimate import Estimate, engine_estimate

GB = 10**9

# Kernel requirements by quantization (compute capability). These are engine facts, not model facts:
# FP8 runs natively from Ada/Hopper (8.9); vLLM falls back to weight-only FP8 through Marlin on
# Ampere (8.0+). W4A16 / AWQ / GPTQ int4 use Marlin (8.0+). NVFP4 needs Blackwell (10.0+).
FP8 = {"FP8_DYNAMIC", "FP8", "FP8_BLOCK", "W8A8"}
INT4_MARLIN = {"W4A16", "W4A16_GS32", "W4A16_GS64", "W4A16_GS128", "AWQ", "Int4", "W8A16", "Int8", "Int4-Int8Mix", "AWQ-FP16Mix"}
NVFP4 = {"NVFP4", "NVFP4A16"}


@dataclass
class Verdict:
    engine: str
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    estimate: Estimate | None = None
    gpus: int | None = None  # GPUs per node the check settled on (GPU servers); command() uses the same

    @property
    def ok(self) -> bool:
        return not self.reasons


@dataclass
class Command:
    argv: list[str]
    env: dict[str, str]
    host: str
    port: int
    health_url: str
    node_rank: int | None = None
    unset_env: frozenset = frozenset()  # variables of the caller's environment the server must not see

    def to_dict(self) -> dict:
        d = {"argv": self.argv, "env": self.env, "host": self.host, "port": self.port, "health_url": self.health_url}
        if self.node_rank is not None:
            d["node_rank"] = self.node_rank
        return d


@dataclass
class Request:
    """What the launcher asks an engine about: a resolved build on some hardware."""

    resolved: object  # catalog.Resolved
    hardware: object  # hardware.Hardware
    context: int | None = None
    gpus: int | None = None  # GPUs per node asked for (None: the launch profile's or the engine's default)
    nodes: int = 1
    profile: str | None = None  # launch profile name
    gguf_path: str | None = None  # a local GGUF: exact weights from its header
    revision: str | None = None  # the hub revision to pass with a hub model id (None: main, or a local path)
    threads: int | None = None  # CPU threads asked for (None: one per physical core)

    @property
    def family(self):
        return self.resolved.family

    @property
    def spec(self):
        return self.resolved.spec

    @property
    def quant(self) -> str:
        return self.resolved.quantization


_FOUND: dict[str, tuple[float, bool]] = {}  # module -> (when looked up, found)
FOUND_FOR_S = 2.0


def module_installed(*modules: str) -> list[str]:
    """The modules of `modules` that cannot be imported here (found without importing them).

    Each answer is kept for a couple of seconds: `registry fit` asks for every build of a family and every
    context it tries (hundreds of look-ups over sys.path, ~0.1 s), while an install made meanwhile (a
    long-running `registry serve`) is seen soon after."""
    import time

    now = time.monotonic()
    missing = []
    for m in modules:
        seen = _FOUND.get(m)
        if seen is None or now - seen[0] > FOUND_FOR_S:
            seen = _FOUND[m] = (now, importlib.util.find_spec(m) is not None)
        if not seen[1]:
            missing.append(m)
    return missing


def script(name: str) -> str:
    """An engine's console script: the one beside this interpreter, else from PATH, else the bare name."""
    local = Path(sys.executable).with_name(name)
    if local.exists():
        return str(local)
    return shutil.which(name) or name


def find_profile(spec, engine: str, name: str | None, required: bool = True):
    """The launch profile `name` of `engine` (None: its first one, if any). A name the engine lacks is an
    error, or None when not `required` (an engine asked about a profile of another engine)."""
    from ..errors import not_found

    profiles = spec.profiles(engine)
    if name is None:
        return profiles[0] if profiles else None
    for p in profiles:
        if p.name == name:
            return p
    if not required:
        return None
    raise not_found(f"launch profile for {engine}", name, [p.name for p in profiles] or ["(none)"])


def rule_reasons(req: Request, engine: str) -> list[str]:
    """The spec's engine rules: is this engine listed for the spec, and for this quantization?"""
    spec, q = req.spec, req.quant
    if engine not in spec.engines:
        listed = ", ".join(spec.engines)
        return [f"the {spec.format} spec of {req.family.name} lists engines {listed}, not {engine}"]
    if engine not in spec.engines_for(q):
        rule = spec.engines[engine]
        return [f"spec rule: {engine} serves {req.family.name} {spec.format} only for quantization "
                f"{', '.join(rule.quantizations or [])}, not {q}"]
    return []


def format_reasons(req: Request, engine: str, hint: str | None = None) -> list[str]:
    """Does this engine load the spec's format at all (registry/formats.py)?"""
    from ..formats import loaders

    fmt = req.spec.format
    can = loaders(fmt)
    if engine in can:
        return []
    return [hint or f"{engine} does not load {fmt} builds (they load in {', '.join(can)})"]


def modality_notes(req: Request, engine: str) -> list[str]:
    """The model takes images (or video) that this engine does not pass on: a note, text still works."""
    missing = req.family.engine_takes(engine)
    if not missing:
        return []
    return [f"{engine} serves {req.family.name} text-only here: it does not take {' or '.join(missing)} input "
            f"(engines that do: {', '.join(_takes(req.family, missing))})"]


def _takes(family, modalities: list[str]) -> list[str]:
    from ..formats import ENGINE_MODALITIES

    return [e for e, ms in ENGINE_MODALITIES.items() if all(m in ms for m in modalities)] or ["none"]


def compute_reasons(req: Request, engine: str, marlin_fp8: bool) -> tuple[list[str], list[str]]:
    """GPU architecture checks: the spec's minimum and the kernels this quantization needs."""
    hw, q = req.hardware, req.quant
    cap = hw.min_compute_capability
    reasons: list[str] = []
    notes: list[str] = []
    if not hw.gpus:
        return reasons, notes  # the caller reports "no GPU"
    name = hw.gpus[0].name
    need = req.spec.min_compute_capability(engine)
    if need is not None and cap is not None and cap < need:
        reasons.append(f"GPU compute capability {cap:.1f} ({name}) is below the spec's minimum {need:.1f}")
    if cap is None:
        return reasons, notes
    if q in NVFP4 and cap < 10.0:
        reasons.append(f"{q} needs Blackwell GPUs (compute capability 10.0+); {name} has {cap:.1f}")
    elif q in FP8 and cap < 8.9:
        if marlin_fp8 and cap >= 8.0:
            notes.append(f"{q} on compute capability {cap:.1f}: weight-only FP8 through the Marlin fallback (slower)")
        else:
            reasons.append(f"{q} needs compute capability 8.9+ (Ada/Hopper)"
                           + (" or 8.0+ for the Marlin fallback" if marlin_fp8 else "") + f"; {name} has {cap:.1f}")
    elif q in INT4_MARLIN and cap < 8.0:
        reasons.append(f"{q} needs Marlin kernels (compute capability 8.0+); {name} has {cap:.1f}")
    return reasons, notes


def gpu_fit_reasons(req: Request, engine: str, gpus_per_node: int, utilization: float,
                    kv_dtype: str = "f16") -> tuple[list[str], Estimate]:
    """Needs a GPU, enough of them, and enough memory on each (weights + KV sharded evenly)."""
    hw = req.hardware
    total_gpus = gpus_per_node * req.nodes
    est = engine_estimate(req.family, req.spec, req.quant, engine, req.context, gpus=total_gpus, kv_dtype=kv_dtype)
    reasons = []
    if not hw.gpus:
        return [f"{engine} needs NVIDIA GPUs; {hw.name} has none"], est
    if gpus_per_node > hw.gpu_count:
        reasons.append(f"needs {gpus_per_node} GPUs per node; {hw.name} has {hw.gpu_count}"
                       + ("" if req.nodes > 1 else " (add --nodes to spread over machines)"))
    hw_min = req.spec.hardware.min_gpus if req.spec.hardware else None
    if hw_min and total_gpus < hw_min:
        reasons.append(f"the spec needs at least {hw_min} GPUs; the plan uses {total_gpus}")
    budget = int(hw.gpu_memory_bytes * utilization)
    per = est.per_gpu or 0
    if per > budget:
        reasons.append(f"not enough GPU memory: needs ~{per / GB:.1f} GB per GPU on {total_gpus} GPU(s), "
                       f"{utilization:g} x {hw.gpu_memory_bytes / GB:.0f} GB = {budget / GB:.1f} GB usable")
    return reasons, est


def install_reason(req: Request, engine: str, missing: list[str], how: str) -> tuple[list[str], list[str]]:
    """'not installed' is a reason only when planning for this machine."""
    if not missing:
        return [], []
    if req.hardware.local:
        return [f"{engine} is not installed here (missing {', '.join(missing)}): {how}"], []
    return [], [f"plan for {req.hardware.name}: {engine} is not installed here and need not be ({how} there)"]


def version_below(have: str, need: str) -> bool:
    """`have` is an older release than `need` (0.5.13 < 0.5.13.post1; PEP 440 order, as pip reads them)."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(have) < Version(need)
    except InvalidVersion:  # a local build's odd version string: compare its leading numbers only
        import re

        def key(v: str) -> tuple:
            return tuple(int(x) for x in re.findall(r"\d+", v)[:3])
        return key(have) < key(need)


def family_floor(req: Request, engine: str) -> list[tuple[str, str]]:
    """(what, version) the family's spec says `engine` must be at least (its engine_floors)."""
    floor = req.family.engine_floors.get(engine)
    return [(req.family.name, floor)] if floor else []


def floor_check(req: Request, engine: str, name: str, have: str | None, floors: list[tuple[str, str]],
                hint: str) -> tuple[list[str], list[str]]:
    """(reasons, notes) for release floors: on this machine with the engine installed at release `have` (read
    from that installation, registry/engines/found.py), a reason for each floor it is below; a plan for
    another machine notes the family's own floor (engine_floors[name])."""
    if not floors:
        return [], []
    if not req.hardware.local:
        own = family_floor(req, name)
        return [], [f"{what} needs {engine} >= {need} on {req.hardware.name} (the first release its spec "
                    "names)" for what, need in own]
    if have is None:  # not installed: install_reason already says so, with the hint
        return [], []
    return [f"{engine} {have} is installed; {what} needs {engine} >= {need}: {hint}"
            for what, need in floors if version_below(have, need)], []


def revision_argv(req: Request) -> list[str]:
    """The flag that pins a hub model id to its revision, for servers that take `--revision`."""
    return ["--revision", req.revision] if req.revision else []


def client_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to `host`, as a URL writes it: a wildcard bind
    is reached on the loopback of its own family (:: on ::1: an IPv6-only socket does not answer
    127.0.0.1), an IPv6 literal in brackets."""
    if host == "0.0.0.0":
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
