"""The FastAPI app of `registry serve`: the OpenAI router at /v1, the REST API at /api, the page at /."""

from __future__ import annotations

import sys
from importlib.resources import files

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from .api import api
from .router import ROUTES, Router, error_response
from .security import MAX_BODY, Guard, Hosts


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def create_app(api_key: str | None = None, auto_launch: bool = False, max_body: int = MAX_BODY,
               launch_timeout: float = 300.0, host: str = "127.0.0.1", allow_hosts: list[str] | tuple = (),
               cors: list[str] | tuple = (), node_url: str | None = None, keep_alive: float | None = None):
    """The ASGI app, already wrapped in the guard (Host, key, body type and size, CORS).
    host: the address served (a Host naming it is answered); allow_hosts: more names; cors: origins.
    node_url: where this node's serve was registered (registry/nodes.py); it heart-beats while it runs
    and leaves when it stops. keep_alive: seconds an auto-launched deployment may sit idle before it is
    stopped (registry/serve/idle.py); None keeps it running."""
    from contextlib import asynccontextmanager

    router = Router(auto_launch=auto_launch, launch_timeout=launch_timeout, say=_log, api_key=api_key,
                    keep_alive=keep_alive if auto_launch else None)

    @asynccontextmanager
    async def lifespan(_app):
        import asyncio
        import gc

        from .. import nodes

        # What the first request would import (the store, SQLAlchemy, the catalog) is loaded now, and then
        # frozen: the cyclic GC no longer rescans those ~10^5 long-lived objects while streams run.
        await asyncio.to_thread(_warm)
        beating = None
        if node_url:  # registered by run() before the socket opened: heart-beat from now on
            beating = asyncio.ensure_future(_heartbeat(node_url))
        reaping = asyncio.ensure_future(router.reap()) if router.keep_alive is not None else None
        gc.freeze()
        yield
        if reaping is not None:
            reaping.cancel()
        if beating is not None:
            beating.cancel()
            await asyncio.to_thread(nodes.leave, _version())
        await router.close()

    app = FastAPI(title="glm-registry", version=_version(), lifespan=lifespan,
                  description="One OpenAI-compatible endpoint for every deployment, and the registry's REST API.")
    app.include_router(api)
    app.state.router = router

    @app.exception_handler(HTTPException)
    async def _errors(_request, exc: HTTPException):
        return error_response(exc)

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(files("registry.serve").joinpath("page.html").read_text(encoding="utf-8"))

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/health", summary="200 while the server runs")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models", summary="running deployments by the names a request may give")
    async def models() -> dict:
        return await router.models()

    def _route(path: str):
        # What the schema shows; requests take Fast's shortcut to the same Router.forward before reaching it.
        async def handler(request: Request) -> Response:
            return await router.forward(await request.body(), request.headers.get("accept"), path)

        handler.__name__ = path.replace("/", "_")
        return handler

    for path in ROUTES:
        app.post(f"/v1/{path}", summary=f"OpenAI {path}, forwarded to the deployment named by `model`")(_route(path))
    return Guard(Fast(app, router), api_key, max_body, Hosts(host, allow_hosts), cors)


class Fast:
    """POST /v1/{chat/completions,completions,embeddings} straight to the router; the rest to FastAPI.

    Inside Guard, so the key and the body limit hold here too. What it skips: FastAPI's match against
    every REST route on each request, and its middleware's wrappers around each streamed chunk. The
    FastAPI routes stay for the OpenAPI schema, and they answer the same way (Router.forward).
    """

    def __init__(self, app, router: Router):
        self.app, self.router = app, router
        self.hot = {f"/v1/{p}": p for p in ROUTES}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self.hot.get(scope["path"])
            if route is not None:
                return await self.router.asgi(scope, receive, send, route)
        return await self.app(scope, receive, send)


async def _heartbeat(url: str) -> None:
    import asyncio

    from .. import nodes

    every = nodes.interval()
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(nodes.beat, url, _version())
        except Exception as e:  # the store unreachable for a while: say so and beat again later
            _log(f"heartbeat: {e}")


def _warm() -> None:
    from .. import launcher
    from ..catalog import load

    launcher.ps()
    load()


def _version() -> str:
    from ..version import __version__

    return __version__
