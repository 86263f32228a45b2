"""`registry serve`: the key and body guard, the REST API's shapes, the OpenAI router in front of a real
llama.cpp deployment (streams, disconnects, concurrency, auto-launch) and the web page in Chromium."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import run_cli

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InProcess:
    """The serve app on a real socket in a thread of the test process (same REGISTRY_HOME)."""

    def __init__(self, **kw):
        from registry.serve.app import create_app

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_app(**kw), host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    @staticmethod
    def app(**kw):
        from registry.serve.app import create_app

        return create_app(**kw)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "serve app did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def _record(gguf: Path, quant: str = "FP16") -> None:
    from registry.store import Store

    Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization=quant, path=str(gguf),
                         sha256="0" * 64, size_bytes=gguf.stat().st_size)


def _launch_tiny(tiny_gguf) -> dict:
    gguf = tiny_gguf("chatglm", "F16")
    _record(gguf)
    r = run_cli("launch", "glm4-chat-1m", "--format", "ggufv2", "--quant", "FP16", "--context", "512", "--json",
                "--timeout", "120")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# --- security ------------------------------------------------------------------------------------------


def test_binding_beyond_loopback_needs_a_key():
    r = run_cli("serve", "--host", "0.0.0.0", "--port", str(_free_port()))
    assert r.returncode == 1 and "--api-key" in r.stderr and "REGISTRY_API_KEY" in r.stderr
    assert "Traceback" not in r.stderr
    assert json.loads(run_cli("ps", "--all", "--json").stdout) == []  # nothing started, nothing recorded


def test_port_in_use_is_refused_when_given():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        r = run_cli("serve", "--port", str(s.getsockname()[1]))
    assert r.returncode == 1 and "in use" in r.stderr


@pytest.mark.slow
def test_serve_is_a_deployment_and_every_route_needs_the_key():
    port = _free_port()
    r = run_cli("serve", "--port", str(port), "--json", env={"REGISTRY_API_KEY": "s3cret"})
    assert r.returncode == 0, r.stderr
    dep = json.loads(r.stdout)
    try:
        assert dep["family"] == "registry-serve" and dep["status"] == "running" and dep["port"] == port
        assert "s3cret" not in " ".join(dep["argv"])  # the key is not shown by `ps`
        base = f"http://127.0.0.1:{port}"
        ok = {"Authorization": "Bearer s3cret"}
        schema = httpx.get(base + "/openapi.json", headers=ok).json()
        assert httpx.get(base + "/openapi.json").status_code == 401
        paths = schema["paths"]
        for want in ("/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/api/families",
                     "/api/families/{name}", "/api/search", "/api/resolve", "/api/fit", "/api/artifacts",
                     "/api/deployments", "/api/deployments/{dep_id}", "/api/deployments/{dep_id}/logs"):
            assert want in paths, want
        with httpx.Client(base_url=base, timeout=30) as c:
            for path, methods in paths.items():
                url = path.replace("{name}", "glm4-chat-1m").replace("{dep_id}", str(dep["id"]))
                for method in methods:
                    for headers in ({}, {"Authorization": "Bearer nope"}, {"X-API-Key": "s3cre"}):
                        got = c.request(method.upper(), url, headers=headers, json={})
                        assert got.status_code == 401, (method, url, headers, got.status_code)
                        assert "API key" in got.json()["error"]["message"]
            assert c.get("/api/families", headers={"X-API-Key": "s3cret"}).status_code == 200
            assert c.get("/v1/models", headers=ok).json() == {"object": "list", "data": []}
            page = c.get("/")  # the page holds no data and asks for the key itself
            assert page.status_code == 200 and "glm-registry" in page.text
        rows = json.loads(run_cli("ps", "--json").stdout)
        assert [d["family"] for d in rows] == ["registry-serve"] and rows[0]["address"] == base + "/v1"
        again = run_cli("serve", "--port", str(_free_port()))
        assert again.returncode == 1 and "already runs" in again.stderr
    finally:
        stop = run_cli("stop", "registry-serve")
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert json.loads(run_cli("ps", "--json").stdout) == []


def _home_bytes() -> bytes:
    home = Path(os.environ["REGISTRY_HOME"])
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_the_api_key_is_kept_out_of_argv_env_store_logs_and_answers():
    key = "k3y-" + os.urandom(8).hex()
    port = _free_port()
    r = run_cli("serve", "--port", str(port), "--allow-host", "models.lan", "--cors", "https://app.example", "--json",
                env={"REGISTRY_API_KEY": key})
    assert r.returncode == 0, r.stderr
    try:
        assert key not in r.stdout + r.stderr
        dep = json.loads(r.stdout)
        assert dep["api_key"] == "set" and dep["env"] == {}
        pid = dep["pid"]
        assert key.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert key.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
        ok = {"Authorization": f"Bearer {key}"}
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + "/api/deployments", headers=ok).status_code == 200
        for path in ("/api/deployments", "/api/deployments?all=true", f"/api/deployments/{dep['id']}/logs"):
            got = httpx.get(base + path, headers=ok)
            assert got.status_code == 200 and key not in got.text, path
        assert httpx.get(base + "/api/deployments", headers=ok).json()[0]["api_key"] == "set"
        # the background server got --allow-host and --cors
        assert httpx.get(base + "/health", headers={**ok, "Host": "models.lan"}).status_code == 200
        assert httpx.get(base + "/health", headers={**ok, "Host": "attacker.example"}).status_code == 421
        got = httpx.get(base + "/health", headers={**ok, "Origin": "https://app.example"})
        assert got.headers["access-control-allow-origin"] == "https://app.example"
        for args in (("ps", "--json"), ("ps", "--all", "--json"), ("ps",), ("ps", "--all")):
            out = run_cli(*args)
            assert out.returncode == 0 and key not in out.stdout + out.stderr, args
        home = Path(os.environ["REGISTRY_HOME"])
        assert key.encode() not in _home_bytes()  # the store, its WAL, the logs; the key file is gone
        assert not list((home / "run").glob("*"))
        for name in ("registry.db", "registry.db-wal", "registry.db-shm"):
            if (home / name).exists():
                assert (home / name).stat().st_mode & 0o777 == 0o600, name
    finally:
        stop = run_cli("stop", "registry-serve")
    assert stop.returncode == 0
    assert key.encode() not in _home_bytes()
    assert key not in run_cli("ps", "--all", "--json").stdout


def test_old_rows_holding_a_key_are_shown_without_it():
    """A row recorded by an earlier version (key in env or argv) never shows it."""
    from registry.store import Store

    Store().add_deployment(family="registry-serve", format="-", quantization="-", engine="registry",
                           argv=["python", "-m", "x", "--api-key", "old-secret", "--api_key=old-secret2"],
                           env={"REGISTRY_API_KEY": "old-secret3", "OTHER": "v"}, host="127.0.0.1", port=1,
                           status="stopped")
    out = run_cli("ps", "--all", "--json")
    assert out.returncode == 0 and "old-secret" not in out.stdout
    row = json.loads(out.stdout)[0]
    assert row["api_key"] == "set" and row["env"]["OTHER"] == "v"
    with InProcess() as s:
        assert "old-secret" not in httpx.get(s.url + "/api/deployments?all=true").text


def test_body_limits_declared_and_chunked():
    with InProcess(max_body=1000) as s, httpx.Client(base_url=s.url, timeout=30) as c:
        big = json.dumps({"model": "x", "prompt": "a" * 2000}).encode()
        r = c.post("/v1/completions", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "1000 bytes" in r.json()["error"]["message"]

        def chunks():  # no content-length: chunked transfer encoding
            for i in range(0, len(big), 100):
                yield big[i:i + 100]

        r = c.post("/v1/completions", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        # under the limit the body reaches the router, which answers for the unknown model
        r = c.post("/v1/completions", content=json.dumps({"model": "nosuch:Q4_K"}).encode(),
                   headers={"content-type": "application/json"})
        assert r.status_code == 404 and "nosuch" in r.json()["error"]["message"]


def test_no_route_reads_outside_the_home(tmp_path):
    from registry.store import Store

    secret = tmp_path / "secret.txt"
    secret.write_text("not for the API\n")
    dep = Store().add_deployment(family="glm4-chat-1m", format="ggufv2", quantization="FP16", engine="llama.cpp",
                                 argv=["x"], env={}, host="127.0.0.1", port=1, status="stopped",
                                 log_path=str(secret))
    with InProcess() as s, httpx.Client(base_url=s.url, timeout=30) as c:
        r = c.get(f"/api/deployments/{dep.id}/logs")
        assert r.status_code == 403 and "not for the API" not in r.text
        r = c.get("/api/fit", params={"name": "glm4-chat-1m", "hardware": str(secret)})
        assert r.status_code == 400 and "profile" in r.json()["error"]["message"]
        r = c.get("/api/hardware", params={"profile": "../../etc/passwd"})
        assert r.status_code == 400


def test_foreign_host_names_are_refused_loopback_and_allowed_names_answered():
    """DNS rebinding: a page whose name resolves to 127.0.0.1 sends its own name as Host."""
    from registry.store import Store

    dep = Store().add_deployment(family="glm4-chat-1m", format="ggufv2", quantization="FP16", engine="llama.cpp",
                                 argv=["x"], env={}, host="127.0.0.1", port=1, status="running", pid=None)
    with InProcess(allow_hosts=["models.lan"]) as s, httpx.Client(base_url=s.url, timeout=30) as c:
        evil = {"Host": "attacker.example"}
        r = c.delete(f"/api/deployments/{dep.id}", headers=evil)
        assert r.status_code == 421 and "--allow-host" in r.json()["error"]["message"]
        r = c.post("/api/deployments", headers=evil, json={"name": "glm4-chat-1m", "format": "ggufv2", "quant": "Q4_K"})
        assert r.status_code == 421
        for bad in ("attacker.example:%d" % s.port, "127.0.0.1.attacker.example", "localhost.evil", "10.0.0.1"):
            assert c.get("/api/deployments", headers={"Host": bad}).status_code == 421, bad
            assert c.post("/v1/chat/completions", headers={"Host": bad}, json={"model": "x"}).status_code == 421
        assert [d.status for d in Store().deployments()] != ["stopped"]  # the DELETE never reached it
        for good in (f"127.0.0.1:{s.port}", f"localhost:{s.port}", "LOCALHOST", f"[::1]:{s.port}", "models.lan",
                     f"models.lan:{s.port}"):
            assert c.get("/api/deployments", headers={"Host": good}).status_code == 200, good


def test_bodies_must_be_json_and_browsers_are_not_served_cross_site():
    """text/plain and form bodies cross sites without a CORS preflight: they are refused (415), as is a
    request from a page of another origin (403); no CORS header is sent unless --cors names the origin."""
    with InProcess() as s, httpx.Client(base_url=s.url, timeout=30) as c:
        body = json.dumps({"model": "nosuch:Q4_K", "prompt": "x"})
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
            headers = {"content-type": kind} if kind else {}
            for path in ("/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/api/deployments"):
                r = c.post(path, content=body, headers=headers)
                assert r.status_code == 415, (path, kind, r.status_code)
                assert "application/json" in r.json()["error"]["message"]
        r = c.request("DELETE", "/api/deployments/99", content="x", headers={"content-type": "text/plain"})
        assert r.status_code == 415
        assert c.delete("/api/deployments/99").status_code == 404  # no body: nothing to check
        r = c.post("/v1/completions", content=body, headers={"content-type": "application/json; charset=utf-8"})
        assert r.status_code == 404 and "nosuch" in r.json()["error"]["message"]

        page = {"Origin": "https://evil.example"}
        r = c.post("/v1/completions", content=body, headers={**page, "content-type": "application/json"})
        assert r.status_code == 403 and "--cors" in r.json()["error"]["message"]
        r = c.get("/api/families", headers=page)
        assert r.status_code == 403 and not any(k.startswith("access-control") for k in r.headers)
        pre = c.options("/v1/completions", headers={**page, "Access-Control-Request-Method": "POST"})
        assert not any(k.startswith("access-control") for k in pre.headers)
        # the page this server serves calls it from its own origin
        same = c.get("/api/families", headers={"Origin": s.url})
        assert same.status_code == 200 and "access-control-allow-origin" not in same.headers

    with InProcess(cors=["https://app.example"], api_key="k") as s, httpx.Client(base_url=s.url, timeout=30) as c:
        app = {"Origin": "https://app.example"}
        pre = c.options("/v1/chat/completions", headers={**app, "Access-Control-Request-Method": "POST",
                                                         "Access-Control-Request-Headers": "authorization, content-type"})
        assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in pre.headers["access-control-allow-headers"]
        r = c.get("/api/families", headers={**app, "Authorization": "Bearer k"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
        r = c.get("/api/families", headers={**app})
        assert r.status_code == 401  # CORS is not a key
        r = c.get("/api/families", headers={"Origin": "https://other.example", "Authorization": "Bearer k"})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


def test_a_client_that_never_finishes_its_headers_is_disconnected():
    from registry.serve import protocol

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(InProcess.app(), host="127.0.0.1", port=port, log_level="warning",
                                          http=protocol(header_timeout=2.0), limit_concurrency=4))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    try:
        while not server.started:
            time.sleep(0.02)
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        slow.settimeout(5)
        t0 = time.monotonic()
        assert slow.recv(1024) == b""  # closed by the server
        assert 1.5 < time.monotonic() - t0 < 4.5
        slow.close()
        # a client that completes its request in time is answered, on the same kind of connection
        assert httpx.get(f"http://127.0.0.1:{port}/health").json() == {"status": "ok"}
        # over the connection cap: answered 503 instead of queued without end
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
        try:
            time.sleep(0.2)
            r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            assert r.status_code == 503
        finally:
            for sck in idle:
                sck.close()
    finally:
        server.should_exit = True
        t.join(10)


# --- REST = CLI ------------------------------------------------------------------------------------------


def _cli_json(*args):
    r = run_cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_rest_answers_in_the_cli_json_shapes():
    with InProcess() as s, httpx.Client(base_url=s.url, timeout=60) as c:
        pairs = [
            ("/api/families", {}, ("list",)),
            ("/api/families", {"format": "ggufv2", "quant": "Q4_K"}, ("list", "--format", "ggufv2", "--quant", "Q4_K")),
            ("/api/families/glm4-chat-1m", {}, ("show", "glm4-chat-1m")),
            ("/api/families/glm-4.6", {"artifacts": "true"}, ("show", "glm-4.6", "--artifacts")),
            ("/api/search", {"q": "awq"}, ("search", "awq")),
            ("/api/resolve", {"name": "glm-4.7", "format": "compressed-tensors", "quant": "W4A16_GS64"},
             ("resolve", "glm-4.7", "--format", "compressed-tensors", "--quant", "W4A16_GS64")),
            ("/api/fit", {"name": "glm4-chat-1m", "hardware": "2xH200"}, ("fit", "glm4-chat-1m", "--hardware", "2xH200")),
            ("/api/deployments", {"all": "true"}, ("ps", "--all")),
        ]
        for path, params, args in pairs:
            r = c.get(path, params=params)
            assert r.status_code == 200, (path, r.text)
            assert r.json() == _cli_json(*args), path
        hw = c.get("/api/hardware").json()
        assert "2xH200" in hw["profiles"] and hw["local"] is True
        r = c.get("/api/families/glm-4.8")
        assert r.status_code == 404 and "glm-4" in r.json()["error"]["message"]
        r = c.post("/api/deployments", json={"name": "glm4-chat-1m", "format": "ggufv2", "quant": "Q9"})
        assert r.status_code == 404 and "Q4_K" in r.json()["error"]["message"]


# --- the router against a real llama.cpp deployment -----------------------------------------------------


def _sse(lines) -> list[dict]:
    events = []
    for line in lines:
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            events.append(json.loads(line[5:]))
    return events


def _stream_text(events) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))


@pytest.mark.slow
def test_router_in_front_of_llamacpp(tiny_gguf):
    dep = _launch_tiny(tiny_gguf)
    direct = dep["address"]
    try:
        with InProcess() as s, httpx.Client(timeout=120) as c:
            v1 = s.url + "/v1"
            models = c.get(v1 + "/models").json()["data"]
            assert [m["id"] for m in models] == ["glm4-chat-1m:FP16"]
            assert models[0]["aliases"] == ["glm4-chat-1m", str(dep["id"])]

            # a catalog build that is not running: 404 naming the command that starts it
            r = c.post(v1 + "/chat/completions", json={"model": "glm4-chat-1m:q4_k", "messages": []})
            assert r.status_code == 404
            assert "registry launch glm4-chat-1m --format ggufv2 --quant Q4_K" in r.json()["error"]["message"]
            r = c.post(v1 + "/chat/completions", json={"messages": []})
            assert r.status_code == 400 and "model" in r.json()["error"]["message"]

            msgs = [{"role": "user", "content": "Hello GLM"}]
            body = {"messages": msgs, "max_tokens": 12, "temperature": 0, "seed": 3}
            want = c.post(direct + "/chat/completions", json={**body, "model": "glm4-chat-1m"}).json()
            for name in ("glm4-chat-1m:FP16", "glm4-chat-1m:F16", "glm4-chat-1m", str(dep["id"])):
                got = c.post(v1 + "/chat/completions", json={**body, "model": name}).json()
                assert got["choices"][0]["message"] == want["choices"][0]["message"], name
                assert got["usage"] == want["usage"]
            comp = {"prompt": "hello world", "max_tokens": 8, "temperature": 0}
            a = c.post(direct + "/completions", json={**comp, "model": "glm4-chat-1m"}).json()
            b = c.post(v1 + "/completions", json={**comp, "model": "glm4-chat-1m:FP16"}).json()
            assert a["choices"][0]["text"] == b["choices"][0]["text"] and a["usage"] == b["usage"]
            # embeddings: this server was started without --embedding; the router says so (tests/test_serve_daily.py)
            e2 = c.post(v1 + "/embeddings", json={"input": "hi", "model": "glm4-chat-1m:FP16"})
            assert e2.status_code == 400 and "--embedding" in e2.json()["error"]["message"]

            # streaming: the same events as direct. That they are relayed as they come (not one body) is
            # shown by test_a_client_disconnect_reaches_the_engine against an endless stream; how many
            # reads a 16-token answer of a tiny model arrives in depends on the machine's load.
            sbody = {**body, "stream": True, "max_tokens": 16}
            with c.stream("POST", direct + "/chat/completions", json={**sbody, "model": "glm4-chat-1m"}) as r:
                want_events = _sse(r.iter_lines())
            with c.stream("POST", v1 + "/chat/completions", json={**sbody, "model": "glm4-chat-1m:FP16"}) as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                raw = list(r.iter_raw())
            got_events = _sse(b"".join(raw).decode().splitlines())
            assert _stream_text(got_events) == _stream_text(want_events) and len(got_events) == len(want_events)

            # after a client went away mid-stream the router and the engine keep answering
            with c.stream("POST", v1 + "/chat/completions",
                          json={**sbody, "max_tokens": 64, "model": "glm4-chat-1m:FP16"}) as r:
                it = r.iter_lines()
                next(it), next(it)
            after = c.post(v1 + "/completions", json={**comp, "model": "glm4-chat-1m"}, timeout=60).json()
            assert after["choices"][0]["text"] == a["choices"][0]["text"]

            # four streams at once: each gets its own answer, none cut short or mixed with another's
            prompts = [f"story number {i}" for i in range(4)]

            def one(p, url, model):
                with httpx.Client(timeout=120) as cc, cc.stream("POST", url + "/chat/completions", json={
                        "messages": [{"role": "user", "content": p}], "max_tokens": 10, "temperature": 0,
                        "stream": True, "model": model}) as rr:
                    ev = _sse(rr.iter_lines())
                    return _stream_text(ev), ev[-1]["choices"][0]["finish_reason"]

            alone = [one(p, direct, "glm4-chat-1m") for p in prompts]
            with ThreadPoolExecutor(4) as pool:
                together = list(pool.map(lambda p: one(p, v1, "glm4-chat-1m:FP16"), prompts))
            assert together == alone
            assert all(f in ("length", "stop") for _, f in together)
    finally:
        run_cli("stop", "--all")


# An engine stand-in that streams forever and notes when its client goes: how a test sees that the
# router passes a client's disconnect on (a real engine's reaction to it is the engine's business).
# The stand-ins' common part: an OpenAI-style /v1/models, and the server on the port argv[1] gives.
STANDIN_BASE = r"""
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "standin"}]}).encode()
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
"""
STANDIN_SERVE = '\nThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()\n'
STANDIN = STANDIN_BASE + r"""
class H(Base):
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200); self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked"); self.end_headers()
        n = 0
        try:
            while True:
                data = ("data: " + json.dumps({"choices": [{"delta": {"content": str(n)}}]}) + "\n\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data)); self.wfile.flush()
                n += 1
                time.sleep(0.02)
        except OSError:
            open(sys.argv[2], "w").write(str(time.time()))
""" + STANDIN_SERVE


@contextlib.contextmanager
def standin_deployment(source: str, *args: str):
    """The stand-in running and recorded as a glm4-chat-1m Q4_K deployment; killed after."""
    import subprocess
    import sys

    from registry.store import Store

    port = _free_port()
    argv = [sys.executable, "-c", source, str(port), *args]
    proc = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 30  # the stand-in listens once its interpreter is up (slow on a busy machine)
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and proc.poll() is None, "the engine stand-in did not start"
            time.sleep(0.05)
        Store().add_deployment(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K", engine="llama.cpp",
                               argv=argv, env={}, host="127.0.0.1", port=port, status="running", pid=proc.pid)
        yield port
    finally:
        proc.kill()
        proc.wait()


def test_a_client_disconnect_reaches_the_engine(tmp_path):
    mark = tmp_path / "disconnected"
    with standin_deployment(STANDIN, str(mark)):
        with InProcess() as s, httpx.Client(timeout=30) as c:
            with c.stream("POST", s.url + "/v1/chat/completions",
                          json={"model": "glm4-chat-1m:Q4_K_M", "stream": True, "messages": []}) as r:
                assert r.status_code == 200, r.read()
                got = [line for line, _ in zip(r.iter_lines(), range(6)) if line.startswith("data:")]
                assert len(got) >= 2
                gone = time.time()
            deadline = time.monotonic() + 5
            while not mark.exists():
                assert time.monotonic() < deadline, "the engine still streams 5 s after its client went"
                time.sleep(0.05)
            assert float(mark.read_text()) - gone < 3


@pytest.mark.slow
def test_auto_launch_starts_one_deployment_for_concurrent_first_requests(tiny_gguf, monkeypatch):
    _record(tiny_gguf("chatglm", "F16"))
    monkeypatch.setenv("REGISTRY_API_KEY", "serve-secret-42")  # the router's own key: not the engine's business
    try:
        with InProcess(auto_launch=True, launch_timeout=120) as s:
            def ask(i):
                with httpx.Client(timeout=180) as c:
                    r = c.post(s.url + "/v1/completions", json={"model": "glm4-chat-1m:F16", "prompt": f"hi {i}",
                                                                "max_tokens": 4, "temperature": 0})
                    return r.status_code, r.json()

            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(ask, range(4)))
            assert [code for code, _ in answers] == [200] * 4, answers
            rows = [d for d in json.loads(run_cli("ps", "--all", "--json").stdout) if d["family"] == "glm4-chat-1m"]
            assert len(rows) == 1 and rows[0]["status"] == "running" and rows[0]["quantization"] == "FP16"
            assert b"serve-secret-42" not in Path(f"/proc/{rows[0]['pid']}/environ").read_bytes()
    finally:
        run_cli("stop", "--all")


# --- the page, in headless Chromium ----------------------------------------------------------------------


def _chromium() -> str | None:
    for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.path.exists(p):
            return p
    return None


@pytest.mark.slow
def test_page_in_chromium_launch_chat_stop(tiny_gguf):
    sync = pytest.importorskip("playwright.sync_api")
    exe = _chromium()
    if exe is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    _record(tiny_gguf("chatglm", "F16"))
    try:
        with InProcess(api_key="k3y", launch_timeout=120) as s, sync.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(s.url + "/")
            page.wait_for_selector("#keybox", state="visible")  # the API answered 401: the page asks for the key
            page.fill("#key", "k3y")
            page.click("#key-save")
            page.wait_for_selector("#families tbody tr")
            names = page.locator("#families tbody tr").evaluate_all("rs => rs.map(r => r.dataset.name)")
            assert "glm4-chat-1m" in names and "glm-4.6" in names
            page.fill("#filter", "glm4-chat")
            shown = page.locator("#families tbody tr").evaluate_all("rs => rs.map(r => r.dataset.name)")
            assert shown == ["glm4-chat-1m"]
            page.fill("#filter", "")
            page.select_option("#format", "compressed-tensors")
            page.wait_for_function("() => ![...document.querySelectorAll('#families tbody tr')]"
                                   ".some(r => r.dataset.name === 'glm4-chat-1m')")
            page.select_option("#format", "")
            page.wait_for_selector("#families tbody tr[data-name='glm4-chat-1m']")

            # fit on another machine: the table and the command, no launch button
            page.click("#families tbody tr[data-name='glm4-chat-1m']")
            page.select_option("#hardware", "2xH200")
            page.wait_for_function("() => document.querySelector('#family-title').textContent.includes('2xH200')")
            row = page.locator("#builds[data-hardware='2xH200'] tbody tr[data-quant='none']")
            row.wait_for()
            assert "yes" in row.inner_text() and "--hardware 2xH200" in row.inner_text()
            assert page.locator("#builds button.launch").count() == 0

            # here: launch the tiny F16 build with a small context, chat with it, read its log, stop it
            page.select_option("#hardware", "")
            page.fill("#context", "512")
            page.press("#context", "Tab")  # leaving the field is what fires its change event
            page.wait_for_selector("#builds[data-hardware=''] tbody tr[data-quant='FP16'] code:has-text('--context 512')")
            page.locator("#builds tbody tr[data-quant='FP16'] button.launch").click()
            page.wait_for_function("() => document.querySelector('#error').textContent || [...document.querySelectorAll("
                                   "'#deployments tbody td')].some(td => td.textContent === 'glm4-chat-1m:FP16')",
                                   timeout=180_000)
            assert page.inner_text("#error") == ""
            page.wait_for_function("() => document.querySelector('#chat-model').value === 'glm4-chat-1m:FP16'")
            page.fill("#chat-input", "Hello GLM")
            page.click("#chat-send")
            page.wait_for_selector("#chat-out[data-done='1']", timeout=60_000)
            assert page.inner_text("#error") == ""
            rows = [d for d in json.loads(run_cli("ps", "--json").stdout) if d["family"] == "glm4-chat-1m"]
            assert len(rows) == 1 and "--n_ctx" in rows[0]["argv"] and "512" in rows[0]["argv"]
            page.locator(f"#deployments tbody tr[data-id='{rows[0]['id']}'] button.log").click()
            page.wait_for_selector("#log:not([hidden])")
            assert "llama" in page.inner_text("#log").lower()
            page.locator(f"#deployments tbody tr[data-id='{rows[0]['id']}'] button.stop").click()
            page.wait_for_function("() => !document.querySelector(\"#deployments tbody tr[data-id='%d']\")"
                                   % rows[0]["id"], timeout=30_000)
            browser.close()
        assert [d for d in json.loads(run_cli("ps", "--json").stdout) if d["family"] == "glm4-chat-1m"] == []
    finally:
        run_cli("stop", "--all")


def test_concurrent_requests_share_one_store_read(monkeypatch):
    import asyncio

    from registry import launcher
    from registry.serve.router import Router

    reads, real = [], launcher.ps

    def counted(*a, **kw):
        reads.append(time.monotonic())
        time.sleep(0.05)  # a read long enough for every request to arrive while it runs
        return real(*a, **kw)

    monkeypatch.setattr(launcher, "ps", counted)

    async def go():
        r = Router()
        await asyncio.gather(*(r.running() for _ in range(64)))
        assert len(reads) == 1
        await asyncio.gather(*(r.running() for _ in range(64)))  # within the second: the cached list
        assert len(reads) == 1
        # fresh: every asker gets a read that began after it asked, and they share at most two
        await asyncio.gather(*(r.running(fresh=True) for _ in range(8)))
        assert 2 <= len(reads) <= 3

    asyncio.run(go())


def test_upstream_pool_keeps_connections_and_retries_one_the_engine_closed():
    import asyncio
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from registry.serve.upstream import Pool, UpstreamError

    conns, served = [], []

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def setup(self):
            super().setup()
            conns.append(self.client_address)

        def do_GET(self):
            served.append(self.path)
            body = self.path.encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            if self.path == "/close-after":  # an engine that drops the connection once its answer is sent
                self.close_connection = True

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]

    async def get(pool, path):
        conn = await pool.send("127.0.0.1", port, "GET", path)
        while not conn.done and conn.error is None:
            await conn.wait()
        pool.release("127.0.0.1", port, conn)
        return conn.status, conn.take()

    async def go():
        pool = Pool()
        assert await get(pool, "/a") == (200, b"/a")
        assert await get(pool, "/b") == (200, b"/b")
        assert len(conns) == 1  # kept alive and reused
        assert await get(pool, "/close-after") == (200, b"/close-after")
        await asyncio.sleep(0.2)  # the engine's close reaches the pooled connection
        assert await get(pool, "/c") == (200, b"/c")  # a fresh connection, the request sent once
        assert len(conns) == 2 and served.count("/c") == 1
        pool.close()
        srv.shutdown()
        srv.server_close()
        try:
            await pool.send("127.0.0.1", port, "GET", "/")
        except UpstreamError as e:
            assert f"127.0.0.1:{port}" in str(e)
        else:
            raise AssertionError("a request to a closed port must fail with UpstreamError")

    asyncio.run(go())


# An engine stand-in whose non-streamed answer is larger than the router holds for a slow client
# (upstream.HIGH_WATER): the router must pass it on in pieces, not wait for an end it has stopped reading.
BIG = STANDIN_BASE + r"""
class H(Base):
    def do_POST(self):
        n = json.loads(self.rfile.read(int(self.headers["content-length"])))["n"]
        body = json.dumps({"object": "list", "data": [{"embedding": [i / 7 for i in range(n)]}]}).encode()
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers()
        for i in range(0, len(body), 65536):
            self.wfile.write(body[i:i + 65536])
""" + STANDIN_SERVE


def test_a_large_answer_passes_whole():
    from registry.serve.upstream import HIGH_WATER

    with standin_deployment(BIG) as port:
        n = 300_000  # about 6 MB of JSON
        with InProcess() as s, httpx.Client(timeout=60) as c:
            direct = c.post(f"http://127.0.0.1:{port}/v1/embeddings", json={"n": n, "model": "standin"})
            got = c.post(s.url + "/v1/embeddings", json={"n": n, "model": "glm4-chat-1m:Q4_K"})
        assert len(direct.content) > 4 * HIGH_WATER
        assert got.status_code == 200 and got.content == direct.content
        assert got.headers["content-length"] == direct.headers["content-length"]


# Engine stand-ins that stop answering: one before its first byte (a hung or SIGSTOPped engine), one in
# the middle of a stream.
SILENT = STANDIN_BASE + r"""
class H(Base):
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        time.sleep(3600)
""" + STANDIN_SERVE
STALLS = STANDIN_BASE + r"""
class H(Base):
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200); self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked"); self.end_headers()
        for n in range(3):
            data = ("data: " + json.dumps({"choices": [{"delta": {"content": str(n)}}]}) + "\n\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data)); self.wfile.flush()
            time.sleep(0.3)  # slower than nothing, faster than the timeout: not cut
        time.sleep(3600)
""" + STANDIN_SERVE


def test_a_silent_engine_answers_504_and_a_stalled_stream_ends(monkeypatch):
    monkeypatch.setenv("REGISTRY_UPSTREAM_TIMEOUT", "1")
    with standin_deployment(SILENT):
        dep = json.loads(run_cli("ps", "--json").stdout)[0]
        with InProcess() as s, httpx.Client(timeout=30) as c:
            t0 = time.monotonic()
            r = c.post(s.url + "/v1/chat/completions", json={"model": "glm4-chat-1m:Q4_K", "messages": []})
            waited = time.monotonic() - t0
            assert r.status_code == 504, r.text
            msg = r.json()["error"]["message"]
            assert f"deployment {dep['id']}" in msg and "glm4-chat-1m" in msg and "1 s" in msg
            assert waited < 5
    with standin_deployment(STALLS):
        # the client would give up after 60 s; the router ends the stalled stream long before (about 2 s here,
        # once 11.7 s in a full run: the bound tells the two apart, not how fast a loaded machine is)
        with InProcess() as s, httpx.Client(timeout=60) as c:
            t0 = time.monotonic()
            with c.stream("POST", s.url + "/v1/chat/completions",
                          json={"model": "glm4-chat-1m:Q4_K", "stream": True, "messages": []}) as r:
                assert r.status_code == 200
                got = []
                try:
                    for line in r.iter_lines():
                        got.append(line)
                except httpx.HTTPError:
                    pass  # an answer that broke off ends short
            assert len([g for g in got if g.startswith("data:")]) == 3
            assert time.monotonic() - t0 < 30


def test_a_bad_upstream_timeout_is_one_line(monkeypatch):
    from registry.errors import RegistryError
    from registry.serve.router import Router

    for bad in ("abc", "0", "-1", "inf", "nan"):
        monkeypatch.setenv("REGISTRY_UPSTREAM_TIMEOUT", bad)
        with pytest.raises(RegistryError) as e:
            Router()
        assert "REGISTRY_UPSTREAM_TIMEOUT" in str(e.value) and "above 0" in str(e.value)
    monkeypatch.setenv("REGISTRY_UPSTREAM_TIMEOUT", "2.5")
    assert Router().pool.timeout == 2.5
    monkeypatch.delenv("REGISTRY_UPSTREAM_TIMEOUT")
    assert Router().pool.timeout >= 120  # minutes, for a long prefill on a CPU
