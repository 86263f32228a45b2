"""One OpenAI base URL for every deployment: the request's `model` names the deployment.

Names a client may send: FAMILY:QUANT (either spelling of a GGUF quantization: Q4_K or Q4_K_M),
FAMILY (its newest running deployment), or a deployment id. Bodies are forwarded unchanged except
`model`, which becomes the name the engine itself serves (asked once from its /v1/models). Streams
are relayed chunk by chunk; a client that goes away closes the upstream request, so the engine stops
generating.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .. import launcher
from ..naming import quant_key as _norm  # one reading of a quantization's spellings (registry/naming.py)

SELF = "registry"  # the engine name of `registry serve`'s own deployment row
ROUTES = ("chat/completions", "completions", "embeddings")


def served_names(dep) -> list[str]:
    return [f"{dep.family}:{dep.quantization}", dep.family, str(dep.id)]


def matches(dep, model: str) -> bool:
    if model == str(dep.id) or model == dep.family:
        return True
    fam, _, quant = model.partition(":")
    return bool(quant) and fam == dep.family and _norm(quant) == _norm(dep.quantization)


class Router:
    def __init__(self, auto_launch: bool = False, launch_timeout: float = 300.0, say=None):
        self.auto_launch, self.launch_timeout = auto_launch, launch_timeout
        self.say = say or (lambda msg: None)
        self._session: aiohttp.ClientSession | None = None
        self._deps: tuple[float, list] = (0.0, [])
        self._upstream: dict[int, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        # aiohttp, not httpx: httpcore's pool rescans every connection on every event, which cost the
        # router ~25 ms of CPU per stream at 64 concurrent streams (bench/serve.py). No read timeout: a
        # long generation may pause between tokens; connecting must be quick. Made on the running loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=False),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10), auto_decompress=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # --- which deployment -------------------------------------------------------------------------

    async def running(self, fresh: bool = False) -> list:
        """Running deployments, newest first; read from the store at most once a second."""
        at, deps = self._deps
        if fresh or time.monotonic() - at > 1.0:
            rows = await asyncio.to_thread(launcher.ps)
            deps = [d for d in reversed(rows) if d.status == "running" and d.engine != SELF]
            self._deps = (time.monotonic(), deps)
        return deps

    async def models(self) -> dict:
        data = []
        for d in await self.running(fresh=True):
            data.append({"id": f"{d.family}:{d.quantization}", "object": "model", "owned_by": "glm-registry",
                         "created": int(d.started.timestamp()), "family": d.family, "format": d.format,
                         "quantization": d.quantization, "engine": d.engine, "deployment": d.id,
                         "aliases": served_names(d)[1:], "address": launcher.address(d)})
        return {"object": "list", "data": data}

    async def target(self, model) -> object:
        if not isinstance(model, str) or not model:
            raise HTTPException(400, "give `model`: a running deployment's FAMILY:QUANT, FAMILY or id (GET /v1/models)")
        for fresh in (False, True):  # a deployment started a moment ago is not in the cached list yet
            hit = next((d for d in await self.running(fresh) if matches(d, model)), None)
            if hit is not None:
                return hit
        fam, _, quant = model.partition(":")
        build = await asyncio.to_thread(_catalog_build, fam, quant)
        if build is None:
            names = [served_names(d)[0] for d in await self.running()]
            raise HTTPException(404, f"no deployment named {model!r}; running: {', '.join(names) or 'none'}. "
                                "Name one as FAMILY:QUANT, e.g. glm4-chat-1m:Q4_K (`registry list` shows families)")
        fmt, q = build
        cmd = f"registry launch {fam} --format {fmt} --quant {q}"
        if not self.auto_launch:
            raise HTTPException(404, f"{model} is not running: start it with `{cmd}` "
                                "(or run `registry serve --auto-launch`)")
        lock = self._locks.setdefault(f"{fam}:{_norm(q)}", asyncio.Lock())
        async with lock:  # concurrent first requests: one start, the others wait for it
            hit = next((d for d in await self.running(fresh=True) if matches(d, model)), None)
            if hit is None:
                self.say(f"auto-launch: {cmd}")
                try:
                    hit = await asyncio.to_thread(self._launch, fam, fmt, q)
                except Exception as e:  # a plan or start that fails: the client is told why
                    raise HTTPException(503, f"could not start {model} (`{cmd}`): {e}") from None
                self._deps = (0.0, [])
        return hit

    def _launch(self, fam: str, fmt: str, quant: str):
        p = launcher.plan(fam, fmt, quant)
        return launcher.launch(p, timeout=self.launch_timeout, say=self.say, spinner=False)

    async def upstream_name(self, dep) -> str:
        """What the engine calls its model (llama.cpp: its alias; vLLM: the model path or served name)."""
        name = self._upstream.get(dep.id)
        if name is None:
            try:
                async with self.session.get(launcher.address(dep) + "/models",
                                            timeout=aiohttp.ClientTimeout(total=10)) as r:
                    name = (await r.json(content_type=None))["data"][0]["id"]
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, IndexError, TypeError):
                name = dep.family
            self._upstream[dep.id] = name
        return name

    # --- forwarding -------------------------------------------------------------------------------

    async def forward(self, request: Request, route: str) -> Response:
        try:
            payload = json.loads(await request.body() or b"null")
        except ValueError:
            raise HTTPException(400, "the request body is not JSON") from None
        if not isinstance(payload, dict):
            raise HTTPException(400, "the request body must be a JSON object with `model`")
        dep = await self.target(payload.get("model"))
        payload["model"] = await self.upstream_name(dep)
        headers = {"content-type": "application/json"}
        if request.headers.get("accept"):
            headers["accept"] = request.headers["accept"]
        try:
            resp = await self.session.post(f"{launcher.address(dep)}/{route}", data=json.dumps(payload).encode(),
                                           headers=headers)
        except (aiohttp.ClientError, OSError) as e:
            self._deps = (0.0, [])
            raise HTTPException(502, f"deployment {dep.id} ({dep.family}) did not answer: {e}; "
                                f"see `registry logs {dep.id}`") from None
        kind = resp.headers.get("content-type", "application/json")
        if not kind.startswith("text/event-stream"):
            try:
                data = await resp.read()
            finally:
                resp.release()
            return Response(data, status_code=resp.status, media_type=kind)

        async def relay():
            async for chunk in resp.content.iter_any():
                yield chunk
            resp.release()  # read to the end: the connection may serve the next request

        return _Relay(resp, relay(), status_code=resp.status, media_type=kind,
                      headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


class _Relay(StreamingResponse):
    """A relayed stream that closes its upstream response however it ends: finished, failed, or the
    client gone (then the task is cancelled, and only a shielded close still reaches the socket; the
    engine sees its client go and stops generating)."""

    def __init__(self, upstream, *args, **kw):
        super().__init__(*args, **kw)
        self.upstream = upstream

    async def __call__(self, scope, receive, send):
        import anyio

        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()
                if not self.upstream.closed:  # ended early: drop the connection, so the engine sees its client go
                    self.upstream.close()


def _catalog_build(fam: str, quant: str) -> tuple[str, str] | None:
    """(format, quantization) of the catalog build a model name means; None when there is none."""
    from ..catalog import load, spec_quant
    from ..errors import RegistryError

    try:
        family = load().get(fam)
    except RegistryError:
        return None
    if not quant:
        return None
    for spec in family.specs:  # spec_quant reads any case and either GGUF spelling
        hit = spec_quant(spec, quant)
        if hit is not None:
            return spec.format, hit
    return None


def error_response(exc: HTTPException) -> JSONResponse:
    """OpenAI's error shape, so that OpenAI clients show the message."""
    return JSONResponse({"error": {"message": exc.detail, "type": "invalid_request_error", "code": exc.status_code}},
                        status_code=exc.status_code)
