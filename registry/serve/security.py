"""The gate in front of every route: the API key and the request-body limit.

A pure ASGI wrapper (not a FastAPI dependency) so that nothing, router included, can be added
without it. The page itself ("/") is public: it holds no data and asks for the key in the browser.
"""

from __future__ import annotations

import hmac
import ipaddress
import json

PUBLIC = frozenset({"/", "/favicon.ico"})
MAX_BODY = 8 * 2**20  # a chat request with a long context is well under a MiB; 8 MiB leaves room for embeddings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _key_of(scope) -> str | None:
    headers = dict(scope.get("headers") or [])
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1") if key is not None else None


async def send_error(send, status: int, message: str, extra: list | None = None) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": status}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(extra or [])]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """api_key: required on every route but the page when set. max_body: bytes, declared or streamed."""

    def __init__(self, app, api_key: str | None, max_body: int = MAX_BODY):
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.api_key and scope["path"] not in PUBLIC:
            given = _key_of(scope)
            if given is None or not hmac.compare_digest(given.encode(), self.api_key.encode()):
                return await send_error(send, 401, "missing or wrong API key: send 'Authorization: Bearer KEY' "
                                    "(or X-API-Key: KEY)", [(b"www-authenticate", b"Bearer")])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return await send_error(send, 413, f"request body over {self.max_body} bytes")
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
