"""Nothing waits for ever (issue 17, point 6): a hub that accepts and never answers, a download that
stalls, and launch timeouts that are not a positive number. Spec files that are devices or FIFOs, and
alias bombs, are in tests/test_bad_specs.py.

Kinds covered: 7 (a hub listing that never answers, a file download that never answers,
REGISTRY_HUB_TIMEOUT not a positive number (0, -1, nan, inf, a word), --timeout nan, inf, 0 or
negative, --host an unresolvable name, an address of another machine, a malformed IP).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from conftest import run_cli


@pytest.fixture
def silent_endpoint():
    """A TCP server that accepts every connection and never sends a byte."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


def test_pull_from_a_hub_that_never_answers_ends_at_the_timeout(silent_endpoint, tmp_path):
    env = {"HF_ENDPOINT": silent_endpoint, "HF_HUB_CACHE": str(tmp_path / "hf"), "REGISTRY_HUB_TIMEOUT": "1",
           "NO_PROXY": "127.0.0.1", "HF_HUB_OFFLINE": "0"}
    t0 = time.monotonic()
    r = run_cli("pull", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", env=env)
    took = time.monotonic() - t0
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "did not answer within 1 s" in r.stderr and "REGISTRY_HUB_TIMEOUT" in r.stderr
    assert took < 30, took  # interpreter start + one 1 s timeout; it hung past 180 s before


def test_a_download_that_stalls_ends_at_the_timeout(hub_server, monkeypatch):
    from registry.catalog import load
    from registry.hub import HubError, pull

    r = load(include_user=False).resolve("glm4-chat-1m", "ggufv2", "Q4_K")
    src = r.hubs["huggingface"]
    hub_server.add(src.model_id, {src.files[0]: b"GGUF" + b"\0" * 4096})
    gate = threading.Event()  # never set while pull runs: the GET waits, sending nothing
    hub_server.hold[src.files[0]] = gate
    monkeypatch.setenv("REGISTRY_HUB_TIMEOUT", "1")
    t0 = time.monotonic()
    try:
        with pytest.raises(HubError, match=r"did not answer within 1 s while sending .*pull again to resume"):
            pull(r, say=lambda *a, **k: None)
    finally:
        gate.set()
    # The timeout bounds the whole stall: huggingface_hub's own 5 retries of a timed-out read, 1 s apart,
    # made this 11 s while the message said 1 s.
    assert time.monotonic() - t0 < 6


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_hub_timeout_must_be_a_positive_number(value, monkeypatch):
    from registry.hub import HubError
    from registry.hub.timeouts import hub_timeout

    monkeypatch.setenv("REGISTRY_HUB_TIMEOUT", value)
    with pytest.raises(HubError, match="REGISTRY_HUB_TIMEOUT.*positive number"):
        hub_timeout()


@pytest.mark.parametrize("value", ["nan", "0", "-5", "inf"])
def test_launch_timeout_must_be_positive_and_finite(value, tmp_path):
    t0 = time.monotonic()
    r = run_cli("launch", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", "--timeout", value)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "--timeout" in r.stderr and "positive" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("host, words", [("no-such-host.invalid", "is not a valid address"),
                                         ("203.0.113.7", "is not an address of this machine"),
                                         ("999.1.1.1", "is not a valid address")])
def test_invalid_host_is_named_not_a_port_in_use(host, words):
    """issue 17 point 9: an invalid --host said 'port 8080 in use'."""
    r = run_cli("launch", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", "--host", host, "--dry-run")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert words in r.stderr and "in use" not in r.stderr, r.stderr
