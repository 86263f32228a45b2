"""`registry serve` as daily users meet it: answers named as asked, embeddings refused with the reason,
idle auto-launched deployments stopped (--keep-alive), the page's panel of local builds."""

from __future__ import annotations

import json
import time

import pytest

from conftest import run_cli

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from test_serve import STANDIN_BASE, STANDIN_SERVE, InProcess, _launch_tiny, _record, _sse, _stream_text  # noqa: E402


@pytest.mark.slow
def test_answers_carry_the_name_asked_and_embeddings_say_why_not(tiny_gguf):
    dep = _launch_tiny(tiny_gguf)
    try:
        with InProcess() as s, httpx.Client(timeout=120) as c:
            v1 = s.url + "/v1"
            body = {"messages": [{"role": "user", "content": "Hello GLM"}], "max_tokens": 6, "temperature": 0}
            for name in ("glm4-chat-1m:F16", "GLM4-chat-1m:fp16", "glm4-chat-1m", str(dep["id"])):
                r = c.post(v1 + "/chat/completions", json={**body, "model": name})
                assert r.status_code == 200 and r.json()["model"] == name, (name, r.text)
            r = c.post(v1 + "/completions", json={"prompt": "hi", "max_tokens": 4, "model": "glm4-chat-1m:F16"})
            assert r.json()["model"] == "glm4-chat-1m:F16"
            with c.stream("POST", v1 + "/chat/completions",
                          json={**body, "stream": True, "max_tokens": 8, "model": "glm4-chat-1m:F16"}) as r:
                events = _sse(r.iter_lines())
            assert len(events) > 2 and {e["model"] for e in events} == {"glm4-chat-1m:F16"}
            assert _stream_text(events)

            r = c.post(v1 + "/embeddings", json={"input": "hi", "model": "glm4-chat-1m:F16"})
            msg = r.json()["error"]["message"]
            assert r.status_code == 400 and "without --embedding" in msg and "--embedding True" in msg, r.text
            assert "Traceback" not in msg
    finally:
        run_cli("stop", "--all")


# The model field split across reads, compact and spaced, and a name inside a message left alone.
SPLIT = STANDIN_BASE + r"""
class H(Base):
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200); self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked"); self.end_headers()
        ev = [b'data: {"model":"standin","choices":[{"delta":{"content":"\\"model\\":\\"standin\\""}}]}\n\n',
              b'data: {"id": 1, "model": "standin", "choices": [{"delta": {"content": "x"}}]}\n\n']
        raw = b"".join(ev * 3) + b"data: [DONE]\n\n"
        for cut in (9, 14, 20, 110, 115, 140, 190, 230, 231, 300, len(raw)):
            piece, raw = raw[:cut], raw[cut:]
            if piece:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece)); self.wfile.flush(); time.sleep(0.03)
        if raw:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
        self.wfile.write(b"0\r\n\r\n"); self.wfile.flush()
""" + STANDIN_SERVE


def test_the_model_field_split_across_reads_is_renamed():
    from test_serve import standin_deployment

    with standin_deployment(SPLIT), InProcess() as s, httpx.Client(timeout=30) as c:
        with c.stream("POST", s.url + "/v1/chat/completions",
                      json={"model": "glm4-chat-1m:Q4_K", "stream": True, "messages": []}) as r:
            raw = r.read().decode()
    events = _sse(raw.splitlines())
    assert len(events) == 6 and all(e["model"] == "glm4-chat-1m:Q4_K" for e in events), raw
    assert events[0]["choices"][0]["delta"]["content"] == '"model":"standin"'  # content is not rewritten
    assert raw.rstrip().endswith("data: [DONE]")


# A non-streamed answer that arrives in pieces: renamed, whole, with its new length declared.
PIECES = STANDIN_BASE + r"""
class H(Base):
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        body = json.dumps({"object": "list", "data": [{"embedding": [i / 7 for i in range(50000)]}],
                           "model": "standin", "usage": {"prompt_tokens": 1}}).encode()
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers()
        for i in range(0, len(body), 65536):
            self.wfile.write(body[i:i + 65536]); self.wfile.flush(); time.sleep(0.01)
""" + STANDIN_SERVE


def test_a_renamed_answer_in_pieces_goes_out_whole_with_its_length():
    from test_serve import standin_deployment

    with standin_deployment(PIECES), InProcess() as s, httpx.Client(timeout=30) as c:
        r = c.post(s.url + "/v1/embeddings", json={"model": "glm4-chat-1m:Q4_K", "input": "x"})
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)
    got = r.json()
    assert got["model"] == "glm4-chat-1m:Q4_K" and len(got["data"][0]["embedding"]) == 50000


# --- --keep-alive -----------------------------------------------------------------------------------------


def test_keep_alive_values_are_read_as_ollama_users_write_them():
    from registry.serve.idle import parse_keep_alive

    assert [parse_keep_alive(v) for v in ("30m", "5m", "1h", "1h30m", "90", "0", "2.5s", "never", "-1")] == [
        1800, 300, 3600, 5400, 90, 0, 2.5, None, None]
    for bad in ("5x", "m", "soon", "nan"):
        r = run_cli("serve", "--auto-launch", "--keep-alive", bad)
        assert r.returncode == 1 and "--keep-alive" in r.stderr and "5m" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("serve", "--keep-alive", "5m")
    assert r.returncode == 1 and "--auto-launch" in r.stderr
    assert json.loads(run_cli("ps", "--all", "--json").stdout) == []  # nothing started


@pytest.mark.slow
def test_serve_stops_what_it_auto_launched_once_idle_for_keep_alive(tiny_gguf):
    from test_serve import STANDIN, _free_port, standin_deployment

    _record(tiny_gguf("chatglm", "F16"))
    port = _free_port()
    with standin_deployment(STANDIN, "/dev/null"):  # started by hand (as by `registry launch`): never stopped
        r = run_cli("serve", "--auto-launch", "--keep-alive", "2s", "--port", str(port), "--json")
        assert r.returncode == 0, r.stderr
        try:
            assert "--keep-alive" in json.loads(r.stdout)["argv"]

            def mine():
                return [d for d in json.loads(run_cli("ps", "--all", "--json").stdout)
                        if d["family"] == "glm4-chat-1m" and d["quantization"] == "FP16"]

            v1 = f"http://127.0.0.1:{port}/v1"
            ask = {"model": "glm4-chat-1m:F16", "prompt": "hi", "max_tokens": 4, "temperature": 0}
            with httpx.Client(timeout=180) as c:
                assert c.post(v1 + "/completions", json=ask).status_code == 200
                first = mine()
                assert [d["status"] for d in first] == ["running"]
                # answers keep it alive: each one starts the idle time again. 3 s from the first answer
                # is past the 2 s keep-alive and its check (every 0.5 s); each gap is 1 s short of it.
                kept = time.monotonic()
                for _ in range(3):
                    time.sleep(1.0)
                    assert c.post(v1 + "/completions", json=ask).status_code == 200
                assert time.monotonic() - kept > 2 + 0.5
                assert [d["status"] for d in mine()] == ["running"]
                deadline = time.monotonic() + 30
                while mine()[0]["status"] == "running":
                    assert time.monotonic() < deadline, "the idle deployment still runs 30 s after its keep-alive"
                    time.sleep(0.2)
                assert mine()[0]["status"] == "stopped"
                from registry.launcher import _alive

                assert not _alive(first[0]["pid"])
                by_hand = [d for d in json.loads(run_cli("ps", "--json").stdout) if d["quantization"] == "Q4_K"]
                assert len(by_hand) == 1 and by_hand[0]["status"] == "running"
                # the next request starts it again
                assert c.post(v1 + "/completions", json=ask).status_code == 200
                assert [d["status"] for d in mine()] == ["stopped", "running"]
            log = run_cli("logs", "registry-serve").stdout
            assert "keep-alive: stopped glm4-chat-1m:FP16" in log
        finally:
            run_cli("stop", "--all")


# --- the page's local builds ------------------------------------------------------------------------------


@pytest.mark.slow
def test_page_lists_the_local_builds_as_registry_ls_does(tmp_path):
    sync = pytest.importorskip("playwright.sync_api")
    from test_serve import _chromium

    exe = _chromium()
    if exe is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    from registry.store import Store

    for fam, quant, n in (("glm4-chat-1m", "F16", 3_000_000_000), ("glm-4-9b-0414", "Q4_K_M", 500)):
        f = tmp_path / f"{fam}.{quant}.gguf"
        f.write_bytes(b"GGUF" + b"\0" * 100)
        Store().add_artifact(family=fam, format="ggufv2", quantization=quant, path=str(f), sha256="0" * 64,
                             size_bytes=n)
    ls = json.loads(run_cli("ls", "--json").stdout)
    with InProcess(api_key="k3y") as s, sync.sync_playwright() as pw:
        assert httpx.get(s.url + "/api/builds", headers={"X-API-Key": "k3y"}).json() == ls
        assert httpx.get(s.url + "/api/builds").status_code == 401
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(s.url + "/")
        page.wait_for_selector("#keybox", state="visible")
        page.fill("#key", "k3y")
        page.click("#key-save")
        page.wait_for_selector("#local-builds tbody tr[data-tag]")
        tags = page.locator("#local-builds tbody tr").evaluate_all("rs => rs.map(r => r.dataset.tag)")
        assert tags == [b["tag"] for b in ls] == ["glm4-chat-1m:FP16", "glm-4-9b-0414:Q4_K_M"]
        row = page.inner_text("#local-builds tbody tr[data-tag='glm4-chat-1m:FP16']")
        assert "ggufv2" in row and "3.0 GB" in row and "glm4-chat-1m.F16.gguf" in row
        page.click("#local-builds tbody tr[data-tag='glm4-chat-1m:FP16']")  # its family's builds and fit
        page.wait_for_function("() => document.querySelector('#family-title').textContent.includes('glm4-chat-1m')")
        browser.close()


def test_the_builds_route_answers_an_empty_home():
    with InProcess() as s:
        assert httpx.get(s.url + "/api/builds").json() == []
