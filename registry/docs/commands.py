"""Launch commands shown on the generated pages.

The engine's own command comes from the launcher's planning core (registry.launching.plan.plan_build),
the same code `registry launch` plans with, asked about a named hardware profile and the hub build, so a
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
    shown: str | None = None  # the quantization the lines are written for (one of `quantizations`)


def reference_hardware(spec: Spec) -> list[str]:
    """The named hardware profiles the pages plan for, in order: one 8x H100 node, then one 8x B200
    node (Blackwell only where the spec needs it), M3 Ultra Macs for MLX builds; a command is shown for
    the first that serves it."""
    if set(spec.engines) <= {"mlx-lm"}:  # MLX builds run on Apple silicon
        return ["M3-Ultra-96G", "M3-Ultra-512G"]
    need = spec.min_compute_capability() or 0
    for e in spec.engines:
        need = max(need, spec.min_compute_capability(e) or 0)
    return ["8xB200"] if need >= 10.0 else ["8xH100-80G", "8xB200"]


def registry_launch(fam: Family, spec: Spec, engine: str = "${engine}", quant: str = QUANT,
                    profile: str | None = None) -> str:
    """The `registry launch` line for one spec: seed 004's command in this registry's flags (engine,
    family, size in billions, format, quantization)."""
    parts = ["registry", "launch", fam.launch_name(spec), "--engine", engine, "--size", f"{spec.size_in_billions:g}",
             "--format", spec.format, "--quant", quant]
    if profile:
        parts += ["--profile", profile]
    return " ".join(parts)


def _show(argv: list[str], env: dict[str, str]) -> str:
    """A command line to read: argv[0] by its name (not this machine's path), values quoted for a shell."""
    first = Path(argv[0]).name
    argv = ["python3" if first.startswith("python") else first, *argv[1:]]

    def q(a: str) -> str:  # placeholders stay readable
        return a if a.startswith("/path/to/") else shlex.quote(a)

    return " ".join([f"{k}={shlex.quote(v)}" for k, v in env.items()] + [q(a) for a in argv])


def server_command(fam: Family, spec: Spec, engine: str, quant: str, profile: str | None,
                   hardware: str) -> tuple[str | None, str | None]:
    """(command line, None) for one quantization, planned by the launcher's planning core for the hub build
    at the engine's default context, or (None, why) when the engine would refuse it on that hardware (e.g. not
    enough GPU memory)."""
    from ..catalog import resolved_build
    from ..errors import RegistryError
    from ..hardware import profile as hw_profile
    from ..launching.plan import NoEngine, hub_artifact, plan_build

    try:
        resolved = resolved_build(fam, spec, quant)
        art = hub_artifact(resolved)  # never the local store: a page depends only on the specs
        p = plan_build(resolved, hw_profile(hardware), art, engine, profile=profile, cap_context=False)
    except NoEngine as e:
        return None, "; ".join(e.rejected[0]["reasons"])
    except RegistryError:
        return None, None  # e.g. no bits-per-weight figure to size the GPUs: the registry line only
    argv = [_page_model(a, art) for a in p.main.argv]
    return _show(argv, p.main.env), None


def _page_model(model: str, art: dict) -> str:
    """A page names a file path where the launcher fills a placeholder at launch (a fetched GGUF file,
    a local build)."""
    if not model.startswith("<"):
        return model
    return f"/path/to/{art['files'][0]}" if art.get("files") else "/path/to/local-build"


def engine_commands(fam: Family, spec: Spec, prefer: str | None = None) -> list[EngineCommand]:
    """Per engine (and launch profile): the `registry launch` line and the server command it runs.

    Quantizations whose server commands are the same (the quantization only in the file name)
    share one entry, written out for one real quantization of them (`prefer` where it is one)."""
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
                q = prefer if prefer in qs else qs[0]
                server = cmd.replace(QUANT, q) if cmd else None
                out.append(EngineCommand(
                    engine, ENGINE_TITLES[engine], shown, p.description if p else None, p.source if p else None,
                    qs, registry_launch(fam, spec, engine, q, shown), server,
                    hardware if (server or why) else None, why, q))
    return out


def convert_command(fam: Family, spec: Spec) -> str | None:
    """The `registry convert` line that rebuilds a spec's quantized builds from its parent, where
    the registry's own converters handle the recipe (GGUF, and llm-compressor's compressed-tensors)."""
    r = spec.recipe
    if r is None:
        return None
    parent = "/path/to/" + (r.parent.split("/")[-1] if r.parent else "parent-checkpoint")
    if spec.format == "ggufv2":
        parts = ["registry", "convert", fam.name, "--from", parent, "--to", "ggufv2", "--quant", "all"]  # F16 + the ladder
    elif spec.format == "compressed-tensors" and r.tool == "llmcompressor":
        quant = spec.quantizations[0] if len(spec.quantizations) == 1 else "all"  # every quantization of the spec
        parts = ["registry", "convert", fam.name, "--from", parent, "--to", "compressed-tensors", "--quant", quant]
        if r.method in ("awq", "gptq", "rtn"):
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
