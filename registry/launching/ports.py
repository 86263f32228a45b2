"""Ports and addresses: an address this machine can bind, a free port, and claims on ports between
registry processes (two launches at once must not both take 8080)."""

from __future__ import annotations

import socket
from pathlib import Path

from .. import paths
from ..errors import RegistryError


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



_reserved: list = []  # this process's port locks, released when it exits (or by the OS if it dies)


def _reserve(port: int) -> bool:
    """Claim `port` among this user's registry processes until this one exits: two launches without --port
    both saw 8080 free, and the server of one died on bind. An OS file lock, not a file with a pid in it:
    it is held from the instant it is taken (a pid file is empty for a moment, and a second launch read
    that as 'its owner is gone') and it goes with its process, so nothing stale is left to take over."""
    import atexit

    from filelock import FileLock, Timeout

    # by port alone: a server on 0.0.0.0:8080 and one on 127.0.0.1:8080 cannot both bind, and two launches that
    # chose them at once each found the port free (the other's server not yet bound) and then one of them
    # took the other's server, answering on that port, for its own
    name = f"port-{port}.lock"
    for held in _reserved:
        if Path(held.lock_file).name == name:
            return True
    try:
        lock = FileLock(paths.locks_dir() / name, timeout=0, thread_local=False)
        lock.acquire()
    except Timeout:
        return False
    except OSError:
        return True  # no place for locks: the bind check alone
    if not _reserved:
        atexit.register(release_ports)
    _reserved.append(lock)
    return True



def release_ports() -> None:
    while _reserved:
        _reserved.pop().release()



def choose_port(host: str, port: int, given: bool, say) -> int:
    if port_free(host, port) and (given or _reserve(port)):
        return port
    if given:
        raise RegistryError(f"port {port} on {host} is in use; choose another with --port, or leave --port out "
                            f"to take the next free one")
    for p in range(port + 1, min(port + 200, 65535)):
        if port_free(host, p) and _reserve(p):
            say(f"port {port} is in use; using {p}")
            return p
    raise RegistryError(f"no free port between {port} and {port + 200} on {host}; pass --port")
