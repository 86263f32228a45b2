"""registry/procs.py: a recorded process is recognised, a reused pid or a zombie is not; on both of its sides,
/proc (Linux) and psutil (where /proc is missing: macOS), both run here on real child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from registry import procs

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture(params=["proc", "psutil"])
def side(request, monkeypatch):
    monkeypatch.setattr(procs, "PROC", request.param == "proc")
    return request.param


def _wait_for(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_the_recorded_process_is_alive_and_a_changed_one_is_not(side):
    p = subprocess.Popen(SLEEP)
    try:
        me = procs.identity(p.pid)
        assert me["pid"] == p.pid and isinstance(me["start"], int) and me["cmdline"] == SLEEP
        assert procs.alive(p.pid, me["start"], me["cmdline"])
        # another process given this pid later: it started later, or runs another command
        assert not procs.alive(p.pid, me["start"] - 100, me["cmdline"])
        assert not procs.alive(p.pid, me["start"], [sys.executable, "-c", "pass"])
        p.kill()
        assert _wait_for(lambda: not procs.pid_exists(p.pid))  # a zombie until reaped: not alive
        assert os.waitpid(p.pid, os.WNOHANG)[0] == p.pid  # it was a zombie, not gone
        p.returncode = -9
        assert not procs.alive(p.pid, me["start"]) and procs.start_time(p.pid) is None and procs.cmdline(p.pid) is None
    finally:
        if p.returncode is None:
            p.kill()
            p.wait()


def test_psutil_start_time_is_the_wall_clock_start(monkeypatch):
    monkeypatch.setattr(procs, "PROC", False)
    before = time.time()
    p = subprocess.Popen(SLEEP)
    try:
        assert int(before) - 1 <= procs.start_time(p.pid) <= time.time() + 1
    finally:
        p.kill()
        p.wait()


def test_a_note_without_a_pid_finds_the_server_by_its_log_and_stops_it(tmp_path):
    """`registry launch` SIGKILLed between the spawn and noting the child's pid: the next sweep finds the
    server by the log it writes to (psutil's open files) and kills its group."""
    from registry import paths
    from registry.launching.spawns import stop_orphan_spawns

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # the registry process that wrote the note, now dead
    log = paths.logs_dir() / "server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    other_log = tmp_path / "other.log"
    with open(log, "ab") as out, open(other_log, "ab") as other:
        server = subprocess.Popen(SLEEP, stdout=out, start_new_session=True)
        bystander = subprocess.Popen(SLEEP, stdout=other, start_new_session=True)
    try:
        assert procs.writing_to(str(log)) == [server.pid]
        note = paths.logs_dir() / f".spawn-{gone.pid}-server.json"
        note.write_text(json.dumps({"registry": {"pid": gone.pid, "start": None}, "log": str(log)}))
        assert stop_orphan_spawns() == [server.pid]
        assert server.wait(timeout=10) == -9 and not note.exists()
        assert bystander.poll() is None
    finally:
        for p in (server, bystander):
            p.kill()
            p.wait()
