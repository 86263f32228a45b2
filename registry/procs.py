"""Is this process still the one we started? A pid alone is not enough: pids are reused.

A process is named by its pid plus its start time (field 22 of /proc/PID/stat, clock ticks since
boot, fixed for the life of the process), and where the caller recorded it, its exact command line.
Where /proc is missing (macOS), only the pid is checked. Stdlib only: launcher, converters and
prestart all import it.
"""

from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and ')', so split after its last ')'
    return text[text.rfind(")") + 2:].split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None (gone, or no /proc)."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None  # field 22 overall; fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    from . import redact  # a key on a command line is never recorded: recorded and read back the same way

    return redact.argv([a.decode(errors="replace") for a in raw.split(b"\0")[:-1]])


def identity(pid: int) -> dict:
    """What to record at spawn to recognise the process later."""
    return {"pid": pid, "start": start_time(pid), "cmdline": cmdline(pid)}


def pid_exists(pid: int | None) -> bool:
    """The one os.kill(pid, 0) check: a process with this pid exists (zombies excluded where /proc says)."""
    if not pid or pid < 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except (OverflowError, OSError):
        return False
    fields = _stat_fields(pid)
    return not (fields and fields[0] in ("Z", "X"))


def alive(pid: int | None, start: int | None = None, cmd: list[str] | None = None) -> bool:
    """`pid` runs and is the process recorded: the same start time and command line, when they were recorded."""
    if not pid_exists(pid):
        return False
    if start is not None:
        now = start_time(pid)
        if now is not None and now != start:
            return False  # the pid was reused by a later process
    if cmd:
        now_cmd = cmdline(pid)
        if now_cmd is not None and now_cmd != list(cmd):
            return False
    return True
