"""`registry serve`: one long-running endpoint in front of every deployment.

start() runs the server as a recorded deployment (family "registry-serve", engine "registry"), so
that `registry ps` shows it and `registry stop registry-serve` stops it; __main__ is the process.
The API key travels in the environment (REGISTRY_API_KEY), never in argv where `ps` would show it.
"""

from __future__ import annotations

import os
import sys

DEFAULT_PORT = 9997  # Xinference's port: the one its users' clients already point at
NAME = "registry-serve"
ENGINE = "registry"


def check_exposure(host: str, api_key: str | None) -> None:
    from ..errors import RegistryError
    from .security import is_loopback

    if not is_loopback(host) and not api_key:
        raise RegistryError(f"--host {host} exposes the registry beyond this machine: give an API key with "
                            "--api-key KEY or REGISTRY_API_KEY=KEY (clients send 'Authorization: Bearer KEY')")


def argv(host: str, port: int, auto_launch: bool, url: str | None = None) -> list[str]:
    return [sys.executable, "-m", "registry.serve", "--host", host, "--port", str(port)] + (
        ["--auto-launch"] if auto_launch else []) + (["--url", url] if url else [])


def start(host: str, port: int | None, api_key: str | None, auto_launch: bool, timeout: float = 60.0,
          say=None, spinner: bool = True, url: str | None = None):
    """Start the server in the background and wait until it answers; returns its deployment row."""
    from .. import launcher
    from ..engines.base import Command, client_host

    check_exposure(host, api_key)
    from .. import nodes

    nodes.url_for(host, port or DEFAULT_PORT, url)  # a bad --url or heartbeat is refused here, not in the
    nodes.interval()  # background process
    say = say or (lambda m: print(m, file=sys.stderr))
    for d in launcher.ps(mine=True):  # one serve per machine; other nodes run their own
        if d.engine == ENGINE:
            raise launcher.RegistryError(f"registry serve already runs (deployment {d.id}, {launcher.address(d)}); "
                                         f"`registry stop {NAME}` first")
    chosen = launcher.choose_port(host, port or DEFAULT_PORT, port is not None, say)
    env = {"REGISTRY_API_KEY": api_key} if api_key else {}
    cmd = Command(argv(host, chosen, auto_launch, url), env, host, chosen, f"http://{client_host(host)}:{chosen}/")
    dep = launcher.run_recorded(cmd, family=NAME, format="-", quantization="-", engine=ENGINE, timeout=timeout,
                                spinner=spinner)
    return dep


def run(host: str, port: int, auto_launch: bool, api_key: str | None = None, url: str | None = None) -> None:
    """Serve in this process until interrupted (what the recorded process runs); registered in the store as
    this node's serve, at `url` (default: the bound address), heart-beating while it runs."""
    import uvicorn

    from .. import nodes
    from .app import _version, create_app

    key = api_key or os.environ.get("REGISTRY_API_KEY") or None
    check_exposure(host, key)
    node_url = nodes.url_for(host, port, url)
    nodes.interval()  # a bad REGISTRY_HEARTBEAT: refused before anything runs
    nodes.register(node_url, _version())
    app = create_app(api_key=key, auto_launch=auto_launch, node_url=node_url)
    # One event loop; h11 and asyncio keep the dependency set to what the serve extra installs.
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=5)
