"""`registry serve`: the OpenAI router, REST API and web page as one recorded deployment."""

from __future__ import annotations

from typing import Optional

import typer

from .app import JsonOpt, _console, _print_json, app


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; anything but loopback needs an API key."),
    port: Optional[int] = typer.Option(None, "--port", help="Port (default 9997; the next free one if taken)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="REGISTRY_API_KEY", show_envvar=True,
                                          help="Key every request must send (Authorization: Bearer KEY)."),
    auto_launch: bool = typer.Option(False, "--auto-launch", help="Start a catalog build on its first request "
                                     "(model FAMILY:QUANT) instead of answering 404."),
    keep_alive: str = typer.Option("never", "--keep-alive", help="With --auto-launch: stop a deployment it "
                                   "started once idle this long (30s, 5m, 1h; 0: after each answer; never: keep "
                                   "it, the default). Ollama's keep_alive."),
    allow_host: list[str] = typer.Option([], "--allow-host", help="Another name clients reach this server by "
                                         "(Host header; repeatable). Loopback names and the bound address are "
                                         "always answered; any other Host gets 421."),
    cors: list[str] = typer.Option([], "--cors", help="A web origin (https://app.example) whose pages may call this "
                                   "server from a browser (repeatable); none by default."),
    url: Optional[str] = typer.Option(None, "--url", envvar="REGISTRY_NODE_URL", show_envvar=True,
                                      help="Where the other machines sharing the store reach this serve (default: "
                                      "http://HOST:PORT, this machine's name for 0.0.0.0)."),
    foreground: bool = typer.Option(False, "--foreground", help="Serve in this process until Ctrl-C (containers, "
                                    "systemd) instead of in the background."),
    json_: bool = JsonOpt,
) -> None:
    """One OpenAI base URL for every deployment, a REST API (/api, /docs) and a web page (/)."""
    from .. import launcher as _launcher
    from .. import serve as srv
    from ..errors import RegistryError
    from ..serve.idle import parse_keep_alive

    _launcher.check_host(host)  # an address this machine lacks is not 'port in use'
    idle = parse_keep_alive(keep_alive)
    if idle is not None and not auto_launch:
        raise RegistryError("--keep-alive stops what --auto-launch started: add --auto-launch (deployments "
                                      "started by `registry launch` run until `registry stop`)")
    if foreground:
        from .. import launcher

        srv.check_exposure(host, api_key)
        chosen = launcher.choose_port(host, port or srv.DEFAULT_PORT, port is not None, lambda m: _console().print(m))
        srv.run(host, chosen, auto_launch, api_key, allow_host, cors, url=url, keep_alive=idle)
        return
    dep = srv.start(host, port, api_key, auto_launch, spinner=not json_, allow_hosts=allow_host, cors=cors, url=url,
                    keep_alive=idle)
    from .. import launcher
    from ..views import deployment_view

    if json_:
        _print_json(deployment_view(dep))
        return
    base = launcher.address(dep)
    page = base[: -len("/v1")] + "/"
    c = _console()
    c.print(f"registry serve (deployment {dep.id}, pid {dep.pid}) answers at {page}", markup=False, highlight=False)
    c.print(f"  OpenAI base URL: {base}   REST API: {page}api   API docs: {page}docs", markup=False, highlight=False)
    c.print(f"  stop it with: registry stop {srv.NAME}", markup=False, highlight=False)


@app.command()
def nodes(json_: bool = JsonOpt) -> None:
    """The machines sharing this store: each one's serve URL, last heartbeat, version and whether it is alive."""
    from .. import paths
    from ..nodes import view

    rows = []
    if paths.has_database():
        from ..store import Store

        rows = [view(n) for n in Store().nodes()]
    if json_:
        _print_json(rows)
        return
    if not rows:
        _console().print("no nodes: a node appears when its `registry serve` starts", markup=False)
        return
    from .app import _table

    _table(None, ["node", "url", "heartbeat", "version", "alive"],
           [[n["name"], n["url"] or "-", (n["heartbeat"] or "-")[:19].replace("T", " "), n["version"] or "-",
             "yes" if n["alive"] else "no"] for n in rows])
