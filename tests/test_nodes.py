"""A team's registry: several machines (nodes) share one store. The migration of a store written before
nodes existed, each node acting only on its own rows, and two nodes on this machine sharing one real
PostgreSQL, one routing a streamed chat to the other's deployment."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import run_cli

OLD = Path(__file__).parent / "data" / "store_before_nodes"


def _fresh_pg(base: str, name: str) -> str:
    import psycopg

    admin = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + f"/{name}"


def _old_store(kind: str, tmp_path, request) -> str:
    """A database as the release before nodes left it: its schema's SQL and a few rows."""
    sql = (OLD / f"{kind}.sql").read_text()
    if kind == "sqlite":
        import sqlite3

        db = tmp_path / "old.db"
        con = sqlite3.connect(db)
        con.executescript(sql)
        con.close()
        return f"sqlite:///{db}"
    import psycopg

    url = _fresh_pg(request.getfixturevalue("postgres_url"), f"old_{os.getpid()}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)
    return url


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_store_from_before_nodes_migrates_without_losing_a_row(kind, tmp_path, request, monkeypatch):
    from registry import store as store_mod
    from registry.store import Store

    url = _old_store(kind, tmp_path, request)
    monkeypatch.setenv("REGISTRY_NODE", "old-box")
    s = Store(url)
    try:
        arts = s.artifacts()
        assert [(a.id, a.family, a.path, a.node) for a in arts] == [
            (1, "glm4-chat-1m", "/data/glm4-chat-1m-Q4_K_M.gguf", "old-box"), (2, "glm-4.6", "/data/glm-4.6", "old-box")]
        assert arts[0].recipe == {"quant": "Q4_K_M", "from": "F16"} and arts[0].report == {"kl_divergence": 0.01}
        assert arts[0].size_bytes == 6254000000 and arts[1].size_bytes == 5497558138880
        assert arts[0].missing_since is None and arts[1].missing_since is not None
        deps = s.deployments()
        assert [(d.id, d.family, d.status, d.artifact_id, d.node, d.seen) for d in deps] == [
            (1, "glm4-chat-1m", "stopped", 1, "old-box", None), (2, "glm-4.6", "failed", 2, "old-box", None)]
        assert deps[1].env == {"VLLM_X": "1"} and deps[1].process["pid"] == 4343
        assert [f.name for f in s.user_families()] == ["my-glm"]
        # the store works on: new rows take their node, ids go on after the old ones
        monkeypatch.setenv("REGISTRY_NODE", "new-box")
        s2 = Store(url)
        a = s2.add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="Q8_0", path="/data/q8.gguf",
                            sha256="0" * 64, size_bytes=1)
        assert a.id == 3 and a.node == "new-box"
        d = s2.add_deployment(family="glm4-chat-1m", format="ggufv2", quantization="Q8_0", engine="llama.cpp",
                              argv=["x"], port=1, artifact_id=a.id)
        assert d.id == 3 and d.node == "new-box"
        s2.heartbeat("http://10.0.0.2:9997", "1.0")
        assert [(n.name, n.url) for n in s2.nodes()] == [("new-box", "http://10.0.0.2:9997")]
        if kind == "postgresql":
            # shared by several machines: a path is unique per node, not across the store
            b = s2.add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K_M",
                                path="/data/glm4-chat-1m-Q4_K_M.gguf", sha256="1" * 64, size_bytes=2)
            assert b.id == 4 and b.node == "new-box"
            assert s2.artifact_at("/data/glm4-chat-1m-Q4_K_M.gguf").id == 4
            assert Store(url).artifacts()[0].sha256 == "ab" * 32  # the old node's row is untouched
        # opening it again changes nothing
        store_mod._engines.clear()
        assert len(Store(url).artifacts()) == (4 if kind == "postgresql" else 3)
    finally:
        for e in store_mod._engines.values():
            e.dispose()
        store_mod._engines.clear()


def test_a_bad_node_name_is_refused_before_anything_is_written(registry_home):
    from registry.store import Store

    Store().heartbeat(None, None)  # a store to open
    r = run_cli("ps", env={"REGISTRY_NODE": "my box"})
    assert r.returncode == 1 and "REGISTRY_NODE='my box' is not a node name" in r.stderr
    assert "Traceback" not in r.stderr


def _gone_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_each_node_acts_only_on_its_own_rows(registry_home, tmp_path, monkeypatch):
    """alpha's rows in the store beta uses: beta shows them and refuses to act on them, naming alpha."""
    from registry.store import Store

    gguf = tmp_path / "alpha-build.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    monkeypatch.setenv("REGISTRY_NODE", "alpha")
    s = Store()
    art = s.add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="FP16", path=str(gguf),
                         sha256="0" * 64, size_bytes=64)
    dead = _gone_pid()  # no such process here: a local pid check would call alpha's server exited
    dep = s.add_deployment(family="glm4-chat-1m", format="ggufv2", quantization="FP16", engine="llama.cpp",
                           argv=["llama-server"], port=8080, pid=dead, status="running", artifact_id=art.id,
                           log_path=str(tmp_path / "alpha.log"))
    beta = {"REGISTRY_NODE": "beta"}
    for _ in range(2):
        rows = json.loads(run_cli("ps", "--json", env=beta).stdout)
        assert [(d["id"], d["node"], d["status"]) for d in rows] == [(dep.id, "alpha", "running")]
    assert json.loads(run_cli("ps", "--json", "--node", "beta", env=beta).stdout) == []
    assert [d["id"] for d in json.loads(run_cli("ps", "--json", "--node", "alpha", env=beta).stdout)] == [dep.id]
    table = run_cli("ps", env=beta).stdout
    assert "alpha" in table and "node" in table

    for args, cmd in [(("stop", str(dep.id)), f"registry stop {dep.id}"),
                      (("stop", "glm4-chat-1m"), f"registry stop {dep.id}"),
                      (("logs", str(dep.id)), f"registry logs {dep.id}"),
                      (("rm", str(art.id), "--yes"), f"registry rm {art.id}"),
                      (("rm", "glm4-chat-1m:FP16", "--yes"), "registry rm glm4-chat-1m --format ggufv2 --quant FP16"),
                      (("verify", "glm4-chat-1m:FP16"), "registry verify glm4-chat-1m --format ggufv2 --quant FP16")]:
        r = run_cli(*args, env=beta)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "node alpha" in r.stderr and f"run `{cmd}`" in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    r = run_cli("stop", "--all", env=beta)
    assert r.returncode == 0 and "nothing running" in r.stdout
    assert gguf.exists()
    shown = json.loads(run_cli("show", "glm4-chat-1m", "--artifacts", "--json", env=beta).stdout)["artifacts"]
    assert [(a["id"], a["node"]) for a in shown] == [(art.id, "alpha")]
    assert json.loads(run_cli("show", "glm4-chat-1m", "--artifacts", "--node", "beta", "--json",
                              env=beta).stdout)["artifacts"] == []
    # nothing beta did changed alpha's rows
    (d,) = Store().deployments()
    assert (d.status, d.stopped) == ("running", None)
    assert [a.id for a in Store().artifacts()] == [art.id]
    # alpha itself checks its own process: gone, so exited
    rows = json.loads(run_cli("ps", "--all", "--json", env={"REGISTRY_NODE": "alpha"}).stdout)
    assert [(d["id"], d["status"]) for d in rows] == [(dep.id, "exited")]


def test_one_machine_store_is_all_this_machines_whatever_its_host_name(registry_home, tmp_path, monkeypatch):
    """SQLite without REGISTRY_NODE: rows take the host name, and rows a former host name wrote stay this
    machine's (checked, stopped, removed here), as before nodes existed."""
    import socket

    from registry.store import Store

    monkeypatch.delenv("REGISTRY_NODE", raising=False)
    a = Store().add_artifact(family="f", format="ggufv2", quantization="Q8_0", path="/p", sha256="0" * 64,
                             size_bytes=1)
    assert a.node == socket.gethostname().split(".")[0]
    gguf = tmp_path / "old.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    monkeypatch.setenv("REGISTRY_NODE", "laptop-at-home")  # the name this machine had then
    s = Store()
    old = s.add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="FP16", path=str(gguf),
                         sha256="0" * 64, size_bytes=64)
    dep = s.add_deployment(family="glm4-chat-1m", format="ggufv2", quantization="FP16", engine="llama.cpp",
                           argv=["llama-server"], port=8080, pid=_gone_pid(), status="running")
    monkeypatch.delenv("REGISTRY_NODE")
    again = Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="FP16", path=str(gguf),
                                 sha256="1" * 64, size_bytes=64)
    assert again.id == old.id  # the same file: its row, not a second one
    rows = json.loads(run_cli("ps", "--all", "--json").stdout)
    assert [(d["id"], d["status"]) for d in rows] == [(dep.id, "exited")]  # its pid checked here
    r = run_cli("rm", str(old.id), "--yes")
    assert r.returncode == 0, r.stderr
    assert not gguf.exists() and [x.id for x in Store().artifacts()] == [a.id]


def _sse_text(lines) -> str:
    out = []
    for ln in lines:
        ln = ln.strip()
        if ln.startswith("data:") and ln[5:].strip() != "[DONE]":
            choices = json.loads(ln[5:]).get("choices") or [{}]
            out.append((choices[0].get("delta") or {}).get("content") or "")
    return "".join(out)


@pytest.mark.slow
def test_two_nodes_share_one_postgresql_and_one_endpoint(tiny_checkpoint, postgres_url, tmp_path):
    """alpha and beta: two registry homes on this machine, one PostgreSQL, one team key."""
    import signal
    import socket
    import time

    httpx = pytest.importorskip("httpx")

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    url = _fresh_pg(postgres_url, f"team_{os.getpid()}")
    key = "team-s3cret"
    env = {n: {"REGISTRY_HOME": str(tmp_path / n), "REGISTRY_NODE": n, "REGISTRY_DATABASE_URL": url,
               "REGISTRY_API_KEY": key, "REGISTRY_HEARTBEAT": "1"} for n in ("alpha", "beta")}

    def cli(node: str, *args: str):
        return run_cli(*args, env=env[node])

    def ps(node: str, *args: str) -> list[dict]:
        r = cli(node, "ps", "--json", *args)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    auth = {"Authorization": f"Bearer {key}"}
    try:
        # alpha converts a tiny build, launches it and serves
        r = cli("alpha", "convert", "glm4-chat-1m", "--from", str(tiny_checkpoint("chatglm")), "--to", "ggufv2",
                "--quant", "FP16", "--json")
        assert r.returncode == 0, r.stderr
        (built,) = json.loads(r.stdout)
        out = Path(built["path"])
        assert out.is_relative_to(tmp_path / "alpha")
        r = cli("alpha", "launch", "glm4-chat-1m:FP16", "--context", "512", "--timeout", "120", "--json")
        assert r.returncode == 0, r.stderr
        dep = json.loads(r.stdout)
        assert dep["node"] == "alpha" and dep["status"] == "running"
        r = cli("alpha", "serve", "--port", str(free_port()), "--json")
        assert r.returncode == 0, r.stderr
        alpha_serve = json.loads(r.stdout)
        assert key not in json.dumps(alpha_serve)  # the key travels in the environment, never in a row

        # beta sees it running on alpha, twice, and alpha still does: no pid of alpha's is checked on beta
        for _ in range(2):
            rows = {d["id"]: d for d in ps("beta")}
            assert (rows[dep["id"]]["node"], rows[dep["id"]]["status"]) == ("alpha", "running")
            assert rows[alpha_serve["id"]]["node"] == "alpha"
        assert {d["id"] for d in ps("alpha")} == {dep["id"], alpha_serve["id"]}
        assert ps("beta", "--node", "beta") == []

        # beta's stop and verify leave alpha's deployment and its artifact row alone
        r = cli("beta", "stop", str(dep["id"]))
        assert r.returncode == 1 and "node alpha" in r.stderr and f"registry stop {dep['id']}" in r.stderr
        r = cli("beta", "verify", "glm4-chat-1m:FP16")
        assert r.returncode == 1 and "node alpha" in r.stderr, r.stderr
        r = cli("beta", "stop", "--all")
        assert r.returncode == 0 and "nothing running" in r.stdout
        assert [d["status"] for d in ps("alpha") if d["id"] == dep["id"]] == ["running"]
        arts = json.loads(cli("alpha", "show", "glm4-chat-1m", "--artifacts", "--json").stdout)["artifacts"]
        assert [(a["path"], a["node"]) for a in arts] == [(str(out), "alpha")] and out.is_file()

        # beta's serve routes a streamed chat to alpha's deployment (through alpha's serve)
        r = cli("beta", "serve", "--port", str(free_port()), "--json")
        assert r.returncode == 0, r.stderr
        beta_v1 = json.loads(r.stdout)["address"]
        with httpx.Client(timeout=120, headers=auth) as c:
            deadline = time.monotonic() + 30
            while True:  # beta's serve sees alpha's once alpha has heart-beaten since beta started reading
                models = c.get(beta_v1 + "/models").json()["data"]
                if models or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert [(m["id"], m["node"], m["deployment"]) for m in models] == [("glm4-chat-1m:FP16", "alpha", dep["id"])]
            assert models[0]["address"] == alpha_serve["address"]
            nodes = {n["name"]: n for n in c.get(beta_v1[:-3] + "/api/nodes").json()}
            assert nodes["alpha"]["alive"] and nodes["beta"]["alive"]
            assert nodes["alpha"]["url"] + "/v1" == alpha_serve["address"]
            listed = json.loads(cli("beta", "nodes", "--json").stdout)
            assert [(n["name"], n["alive"]) for n in listed] == [("alpha", True), ("beta", True)]
            body = {"messages": [{"role": "user", "content": "Hello GLM"}], "max_tokens": 12, "temperature": 0,
                    "seed": 3, "stream": True}
            with c.stream("POST", dep["address"] + "/chat/completions", json={**body, "model": "glm4-chat-1m"}) as s:
                want = _sse_text(s.iter_lines())
            with c.stream("POST", beta_v1 + "/chat/completions", json={**body, "model": "glm4-chat-1m:FP16"}) as s:
                assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
                got = _sse_text(s.iter_lines())
            assert got == want and want
            # beta's REST API: every node's rows with their node, one node's with ?node=; alpha's not stopped here
            api = beta_v1[:-3] + "/api"
            assert {(d["id"], d["node"]) for d in c.get(api + "/deployments?node=alpha").json()} == {
                (dep["id"], "alpha"), (alpha_serve["id"], "alpha")}
            assert [d["node"] for d in c.get(api + "/deployments?node=beta").json()] == ["beta"]
            assert [(a["path"], a["node"]) for a in c.get(api + "/artifacts").json()] == [(str(out), "alpha")]
            assert c.get(api + "/artifacts?node=beta").json() == []
            r = c.delete(api + f"/deployments/{dep['id']}")
            assert r.status_code == 400 and "node alpha" in r.json()["error"]["message"]
            assert c.get(api + f"/deployments/{dep['id']}/logs").status_code == 400
            # without the team's key beta answers nothing
            assert httpx.get(beta_v1 + "/models").status_code == 401
            # a deployment's rows on beta carry the time alpha last found its process alive
            assert next(d for d in ps("beta") if d["id"] == dep["id"])["seen"] is not None
            table = run_cli("ps", env={**env["beta"], "COLUMNS": "250"}).stdout
            assert "alpha" in table and "running (seen" in table

            # alpha's serve goes away without a word (killed): after the heartbeat timeout beta stops offering
            # alpha's deployment, whose rows stay
            os.kill(alpha_serve["pid"], signal.SIGKILL)
            deadline = time.monotonic() + 30
            while c.get(beta_v1 + "/models").json()["data"]:
                assert time.monotonic() < deadline, "beta still offers a node that stopped heart-beating"
                time.sleep(0.5)
            r = c.post(beta_v1 + "/chat/completions", json={**body, "stream": False, "model": "glm4-chat-1m:FP16"})
            assert r.status_code == 404
            assert [d["status"] for d in ps("beta") if d["id"] == dep["id"]] == ["running"]

            # alpha serves again, then stops its deployment: beta's /v1/models drops it
            r = cli("alpha", "serve", "--port", str(free_port()), "--json")
            assert r.returncode == 0, r.stderr
            deadline = time.monotonic() + 30
            while not c.get(beta_v1 + "/models").json()["data"]:
                assert time.monotonic() < deadline, "beta does not see alpha's serve back"
                time.sleep(0.5)
            r = cli("alpha", "stop", str(dep["id"]))
            assert r.returncode == 0 and "stopped" in r.stdout, r.stderr
            assert c.get(beta_v1 + "/models").json()["data"] == []
            assert [d["status"] for d in ps("beta", "--all") if d["id"] == dep["id"]] == ["stopped"]
    finally:
        for n in ("beta", "alpha"):
            cli(n, "stop", "--all")


def test_ps_reads_a_postgresql_store_with_psycopg_alone(registry_home, postgres_url, monkeypatch):
    """A shared PostgreSQL store: `ps` reads the rows with psycopg alone (registry/pg_read.py) where nothing is to
    be written and prints what typer prints through the Store, and the artifact rows read the same way are the
    Store's; a store whose tables the Store has not made yet goes through the Store, which makes them."""
    import datetime as dt

    from test_cli_fast import _compare, _heavy

    from registry import sqlite_read
    from registry.store import Store

    url = _fresh_pg(postgres_url, f"fastpg_{abs(hash(str(registry_home))) % 10**8}")
    monkeypatch.setenv("REGISTRY_DATABASE_URL", url)
    monkeypatch.setenv("REGISTRY_NODE", "there")
    assert sqlite_read.deployments() is None  # no tables yet: the Store's to make
    r = run_cli("ps", "--json")
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "[]", "")
    common = dict(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K", engine="llama.cpp", env={"A": "1"})
    # another node's running deployment (this node never checks nor writes it) and this node's stopped one
    ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10, seconds=30)  # "seen 10 min ago" both ways
    Store().add_deployment(**common, argv=["llama-server", "--port", "8090"], port=8090, pid=4321, status="running",
                           seen=ago, extra_args=["--x", "1"])
    Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K", path="/elsewhere/m.gguf",
                         sha256="0" * 64, size_bytes=1, recipe={"q": "Q4_K"})
    monkeypatch.setenv("REGISTRY_NODE", "here")
    s = Store()
    s.add_deployment(**common, argv=["x", "--api-key", "secret"], port=8091, pid=None, status="stopped")
    _compare([("ps",), ("ps", "-a", "--json"), ("ps", "--node", "there", "--json")])
    assert [(d["node"], d["status"]) for d in json.loads(run_cli("ps", "-a", "--json").stdout)] == [
        ("there", "running"), ("here", "stopped")]
    assert _heavy("ps", "-a", "--json") == []  # nothing to write: neither SQLAlchemy nor pydantic
    assert [g.model_dump() for g in sqlite_read.deployments()] == [d.model_dump(mode="json") for d in s.deployments()]
    (row,) = sqlite_read.artifacts("glm4-chat-1m")
    (art,) = s.artifacts(family="glm4-chat-1m")
    assert {k: getattr(row, k) for k in sqlite_read.COLUMNS} == art.model_dump()
    # a server that is not there: the Store's one-line error both ways (one wait for it, not two)
    down = {"REGISTRY_DATABASE_URL": url.rsplit("@", 1)[0] + f"@127.0.0.1:{_closed_port()}/x"}
    assert _compare([("ps",), ("ps", "--json")], env=down) == {("ps",): 1, ("ps", "--json"): 1}
    assert "cannot open database" in run_cli("ps", env=down).stderr


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: nothing listens there


def test_serve_settings_are_checked_before_anything_starts(registry_home):
    r = run_cli("serve", "--url", "gpu-a:9997")
    assert r.returncode == 1 and "--url 'gpu-a:9997'" in r.stderr and "http://" in r.stderr
    assert "Traceback" not in r.stderr
    for args in (("serve",), ("serve", "--foreground")):
        r = run_cli(*args, env={"REGISTRY_HEARTBEAT": "soon"})
        assert r.returncode == 1 and "REGISTRY_HEARTBEAT='soon'" in r.stderr and "Traceback" not in r.stderr
    assert json.loads(run_cli("ps", "--all", "--json").stdout) == []
    assert json.loads(run_cli("nodes", "--json").stdout) == []


def test_two_machines_with_one_node_name_are_refused(registry_home, monkeypatch):
    """A second serve under a node name whose serve answers elsewhere: refused (each would take the other's
    processes for its own); once that serve is gone the name is free again."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from registry import nodes
    from registry.errors import RegistryError
    from registry.store import Store

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    monkeypatch.setenv("REGISTRY_NODE", "gpu-a")
    other = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    there = f"http://127.0.0.1:{other.server_address[1]}"
    Store().heartbeat(there, "1")
    with pytest.raises(RegistryError, match="node gpu-a already has a serve at " + there):
        nodes.register("http://127.0.0.1:1", "1")
    other.shutdown()
    other.server_close()
    nodes.register("http://127.0.0.1:1", "1")  # nothing answers there any more: a restart after a crash
    assert [(n.name, n.url) for n in Store().nodes()] == [("gpu-a", "http://127.0.0.1:1")]


def test_a_database_password_is_never_printed(registry_home):
    """A store that cannot be opened is named in the error, its password not: a server not there (psycopg's read
    path and the Store's), and a URL the Store's parser refuses (its message quotes the URL)."""
    down = f"postgresql://registry:hunter2@127.0.0.1:{_closed_port()}/x"
    for args, env in ((("ps",), {}), (("ps", "--json"), {}), (("rm", "7", "--yes"), {}),
                      (("ps",), {"REGISTRY_TYPER_ONLY": "1"})):
        r = run_cli(*args, env={"REGISTRY_DATABASE_URL": down, **env})
        assert r.returncode == 1 and "cannot open database" in r.stderr, (args, r.stderr)
        assert "hunter2" not in r.stderr + r.stdout and "registry:<secret>@127.0.0.1" in r.stderr, (args, r.stderr)
    r = run_cli("ps", env={"REGISTRY_DATABASE_URL": "postgresql://registry:hunter2@127.0.0.1:notaport/x"})
    assert r.returncode == 1 and "cannot open database" in r.stderr and "hunter2" not in r.stderr, r.stderr
    r = run_cli("ps", env={"REGISTRY_DATABASE_URL": f"postgresql://127.0.0.1:{_closed_port()}/x?password=hunter2"})
    assert r.returncode == 1 and "hunter2" not in r.stderr and "password=<secret>" in r.stderr, r.stderr
