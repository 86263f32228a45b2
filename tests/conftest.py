"""Shared fixtures: an isolated REGISTRY_HOME per test, the CLI as a subprocess, a real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "registry" / "specs"

# One OpenMP thread per process (this one, the CLI runs it starts), unless the caller chose. The tiny
# models' torch ops take microseconds: with two threads each, every op waits at a barrier for the
# other thread, which on a machine running other work (xdist workers, a second test run) waits for a
# time slice; an AWQ build of the tiny MoE took 63-67 s so beside one busy process, and 3 s with one
# thread. Engines the tests start set their own thread counts (llama.cpp -t, vLLM's CPU binding).
os.environ.setdefault("OMP_NUM_THREADS", "1")



def pytest_sessionstart(session) -> None:
    """The checkout's modules byte-compiled once, before any test (in the controller, before xdist's workers
    start): the tests start `python -m registry` hundreds of times, and where PYTHONDONTWRITEBYTECODE is set
    (as on some CI machines) or the clone is fresh, each of them compiled the modules it imports again
    (0.05-0.15 s a command). An edit later is still seen: Python checks each .pyc against its source."""
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller did it
    import compileall

    for d in ("registry", "converters"):
        compileall.compile_dir(ROOT / d, quiet=1, workers=1)


pytest_plugins = [
    "fixtures.hubserver",
    "fixtures.tiny",
    "fixtures.gguf",
]


@pytest.fixture(autouse=True)
def registry_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("REGISTRY_HOME", str(home))
    monkeypatch.delenv("REGISTRY_DATABASE_URL", raising=False)
    monkeypatch.delenv("REGISTRY_SPECS_DIR", raising=False)
    return home


def run_cli(*args: str, env: dict | None = None, input: str | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """`registry ARGS` in a fresh interpreter, as a user runs it. The timeout only guards against a hang: a
    build that calibrates with torch takes seconds alone and minutes beside other workers' tests."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "registry", *args],
        capture_output=True, text=True, env=full_env, input=input, timeout=timeout, cwd=ROOT,
    )


@pytest.fixture
def cli():
    return run_cli


# --- PostgreSQL ----------------------------------------------------------------------------


def _pg_bin() -> Path | None:
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server from Debian's packages, started for this test session.

    REGISTRY_TEST_POSTGRES_URL points at an existing server instead. In CI a missing server is a
    failure, not a skip: the store must be proven on PostgreSQL there.
    """
    url = os.environ.get("REGISTRY_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    bindir = _pg_bin()
    if bindir is None:
        msg = "PostgreSQL binaries not found (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    # initdb refuses to run as root: run the server as Debian's 'postgres' user.
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="glmreg-pg-"))
    data = base / "data"
    if as_user:
        shutil.chown(base, "postgres", "postgres")
    port = _free_port()
    subprocess.run(as_user + [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                              "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
    log = base / "server.log"
    subprocess.run(
        as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                   "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
                   "start"],
        check=True, capture_output=True,
    )
    try:
        dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        import psycopg

        for _ in range(50):
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute("CREATE DATABASE registry_test")
                break
            except psycopg.OperationalError:
                time.sleep(0.2)
        yield f"postgresql://postgres@127.0.0.1:{port}/registry_test"
    finally:
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """Each store test runs against SQLite and against the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    base = request.getfixturevalue("postgres_url")
    # A fresh database per test keeps tests independent.
    import psycopg

    name = f"t_{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**8}"
    admin = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + f"/{name}"
