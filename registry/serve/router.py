"""One OpenAI base URL for every deployment: the request's `model` names the deployment.

Names a client may send: FAMILY:QUANT (either spelling of a GGUF quantization: Q4_K or Q4_K_M),
FAMILY (its newest running deployment), or a deployment id. Bodies are forwarded unchanged except
`model`, which becomes the name the engine itself serves (asked once from its /v1/models); answers
carry the name the client sent back in their `model` field (as OpenAI's and Ollama's do). Streams
are relayed chunk by chunk; a client that goes away closes the upstream request, so the engine stops
generating. A deployment of another node sharing the store (registry/nodes.py) is reached through
that node's serve, with the team's API key and the deployment's id as `model`: engines stay on their
machine's loopback.
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import HTTPException
from fastapi.responses import JSONResponse, Response

from .. import launcher, paths
from ..naming import quant_key as _norm  # one reading of a quantization's spellings (registry/naming.py)
from ..prestart import LLAMA_CPP_SERVER
from .security import send_error  # the OpenAI error shape, written straight to ASGI
from .upstream import Pool, UpstreamError, UpstreamTimeout, upstream_timeout

SELF = "registry"  # the engine name of `registry serve`'s own deployment row
ROUTES = ("chat/completions", "completions", "embeddings")


def served_names(dep) -> list[str]:
    return [f"{dep.family}:{dep.quantization}", dep.family, str(dep.id)]


def matches(dep, model: str) -> bool:
    """Family names in any case, as everywhere in the CLI."""
    if model == str(dep.id) or model.lower() == dep.family.lower():
        return True
    fam, _, quant = model.partition(":")
    return bool(quant) and fam.lower() == dep.family.lower() and _norm(quant) == _norm(dep.quantization)


class Router:
    def __init__(self, auto_launch: bool = False, launch_timeout: float = 300.0, say=None, api_key: str | None = None,
                 keep_alive: float | None = None):
        self.auto_launch, self.launch_timeout = auto_launch, launch_timeout
        # --keep-alive (registry/serve/idle.py): seconds an auto-launched deployment may sit idle; None: forever.
        # Only what this serve started is stopped: deployments started by `registry launch` are the user's.
        self.keep_alive = keep_alive
        self._launched: dict[int, object] = {}  # id -> row, for the reaper
        self._busy: dict[int, int] = {}  # id -> answers being relayed
        self._last: dict[int, float] = {}  # id -> when its last answer began or ended
        self.node, self.api_key = paths.node(), api_key
        self.single = paths.single_machine()  # a SQLite store: every row is this machine's
        self._peers: dict[str, str] = {}  # live other nodes: name -> serve URL
        self.say = say or (lambda msg: None)
        self.pool = Pool(upstream_timeout())
        self._deps: tuple[float, list] = (0.0, [])
        self._reading: tuple[float, asyncio.Future] | None = None  # the store read in flight, and when it began
        self._upstream: dict[int, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def local(self, dep) -> bool:
        return self.single or dep.node == self.node

    async def close(self) -> None:
        self.pool.close()

    # --- which deployment -------------------------------------------------------------------------

    async def running(self, fresh: bool = False) -> list:
        """Running deployments, newest first; read from the store at most once a second, and by one
        reader at a time: 64 requests that find the list stale share one read (each with its own
        thread and database connection cost the router more than relaying their streams)."""
        asked = time.monotonic()
        at, deps = self._deps
        if not fresh and asked - at <= 1.0:
            return deps
        while True:
            if self._reading is None:
                self._reading = (time.monotonic(), asyncio.ensure_future(self._read()))
            began, reading = self._reading
            await asyncio.shield(reading)
            if not fresh or began >= asked:  # fresh: a read that began before the question may miss a new start
                return self._deps[1]

    async def _read(self) -> None:
        try:
            rows, peers = await asyncio.to_thread(_rows_and_peers, self.single)
            # another node's deployments only while its serve heart-beats: a node that went away drops out
            deps = [d for d in reversed(rows) if d.status == "running" and d.engine != SELF
                    and (self.local(d) or d.node in peers)]
            self._deps, self._peers = (time.monotonic(), deps), peers
        finally:
            self._reading = None

    async def models(self) -> dict:
        data = []
        for d in await self.running(fresh=True):
            data.append({"id": f"{d.family}:{d.quantization}", "object": "model", "owned_by": "glm-registry",
                         "created": int(d.started.timestamp()), "family": d.family, "format": d.format,
                         "quantization": d.quantization, "engine": d.engine, "deployment": d.id,
                         "aliases": served_names(d)[1:], "node": d.node,
                         "address": launcher.address(d) if self.local(d) else self._peers[d.node] + "/v1"})
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
                if self.keep_alive is not None:
                    self._launched[hit.id] = hit
                    self._last[hit.id] = time.monotonic()
        return hit

    def _launch(self, fam: str, fmt: str, quant: str):
        p = launcher.plan(fam, fmt, quant)
        return launcher.launch(p, timeout=self.launch_timeout, say=self.say, spinner=False)

    async def upstream_name(self, dep) -> str:
        """What the engine calls its model (llama.cpp: its alias; vLLM: the model path or served name)."""
        name = self._upstream.get(dep.id)
        if name is not None:
            return name
        host, port = _where(dep)
        for _ in range(2):  # a pooled connection the engine had closed: once more on a new one
            try:
                conn = await asyncio.wait_for(self.pool.send(host, port, "GET", "/v1/models"), 10)
                while not conn.done and conn.error is None:
                    await asyncio.wait_for(conn.wait(), 10)
                data = conn.take()
                self.pool.release(host, port, conn)
                name = json.loads(data)["data"][0]["id"]
            except (UpstreamError, asyncio.TimeoutError, ValueError, KeyError, IndexError, TypeError):
                continue
            self._upstream[dep.id] = name  # kept only when the engine said it: a failed look-up is asked again
            return name
        return dep.family

    # --- forwarding -------------------------------------------------------------------------------

    async def asgi(self, scope, receive, send, route: str) -> None:
        """The hot path (registry/serve/app.py sends /v1 POSTs here before FastAPI's routing): the same
        answers as the FastAPI routes, without their per-request routing and per-chunk wrappers."""
        chunks = []
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        accept = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"accept"), None)
        try:
            relay = await self.forward(b"".join(chunks), accept, route)
        except HTTPException as e:
            return await send_error(send, e.status_code, e.detail)
        await relay(scope, receive, send)

    async def forward(self, body: bytes, accept: str | None, route: str) -> Response:
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            raise HTTPException(400, "the request body is not JSON") from None
        if not isinstance(payload, dict):
            raise HTTPException(400, "the request body must be a JSON object with `model`")
        asked = payload.get("model")
        dep = await self.target(asked)
        if route == "embeddings":
            _check_embeds(dep, asked)
        headers = {"content-type": "application/json"}
        if accept:
            headers["accept"] = accept
        if not self.local(dep):
            return await self._to_peer(dep, payload, headers, route, asked)
        payload["model"] = sent = await self.upstream_name(dep)
        host, port = _where(dep)
        try:
            conn = await self.pool.send(host, port, "POST", f"/v1/{route}", json.dumps(payload).encode(), headers)
        except UpstreamTimeout as e:
            raise HTTPException(504, f"deployment {dep.id} ({dep.family}:{dep.quantization}) sent nothing for "
                                f"{e.seconds:g} s (REGISTRY_UPSTREAM_TIMEOUT); see `registry logs {dep.id}`") from None
        except UpstreamError as e:
            self._deps = (0.0, [])
            raise HTTPException(502, f"deployment {dep.id} ({dep.family}) did not answer: {e}; "
                                f"see `registry logs {dep.id}`") from None
        return _Relay(self.pool, host, port, conn, _Rename.of(sent, asked),
                      self._track(dep.id) if dep.id in self._launched else None)

    # --- keep-alive -------------------------------------------------------------------------------

    def _track(self, dep_id: int):
        """An answer of an auto-launched deployment begins; the returned call marks its end."""
        self._busy[dep_id] = self._busy.get(dep_id, 0) + 1
        self._last[dep_id] = time.monotonic()

        def ended() -> None:
            self._busy[dep_id] -= 1
            self._last[dep_id] = time.monotonic()

        return ended

    async def reap(self) -> None:
        """Stop auto-launched deployments idle for keep_alive seconds (runs while serve does)."""
        every = min(max(self.keep_alive / 4, 0.25), 5.0)
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            for dep_id, dep in list(self._launched.items()):
                if self._busy.get(dep_id) or now - self._last.get(dep_id, now) < self.keep_alive:
                    continue
                # forgotten first, so that a request from now on starts it again instead of reaching it
                del self._launched[dep_id]
                self._busy.pop(dep_id, None)
                self._last.pop(dep_id, None)
                self._deps = (0.0, [])
                lock = self._locks.setdefault(f"{dep.family}:{_norm(dep.quantization)}", asyncio.Lock())
                async with lock:  # not while a request for the same build starts one
                    try:
                        what = await asyncio.to_thread(launcher.stop, dep)
                    except Exception as e:  # the store or the process: say so, serve goes on
                        self.say(f"keep-alive: could not stop deployment {dep_id}: {e}")
                        continue
                    self._deps = (0.0, [])
                self.say(f"keep-alive: {what} {dep.family}:{dep.quantization} (deployment {dep_id}), "
                         f"idle for {self.keep_alive:g} s")

    async def _to_peer(self, dep, payload: dict, headers: dict, route: str, asked: str) -> Response:
        """To the serve of the node the deployment runs on, which relays it to its engine."""
        from urllib.parse import urlsplit

        url = self._peers.get(dep.node)
        if url is None:
            raise HTTPException(503, f"deployment {dep.id} ({dep.family}) runs on node {dep.node}, whose serve "
                                "no longer heart-beats; `registry serve` there brings it back")
        u = urlsplit(url)
        host, port = (u.hostname or "").strip("[]"), u.port or 80
        payload["model"] = str(dep.id)  # the deployment's id: unambiguous in the shared store
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        try:
            conn = await self.pool.send(host, port, "POST", f"{u.path.rstrip('/')}/v1/{route}",
                                        json.dumps(payload).encode(), headers)
        except UpstreamError as e:
            self._deps = (0.0, [])
            raise HTTPException(502, f"deployment {dep.id} ({dep.family}) runs on node {dep.node}, whose serve "
                                f"at {url} did not answer: {e}") from None
        return _Relay(self.pool, host, port, conn, _Rename.of(payload["model"], asked))


def _rows_and_peers(single: bool) -> tuple[list, dict[str, str]]:
    """Every node's deployments (this node's checked) and the live other nodes: one read for the router
    (a one-machine store has no other nodes to ask about)."""
    from ..nodes import peers

    return launcher.ps(), {} if single else peers()


def _where(dep) -> tuple[str, int]:
    from ..engines.base import client_host

    return client_host(dep.host).strip("[]"), dep.port


class _Relay(Response):
    """The deployment's answer, passed on as it arrives (raw ASGI: no task group, no stream wrappers).

    Streams (text/event-stream) go out chunk by chunk, whatever has arrived since the last write in one
    piece. A client that goes away closes the upstream connection, so the engine sees its client go and
    stops generating; an answer read to its end leaves its connection to the next request.
    """

    def __init__(self, pool: Pool, host: str, port: int, conn, rename: _Rename | None = None, ended=None) -> None:
        self.pool, self.host, self.port, self.conn, self.rename, self.ended = pool, host, port, conn, rename, ended
        self.status_code = conn.status
        self.background = None

    async def __call__(self, scope, receive, send) -> None:
        conn, rename = self.conn, self.rename
        kind = conn.header(b"content-type") or b"application/json"
        headers = [(b"content-type", kind)]
        stream = kind.startswith(b"text/event-stream")
        length = conn.header(b"content-length")
        if stream:
            headers += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        elif length is not None and b"chunked" not in (conn.header(b"transfer-encoding") or b""):
            headers.append((b"content-length", length))
        try:
            if rename is not None and not stream:
                # a renamed answer has another length: it goes out whole, with its own (one-piece answers
                # are what non-streamed requests get anyway); one that broke off keeps the declared length
                if not conn.done and conn.error is None and not await _gather(conn, receive):
                    return  # the client went away
                if conn.done and conn.error is None:
                    headers = [(k, v) for k, v in headers if k != b"content-length"]
            if conn.done and conn.error is None:  # a short answer already whole: one write
                body = conn.take() if rename is None else rename(conn.take(), end=True)
                if not any(k == b"content-length" for k, _ in headers):
                    headers.append((b"content-length", b"%d" % len(body)))
                await send({"type": "http.response.start", "status": conn.status, "headers": headers})
                return await send({"type": "http.response.body", "body": body})
            await send({"type": "http.response.start", "status": conn.status, "headers": headers})
            gone = asyncio.ensure_future(receive())  # after the body, receive() returns only on disconnect
            gone.add_done_callback(wake := lambda _f: conn.wake())
            try:
                while True:
                    if conn.chunks:
                        data = conn.take() if rename is None else rename(conn.take())
                        if data:
                            await send({"type": "http.response.body", "body": data, "more_body": True})
                    elif conn.done or conn.error is not None or gone.done():
                        break
                    else:
                        await conn.wait()
            finally:
                gone.remove_done_callback(wake)  # the connection may serve another request next
                gone.cancel()
            # an answer that broke off ends short: its declared length (or the missing end of the
            # stream) tells the client, and the engine's log says why
            await send({"type": "http.response.body", "body": b"" if rename is None else rename(b"", end=True)})
        finally:
            self.pool.release(self.host, self.port, conn)  # closed unless read to its end
            if self.ended is not None:
                self.ended()


async def _gather(conn, receive) -> bool:
    """Read the answer to its end (or its error) without passing it on; False when the client went away."""
    parts = []
    gone = asyncio.ensure_future(receive())
    gone.add_done_callback(wake := lambda _f: conn.wake())
    try:
        while not conn.done and conn.error is None and not gone.done():
            if conn.chunks:
                parts.append(conn.take())  # taken: the engine's socket is read on past HIGH_WATER
            else:
                await conn.wait()
        left = gone.done()
    finally:
        gone.remove_done_callback(wake)
        gone.cancel()
    conn.chunks[:0] = parts
    return not left


class _Rename:
    """`"model": "<the name the engine was sent>"` in an answer becomes the name the client asked for.

    Byte replacement of the field as engines write it (compact or with a space), not a JSON parse per
    chunk: the hot path stays one C scan per chunk. A name inside a string value is escaped (\\") and so
    never matches. A piece that may be the start of the field split across two reads is held back
    until the next read (the tail of an SSE event, "}\\n\\n", never is).
    """

    __slots__ = ("pairs", "tail", "held")

    def __init__(self, sent: str, asked: str) -> None:
        s, a = json.dumps(sent).encode(), json.dumps(asked).encode()
        self.pairs = ((b'"model":' + s, b'"model":' + a), (b'"model": ' + s, b'"model": ' + a))
        self.tail = len(self.pairs[1][0]) - 1
        self.held = b""

    @classmethod
    def of(cls, sent: str, asked) -> _Rename | None:
        return cls(sent, asked) if isinstance(asked, str) and asked != sent else None

    def __call__(self, data: bytes, end: bool = False) -> bytes:
        if self.held:
            data, self.held = self.held + data, b""
        for old, new in self.pairs:
            data = data.replace(old, new)
        if end:
            return data
        cut = max(0, len(data) - self.tail)
        i = data.find(b'"', cut)
        while i != -1:
            if any(old.startswith(data[i:]) for old, _ in self.pairs):
                self.held = data[i:]
                return data[:i]
            i = data.find(b'"', i + 1)
        return data


def _check_embeds(dep, asked) -> None:
    """llama.cpp computes embeddings only in a server started for them (llama_cpp.server's --embedding),
    and `registry launch` starts it for chat and completions: say so instead of relaying its 500."""
    argv = dep.argv or []
    if dep.engine != "llama.cpp" or LLAMA_CPP_SERVER not in argv:
        return
    if "--embedding" in argv[:-1] and argv[argv.index("--embedding") + 1].lower() in ("true", "1", "yes"):
        return
    model = argv[argv.index("--model") + 1] if "--model" in argv[:-1] else "FILE.gguf"
    raise HTTPException(400, f"{asked} (deployment {dep.id}) cannot embed: `registry launch` starts llama.cpp for "
                        "chat and completions, without --embedding (a llama.cpp server started with it cannot "
                        "chat). Send this model /v1/chat/completions or /v1/completions; for embeddings run "
                        f"`python -m llama_cpp.server --model {model} --embedding True --port PORT` and call it "
                        "directly")


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
