"""Launch commands shown on the generated pages.

One small function renders them from the spec's launch profiles. When the launcher's
plan(...) lands, the engine argv should come from it instead, so the pages show exactly what
`registry launch` runs.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ..schema import ENGINE_TITLES, Family, LaunchProfile, Spec

# How each engine's server starts; the model reference follows the flag named here.
_ENGINE_ENTRY = {
    "vllm": (["vllm", "serve"], None),
    "sglang": (["python3", "-m", "sglang.launch_server"], "--model-path"),
    "llama.cpp": (["python3", "-m", "llama_cpp.server"], "--model"),
}


@dataclass(frozen=True)
class EngineCommand:
    engine: str
    title: str  # e.g. "vLLM"
    profile: str | None  # launch profile name; None without profiles or for a sole 'default' one
    description: str | None
    source: str | None
    quantizations: list[str]  # the quantizations this engine serves
    registry: str  # the `registry launch` line
    server: str | None  # the engine's own command line, from the profile


def registry_launch(fam: Family, spec: Spec, engine: str = "${engine}", quant: str = "${quantization}",
                    profile: str | None = None) -> str:
    """The `registry launch` line for one spec (seed 004's command, in this registry's flags)."""
    parts = ["registry", "launch", fam.name, "--engine", engine, "--format", spec.format,
             "--size", spec.size_label, "--quant", quant]
    if profile:
        parts += ["--profile", profile]
    return " ".join(parts)


def _model_ref(spec: Spec, engine: str) -> str:
    src = spec.hubs.get("huggingface") or next(iter(spec.hubs.values()), None)
    if src is None:
        return "<local build>"
    if engine == "llama.cpp" and src.file_template:
        return "<path to " + src.file_template.replace("{quantization}", "${quantization}") + ">"
    return src.model_id


def _args(args: dict) -> list[str]:
    out: list[str] = []
    for flag, value in args.items():
        if value is True:
            out.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            out += [flag, *[str(v) for v in value]]
        else:
            out += [flag, str(value)]
    return out


def server_command(spec: Spec, profile: LaunchProfile) -> str | None:
    """The engine's own command line for a launch profile (environment first), or None."""
    entry = _ENGINE_ENTRY.get(profile.engine)
    if entry is None:
        return None
    argv, model_flag = entry
    argv = list(argv)
    ref = _model_ref(spec, profile.engine)
    argv += [model_flag, ref] if model_flag else [ref]
    argv += _args(profile.args)
    if profile.port and "--port" not in profile.args:
        argv += ["--port", str(profile.port)]
    env = [f"{k}={shlex.quote(v)}" for k, v in profile.env.items()]
    return " ".join(env + [a if a.startswith("${") or a.startswith("<") else shlex.quote(a) for a in argv])


def engine_commands(fam: Family, spec: Spec) -> list[EngineCommand]:
    """One entry per engine (one per launch profile where the spec has profiles)."""
    out = []
    for engine, rule in spec.engines.items():
        quants = list(rule.quantizations) if rule.quantizations is not None else list(spec.quantizations)
        quant = quants[0] if len(quants) == 1 else "${quantization}"
        profiles = spec.profiles(engine)
        if not profiles:
            out.append(EngineCommand(engine, ENGINE_TITLES[engine], None, None, None, quants,
                                     registry_launch(fam, spec, engine, quant), None))
        for p in profiles:
            name = None if p.name == "default" and len(profiles) == 1 else p.name
            out.append(EngineCommand(engine, ENGINE_TITLES[engine], name, p.description, p.source, quants,
                                     registry_launch(fam, spec, engine, quant, name), server_command(spec, p)))
    return out


def convert_command(fam: Family, spec: Spec) -> str | None:
    """The `registry convert` line that rebuilds a spec's quantized builds from its parent, where
    the registry's own converters handle the recipe (GGUF, and llm-compressor's compressed-tensors)."""
    r = spec.recipe
    if r is None:
        return None
    parent = f"<local copy of {r.parent}>" if r.parent else "<parent checkpoint>"
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
