"""Server processes: alive or not (the process recorded at spawn), killing a process group, a log's
tail, and the spawn notes that let a later launch stop a server its dead `registry launch` never recorded.

A server started but not yet in the store is noted in a file first (stdlib, microseconds after the
spawn; the row needs SQLAlchemy, ~0.2 s): if `registry launch` is SIGKILLed in between, the next
launch or ps finds the note of a dead registry process and stops the server no row knows about.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from .. import paths


def _tail(path: str | None, lines: int = 20) -> str:
    if not path or not Path(path).exists():
        return "(no log)"
    text = Path(path).read_text(errors="replace").splitlines()
    tail = text[-lines:]
    # An engine's own complaint often sits above the Python traceback that ends the log.
    early = [t for t in text[:-lines] if "error" in t.lower()][-5:]
    return "\n".join(early + (["..."] if early else []) + tail)



def _note_spawn(log_path: Path, pid: int | None = None) -> Path | None:
    """Note the server about to start (its log file, which it holds as stdout) and, once started, its pid."""
    import json

    from .. import procs

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
    from .. import procs

    if not log:
        return []
    return [procs.identity(pid) for pid in procs.writing_to(log)]



def _forget(note: Path | None) -> None:
    if note is not None:
        note.unlink(missing_ok=True)



def stop_orphan_spawns() -> list[int]:
    """Kill servers whose `registry launch` died before recording them; returns their pids."""
    import json

    from .. import procs

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
    from ..store import Store

    return any(d.pid == pid and d.status in ("starting", "running") and paths.owns(d.node) for d in Store().deployments())



def _alive(pid: int | None, argv: list[str] | None = None, process: dict | None = None) -> bool:
    """The pid runs and is still our server: the process recorded at spawn (its start time and exact command
    line, registry/procs.py), not a later process that was given the same pid, and not a zombie."""
    from .. import procs

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
    from ..prestart import __name__ as prestart_module

    return now == list(argv) or (len(argv) > 2 and now == [argv[0], "-m", prestart_module, argv[2]])



def _kill_group(pid: int, sig: int = signal.SIGTERM) -> None:
    """Signal the server's process group (it was started in its own session), else the pid alone.

    os.killpg, not psutil: psutil has no process-group signal, and its children(recursive=True) follows parent
    links, so it misses an engine worker whose parent already exited (re-parented to init, still in the group).
    killpg is POSIX: it works on macOS as on Linux."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass



def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # only our own children; others are reaped by init
    except ChildProcessError:
        pass
