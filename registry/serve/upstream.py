"""The router's upstream side: HTTP/1.1 to a deployment over asyncio's transports, parsed by httptools.

Why not a client library: on a small machine every millisecond the router spends on a streamed token
is taken from the engine beside it. With aiohttp and Starlette's StreamingResponse the router used
7-9 ms of CPU per 16-token stream at 64 concurrent streams (bench/serve.py, a slow spell of this 2-core
machine); with this module, its connection reuse and one shared store read (router.py), 2.1-2.4 ms.
An arriving chunk is one C parser callback and one future; chunks that arrive together leave in one
write.
"""

from __future__ import annotations

import asyncio
import os

import httptools

HIGH_WATER = 1 << 20  # bytes held for a slow client before the engine's socket stops being read
CONNECT_TIMEOUT = 10.0
IDLE_KEEP = 256  # idle connections kept per deployment: one per concurrent stream comes back
# Seconds a deployment may stay silent: before the first byte of its answer (a long prompt's prefill on
# a CPU, or a whole non-streamed answer, comes before any byte) and between bytes. Generous by default;
# REGISTRY_UPSTREAM_TIMEOUT sets it.
TIMEOUT_ENV = "REGISTRY_UPSTREAM_TIMEOUT"
DEFAULT_TIMEOUT = 600.0


def upstream_timeout() -> float:
    from ..errors import RegistryError

    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise RegistryError(f"{TIMEOUT_ENV}={raw!r}: give the seconds a deployment may stay silent, a number "
                            f"above 0 (default {DEFAULT_TIMEOUT:g})")
    return value


class UpstreamError(ConnectionError):
    """The deployment could not be reached, or went away before its answer was complete."""


class UpstreamTimeout(UpstreamError):
    """The deployment sent nothing for `seconds` (a hung or stopped engine)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer for {seconds:g} s")
        self.seconds = seconds


class Exchange(asyncio.Protocol):
    """One connection to a deployment, answering one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        self.reset()

    def reset(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.parser = httptools.HttpResponseParser(self)
        self.status, self.headers, self.chunks = 0, [], []
        self.started = self.done = self.keep = False  # response bytes seen; message parsed; may be reused
        self.error: Exception | None = None
        self.buffered, self.paused, self.waiter = 0, False, None

    # --- asyncio ----------------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.started = True
        self.last = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.error = UpstreamError(f"the deployment's answer is not valid HTTP: {e}")
            self.transport.close()
        self.wake()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.done and self.error is None:
            if self.status and not self._framed():  # an answer that ends when the connection does
                self.done = True
            else:
                self.error = UpstreamError(f"the deployment closed the connection{f' ({exc})' if exc else ''}")
        self.wake()

    # --- the engine's silence -------------------------------------------------------------------
    # One timer per request, moved on only when it fires: an arriving chunk costs a clock read, not a
    # timer. A relay paused for a slow client is the client's wait, not the engine's silence.

    def watch(self, seconds: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.seconds, self.last = seconds, self.loop.time()
        self.timer = self.loop.call_at(self.last + seconds, self._silence)

    def _silence(self) -> None:
        self.timer = None
        if self.done or self.closed or self.error is not None:
            return
        now = self.loop.time()
        if self.paused or now - self.last < self.seconds:
            self.last = now if self.paused else self.last
            self.timer = self.loop.call_at(self.last + self.seconds, self._silence)
            return
        self.error = UpstreamTimeout(self.seconds)
        self.transport.close()  # the engine sees its client go
        self.wake()

    # --- httptools --------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.done = True
        self.keep = self.parser.should_keep_alive()  # only meaningful here: the parser resets after

    # --- the relay's side -------------------------------------------------------------------------

    def wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def take(self) -> bytes:
        """The body bytes that arrived since the last take."""
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks, self.buffered = [], 0
        if self.paused and not self.closed:
            self.paused = False
            self.transport.resume_reading()
        return data

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)

    def _framed(self) -> bool:
        return self.header(b"content-length") is not None or b"chunked" in (self.header(b"transfer-encoding") or b"")

    def reusable(self) -> bool:
        return self.done and self.keep and not self.closed and self.error is None

    def close(self) -> None:
        """Drop the connection: the engine sees its client go and stops generating."""
        if self.transport is not None and not self.closed:
            self.transport.close()


class Pool:
    """Keep-alive connections per (host, port). timeout: seconds a deployment may stay silent."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.idle: dict[tuple[str, int], list[Exchange]] = {}
        self.timeout = timeout

    async def _connect(self, host: str, port: int) -> Exchange:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(Exchange, host, port), CONNECT_TIMEOUT)
        except asyncio.TimeoutError:
            raise UpstreamError(f"no connection to {host}:{port} within {CONNECT_TIMEOUT:.0f} s") from None
        except OSError as e:
            raise UpstreamError(f"cannot connect to {host}:{port}: {e.strerror or e}") from None
        return conn

    async def send(self, host: str, port: int, method: str, path: str, body: bytes = b"",
                   headers: dict[str, str] | None = None) -> Exchange:
        """Send one request and return its exchange once the status line and headers are in."""
        head = [f"{method} {path} HTTP/1.1", f"host: {host}:{port}", f"content-length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        idle = self.idle.get((host, port)) or []
        while True:
            reused = bool(idle)
            conn = idle.pop() if reused else await self._connect(host, port)
            if conn.closed:
                continue
            conn.reset()
            conn.transport.write(raw)
            conn.watch(self.timeout)
            while not conn.status and conn.error is None:
                await conn.wait()
            if conn.error is None:
                return conn
            if reused and not conn.started and not isinstance(conn.error, UpstreamTimeout):
                continue  # the engine had closed this idle connection: the request never reached it
            raise conn.error

    def release(self, host: str, port: int, conn: Exchange) -> None:
        """Back to the pool when the answer was read to its end; else closed."""
        idle = self.idle.setdefault((host, port), [])
        if conn.reusable() and len(idle) < IDLE_KEEP:
            idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for conns in self.idle.values():
            for c in conns:
                c.close()
        self.idle.clear()
