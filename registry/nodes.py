"""Machines sharing one store (a team's PostgreSQL): which serve answers for each, and which are alive.

Each machine is a node (REGISTRY_NODE, default the host name: registry/paths.py). Its `registry serve`
registers the URL other nodes reach it at and heart-beats every REGISTRY_HEARTBEAT seconds (default 10),
refreshing its own deployments' liveness each time. A node whose heartbeat is older than three
intervals is gone: other nodes' routers stop offering its deployments; its rows stay. Requests for a
deployment of another node go to that node's serve, which relays them to its engine on loopback.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone

from .errors import RegistryError

DEFAULT_INTERVAL = 10.0


def interval() -> float:
    raw = os.environ.get("REGISTRY_HEARTBEAT")
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < 86400:
        raise RegistryError(f"REGISTRY_HEARTBEAT={raw!r}: give the seconds between a serve's heartbeats, a positive "
                            f"number (default {DEFAULT_INTERVAL:g})")
    return value


def timeout() -> float:
    """Seconds without a heartbeat after which a node counts as gone (three missed beats)."""
    return 3 * interval()


def url_for(host: str, port: int, given: str | None = None) -> str:
    """Where other nodes reach this serve: --url / REGISTRY_NODE_URL, else the bound address (a wildcard
    bind: this machine's name)."""
    if given:
        if not given.startswith("http://"):
            raise RegistryError(f"--url {given!r}: give the http:// URL other machines reach this serve at, "
                                f"e.g. http://{socket.getfqdn()}:{port}")
        return given.rstrip("/")
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = socket.getfqdn()
    return f"http://{'[' + host + ']' if ':' in host and not host.startswith('[') else host}:{port}"


def _utc(t: datetime | None) -> datetime | None:
    return None if t is None else t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def alive(row, now: datetime | None = None) -> bool:
    """The node heart-beat within the timeout and has a serve to send requests to."""
    beat = _utc(row.heartbeat)
    now = now or datetime.now(timezone.utc)
    return bool(row.url) and beat is not None and (now - beat).total_seconds() <= timeout()


def peers() -> dict[str, str]:
    """Live nodes other than this one: name -> serve URL."""
    from . import paths

    if not paths.has_database():
        return {}
    from .store import Store

    store = Store()
    now = datetime.now(timezone.utc)
    return {n.name: n.url for n in store.nodes() if n.name != store.node and alive(n, now)}


def register(url: str, version: str | None) -> None:
    """This node's serve starts answering at `url`. Refused where another live serve already registered
    under this node's name (two machines with one name would each take the other's processes for theirs)."""
    from .store import Store

    store = Store()
    mine = next((n for n in store.nodes() if n.name == store.node), None)
    if mine is not None and mine.url and mine.url != url and alive(mine) and _answers(mine.url):
        raise RegistryError(f"node {store.node} already has a serve at {mine.url} (heartbeat "
                            f"{(datetime.now(timezone.utc) - _utc(mine.heartbeat)).total_seconds():.0f} s ago): "
                            "give each machine its own REGISTRY_NODE, or stop that serve first")
    store.heartbeat(url, version)


def _answers(url: str) -> bool:
    """Something answers HTTP at `url` (a 401 too: a serve with a key)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/health", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def beat(url: str, version: str | None) -> None:
    """One heartbeat: this node's serve is up, and its deployments' processes are checked (and marked seen)."""
    from .launching.deployments import ps
    from .store import Store

    Store().heartbeat(url, version)
    ps(mine=True)


def leave(version: str | None) -> None:
    """This node's serve stops: other nodes stop routing to it at once (its rows stay)."""
    from .store import Store

    Store().heartbeat(None, version)


def view(row) -> dict:
    """A node as GET /api/nodes gives it."""
    beat_at = _utc(row.heartbeat)
    return {"name": row.name, "url": row.url, "version": row.version,
            "heartbeat": beat_at.isoformat() if beat_at else None, "alive": alive(row)}
