"""The plan of a launch: which engine, what command, how much memory, on which hardware.

plan_build() is the one planning core: it asks every engine (or the one named) whether it can serve a
build on a machine, ranks those that can and keeps the reasons of those that can't. `registry launch`,
`--dry-run`, `registry fit` and the generated pages all plan through it; nothing here starts a process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import engines
from ..errors import RegistryError, not_found
from ..naming import gguf_type
from ..addresses import check_host

DEFAULT_HOST = "127.0.0.1"


@dataclass
class Plan:
    resolved: object
    hardware: object
    engine: str
    profile: str | None
    commands: list  # engines.Command, one per node (multi-node: ray/worker commands first)
    artifact: dict
    estimate: object
    rejected: list[dict]
    alternatives: list[str]
    notes: list[str] = field(default_factory=list)
    port_given: bool = False
    nodes: int = 1
    extra_args: list[str] = field(default_factory=list)  # `registry launch ... -- ARGS`, in the command too

    @property
    def main(self):
        return main_command(self.commands)

    def to_dict(self) -> dict:
        from .. import redact

        r = self.resolved
        est = self.estimate.to_dict() if self.estimate else None
        d = {
            "family": r.family.name, "format": r.spec.format, "quantization": r.quantization,
            "gguf_type": gguf_type(r.spec.format, r.quantization),
            "engine": self.engine, "profile": self.profile,
            "argv": self.main.argv, "env": self.main.env, "host": self.main.host, "port": self.main.port,
            "health_url": self.main.health_url,
            "artifact": self.artifact, "estimate": est,
            "hardware": self.hardware.to_dict(), "rejected": self.rejected, "alternatives": self.alternatives,
            "notes": self.notes, "nodes": self.nodes, "extra_args": redact.argv(self.extra_args),
        }
        if self.nodes > 1:
            d["commands"] = [c.to_dict() for c in self.commands]
        return d



def _artifact(resolved, recorded: list | None = None) -> dict:
    """The local copy from the store if there is one, else where the hub keeps it.
    `recorded`: the family's store rows when the caller already read them (local.family_rows)."""
    from ..hub import local

    files = []
    for h in resolved.hubs.values():
        files = h.files
        break
    hit = local.find(resolved, files, recorded)
    if hit is not None:
        path, rows = hit
        art = {"source": "store", "path": str(path), "artifact_id": rows[0].id}
        if local.is_demo(rows[0]):  # only inside `registry demo`'s own home
            art["demo"] = True
        return art
    return hub_artifact(resolved)



def hub_artifact(resolved) -> dict:
    """Where the hub keeps a build (its first hub), or how to build one that no hub publishes."""
    if not resolved.hubs:
        from ..hub import convert_cmd

        return {"source": "build", "path": None, "note": f"not published on a hub: `{convert_cmd(resolved)}` builds it"}
    hub, h = next(iter(resolved.hubs.items()))
    return {"source": "hub", "hub": hub, "model_id": h.model_id, "revision": h.revision, "files": h.files,
            "path": None}



def request(resolved, hw, art: dict, context: int | None = None, gpus: int | None = None, nodes: int = 1,
            profile: str | None = None, threads: int | None = None) -> engines.Request:
    """What the engines are asked about a build and where it is (`art`, from _artifact or hub_artifact)."""
    gguf_path = art["path"] if art.get("path") and resolved.spec.format == "ggufv2" else None
    # a hub model id other than main needs its revision; a local path or a fetched GGUF file does not
    revision = art["revision"] if art["source"] == "hub" and not art.get("path") and art["revision"] != "main" else None
    return engines.Request(resolved, hw, context, gpus, nodes, profile, gguf_path, revision, threads)



def model_arg(art: dict, engine: str) -> str:
    """What the engine is pointed at: a local path, a hub model id, or a placeholder filled at launch."""
    if art.get("path"):
        return art["path"]
    if art["source"] == "hub":
        if engine == "llama.cpp":  # needs a file on disk: fetched by launch()
            return f"<fetched at launch: {art['model_id']}@{art['revision']}/{art['files'][0]}>"
        return art["model_id"]
    return "<local build>"



def main_command(commands: list):
    """The command that serves the API: the one with a health URL (vLLM's head is last, SGLang's rank 0 first)."""
    return next((c for c in commands if c.health_url), commands[0])



class NoEngine(RegistryError):
    """No engine (or not the one named) can serve a build on a machine; `rejected` holds each engine's reasons."""

    def __init__(self, message: str, rejected: list[dict]):
        super().__init__(message)
        self.rejected = rejected


def plan(name: str, format: str | None = None, quant: str | None = None, engine: str | None = None,
         hardware: str | None = None, context: int | str | None = None, gpus: int | None = None,
         nodes: int | None = None, port: int | None = None, host: str | None = None, profile: str | None = None,
         size: float | None = None, threads: int | None = None, extra_args: list[str] | None = None) -> Plan:
    """`name` may be a tag FAMILY:QUANT; the format may be left out where one format has that quantization.
    `extra_args`: options for the engine's command line, checked by its parser (registry/launching/extra_args.py).

    `context`: tokens, or "max" (the longest that fits). Without one, an engine whose default context (vLLM's and
    SGLang's: the family's whole context) does not fit is planned at the longest that does, with a note; a context
    given in tokens that does not fit stays an error."""
    from .. import hardware as hw_mod
    from ..naming import engine_name, parse_context

    context = parse_context(context)
    want_max = context == "max"
    if want_max:
        context = None

    engine = engine_name(engine)
    if engine is not None and engine not in engines.MODULES:
        raise not_found("engine", engine, engines.MODULES)
    if host is not None:
        check_host(host)
    for label, v in (("--context", context), ("--gpus", gpus), ("--nodes", nodes), ("--threads", threads)):
        if v is not None and v < 1:
            raise RegistryError(f"{label} must be at least 1, not {v}")
    if port is not None and not 0 < port < 65536:
        raise RegistryError(f"--port must be between 1 and 65535, not {port}")
    from ..catalog import load

    resolved = load().resolve(name, format, quant, size=size)  # unknown names: the nearest ones
    check_context(resolved.family, context)
    hw = hw_mod.get(hardware)
    return plan_build(resolved, hw, _artifact(resolved), engine, context="max" if want_max else context, gpus=gpus,
                      nodes=nodes, port=port, host=host, profile=profile, threads=threads, extra_args=extra_args)


def plan_build(resolved, hw, art: dict, engine: str | None = None, context: int | str | None = None,
               gpus: int | None = None, nodes: int | None = None, port: int | None = None, host: str | None = None,
               profile: str | None = None, threads: int | None = None, cap_context: bool = True,
               extra_args: list[str] | None = None) -> Plan:
    """The planning core, for a resolved build on a machine (`hw`) with its artifact (`art`: _artifact's local
    copy, or hub_artifact's hub build for a page that must not depend on this machine); checks nothing of its
    inputs but what the engines say. Raises NoEngine (with every engine's reasons) where none can serve it.

    context: tokens, "max" or None (as plan()); cap_context=False plans an engine at its default context only,
    refusing where that does not fit (the pages show such a refusal rather than a capped command)."""
    want_max = context == "max"
    if want_max:
        context = None
    req = request(resolved, hw, art, context, gpus, nodes or 1, profile, threads)

    order = [engine] if engine else list(engines.RANK)
    verdicts = {}
    for e in order if engine else engines.RANK:
        verdicts[e] = engines.get(e).can_serve(req)
    reqs = {e: req for e in verdicts}  # an engine planned at a capped context has its own request
    if cap_context and (want_max or context is None):
        _cap_context(req, verdicts, reqs, want_max)
    if engine is None and profile is not None:
        # a named profile belongs to one engine: only engines that have it
        for e, v in verdicts.items():
            if v.ok and not any(p.name == profile for p in resolved.spec.profiles(e)):
                v.reasons.append(f"no launch profile named {profile!r} for {e}")
    ok = [e for e in order if verdicts[e].ok]
    rejected = [{"engine": e, "reasons": v.reasons} for e, v in verdicts.items() if not v.ok]
    if engine is None:  # the engines the spec does not list at all are noise in the rejection list
        listed = set(resolved.spec.engines)
        rejected = [r for r in rejected if r["engine"] in listed] or rejected
    label = f"{resolved.family.name} {resolved.spec.format} {resolved.quantization} on {hw.name}"
    if not ok:
        why = "; ".join(f"{r['engine']}: {' / '.join(r['reasons'])}" for r in rejected)
        if cap_context:  # the hint names a context that fits: a caller that plans the default only has no use for it
            why += _most_that_fits(req, verdicts)
        if engine:
            raise NoEngine(f"{engine} cannot serve {label}: {why}", rejected)
        raise NoEngine(f"no engine can serve {label}: {why}", rejected)
    chosen = ok[0]
    # the GPU servers and Transformers size their CPU pools themselves; vLLM's CPU build binds one thread a core
    if threads is not None and chosen != "llama.cpp" and not (chosen == "vllm" and verdicts[chosen].gpus == 0):
        raise RegistryError(f"--threads sets llama.cpp's CPU threads; {label} runs on {chosen}, which takes "
                            "no thread count: leave --threads out (or add --engine llama.cpp for a GGUF build)")
    v = verdicts[chosen]
    mod = engines.get(chosen)
    cmds = mod.command(reqs[chosen], model_arg(art, chosen), host or DEFAULT_HOST, port, v)
    notes = list(v.notes)
    if extra_args:
        from .extra_args import add

        notes += add(chosen, cmds, main_command(cmds), list(extra_args), hw.local)
    if art.get("demo"):
        notes.append("the artifact is registry demo's random-weight toy, not the real model")
    if art["source"] == "hub" and chosen == "llama.cpp":
        notes.append("the GGUF file is fetched at launch (offline-first: store, Hugging Face cache, download)")
    if nodes and nodes > 1:
        notes.append("multi-node: run each node's command on its machine, replacing HEAD_IP with the head "
                      "node's address; the head node serves the API")
    prof = None
    from ..engines.base import find_profile

    p = find_profile(resolved.spec, chosen, profile)
    if p is not None:
        prof = p.name
        if p.source:
            notes.append(f"command from {p.source}")
    return Plan(resolved, hw, chosen, prof, cmds, art, v.estimate, rejected, ok[1:], notes, port is not None,
                nodes or 1, list(extra_args or []))


def _cap_context(req, verdicts: dict, reqs: dict, want_max: bool) -> None:
    """Engines refused only for memory at their default context are planned at the longest that fits (at least
    context.MIN_CAPPED tokens), a note saying so and what the default needs; with `want_max`, every engine at its
    longest. Changes `verdicts` and `reqs` in place."""
    import dataclasses

    from ..context import MIN_CAPPED, longest, memory_only

    for e, v in list(verdicts.items()):
        if not (want_max and v.ok) and not memory_only(v.reasons):
            continue
        m = longest(req, e)
        if m is None or (not want_max and m < MIN_CAPPED):
            continue
        sub = dataclasses.replace(req, context=m)
        capped = engines.get(e).can_serve(sub)
        if not capped.ok:
            continue
        if v.ok:
            capped.notes.append(f"context {m:,} tokens: the longest that fits {req.hardware.name}")
        else:
            full = v.estimate
            need = ""
            if full is not None:
                need = (f" (~{full.per_gpu / 1e9:.1f} GB per GPU)" if full.per_gpu
                        else f" (~{full.total / 1e9:.1f} GB)")
            capped.notes.append(f"context capped at {m:,} tokens, the longest that fits {req.hardware.name}: "
                                f"{f'{full.context:,}' if full else 'the default'} tokens would need more "
                                f"memory{need}; --context sets another, up to {m}")
        verdicts[e], reqs[e] = capped, sub



def _most_that_fits(req, verdicts: dict) -> str:
    """For an error at a context that does not fit: the longest that does, where an engine says it."""
    from ..context import longest, memory_only

    for e, v in verdicts.items():
        if memory_only(v.reasons):
            m = longest(req, e)
            if m:
                return f" (the longest context {e} fits here is {m:,} tokens: --context {m}, or --context max)"
    return ""



def check_context(fam, context: int | None) -> None:
    """A context beyond what the family was trained for is refused (engines would fail or extrapolate)."""
    if context is not None and context > fam.context_length:
        raise RegistryError(f"--context {context:,} is more than {fam.name}'s context length of "
                            f"{fam.context_length:,} tokens; give at most {fam.context_length}")
