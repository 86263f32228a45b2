"""The store on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from registry.errors import NotFoundError, StoreError
from registry.store import Store


def test_user_family_round_trip(db_url):
    s = Store(db_url)
    s.register_family("mine", {"name": "mine", "x": [1, 2]}, "/some/file.yaml")
    with pytest.raises(StoreError, match="already registered"):
        s.register_family("mine", {"name": "mine"})
    rows = s.user_families()
    assert [(r.name, r.body["x"], r.source_path) for r in rows] == [("mine", [1, 2], "/some/file.yaml")]
    s.unregister_family("mine")
    assert s.user_families() == []
    with pytest.raises(NotFoundError, match="unknown user family 'mine'"):
        s.unregister_family("mine")


def test_artifacts_and_deployments(db_url):
    s = Store(db_url)
    big = 5 * 2**40  # 5 TiB: sizes need 64-bit columns
    a = s.add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K_M", path="/x/a.gguf",
                       sha256="ab" * 32, size_bytes=big, parent="THUDM/glm-4-9b-chat-1m",
                       recipe={"tool": "glm-registry", "quant": "Q4_K_M"})
    assert a.id is not None
    got = s.artifacts(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K_M")
    assert [(g.size_bytes, g.recipe["quant"], g.created is not None) for g in got] == [(big, "Q4_K_M", True)]
    # Recording the same path again replaces the row's facts instead of duplicating it, keeping its id
    # so that a deployment which served the earlier build still points at it (a foreign key).
    dep = s.add_deployment(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K_M", engine="llama.cpp",
                           argv=["x"], port=1, artifact_id=a.id)
    b = s.add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K_M", path="/x/a.gguf",
                       sha256="cd" * 32, size_bytes=1)
    assert b.id == a.id and b.recipe is None
    assert [g.sha256 for g in s.artifacts()] == ["cd" * 32]
    assert s.deployments(family="glm4-chat-1m")[0].artifact_id == a.id
    s.update_deployment(dep.id, status="stopped")

    d = s.add_deployment(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K_M", engine="llama.cpp",
                         argv=["python", "-m", "llama_cpp.server"], port=8123, pid=4242, log_path="/x/log")
    assert d.status == "starting"
    s.update_deployment(d.id, status="running")
    assert [(x.engine, x.argv[-1], x.status) for x in s.deployments(status="running")] == [
        ("llama.cpp", "llama_cpp.server", "running")]
    with pytest.raises(NotFoundError):
        s.update_deployment(99999, status="stopped")



def test_a_stop_is_not_overwritten_by_a_ps_that_looked_before_it(db_url):
    """`ps` (or a serve's check) finds a deployment's process gone and marks it 'exited'; a `registry stop` that
    wrote 'stopped' after that reader looked keeps its word: the mark applies to a starting or running row only."""
    import datetime as dt

    s = Store(db_url)
    d = s.add_deployment(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K_M", engine="llama.cpp",
                         argv=["x"], port=8124, pid=4243, status="running")
    looked = s.deployments(status="running")  # the reader saw it running and its process gone ...
    assert [x.id for x in looked] == [d.id]
    s.update_deployment(d.id, status="stopped", stopped=dt.datetime.now(dt.timezone.utc))  # ... then the stop wrote
    after = s.mark_exited(d.id, dt.datetime.now(dt.timezone.utc))
    assert after.status == "stopped" and [x.status for x in s.deployments()] == ["stopped"]
    # a row still running when the mark is written: exited, with the time
    e = s.add_deployment(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K_M", engine="llama.cpp",
                         argv=["x"], port=8125, pid=4244, status="running")
    gone = s.mark_exited(e.id, dt.datetime.now(dt.timezone.utc))
    assert gone.status == "exited" and gone.stopped is not None
    with pytest.raises(NotFoundError):
        s.mark_exited(99999, dt.datetime.now(dt.timezone.utc))

WORKER = textwrap.dedent(
    """
    import sys
    from registry.store import Store
    url, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    s = Store(url)
    for i in range(n):
        s.add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K_M",
                       path=f"/w{worker}/a{i}.gguf", sha256=f"{worker:032d}{i:032d}", size_bytes=i)
    print("done", worker)
    """
)


def test_eight_processes_lose_nothing(db_url):
    """8 processes registering artifacts at the same moment, on a database none has created yet."""
    n = 25
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, db_url, str(w), str(n)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(8)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    rows = Store(db_url).artifacts()
    assert len(rows) == 8 * n
    assert {r.path for r in rows} == {f"/w{w}/a{i}.gguf" for w in range(8) for i in range(n)}


def test_sqlite_uses_wal(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    s = Store(url)
    with s.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000


def test_bad_database_url_is_a_clear_error():
    with pytest.raises(StoreError, match="cannot open database"):
        Store("postgresql://nobody@127.0.0.1:1/none")


def test_registry_home_moves_state(tmp_path, monkeypatch):
    from registry import paths

    monkeypatch.setenv("REGISTRY_HOME", str(tmp_path / "elsewhere"))
    assert paths.database_url() == f"sqlite:///{tmp_path / 'elsewhere' / 'registry.db'}"
    Store().add_artifact(family="f", format="ggufv2", quantization="Q8_0", path="/p", sha256="0" * 64, size_bytes=1)
    assert (tmp_path / "elsewhere" / "registry.db").exists()


def test_stdlib_read_path_gives_the_store_rows(registry_home, monkeypatch):
    # registry.sqlite_read answers the launcher's artifact look-up without SQLAlchemy: same rows, same fields.
    from dataclasses import asdict, fields

    from registry import sqlite_read
    from registry.store import Artifact

    assert [f.name for f in fields(sqlite_read.ArtifactRow)] == list(sqlite_read.COLUMNS)
    assert set(sqlite_read.COLUMNS) == set(Artifact.model_fields)
    assert sqlite_read.artifacts("glm4-chat-1m", "ggufv2") == []  # no database yet: none created either
    assert not (registry_home / "registry.db").exists()
    s = Store()
    for fam, fmt, path in [("glm4-chat-1m", "ggufv2", "/x/a.gguf"), ("glm-4.6", "ggufv2", "/x/b.gguf"),
                           ("glm4-chat-1m", "pytorch", "/x/c"), ("glm4-chat-1m", "ggufv2", "/x/d.gguf")]:
        s.add_artifact(family=fam, format=fmt, quantization="Q4_K_M", path=path, sha256="ab" * 32,
                       size_bytes=5 * 2**40, parent="THUDM/glm-4-9b-chat-1m",
                       recipe={"quant": "Q4_K_M", "from": "F16"}, report={"kl": [0.1, 0.2]})
    got = sqlite_read.artifacts("glm4-chat-1m", "ggufv2")
    want = s.artifacts(family="glm4-chat-1m", format="ggufv2")
    assert [g.path for g in got] == ["/x/a.gguf", "/x/d.gguf"]
    assert [asdict(g) for g in got] == [w.model_dump() for w in want]
    # Another database: the Store answers, not this module.
    monkeypatch.setenv("REGISTRY_DATABASE_URL", f"sqlite:///{registry_home / 'other.db'}")
    assert sqlite_read.artifacts("glm4-chat-1m", "ggufv2") is None


def test_stdlib_write_path_records_what_the_store_reads_as_its_own(registry_home, monkeypatch):
    # registry.sqlite_write records a build without SQLAlchemy: the Store reads its rows as it reads its own.
    import sqlite3

    from registry import sqlite_write

    fields = dict(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K_M", sha256="ab" * 32,
                  size_bytes=5 * 2**40, parent="THUDM/glm-4-9b-chat-1m", recipe={"quant": "Q4_K_M", "n": [1, 2.5]})
    assert sqlite_write.add_artifact(path="/x/a.gguf", **fields) is None  # no database yet: the Store makes it
    assert not (registry_home / "registry.db").exists()
    s = Store()
    theirs = s.add_artifact(path="/x/b.gguf", **fields)
    mine = sqlite_write.add_artifact(path="/x/a.gguf", **fields)
    assert mine == theirs.id + 1
    a, b = sorted(s.artifacts(family="glm4-chat-1m"), key=lambda r: r.path)
    assert a.id == mine
    skip = {"id", "path", "created"}
    assert a.model_dump(exclude=skip) == b.model_dump(exclude=skip)
    assert a.report is None and a.missing_since is None and a.node == b.node
    assert abs((a.created - b.created).total_seconds()) < 60 and a.created.tzinfo is not None
    raw = sqlite3.connect(registry_home / "registry.db").execute(
        "SELECT recipe, report, created FROM artifact ORDER BY id").fetchall()
    assert [r[1] for r in raw] == ["null", "null"] and len(raw[0][2]) == len(raw[1][2])
    # The same path again replaces the row in place: the id stays, as the Store does it.
    s.mark_artifact_missing(mine)
    assert sqlite_write.add_artifact(path="/x/a.gguf", **{**fields, "quantization": "Q8_0"}) == mine
    again = s.artifact_at("/x/a.gguf")
    assert (again.id, again.quantization, again.missing_since) == (mine, "Q8_0", None)
    assert len(s.artifacts()) == 2
    # A table of an older version (a column missing): the Store migrates it, this module leaves it alone.
    con = sqlite3.connect(registry_home / "registry.db")
    con.execute("ALTER TABLE artifact DROP COLUMN missing_since")
    con.commit()
    con.close()
    assert sqlite_write.add_artifact(path="/x/c.gguf", **fields) is None
    # Another database: the Store writes, not this module.
    monkeypatch.setenv("REGISTRY_DATABASE_URL", f"sqlite:///{registry_home / 'other.db'}")
    assert sqlite_write.add_artifact(path="/x/d.gguf", **fields) is None


@pytest.mark.parametrize("column, value", [("recipe", "{bad"), ("report", "[1,"), ("created", "not a date"),
                                           ("missing_since", "2024-13-45")])
def test_a_damaged_artifact_row_is_one_line_naming_it_and_rm_removes_it(registry_home, column, value):
    import sqlite3

    from conftest import run_cli

    good = Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K",
                                path=str(registry_home / "good.gguf"), sha256="0" * 64, size_bytes=1)
    bad = Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="FP16",
                               path=str(registry_home / "bad.gguf"), sha256="0" * 64, size_bytes=1)
    with sqlite3.connect(registry_home / "registry.db") as con:
        con.execute(f"UPDATE artifact SET {column} = ? WHERE id = ?", (value, bad.id))
    for args in (("show", "glm4-chat-1m", "--artifacts"), ("show", "glm4-chat-1m", "--artifacts", "--json"),
                 ("launch", "glm4-chat-1m", "--format", "ggufv2", "--quant", "FP16", "--dry-run"),
                 ("verify", "glm4-chat-1m:FP16")):
        r = run_cli(*args)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (args, r.stderr)
        line = r.stderr.strip()
        assert "\n" not in line and f"artifact row {bad.id}" in line and column in line, (args, line)
        assert f"registry rm {bad.id}" in line
    if column == "recipe":  # the REST API says the same, as a 400
        import json
        import socket
        import threading
        import time
        import urllib.error
        import urllib.request

        uvicorn = pytest.importorskip("uvicorn")
        from registry.serve.app import create_app

        with socket.socket() as sck:
            sck.bind(("127.0.0.1", 0))
            port = sck.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
        t = threading.Thread(target=server.run, daemon=True)
        t.start()
        try:
            while not server.started:
                time.sleep(0.02)
            for path in ("/api/artifacts", "/api/families/glm4-chat-1m?artifacts=true"):
                with pytest.raises(urllib.error.HTTPError) as e:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30)
                body = json.loads(e.value.read())
                assert e.value.code == 400 and f"registry rm {bad.id}" in body["error"]["message"], path
        finally:
            server.should_exit = True
            t.join(10)
    r = run_cli("rm", str(bad.id), "--yes")
    assert r.returncode == 0, r.stderr
    assert [a.id for a in Store().artifacts()] == [good.id]
    assert run_cli("show", "glm4-chat-1m", "--artifacts").returncode == 0


def test_a_damaged_deployment_row_is_one_line_naming_it(registry_home):
    import sqlite3

    from conftest import run_cli

    dep = Store().add_deployment(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K", engine="llama.cpp",
                                 argv=["x"], env={}, host="127.0.0.1", port=1, status="stopped")
    with sqlite3.connect(registry_home / "registry.db") as con:
        con.execute("UPDATE deployment SET argv = '[\"x\"' WHERE id = ?", (dep.id,))
    for args in (("ps",), ("ps", "--all", "--json"), ("stop", "--all")):
        r = run_cli(*args)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (args, r.stderr)
        assert f"deployment row {dep.id}" in r.stderr and "argv" in r.stderr and "DELETE FROM deployment" in r.stderr
