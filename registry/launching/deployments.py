"""The recorded deployments: ps (this node's processes checked), find, stop, logs, and what a client
sends to one; the running deployments of a build, which `launch` and `run` reuse."""

from __future__ import annotations

import signal
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .. import paths
from ..errors import NotFoundError, RegistryError, not_found
from .spawns import _alive, _kill_group, _reap, _tail, stop_orphan_spawns

if TYPE_CHECKING:
    from .plan import Plan

SEEN_EVERY = 5.0  # seconds: how often a node writes that its running deployments are still alive



def ps(all_: bool = False, node: str | None = None, mine: bool = False) -> list:
    """Deployments of every node (or of `node`; mine: this machine's), after marking this machine's whose
    process is gone as 'exited'.

    Only this node's processes are checked: another node's rows keep the status and the `seen` time that
    node last wrote (its own `ps`, or its `registry serve` every few seconds)."""
    if not paths.has_database():
        return []
    from ..store import Store

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
                d = store.mark_exited(d.id, now)  # not over a 'stopped' that a stop wrote meanwhile
            elif not every and (d.seen is None or (now - _utc(d.seen)).total_seconds() > SEEN_EVERY):
                # for the other nodes sharing the store (a one-machine store has none to tell)
                seen.append(d.id)
                d.seen = now
        if all_ or d.status in ("starting", "running"):
            out.append(d)
    store.mark_seen(seen)
    return out



def ps_read(all_: bool = False, node: str | None = None) -> list:
    """ps(all_, node) as `registry ps` asks it, without SQLAlchemy where nothing is to be written: the rows read
    with the standard library (registry/sqlite_read.py) when none of this node's processes is found gone and no
    `seen` is due for the other nodes; else ps() itself, which writes those."""
    if not paths.has_database():
        return []
    from ..sqlite_read import deployments

    stop_orphan_spawns()
    rows = deployments(node)
    if rows is None:
        return ps(all_=all_, node=node)
    every, here = paths.single_machine(), paths.node()  # as the Store has them (a bad REGISTRY_NODE: refused)
    now, out = datetime.now(timezone.utc), []
    for d in rows:
        if (every or d.node == here) and d.status in ("starting", "running"):
            if not _alive(d.pid, d.argv, d.process):
                return ps(all_=all_, node=node)  # to be marked exited
            if not every and (d.seen is None or (now - _utc(d.seen)).total_seconds() > SEEN_EVERY):
                return ps(all_=all_, node=node)  # to be marked seen
        if all_ or d.status in ("starting", "running"):
            out.append(d)
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
    from ..naming import same_quant, split_tag
    from ..store import Store

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
    from ..catalog import load

    try:
        return load().get(name).name
    except RegistryError:
        return name



def stop(dep, grace: float = 10.0) -> str:
    """SIGTERM the server's process group, SIGKILL after `grace` seconds. A process already gone is
    marked stopped, not an error. Returns what happened. Another node's deployment is refused."""
    from ..store import Store

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
    from ..engines.base import client_host

    host = client_host(dep.host)
    return f"http://{host}:{dep.port}/v1"



def running_same(p: Plan, engine: str | None, context: int | None, threads: int | None = None) -> list:
    """Running deployments of the planned build (newest first), which `launch` and `run` reuse: the engine if one
    was forced, the context, thread count and extra engine arguments if they were given."""
    from ..prestart import option_value

    r = p.resolved
    same = running_build(r.family.name, r.spec.format, r.quantization, p.engine if engine else None)
    if context is not None:  # a different context is a different server: the one this plan would start with
        flags = ("--n_ctx", "--max-model-len", "--context-length")
        want = option_value(p.main.argv, *flags) or str(context)
        same = [d for d in same if option_value(d.argv or [], *flags) == want]
    if threads is not None:  # so is another thread count
        same = [d for d in same if option_value(d.argv, "--n_threads") == str(threads)]
    if p.extra_args:  # and other extra engine arguments
        from .. import redact

        same = [d for d in same if (d.extra_args or []) == redact.argv(p.extra_args)]
    return same



def running_build(family: str, format: str, quantization: str, engine: str | None = None) -> list:
    """Running deployments of this build (newest first), for `launch` to reuse instead of starting twice."""
    return [d for d in reversed(ps(mine=True)) if d.family == family and d.format == format
            and d.quantization == quantization and (engine is None or d.engine == engine)]
