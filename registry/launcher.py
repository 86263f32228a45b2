"""Plan a launch (which engine, what command, how much memory, on which hardware), start it, keep track.

plan() asks every engine whether it can serve the build, ranks those that can and keeps the reasons
of those that can't. launch() runs a plan on this machine: a free port, the artifact fetched
(offline-first), the server started with a log file, waited for until it answers, and recorded as a
Deployment. stop/ps/logs work on the recorded deployments.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import engines, paths
from .errors import NotFoundError, RegistryError, not_found
from .naming import gguf_type

DEFAULT_HOST = "127.0.0.1"


class LaunchError(RegistryError):
    """A server that could not be started, or died while starting."""


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

    @property
    def main(self):
        return main_command(self.commands)

    def to_dict(self) -> dict:
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
            "notes": self.notes, "nodes": self.nodes,
        }
        if self.nodes > 1:
            d["commands"] = [c.to_dict() for c in self.commands]
        return d


# --- planning ------------------------------------------------------------------------------------


def _artifact(resolved, recorded: list | None = None) -> dict:
    """The local copy from the store if there is one, else where the hub keeps it.
    `recorded`: the family's store rows when the caller already read them (local.family_rows)."""
    from .hub import local

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
        from .hub import convert_cmd

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


def plan(name: str, format: str | None = None, quant: str | None = None, engine: str | None = None,
         hardware: str | None = None, context: int | str | None = None, gpus: int | None = None,
         nodes: int | None = None, port: int | None = None, host: str | None = None, profile: str | None = None,
         size: float | None = None, threads: int | None = None) -> Plan:
    """`name` may be a tag FAMILY:QUANT; the format may be left out where one format has that quantization.

    `context`: tokens, or "max" (the longest that fits). Without one, an engine whose default context (vLLM's and
    SGLang's: the family's whole context) does not fit is planned at the longest that does, with a note; a context
    given in tokens that does not fit stays an error."""
    from . import hardware as hw_mod
    from .naming import engine_name, parse_context

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
    from .catalog import load

    resolved = load().resolve(name, format, quant, size=size)  # unknown names: the nearest ones
    check_context(resolved.family, context)
    hw = hw_mod.get(hardware)
    art = _artifact(resolved)
    req = request(resolved, hw, art, context, gpus, nodes or 1, profile, threads)

    order = [engine] if engine else list(engines.RANK)
    verdicts = {}
    for e in order if engine else engines.RANK:
        verdicts[e] = engines.get(e).can_serve(req)
    reqs = {e: req for e in verdicts}  # an engine planned at a capped context has its own request
    if want_max or context is None:
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
        why = "; ".join(f"{r['engine']}: {' / '.join(r['reasons'])}" for r in rejected) + _most_that_fits(req, verdicts)
        if engine:
            raise RegistryError(f"{engine} cannot serve {label}: {why}")
        raise RegistryError(f"no engine can serve {label}: {why}")
    chosen = ok[0]
    # the GPU servers and Transformers size their CPU pools themselves; vLLM's CPU build binds one thread a core
    if threads is not None and chosen != "llama.cpp" and not (chosen == "vllm" and verdicts[chosen].gpus == 0):
        raise RegistryError(f"--threads sets llama.cpp's CPU threads; {label} runs on {chosen}, which takes "
                            "no thread count: leave --threads out (or add --engine llama.cpp for a GGUF build)")
    v = verdicts[chosen]
    mod = engines.get(chosen)
    cmds = mod.command(reqs[chosen], model_arg(art, chosen), host or DEFAULT_HOST, port, v)
    notes = list(v.notes)
    if art.get("demo"):
        notes.append("the artifact is registry demo's random-weight toy, not the real model")
    if art["source"] == "hub" and chosen == "llama.cpp":
        notes.append("the GGUF file is fetched at launch (offline-first: store, Hugging Face cache, download)")
    if nodes and nodes > 1:
        notes.append("multi-node: run each node's command on its machine, replacing HEAD_IP with the head "
                      "node's address; the head node serves the API")
    prof = None
    from .engines.base import find_profile

    p = find_profile(resolved.spec, chosen, profile)
    if p is not None:
        prof = p.name
        if p.source:
            notes.append(f"command from {p.source}")
    return Plan(resolved, hw, chosen, prof, cmds, art, v.estimate, rejected, ok[1:], notes, port is not None,
                nodes or 1)


def pick_build(name: str, format: str | None = None, context: int | str | None = None,
               hardware: str | None = None) -> dict:
    """The build `registry run FAMILY` and `registry launch FAMILY` take when no quantization is named: a running
    deployment of the family (the newest), else a local build (the newest whose file is there), else the one
    `registry fit FAMILY --quant auto` picks on this (or that) machine. {family, format, quantization, why}."""
    from .builds import local_builds
    from .catalog import load, spec_quant
    from .naming import format_name

    fam = load().get(name)
    format = format_name(format)
    if hardware is None:  # what runs and what is on disk are this machine's
        for d in reversed(ps()):
            if d.family == fam.name and (format is None or d.format == format):
                return {"family": fam.name, "format": d.format, "quantization": d.quantization,
                        "why": f"running as deployment {d.id}"}
        for b in reversed(local_builds(fam.name)):
            known = any(s.format == b["format"] and spec_quant(s, b["quantization"]) for s in fam.specs)
            if b["exists"] and known and (format is None or b["format"] == format):
                return {"family": fam.name, "format": b["format"], "quantization": b["quantization"],
                        "why": f"the local build at {b['path']}"}
    auto = fit(fam.name, hardware=hardware, context=context, quant="auto", format=format)["auto"]
    if not auto["quantization"]:
        raise RegistryError(f"no build of {fam.name} fits {'this machine' if hardware is None else hardware} "
                            f"(`registry fit {fam.name}` says why); name one as {fam.name}:QUANT")
    return {"family": fam.name, "format": auto["format"], "quantization": auto["quantization"],
            "why": "the best build that fits here (`registry fit --quant auto`)"}


def _cap_context(req, verdicts: dict, reqs: dict, want_max: bool) -> None:
    """Engines refused only for memory at their default context are planned at the longest that fits (at least
    context.MIN_CAPPED tokens), a note saying so and what the default needs; with `want_max`, every engine at its
    longest. Changes `verdicts` and `reqs` in place."""
    import dataclasses

    from .context import MIN_CAPPED, longest, memory_only

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
    from .context import longest, memory_only

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


def running_same(p: Plan, engine: str | None, context: int | None, threads: int | None = None) -> list:
    """Running deployments of the planned build (newest first), which `launch` and `run` reuse: the engine if one
    was forced, the context and thread count if they were given."""
    from .prestart import option_value

    r = p.resolved
    same = running_build(r.family.name, r.spec.format, r.quantization, p.engine if engine else None)
    if context is not None:  # a different context is a different server: the one this plan would start with
        flags = ("--n_ctx", "--max-model-len", "--context-length")
        want = option_value(p.main.argv, *flags) or str(context)
        same = [d for d in same if option_value(d.argv or [], *flags) == want]
    if threads is not None:  # so is another thread count
        same = [d for d in same if option_value(d.argv, "--n_threads") == str(threads)]
    return same


def running_build(family: str, format: str, quantization: str, engine: str | None = None) -> list:
    """Running deployments of this build (newest first), for `launch` to reuse instead of starting twice."""
    return [d for d in reversed(ps(mine=True)) if d.family == family and d.format == format
            and d.quantization == quantization and (engine is None or d.engine == engine)]


# --- ports ---------------------------------------------------------------------------------------


def check_timeout(timeout) -> float:
    """Seconds to wait for a server: a positive finite number (nan compares false with everything: it never ends)."""
    import math

    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
        raise RegistryError(f"--timeout {timeout!r}: give the seconds to wait for the server, a positive number (default 300)")
    return float(timeout)


def check_host(host: str) -> None:
    """An address this machine can bind: otherwise every port looks 'in use'."""
    import errno

    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as e:
        msg = getattr(e, "strerror", None) or str(e)
        raise RegistryError(f"--host {host!r} is not a valid address ({msg}); give an IP address of this machine, "
                            "e.g. 127.0.0.1, 0.0.0.0 or ::") from None
    fam, _, _, _, addr = infos[0]
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        try:
            s.bind((addr[0], 0))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                raise RegistryError(f"--host {host!r} is not an address of this machine; give one of its own, "
                                    "e.g. 127.0.0.1, 0.0.0.0 or ::") from None


def port_free(host: str, port: int) -> bool:
    """Nothing uses `port` but connections waiting out TIME_WAIT (a server that just stopped): those do not
    keep a server from binding (the servers bind with SO_REUSEADDR), so they do not make the port look taken."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            pass
    waiting = _only_time_wait(port)
    if waiting is not None:
        return waiting
    with socket.socket(fam) as s:  # no /proc: bind as the servers do
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _only_time_wait(port: int) -> bool | None:
    """Every TCP socket on local `port` is in TIME_WAIT (Linux's /proc/net/tcp, state 06); None without /proc."""
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 3 and int(f[1].rsplit(":", 1)[1], 16) == port:
                states.append(f[3])
    if not states and not Path("/proc/net/tcp").exists():
        return None
    return bool(states) and all(st == "06" for st in states)


_reserved: list[Path] = []  # this process's port claims, removed when it exits


def _reserve(host: str, port: int) -> bool:
    """Claim `port` among registry processes until this one exits: two launches without --port both saw
    8080 free, and the server of one died on bind. A claim whose process is gone is taken over."""
    import atexit
    import json

    from . import procs

    d = paths.home() / "ports"
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return True  # no place for claims: the bind check alone
    c = d / f"{host.strip('[]').replace(':', '_')}-{port}.claim"
    for _ in range(2):
        try:
            fd = os.open(c, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(c.read_text())
            except (OSError, ValueError):
                owner = {}
            if owner.get("pid") == os.getpid() or (owner.get("pid") and procs.alive(owner["pid"], owner.get("start"))):
                return owner.get("pid") == os.getpid()
            c.unlink(missing_ok=True)  # its launch is over
            continue
        except OSError:
            return True
        with os.fdopen(fd, "w") as fh:
            json.dump({"pid": os.getpid(), "start": procs.start_time(os.getpid())}, fh)
        if not _reserved:
            atexit.register(release_ports)
        _reserved.append(c)
        return True
    return False


def release_ports() -> None:
    while _reserved:
        _reserved.pop().unlink(missing_ok=True)


def choose_port(host: str, port: int, given: bool, say) -> int:
    if port_free(host, port) and (given or _reserve(host, port)):
        return port
    if given:
        raise RegistryError(f"port {port} on {host} is in use; choose another with --port, or leave --port out "
                            f"to take the next free one")
    for p in range(port + 1, min(port + 200, 65535)):
        if port_free(host, p) and _reserve(host, p):
            say(f"port {port} is in use; using {p}")
            return p
    raise RegistryError(f"no free port between {port} and {port + 200} on {host}; pass --port")


# --- launching -----------------------------------------------------------------------------------


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def _tail(path: str | None, lines: int = 20) -> str:
    if not path or not Path(path).exists():
        return "(no log)"
    text = Path(path).read_text(errors="replace").splitlines()
    tail = text[-lines:]
    # An engine's own complaint often sits above the Python traceback that ends the log.
    early = [t for t in text[:-lines] if "error" in t.lower()][-5:]
    return "\n".join(early + (["..."] if early else []) + tail)


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return 200 <= r.status < 300
    except urllib.error.HTTPError as e:
        return e.code == 401  # up, and asking for the key it was started with
    except (urllib.error.URLError, OSError, ValueError):
        return False


def launch(p: Plan, timeout: float = 300.0, say=_stderr, spinner: bool = True, prestarted=None):
    """Start the planned server here, wait until it answers, record the deployment; returns the row.

    prestarted: a registry.prestart.Prestarted interpreter to run the command in, if it matches (it is
    used or cancelled, never left waiting)."""
    try:
        timeout = check_timeout(timeout)
        return _launch(p, timeout, say, spinner, prestarted)
    finally:
        release_ports()  # the server holds its port now (or failed)
        if prestarted is not None:
            prestarted.cancel()  # nothing if the server runs in it


def _launch(p: Plan, timeout: float, say, spinner: bool, prestarted):
    if not p.hardware.local:
        raise RegistryError(f"this plan is for {p.hardware.name}, not this machine: run it there, or use --dry-run "
                            f"to see the command")
    if p.nodes > 1:
        raise RegistryError("a multi-node plan is run node by node: `--dry-run` shows each node's command")
    r = p.resolved
    cmd = p.main
    art = dict(p.artifact)
    if not art.get("path"):
        if art["source"] == "build":
            raise RegistryError(art["note"])
        from . import hub

        if p.engine == "llama.cpp" or hub.is_offline():
            path = hub.fetch(r, progress=True, say=say)
            art = _artifact(r) if paths.has_database() else {"source": "hub", "path": str(path)}
            art["path"] = str(path)
            cmd.argv = [str(path) if a.startswith("<fetched at launch") else a for a in cmd.argv]
    stop_orphan_spawns()
    port = choose_port(cmd.host, cmd.port, p.port_given, say)
    if port != cmd.port:
        cmd.argv = _replace_flag(cmd.argv, "--port", str(port))
        cmd.health_url = cmd.health_url.replace(f":{cmd.port}/", f":{port}/")
        cmd.port = port
    return run_recorded(cmd, family=r.family.name, format=r.spec.format, quantization=r.quantization,
                        engine=p.engine, artifact_id=art.get("artifact_id"), timeout=timeout, spinner=spinner,
                        prestarted=prestarted)


def run_recorded(cmd, family: str, format: str, quantization: str, engine: str, artifact_id: int | None = None,
                 timeout: float = 300.0, spinner: bool = True, prestarted=None):
    """Start `cmd` (its port already free) with a log file, record it, wait until it answers; the row.
    Used for engine servers and for `registry serve` itself."""
    port = cmd.port
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    log_path = paths.logs_dir() / f"{family}-{quantization}-{engine}-{port}-{stamp}.log"
    spawn = _note_spawn(log_path)  # before the start: a kill right after it still leaves the note
    proc = _start(cmd, log_path, prestarted)
    spawn = _note_spawn(log_path, proc.pid)
    # Recorded after the start, so that the bookkeeping (SQLAlchemy's import among it) overlaps the
    # server's own start-up; a failure to record stops the server: nothing runs unrecorded.
    try:
        from .store import Store

        store = Store()
        from .procs import identity

        from . import redact

        dep = store.add_deployment(family=family, format=format, quantization=quantization, engine=engine,
                                   argv=redact.argv(cmd.argv), env=redact.env(cmd.env), host=cmd.host, port=port,
                                   status="starting", log_path=str(log_path), artifact_id=artifact_id,
                                   pid=proc.pid, process=identity(proc.pid))
    except BaseException:
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        _forget(spawn)
        raise
    _forget(spawn)
    try:
        _wait(proc, cmd.health_url, timeout, log_path, spinner, f"starting {engine} for {family} on port {port}")
    except BaseException as e:
        _kill_group(proc.pid)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        store.update_deployment(dep.id, status="failed", stopped=datetime.now(timezone.utc))
        if isinstance(e, LaunchError) or not isinstance(e, Exception):
            raise  # an interrupt (Ctrl-C, SIGTERM) stays one: exit 130 / 143
        raise LaunchError(f"{engine} failed while starting: {e}") from None
    return store.update_deployment(dep.id, status="running")


# A server started but not yet in the store is noted in a file first (stdlib, microseconds after the
# spawn; the row needs SQLAlchemy, ~0.2 s): if `registry launch` is SIGKILLed in between, the next
# launch or ps finds the note of a dead registry process and stops the server no row knows about.


def _note_spawn(log_path: Path, pid: int | None = None) -> Path | None:
    """Note the server about to start (its log file, which it holds as stdout) and, once started, its pid."""
    import json

    from . import procs

    note = paths.logs_dir() / f".spawn-{os.getpid()}-{log_path.stem}.json"
    d = {"registry": procs.identity(os.getpid()), "log": str(log_path)}
    if pid is not None:
        d["child"] = procs.identity(pid)
    try:
        tmp = note.with_name(note.name + ".tmp")
        tmp.write_text(json.dumps(d))
        os.replace(tmp, note)  # whole or absent for the sweep below
    except OSError:
        return None
    return note


def _writing_to(log: str | None) -> list[dict]:
    """Processes whose stdout is `log` (a server started from a note that never got its pid)."""
    from . import procs

    if not log:
        return []
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(d / "fd" / "1") == log:
                found.append(procs.identity(int(d.name)))
        except (OSError, ValueError):
            continue
    return found


def _forget(note: Path | None) -> None:
    if note is not None:
        note.unlink(missing_ok=True)


def stop_orphan_spawns() -> list[int]:
    """Kill servers whose `registry launch` died before recording them; returns their pids."""
    import json

    from . import procs

    killed = []
    try:
        notes = list(paths.logs_dir().glob(".spawn-*-*.json"))
    except OSError:
        return killed
    for note in notes:
        try:
            d = json.loads(note.read_text())
            reg = d["registry"]
            children = [d["child"]] if d.get("child") else _writing_to(d.get("log"))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if procs.alive(reg.get("pid"), reg.get("start")):
            continue  # that launch is still at work
        for child in children:
            if child and procs.alive(child.get("pid"), child.get("start"), child.get("cmdline")) \
                    and not _recorded_pid(child["pid"]):
                _kill_group(child["pid"], signal.SIGKILL)
                killed.append(child["pid"])
        note.unlink(missing_ok=True)
    return killed


def _recorded_pid(pid: int) -> bool:
    if not paths.has_database():
        return False
    from .store import Store

    return any(d.pid == pid and d.status in ("starting", "running") and paths.owns(d.node) for d in Store().deployments())


def _start(cmd, log_path: Path, prestarted) -> subprocess.Popen:
    """The server process: the prestarted interpreter if it can run this command, else a new one."""
    if prestarted is not None:
        if prestarted.matches(cmd.argv, cmd.env):
            try:
                return prestarted.run(cmd.argv, log_path)
            except OSError:
                pass  # it died meanwhile: start the command the ordinary way
        prestarted.cancel()
    from .prestart import clean_env

    env = clean_env(cmd.unset_env, cmd.env)
    try:
        with open(log_path, "ab") as log:
            return subprocess.Popen(cmd.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)  # own group: stop kills its children too
    except OSError as e:
        raise LaunchError(f"cannot start {cmd.argv[0]}: {e}") from None


def _replace_flag(argv: list[str], flag: str, value: str) -> list[str]:
    out = list(argv)
    for i, a in enumerate(out[:-1]):
        if a == flag:
            out[i + 1] = value
    return out


def _wait(proc, url: str, timeout: float, log_path: Path, spinner: bool, what: str) -> None:
    from contextlib import nullcontext

    status = nullcontext()
    if spinner:
        from rich.console import Console

        status = Console(stderr=True, highlight=False).status(what)  # no colour inside names
    deadline = time.monotonic() + timeout
    with status:
        while True:
            code = proc.poll()
            if code is not None:
                raise LaunchError(f"the server exited with code {code} while starting; last lines of {log_path}:\n"
                                  f"{_tail(str(log_path))}")
            if _answers(url):
                return
            if time.monotonic() > deadline:
                raise LaunchError(f"the server did not answer {url} within {timeout:g} s (stopped it); last lines "
                                  f"of {log_path}:\n{_tail(str(log_path))}")
            time.sleep(0.02)  # a refused connection costs microseconds: the answer is seen sooner


# --- deployments -----------------------------------------------------------------------------------


def _alive(pid: int | None, argv: list[str] | None = None, process: dict | None = None) -> bool:
    """The pid runs and is still our server: the process recorded at spawn (its start time and exact command
    line, registry/procs.py), not a later process that was given the same pid, and not a zombie."""
    from . import procs

    if not pid:
        return False
    if process and process.get("pid") == pid and (process.get("start") is not None or process.get("cmdline")):
        return procs.alive(pid, process.get("start"), process.get("cmdline"))
    # a row written before the process was recorded: its command line must be the argv launched (or the
    # prestart interpreter that runs it), word for word
    if not procs.pid_exists(pid):
        return False
    now = procs.cmdline(pid)
    if now is None or not argv:
        return now is None  # no /proc: the pid is all there is
    from .prestart import __name__ as prestart_module

    return now == list(argv) or (len(argv) > 2 and now == [argv[0], "-m", prestart_module, argv[2]])


def _kill_group(pid: int, sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


SEEN_EVERY = 5.0  # seconds: how often a node writes that its running deployments are still alive


def ps(all_: bool = False, node: str | None = None, mine: bool = False) -> list:
    """Deployments of every node (or of `node`; mine: this machine's), after marking this machine's whose
    process is gone as 'exited'.

    Only this node's processes are checked: another node's rows keep the status and the `seen` time that
    node last wrote (its own `ps`, or its `registry serve` every few seconds)."""
    if not paths.has_database():
        return []
    from .store import Store

    stop_orphan_spawns()
    store = Store()
    now, every = datetime.now(timezone.utc), store.single
    out, seen = [], []
    for d in store.deployments(node=node):
        own = every or d.node == store.node
        if mine and not own:
            continue
        if own and d.status in ("starting", "running"):
            if not _alive(d.pid, d.argv, d.process):
                d = store.update_deployment(d.id, status="exited", stopped=now)
            elif not every and (d.seen is None or (now - _utc(d.seen)).total_seconds() > SEEN_EVERY):
                # for the other nodes sharing the store (a one-machine store has none to tell)
                seen.append(d.id)
                d.seen = now
        if all_ or d.status in ("starting", "running"):
            out.append(d)
    store.mark_seen(seen)
    return out


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)  # SQLite gives back naive UTC


def elsewhere(row, what: str, kind: str = "deployment") -> None:
    """Refuse to act on another node's row (a deployment or an artifact): its process and files are on
    that machine. `what`: the command to run there."""
    if not paths.owns(row.node):
        here = paths.node()
        raise RegistryError(f"{kind} {row.id} ({row.family}) is on node {row.node}, not this one ({here}): "
                            f"run `{what}` on {row.node}")


def find(name: str, active_only: bool = True) -> list:
    """Deployments by id, family name or build tag FAMILY:QUANT, in any case (newest first); a name means this
    node's deployments of it where it has any."""
    if not paths.has_database():
        raise NotFoundError(f"no deployment named {name!r}: nothing has been launched (`registry ps`)")
    from .naming import same_quant, split_tag
    from .store import Store

    store = Store()
    rows = store.deployments()
    name = name.strip()
    family, quant = split_tag(name)
    family = _family_name(family)
    hits = [d for d in rows if str(d.id) == name or (
        d.family.lower() == family.lower() and (quant is None or same_quant(quant, d.quantization, d.format)))]
    own = [d for d in hits if store.single or d.node == store.node]
    if own and not name.isdigit():
        hits = own
    if active_only:
        live = [d for d in hits if d.status in ("starting", "running")]
        hits = live or hits[-1:]
    if not hits:
        raise not_found("deployment", name, [d.family for d in rows] + [str(d.id) for d in rows],
                        "`registry ps --all` lists them")
    return list(reversed(hits))


def _family_name(name: str) -> str:
    """The catalog's name for a family typed in any case or as a hub id; the name itself when the catalog has
    none (a deployment of a family unregistered since)."""
    if name.isdigit():
        return name
    from .catalog import load

    try:
        return load().get(name).name
    except RegistryError:
        return name


def stop(dep, grace: float = 10.0) -> str:
    """SIGTERM the server's process group, SIGKILL after `grace` seconds. A process already gone is
    marked stopped, not an error. Returns what happened. Another node's deployment is refused."""
    from .store import Store

    elsewhere(dep, f"registry stop {dep.id}")
    store = Store()
    what = "stopped"
    if dep.status in ("starting", "running") and _alive(dep.pid, dep.argv, dep.process):
        _kill_group(dep.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(dep.pid, dep.argv, dep.process):
            time.sleep(0.1)
        if _alive(dep.pid, dep.argv, dep.process):
            _kill_group(dep.pid, signal.SIGKILL)
            what = "killed"
        _reap(dep.pid)
    elif dep.status in ("starting", "running"):
        what = "was not running"
    else:
        return f"already {dep.status}"
    store.update_deployment(dep.id, status="stopped", stopped=datetime.now(timezone.utc))
    return what


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # only our own children; others are reaped by init
    except ChildProcessError:
        pass


def log_text(dep, lines: int | None = None) -> str:
    elsewhere(dep, f"registry logs {dep.id}")  # the log file is on that machine
    if not dep.log_path or not Path(dep.log_path).exists():
        raise RegistryError(f"deployment {dep.id} ({dep.family}) has no log file at {dep.log_path}")
    if lines:
        return _tail(dep.log_path, lines)
    return Path(dep.log_path).read_text(errors="replace")


def served_model(dep) -> str:
    """The `model` a client sends to this deployment: the name its argv gives the engine."""
    argv = dep.argv or []
    for flag in ("--model_alias", "--served-model-name"):
        if flag in argv[:-1]:
            return argv[argv.index(flag) + 1]
    if "serve" in argv[:3] and argv.index("serve") + 1 < len(argv):  # vllm serve MODEL, transformers serve MODEL
        return argv[argv.index("serve") + 1]
    if "--model" in argv[:-1]:  # python -m vllm.entrypoints.openai.api_server --model MODEL, SGLang's --model
        return argv[argv.index("--model") + 1]
    return dep.family


def address(dep) -> str:
    from .engines.base import client_host

    host = client_host(dep.host)
    return f"http://{host}:{dep.port}/v1"


# --- fit -------------------------------------------------------------------------------------------


def fit(name: str, hardware: str | None = None, context: int | str | None = None, quant: str | None = None,
        format: str | None = None) -> dict:
    """Every build of a family: the engine that would serve it here (or there), its memory estimate,
    and whether it fits. quant='auto' also names the best build that fits: the most bits per weight
    (closest to the full model), ties to the smaller build."""
    from . import hardware as hw_mod
    from .catalog import load, resolved_build, spec_quant
    from .hub import local
    from .naming import format_name, parse_context, split_tag

    name, quant = split_tag(name, quant)
    format = format_name(format)
    fam = load().get(name)
    name = fam.name
    if format and format not in fam.formats():
        raise not_found("format", format, fam.formats(), f"{name} has: {', '.join(fam.formats())}")
    context = parse_context(context)
    if context != "max":
        if context is not None and context < 1:
            raise RegistryError(f"--context must be at least 1, not {context}")
        check_context(fam, context)
    hw = hw_mod.get(hardware)
    auto = quant == "auto"
    recorded = local.family_rows(name)  # one store query for every build
    builds = []
    for spec in fam.specs:
        if format and spec.format != format:
            continue
        quants = spec.quantizations
        if quant and not auto:
            q = spec_quant(spec, quant)
            if q is None:
                continue
            quants = [q]
        for q in quants:
            resolved = resolved_build(fam, spec, q)
            builds.append(build_fit(resolved, hw, _artifact(resolved, recorded), context))
    if quant and not auto and not builds:
        raise not_found("quantization", quant, fam.quantizations(), f"{name} has: {', '.join(fam.quantizations())}")
    out = {"family": name, "hardware": hw.to_dict(), "context": context, "builds": builds}
    if auto:
        out["auto"] = _auto(fam, hw, builds, context)
    return out


def build_fit(resolved, hw, art: dict, context: int | str | None = None) -> dict:
    """One build on one machine: the engine that would serve it (the best by RANK that can), its memory
    estimate, and whether it fits (else every engine's reasons); `max_context`, the longest context that engine
    fits (llama.cpp: layers left in host memory included) and `max_context_gpu`, with everything on the GPUs.
    context="max": each engine at its longest; no context: an engine whose default does not fit at the longest
    that does, as plan() places it. The docs' fit tables ask this too."""
    from .context import longest
    from .estimate import bits_per_weight

    spec, q = resolved.spec, resolved.quantization
    want_max = context == "max"
    req = request(resolved, hw, art, None if want_max else context)
    by_engine = {e: engines.get(e).can_serve(req) for e in engines.RANK if e in spec.engines_for(q)}
    reqs = {e: req for e in by_engine}
    if want_max or context is None:
        _cap_context(req, by_engine, reqs, want_max)
    verdicts = list(by_engine.values())
    good = [v for v in verdicts if v.ok]
    v = good[0] if good else (verdicts[0] if verdicts else None)
    est = v.estimate if v and v.estimate else None
    e = est.to_dict() if est else {}
    top = (est.context if want_max and v.ok and est else longest(req, v.engine)) if v else None
    top_gpu = longest(req, v.engine, gpu_only=True) if v is not None and hw.gpus and top else None
    return {
        "format": spec.format, "size_in_billions": spec.size_in_billions, "quantization": q,
        "gguf_type": gguf_type(spec.format, q),
        "engine": good[0].engine if good else None,
        "weights_bytes": e.get("weights_bytes"), "kv_cache_bytes": e.get("kv_cache_bytes"),
        "overhead_bytes": e.get("overhead_bytes"), "total_bytes": e.get("total_bytes"),
        "per_gpu_bytes": e.get("per_gpu_bytes"), "host_bytes": e.get("host_bytes", 0), "gpus": e.get("gpus", 0),
        "context": e.get("context"), "max_context": top, "max_context_gpu": top_gpu,
        "bits_per_weight": _bpw(bits_per_weight, spec.format, q),
        "fits": bool(good),
        "reasons": [] if good else [f"{x.engine}: {r}" for x in verdicts for r in x.reasons] or
        ["no engine listed for this quantization"],
        "notes": good[0].notes if good else [],
    }


USABLE_TOK_S = 10.0  # a chat reads comfortably from here; below it, speed matters more than bits


def _auto(fam, hw, builds: list[dict], context: int | None) -> dict:
    """The build to launch: the most bits among the builds that fit (on GPUs: the GPUs alone, where any does) and
    decode at a usable speed.

    Speed is seed 002's bound (memory bandwidth / bytes read per token). "Usable": at least 10 tok/s, or,
    where nothing is that fast (a small CPU box), at least half the fastest build's speed, so that 18 GB
    of BF16 on a 2-core machine does not win over a 4-5 bit build that answers four times as fast."""
    from .estimate import bytes_read_per_token

    fitting = [b for b in builds if b["fits"]]
    host_bw, how = host_bandwidth(hw)
    specs = {(s.format, s.size_in_billions): s for s in fam.specs}
    for b in fitting:
        read = bytes_read_per_token(fam, specs[(b["format"], b["size_in_billions"])], b["quantization"])
        gpu_bw = min((g.bandwidth_bytes_s or 0 for g in hw.gpus), default=0)
        if b["gpus"] and gpu_bw:
            share = 1 - (b.get("host_bytes") or 0) / max(1, b["total_bytes"] or 1)
            # tensor/layer split: each GPU reads its share; layers left on the host read at host speed
            seconds = read * share / (gpu_bw * b["gpus"]) + read * (1 - share) / host_bw
        else:
            seconds = read / host_bw
        b["decode_tok_s_bound"] = 1 / seconds
    if not fitting:
        return {"format": None, "quantization": None, "engine": None, "reason": "no build fits"}
    fastest = max(b["decode_tok_s_bound"] for b in fitting)
    floor = min(USABLE_TOK_S, fastest / 2)
    usable = [b for b in fitting if b["decode_tok_s_bound"] >= floor]
    if hw.gpus:  # on GPUs, a build that fits them alone before one that leaves layers in host memory
        usable = [b for b in usable if b["gpus"] and not b.get("host_bytes")] or usable
    best = max(usable, key=lambda b: (b["bits_per_weight"] or 0, -(b["total_bytes"] or 0)))
    for b in fitting:
        b["decode_tok_s_bound"] = round(b["decode_tok_s_bound"], 2)
    cmd = f"registry launch {fam.name} --format {best['format']} --quant {best['quantization']}"
    if context:
        cmd += f" --context {context}"
    if not hw.local:
        cmd += f" --hardware {hw.name}"
    return {"format": best["format"], "quantization": best["quantization"], "gguf_type": best["gguf_type"],
            "engine": best["engine"],
            "context": best["context"], "decode_tok_s_bound": best["decode_tok_s_bound"],
            "usable_tok_s": round(floor, 1), "host_bandwidth_bytes_s": host_bw, "bandwidth_source": how,
            "command": cmd}


def host_bandwidth(hw) -> tuple[float, str]:
    """Host memory bandwidth for the decode bound: Apple's unified-memory figure, a short copy measured
    here, or ~10 GB/s per core (up to 300 GB/s, eight DDR5 channels) for a machine described by a profile."""
    if hw.memory_bandwidth_bytes_s:
        return hw.memory_bandwidth_bytes_s, "the profile's unified memory bandwidth"
    if hw.local:
        return _measure_bandwidth(), "measured here (a 64 MiB copy)"
    return min(300e9, 10e9 * max(1, hw.cpu_cores)), "assumed ~10 GB/s per core"


def _measure_bandwidth() -> float:
    import numpy as np

    a = np.ones(64 * 2**20 // 8)
    b = np.zeros_like(a)  # touched: the copies time memory, not page faults
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best  # read + write


def _bpw(fn, fmt: str, q: str) -> float | None:
    try:
        return fn(fmt, q)
    except RegistryError:
        return None
