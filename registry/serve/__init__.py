"""`registry serve`: one long-running endpoint in front of every deployment.

start() runs the server as a recorded deployment (family "registry-serve", engine "registry"), so
that `registry ps` shows it and `registry stop registry-serve` stops it; __main__ is the process.
The API key is a secret: it reaches the background process in a file of mode 0600 under the registry
home, which that process reads and deletes at once, never in argv (`ps -e` shows argv to every user),
the environment or the store.
"""

from __future__ import annotations

import os
import sys

from ..redact import KEY_FILE_FLAG

DEFAULT_PORT = 9997  # Xinference's port: the one its users' clients already point at
NAME = "registry-serve"
ENGINE = "registry"
KEY_ENV = "REGISTRY_API_KEY"
# A client must finish its request headers within this many seconds, and at most this many connections
# (and requests) are open at once; above that, new ones are answered 503 (uvicorn's limit_concurrency).
HEADER_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 1024


def check_exposure(host: str, api_key: str | None) -> None:
    from ..errors import RegistryError
    from ..addresses import is_loopback

    if not is_loopback(host) and not api_key:
        raise RegistryError(f"--host {host} exposes the registry beyond this machine: give an API key with "
                            "--api-key KEY or REGISTRY_API_KEY=KEY (clients send 'Authorization: Bearer KEY')")


def argv(host: str, port: int, auto_launch: bool, key_file: str | None = None, allow_hosts=(), cors=(),
         url: str | None = None, keep_alive: float | None = None) -> list[str]:
    out = [sys.executable, "-m", "registry.serve", "--host", host, "--port", str(port)]
    out += ["--auto-launch"] if auto_launch else []
    out += ["--keep-alive", f"{keep_alive:g}"] if keep_alive is not None else []
    out += ["--url", url] if url else []
    out += [KEY_FILE_FLAG, key_file] if key_file else []
    for h in allow_hosts:
        out += ["--allow-host", h]
    for o in cors:
        out += ["--cors", o]
    return out


def write_key(api_key: str):
    """The key in a new file of mode 0600 under the registry home (created with that mode: never readable
    by others, not even for a moment); the caller removes it."""
    import secrets

    from .. import paths

    folder = paths.home() / "run"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"serve-key-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(api_key)
    return path


def read_key(path: str) -> str:
    """The key the starting process left, and the file gone (read once)."""
    from pathlib import Path

    from ..errors import RegistryError

    p = Path(path)
    try:
        key = p.read_text().strip()
    except OSError as e:
        raise RegistryError(f"cannot read the API key file {path}: {e.strerror}; start the server with "
                            "`registry serve --api-key KEY`") from None
    finally:
        p.unlink(missing_ok=True)
    return key


def start(host: str, port: int | None, api_key: str | None, auto_launch: bool, timeout: float = 60.0,
          say=None, spinner: bool = True, allow_hosts=(), cors=(), url: str | None = None,
          keep_alive: float | None = None):
    """Start the server in the background and wait until it answers; returns its deployment row."""
    from .. import launcher
    from ..engines.base import Command, client_host

    from .upstream import upstream_timeout

    check_exposure(host, api_key)
    upstream_timeout()  # a bad REGISTRY_UPSTREAM_TIMEOUT: one line here, not a server that exits at start
    from .. import nodes

    nodes.url_for(host, port or DEFAULT_PORT, url)  # a bad --url or heartbeat is refused here, not in the
    nodes.interval()  # background process
    say = say or (lambda m: print(m, file=sys.stderr))
    for d in launcher.ps(mine=True):  # one serve per machine; other nodes run their own
        if d.engine == ENGINE:
            raise launcher.RegistryError(f"registry serve already runs (deployment {d.id}, {launcher.address(d)}); "
                                         f"`registry stop {NAME}` first")
    chosen = launcher.choose_port(host, port or DEFAULT_PORT, port is not None, say)
    key_file = write_key(api_key) if api_key else None
    try:
        cmd = Command(argv(host, chosen, auto_launch, str(key_file) if key_file else None, allow_hosts, cors, url,
                           keep_alive), {},
                      host, chosen, f"http://{client_host(host)}:{chosen}/")
        return launcher.run_recorded(cmd, family=NAME, format="-", quantization="-", engine=ENGINE, timeout=timeout,
                                     spinner=spinner)
    finally:
        if key_file is not None:  # read and removed by the server; gone in any case once it answers or failed
            key_file.unlink(missing_ok=True)


def run(host: str, port: int, auto_launch: bool, api_key: str | None = None, allow_hosts=(), cors=(),
        url: str | None = None, keep_alive: float | None = None) -> None:
    """Serve in this process until interrupted (what the recorded process runs); registered in the store as
    this node's serve, at `url` (default: the bound address), heart-beating while it runs."""
    import uvicorn

    from .. import nodes
    from .app import _version, create_app

    key = api_key or os.environ.get(KEY_ENV) or None
    os.environ.pop(KEY_ENV, None)  # engines started from here (--auto-launch) must not inherit it
    check_exposure(host, key)
    node_url = nodes.url_for(host, port, url)
    nodes.interval()  # a bad REGISTRY_HEARTBEAT: refused before anything runs
    nodes.register(node_url, _version())
    from urllib.parse import urlsplit

    # the other nodes reach this serve by its node URL: that URL's host is one of this server's names
    peer_name = urlsplit(node_url).hostname
    app = create_app(api_key=key, auto_launch=auto_launch, host=host, node_url=node_url, cors=cors, keep_alive=keep_alive,
                     allow_hosts=[*allow_hosts, *([peer_name] if peer_name else [])])
    # One event loop; h11 and asyncio keep the dependency set to what the serve extra installs.
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=5,
                http=protocol(), limit_concurrency=MAX_CONNECTIONS)


def protocol(header_timeout: float = HEADER_TIMEOUT_S):
    """uvicorn's h11 protocol with a deadline for a request's headers: a client that connects and sends
    them slowly (or never) is disconnected after header_timeout seconds instead of holding the
    connection for as long as it likes. uvicorn's own keep-alive timeout only starts after a response."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._header_deadline = self.loop.call_later(header_timeout, self._headers_late)

        def _headers_late(self):
            if self.cycle is None and not self.transport.is_closing():  # no request (headers) arrived in time
                self.transport.close()

        def handle_events(self):
            super().handle_events()
            if self.cycle is not None and self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None

        def connection_lost(self, exc):
            if self._header_deadline is not None:
                self._header_deadline.cancel()
            super().connection_lost(exc)

    return Protocol
