"""The gate in front of every route: the Host, the API key, the body's type and size, and CORS.

A pure ASGI wrapper (not a FastAPI dependency) so that nothing, router included, can be added
without it. The page itself ("/") is public: it holds no data and asks for the key in the browser.

Why a Host check: a web page whose name is made to resolve to 127.0.0.1 (DNS rebinding) reaches a
loopback server as the same origin; its requests still carry its own name in Host. Why JSON only:
browsers send text/plain and form bodies cross-site without asking first (no CORS preflight), while
application/json needs a preflight, which this server answers only for the origins given with --cors.
"""

from __future__ import annotations

import hmac
import ipaddress
import json

PUBLIC = frozenset({"/", "/favicon.ico"})
MAX_BODY = 8 * 2**20  # a chat request with a long context is well under a MiB; 8 MiB leaves room for embeddings
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The name of a Host header (or an Origin's authority) without its port: 'a.b:80' -> 'a.b', '[::1]:80' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.partition(":")[0]
    return value  # a bare IPv6 address, or a name without a port


class Hosts:
    """The Host names this server answers to: loopback names, the address it is bound to, and --allow-host.

    Bound to every address (0.0.0.0, ::), any IP address is its own (a request sent to an IP address
    names no domain that a page could rebind)."""

    def __init__(self, bound: str = "127.0.0.1", allow: list[str] | tuple = ()) -> None:
        bound = bound.strip("[]").lower()
        self.any_ip = bound in ("0.0.0.0", "::", "")
        self.names = LOOPBACK_NAMES | {bound} | {host_name(a) for a in allow}

    def ok(self, header: bytes | None) -> bool:
        if header is None:
            return True  # HTTP/1.0 without Host: not a browser
        name = host_name(header.decode("latin-1"))
        return name in self.names or (self.any_ip and _ip(name))


def _key_of(headers: dict) -> str | None:
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1") if key is not None else None


def _json_type(value: bytes | None) -> bool:
    return value is not None and value.split(b";")[0].strip().lower() == b"application/json"


async def send_error(send, status: int, message: str, extra: list | None = None) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": status}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(extra or [])]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """api_key: required on every route but the page when set. max_body: bytes, declared or streamed.
    hosts: the Host names answered (else 421). cors: origins that may read answers from a browser."""

    def __init__(self, app, api_key: str | None, max_body: int = MAX_BODY, hosts: Hosts | None = None,
                 cors: list[str] | tuple = ()):
        self.app, self.api_key, self.max_body = app, api_key, max_body
        self.hosts = hosts or Hosts()
        self.cors = frozenset(o.rstrip("/").lower() for o in cors)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host")
        if not self.hosts.ok(host):
            return await send_error(send, 421, f"this server does not answer to Host {host.decode('latin-1')!r}: "
                                    "start it with `registry serve --allow-host NAME` to use that name")
        origin = headers.get(b"origin")
        allowed = origin is not None and origin.decode("latin-1").rstrip("/").lower() in self.cors
        if origin is not None and not allowed and not self._same_origin(origin, host):
            return await send_error(send, 403, f"requests from web pages at {origin.decode('latin-1')} are refused: "
                                    "start the server with `--cors ORIGIN` to allow one")
        if allowed:
            if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
                return await self._preflight(send, origin)
            send = _with_cors(send, origin)
        if self.api_key and scope["path"] not in PUBLIC:
            given = _key_of(headers)
            if given is None or not hmac.compare_digest(given.encode(), self.api_key.encode()):
                return await send_error(send, 401, "missing or wrong API key: send 'Authorization: Bearer KEY' "
                                    "(or X-API-Key: KEY)", [(b"www-authenticate", b"Bearer")])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return await send_error(send, 413, f"request body over {self.max_body} bytes")
        kind = headers.get(b"content-type")
        if scope["method"] in WRITES and not _json_type(kind) and (
                kind is not None or declared not in (None, b"0") or b"transfer-encoding" in headers
                or scope["method"] != "DELETE"):
            return await send_error(send, 415, f"request bodies must be application/json (got "
                                    f"{kind.decode('latin-1') if kind else 'no content-type'})")
        # Read the whole body here, whatever the client declared (chunked uploads declare nothing),
        # then replay it: the app never sees more than max_body bytes.
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return await send_error(send, 413, f"request body over {self.max_body} bytes")
            chunks.append(chunk)
            if not msg.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when the client goes away

        return await self.app(scope, replay, send)

    @staticmethod
    def _same_origin(origin: bytes, host: bytes | None) -> bool:
        """The page served by this server (its Origin names the Host it was loaded from)."""
        o = origin.decode("latin-1").lower()
        return host is not None and o.partition("://")[2].rstrip("/") == host.decode("latin-1").lower()

    async def _preflight(self, send, origin: bytes) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": [
            *_cors_headers(origin), (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
            (b"access-control-allow-headers", b"authorization, content-type, x-api-key"),
            (b"access-control-max-age", b"600")]})
        await send({"type": "http.response.body", "body": b""})


def _cors_headers(origin: bytes) -> list:
    return [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]


def _with_cors(send, origin: bytes):
    async def wrapped(msg):
        if msg["type"] == "http.response.start":
            msg = {**msg, "headers": [*msg.get("headers", []), *_cors_headers(origin)]}
        await send(msg)

    return wrapped
