"""Is this process still the one we started? A pid alone is not enough: pids are reused.

A process is named by its pid plus its start time, and where the caller recorded it, its exact command
line. On Linux these are read from /proc: the start time is field 22 of /proc/PID/stat, clock ticks since
boot, fixed for the life of the process. psutil's create_time() adds the boot time to it, which Linux
recomputes from the wall clock on every read, so a clock update moves it (psutil issues #2526, #2541):
two registry processes could disagree about one server. Reading /proc also keeps psutil's import (~35 ms)
off `registry ps` and the converters' claim checks.

Where /proc is missing (macOS, where mlx-lm runs) psutil reads the same facts: the start time in whole
seconds since the epoch (compared within a second), the command line, zombies. It is imported there only.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = os.path.isdir("/proc/self")  # tests turn it off to run the psutil side here


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and ')', so split after its last ')'
    return text[text.rfind(")") + 2:].split()


def _process(pid: int):
    """psutil's view of `pid`, or None (gone, or not ours to read)."""
    import psutil

    try:
        return psutil.Process(pid)
    except (psutil.Error, ValueError):
        return None


def start_time(pid: int) -> int | None:
    """When the process started, or None (gone): clock ticks since boot (/proc), else seconds since the epoch."""
    if not PROC:
        import psutil

        p = _process(pid)
        try:
            return int(p.create_time()) if p else None
        except psutil.Error:
            return None
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None  # field 22 overall; fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def cmdline(pid: int) -> list[str] | None:
    if PROC:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        argv = [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]
    else:
        import psutil

        p = _process(pid)
        try:
            argv = p.cmdline() if p else []
        except psutil.Error:
            return None
    if not argv:
        return None
    from . import redact  # a key on a command line is never recorded: recorded and read back the same way

    return redact.argv(argv)


def identity(pid: int) -> dict:
    """What to record at spawn to recognise the process later. Right after a spawn the kernel may not have set
    the new program's arguments yet (the parent resumes inside exec): an empty command line is read again."""
    import time

    cmd = cmdline(pid)
    for _ in range(100):
        if cmd is not None or not pid_exists(pid):
            break
        time.sleep(0.005)
        cmd = cmdline(pid)
    return {"pid": pid, "start": start_time(pid), "cmdline": cmd}


def _zombie(pid: int) -> bool:
    if PROC:
        fields = _stat_fields(pid)
        return bool(fields and fields[0] in ("Z", "X"))
    import psutil

    p = _process(pid)
    try:
        return p is not None and p.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


def pid_exists(pid: int | None) -> bool:
    """The one os.kill(pid, 0) check: a process with this pid exists (zombies excluded)."""
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
    return not _zombie(pid)


def alive(pid: int | None, start: int | None = None, cmd: list[str] | None = None) -> bool:
    """`pid` runs and is the process recorded: the same start time and command line, when they were recorded."""
    if not pid_exists(pid):
        return False
    if start is not None:
        now = start_time(pid)
        if now is not None and now != start and (PROC or abs(now - start) > 1):
            return False  # the pid was reused by a later process
    if cmd:
        now_cmd = cmdline(pid)
        if now_cmd is not None and now_cmd != list(cmd):
            return False
    return True


def writing_to(path: str) -> list[int]:
    """Pids of the processes whose stdout (fd 1) is the file `path` (psutil: /proc or not, the same call)."""
    import psutil

    real = os.path.realpath(path)  # what the kernel reports (macOS: /tmp is /private/tmp)
    found = []
    for p in psutil.process_iter():
        try:
            if any(f.fd == 1 and f.path == real for f in p.open_files()):
                found.append(p.pid)
        except (psutil.Error, OSError):
            continue
    return found
