"""Start a planned server on this machine: the artifact fetched (offline-first), a free port, the server
started with a log file, recorded as a Deployment and waited for until it answers."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import paths
from ..errors import RegistryError
from .plan import Plan, _artifact
from .ports import choose_port, release_ports
from .spawns import _forget, _kill_group, _note_spawn, _tail, stop_orphan_spawns


class LaunchError(RegistryError):
    """A server that could not be started, or died while starting."""


def check_timeout(timeout) -> float:
    """Seconds to wait for a server: a positive finite number (nan compares false with everything: it never ends)."""
    import math

    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
        raise RegistryError(f"--timeout {timeout!r}: give the seconds to wait for the server, a positive number (default 300)")
    return float(timeout)



def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)



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
        from .. import hub

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
                        prestarted=prestarted, extra_args=p.extra_args)



def run_recorded(cmd, family: str, format: str, quantization: str, engine: str, artifact_id: int | None = None,
                 timeout: float = 300.0, spinner: bool = True, prestarted=None, extra_args: list[str] | None = None):
    """Start `cmd` (its port already free) with a log file, record it, wait until it answers; the row.
    Used for engine servers and for `registry serve` itself. `extra_args`: those of cmd's arguments the user
    added (`registry launch ... -- ARGS`), recorded apart too."""
    port = cmd.port
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    log_path = paths.logs_dir() / f"{family}-{quantization}-{engine}-{port}-{stamp}.log"
    spawn = _note_spawn(log_path)  # before the start: a kill right after it still leaves the note
    proc = _start(cmd, log_path, prestarted)
    spawn = _note_spawn(log_path, proc.pid)
    # Recorded after the start, so that the bookkeeping (SQLAlchemy's import among it) overlaps the
    # server's own start-up; a failure to record stops the server: nothing runs unrecorded.
    try:
        from ..store import Store

        store = Store()
        from ..procs import identity

        from .. import redact

        dep = store.add_deployment(family=family, format=format, quantization=quantization, engine=engine,
                                   argv=redact.argv(cmd.argv), env=redact.env(cmd.env), host=cmd.host, port=port,
                                   status="starting", log_path=str(log_path), artifact_id=artifact_id,
                                   pid=proc.pid, process=identity(proc.pid),
                                   extra_args=redact.argv(extra_args) if extra_args else None)
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



def _start(cmd, log_path: Path, prestarted) -> subprocess.Popen:
    """The server process: the prestarted interpreter if it can run this command, else a new one."""
    if prestarted is not None:
        if prestarted.matches(cmd.argv, cmd.env):
            try:
                return prestarted.run(cmd.argv, log_path)
            except OSError:
                pass  # it died meanwhile: start the command the ordinary way
        prestarted.cancel()
    from ..prestart import clean_env

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
