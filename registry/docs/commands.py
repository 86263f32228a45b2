"""Launch commands shown on the generated pages.

The engine's own command comes from the launcher's engine modules (registry.engines), the same
code `registry launch` plans with, asked about a named hardware profile and the hub build, so a
page depends only on the specs: never on this machine, its installed engines or its local store.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..schema import ENGINE_TITLES, Family, Spec

_PATH = re.compile(r"/path/to/\S+")  # only a GGUF file name carries the quantization
HOST = "127.0.0.1"  # the launcher's default bind address
QUANT = "${quantization}"


@dataclass(frozen=True)
class EngineCommand:
    engine: str
    title: str  # e.g. "vLLM"
    profile: str | None  # launch profile name; None without profiles or for a sole 'default' one
    description: str | None
    source: str | None
    quantizations: list[str]  # the quantizations this command serves
    registry: str  # the `registry launch` line
    server: str | None  # the engine's own command line, as the launcher plans it
    hardware: str | None  # the hardware profile the server command was planned for
    unavailable: str | None = None  # why the launcher would refuse it on that hardware


def reference_hardware(spec: Spec) -> list[str]:
    """The named hardware profiles the pages plan for, in order: one 8x H100 node, then one 8x B200
    node (Blackwell only where the spec needs it); a command is shown for the first that serves it."""
    need = spec.min_compute_capability() or 0
    for e in spec.engines:
        need = max(need, spec.min_compute_capability(e) or 0)
    return ["8xB200"] if need >= 10.0 else ["8xH100-80G", "8xB200"]


def registry_launch(fam: Family, spec: Spec, engine: str = "${engine}", quant: str = QUANT,
                    profile: str | None = None) -> str:
    """The `registry launch` line for one spec: seed 004's command in this registry's flags (engine,
    family, size in billions, format, quantization)."""
    parts = ["registry", "launch", fam.name, "--engine", engine, "--size", f"{spec.size_in_billions:g}",
             "--format", spec.format, "--quant", quant]
    if profile:
        parts += ["--profile", profile]
    return " ".join(parts)


def _model(spec: Spec, engine: str, quant: str) -> tuple[str, list[str]]:
    """What the engine is pointed at for a hub build, and the revision flags (as launcher.plan does)."""
    src = spec.hubs.get("huggingface") or next(iter(spec.hubs.values()), None)
    if src is None:
        return "/path/to/local-build", []
    if engine == "llama.cpp":
        files = src.files_for(quant)
        return f"/path/to/{files[0] if files else 'model.gguf'}", []
    rev = src.revision_for(quant)
    return src.model_id, (["--revision", rev] if rev != "main" else [])


def _show(argv: list[str], env: dict[str, str]) -> str:
    """A command line to read: argv[0] by its name (not this machine's path), values quoted for a shell."""
    first = Path(argv[0]).name
    argv = ["python3" if first.startswith("python") else first, *argv[1:]]

    def q(a: str) -> str:  # placeholders stay readable
        return a if a.startswith("/path/to/") else shlex.quote(a)

    return " ".join([f"{k}={shlex.quote(v)}" for k, v in env.items()] + [q(a) for a in argv])


def server_command(fam: Family, spec: Spec, engine: str, quant: str, profile: str | None,
                   hardware: str) -> tuple[str | None, str | None]:
    """(command line, None) for one quantization from the launcher's engine module, or (None, why)
    when the engine would refuse it on that hardware (e.g. not enough GPU memory)."""
    from .. import engines
    from ..catalog import HubFiles, Resolved
    from ..errors import RegistryError
    from ..hardware import profile as hw_profile

    try:
        hw = hw_profile(hardware)
        hubs = {h: HubFiles(h, s.model_id, s.revision_for(quant), s.files_for(quant)) for h, s in spec.hubs.items()}
        resolved = Resolved(fam, spec, quant, spec.canonical_quant(quant), hubs, spec.engines_for(quant))
        req = engines.Request(resolved, hw, profile=profile)
        mod = engines.get(engine)
        verdict = mod.can_serve(req)
        if not verdict.ok:
            return None, "; ".join(verdict.reasons)
        model, extra = _model(spec, engine, quant)
        cmds = mod.command(req, model, HOST, None)
    except RegistryError:
        return None, None  # e.g. no bits-per-weight figure to size the GPUs: the registry line only
    main = cmds[-1]
    argv = list(main.argv)
    if extra and ("serve" in argv or "sglang.launch_server" in argv):
        argv += extra
    return _show(argv, main.env), None


def engine_commands(fam: Family, spec: Spec) -> list[EngineCommand]:
    """Per engine (and launch profile): the `registry launch` line and the server command it runs.

    Quantizations whose server commands are the same (the quantization only in the file name)
    share one entry with ${quantization} in place of the name."""
    out = []
    profiles_hw = reference_hardware(spec)
    for engine, rule in spec.engines.items():
        quants = list(rule.quantizations) if rule.quantizations is not None else list(spec.quantizations)
        profiles = spec.profiles(engine) or [None]
        for p in profiles:
            name = p.name if p is not None else None
            shown = None if name is None or (name == "default" and len(profiles) == 1) else name
            groups: dict[tuple[str | None, str | None, str], list[str]] = {}
            for q in quants:
                for hardware in profiles_hw:
                    cmd, why = server_command(fam, spec, engine, q, name, hardware)
                    if cmd or why is None:
                        break
                if cmd and len(quants) > 1:
                    cmd = _PATH.sub(lambda m: m.group(0).replace(q, QUANT), cmd)
                groups.setdefault((cmd, why, hardware), []).append(q)
            for (cmd, why, hardware), qs in groups.items():
                q = qs[0] if len(qs) == 1 else QUANT
                server = cmd.replace(QUANT, q) if cmd else None
                out.append(EngineCommand(
                    engine, ENGINE_TITLES[engine], shown, p.description if p else None, p.source if p else None,
                    qs, registry_launch(fam, spec, engine, q, shown), server,
                    hardware if (server or why) else None, why))
    return out


def convert_command(fam: Family, spec: Spec) -> str | None:
    """The `registry convert` line that rebuilds a spec's quantized builds from its parent, where
    the registry's own converters handle the recipe (GGUF, and llm-compressor's compressed-tensors)."""
    r = spec.recipe
    if r is None:
        return None
    parent = "/path/to/" + (r.parent.split("/")[-1] if r.parent else "parent-checkpoint")
    if spec.format == "ggufv2":
        parts = ["registry", "convert", fam.name, "--from", parent, "--to", "ggufv2", "--quant", "${quantization}"]
    elif spec.format == "compressed-tensors" and r.tool == "llmcompressor":
        quant = spec.quantizations[0] if len(spec.quantizations) == 1 else "${quantization}"
        parts = ["registry", "convert", fam.name, "--from", parent, "--to", "compressed-tensors", "--quant", quant]
        if r.method in ("awq", "rtn"):
            parts += ["--method", r.method]
        c = r.calibration
        if c is not None:
            if c.datasets:
                parts += ["--calibration", c.datasets[0]]
            if c.samples:
                parts += ["--samples", str(c.samples)]
            if c.max_seq_length:
                parts += ["--max-seq-len", str(c.max_seq_length)]
            if c.seed is not None:
                parts += ["--seed", str(c.seed)]
            if c.all_experts:
                parts.append("--all-experts")
    else:
        return None
    return " ".join(parts)
