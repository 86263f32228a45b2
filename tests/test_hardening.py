"""Hardening (issue 17, points 1, 2, 4, 5, 7): what an adversarial run broke, each kind a test here.

Kinds of bad input tested in this module (the count asked for by issue 17). The test of each kind
fails on the code before these fixes (c1e1a0b) and passes after; the few tests of good input
(real revisions, a recorded process is still stopped) pass on both:

  1. spec revisions (9 kinds, each in `revision` and in `revisions`): '..', an absolute path, a backslash,
     a space or control character, one of ~^:?*[, '@{', an empty component, a '.'-component,
     '.lock'; hub data (5): a mirror branch that names a path (refs/<revision>), a --revision that
     does, a poisoned refs/<branch> file, a mirror's commit id that is a path, a mirror's ETag that is one
  2. artifact rows (6): an output claimed by a live convert, two converts into one --out at once,
     an F16 reused for another checkpoint, an F16 no row describes, verify of a temporarily missing
     file, a database from before the new columns
  5. reused pids (2): a legacy row and a row of another start time whose pid an unrelated
     `python -m http.server` now has
  4. signals (6): SIGINT during quantization, SIGINT and SIGKILL during `--quant all`, temporaries
     of dead runs, SIGTERM and SIGKILL of `registry launch` right after it spawned the server
  7. addresses (2): `--host ::`, two launches without --port at once
Total: 30 kinds.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from conftest import SPECS, run_cli
from registry.catalog import load
from registry.errors import SpecError
from registry.hub import HubError, pull
from registry.loader import read_spec_file


def _resolve(name="glm4-chat-1m", fmt="ggufv2", quant="Q4_K"):
    return load(include_user=False).resolve(name, fmt, quant)


@pytest.fixture
def gguf_bytes() -> bytes:
    return b"GGUF" + bytes(range(256)) * 16  # what is served; only its checksum matters here


class Said(list):
    def __call__(self, msg):
        self.append(msg)


# --- 1. revisions that would name files outside the cache -----------------------------------

BASE = yaml.safe_load((SPECS / "glm4-chat-1m.yaml").read_text())
BASE["name"] = "my-glm"
GGUF = 1  # specs[1] is the GGUF spec (legraphista's repo)

BAD_REVISIONS = {
    "../../../../victim/notes.txt": "'..'",
    "/etc/passwd": "absolute path",
    "a\\b": "backslash",
    "main branch": "space or control character",
    "main\x00": "space or control character",
    "v1^0": "~ ^ : ? * [",
    "main@{1}": "'@{'",
    "feat//x": "empty component",
    "refs/.hidden": "starts with '.'",
    "main.lock": "'.lock'",
}


def _spec_text(revision=None, revisions=None) -> str:
    d = copy.deepcopy(BASE)
    hf = d["specs"][GGUF]["hubs"]["huggingface"]
    if revision is not None:
        hf["revision"] = revision
    if revisions is not None:
        hf["revisions"] = revisions
    return yaml.safe_dump(d, sort_keys=False)


@pytest.mark.parametrize("bad", sorted(BAD_REVISIONS))
@pytest.mark.parametrize("field", ["revision", "revisions"])
def test_a_spec_revision_that_is_not_a_hub_revision_is_refused_at_load(bad, field, tmp_path):
    text = _spec_text(revision=bad) if field == "revision" else _spec_text(revisions={"Q4_K": bad})
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as ei:
        read_spec_file(path)
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg and "not a hub revision" in msg, msg
    assert BAD_REVISIONS[bad] in msg, msg
    assert ("revisions[Q4_K]" if field == "revisions" else "revision") in msg


@pytest.mark.parametrize("good", ["main", "W4A16_GS64", "refs/pr/1", "v1.0", "feat/x", "a" * 40])
def test_real_hub_revisions_still_load(good, tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(_spec_text(revision=good, revisions={"Q8_0": good}))
    fam = read_spec_file(path)
    assert fam.specs[GGUF].hubs["huggingface"].revision_for("Q8_0") == good


def test_register_refuses_a_spec_with_a_traversing_revision(tmp_path, registry_home):
    path = tmp_path / "evil.yaml"
    path.write_text(_spec_text(revision="../../../../victim/notes.txt"))
    r = run_cli("register", str(path))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "not a hub revision" in r.stderr, r.stderr


def _victim(tmp_path) -> Path:
    victim = tmp_path / "victim" / "notes.txt"  # three levels above refs/ in the hub_server's cache
    victim.parent.mkdir()
    victim.write_text("my notes")
    return victim


def _files_outside(root: Path, cache: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and cache not in p.parents}


def test_a_mirror_branch_named_like_a_path_cannot_write_outside_the_cache(hub_server, gguf_bytes, tmp_path):
    """A spec that got past validation (an old registered row, the Python API) and a mirror that has such a
    branch: before the fix, `pull` wrote the commit id over the victim file (refs/<revision>)."""
    victim = _victim(tmp_path)
    evil = "../../../victim/notes.txt"
    r = _resolve()
    src = r.hubs["huggingface"]
    hub_server.add(src.model_id, {src.files[0]: gguf_bytes}, branch=evil)
    rs = dataclasses.replace(r, hubs={"huggingface": dataclasses.replace(src, revision=evil)})
    cache = Path(tmp_path / "hf-cache")
    before = _files_outside(tmp_path, cache)
    with pytest.raises(HubError, match=r"refusing revision '\.\./\.\./\.\./victim/notes\.txt': it contains '\.\.'"):
        pull(rs, say=Said())
    assert victim.read_text() == "my notes"
    assert _files_outside(tmp_path, cache) - before <= {p for p in tmp_path.rglob("registry.db*")}
    assert hub_server.requests == []  # refused before any request


def test_pull_revision_option_that_escapes_is_one_line(hub_server, gguf_bytes, tmp_path):
    victim = _victim(tmp_path)
    r = _resolve()
    hub_server.add(r.hubs["huggingface"].model_id, {r.hubs["huggingface"].files[0]: gguf_bytes},
                   branch="../../../victim/notes.txt")
    out = run_cli("pull", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", "--revision",
                  "../../../victim/notes.txt")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "refusing revision" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and victim.read_text() == "my notes"
    out = run_cli("pull", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", "--revision", str(victim))
    assert out.returncode == 1 and "absolute path" in out.stderr and victim.read_text() == "my notes"


def test_a_poisoned_ref_file_is_not_followed_out_of_snapshots(hub_server, tmp_path):
    """refs/main is the cache's data: a content that is not a commit id must not name a snapshot folder."""
    from registry.hub import hfcache

    folder = hfcache.repo_folder("o/r")
    (folder / "refs").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    (folder / "refs" / "main").write_text("../../../elsewhere")
    assert (folder / "snapshots" / "../../../elsewhere").resolve() == outside.resolve()  # what it would name
    assert hfcache.commit_for("o/r", "main") is None
    assert hfcache.snapshot_dir("o/r", "main") is None
    with pytest.raises(HubError, match="refusing revision"):
        hfcache.commit_for("o/r", "../x")


# --- 2. artifact rows that lie -------------------------------------------------------------------


def _convert(src, out, quant="Q8_0", **kw):
    from converters.gguf import run_convert
    from converters.options import ConvertRequest

    said = Said()
    req = ConvertRequest(family="glm4-chat-1m", source=src, to="ggufv2", quant=quant, out=out, progress=False,
                         say=said, **kw)
    return run_convert(req), said


def _rows():
    from registry import paths
    from registry.store import Store

    return {a.path: a for a in Store().artifacts()} if paths.has_database() else {}


def _sha(p: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def test_an_output_claimed_by_a_live_convert_is_refused(tiny_checkpoint, tmp_path):
    """Another convert (a real live process) holds the claim on the F16 output: this one must not write it."""
    import json
    import subprocess
    import sys

    from registry import procs
    from registry.errors import RegistryError

    out = tmp_path / "builds"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim = out / ".glm4-chat-1m.F16.gguf.claim"
        claim.write_text(json.dumps({"pid": other.pid, "start": procs.start_time(other.pid)}))
        with pytest.raises(RegistryError, match=rf"glm4-chat-1m\.F16\.gguf is being written by another convert "
                                                rf"\(pid {other.pid}\)"):
            _convert(tiny_checkpoint("chatglm"), out)
        assert sorted(p.name for p in out.iterdir()) == [claim.name]  # nothing written, the claim is theirs
        assert _rows() == {}
    finally:
        other.kill()
        other.wait()
    # the holder is gone: its claim is stale, and the run goes ahead (and leaves no claim behind)
    results, _ = _convert(tiny_checkpoint("chatglm"), out)
    assert not claim.exists() and {r.quantization for r in results} == {"Q8_0", "F16"}


def test_a_claim_being_filled_is_not_taken_over(tiny_checkpoint, tmp_path):
    """A claim that is still empty a moment after it was made belongs to a run filling it in, not to one that
    died; an empty one left from long ago is stale."""
    import os
    import time

    from registry.errors import RegistryError

    out = tmp_path / "builds"
    out.mkdir()
    claim = out / ".glm4-chat-1m.F16.gguf.claim"
    claim.touch()
    with pytest.raises(RegistryError, match=r"glm4-chat-1m\.F16\.gguf is being written by another convert;"):
        _convert(tiny_checkpoint("chatglm"), out)
    old = time.time() - 3600
    os.utime(claim, (old, old))
    results, _ = _convert(tiny_checkpoint("chatglm"), out)
    assert not claim.exists() and {r.quantization for r in results} == {"Q8_0", "F16"}


def test_two_converts_into_one_output_at_once_leave_a_true_row(tiny_checkpoint, tmp_path):
    """Two real `registry convert` processes from different checkpoints into the same --out: whatever
    happens, each row's sha256 is its file's and its parent is the checkpoint the file came from."""
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "builds"
    srcs = [tiny_checkpoint("chatglm"), tiny_checkpoint("chatglm", seed=1)]
    procs_ = [subprocess.Popen([sys.executable, "-m", "registry", "convert", "glm4-chat-1m", "--from", str(s),
                                "--to", "ggufv2", "--quant", "Q8_0", "--out", str(out)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in srcs]
    done = [(p.wait(timeout=300), p.stderr.read()) for p in procs_]
    assert any(rc == 0 for rc, _ in done), done
    for rc, err in done:
        if rc != 0:
            errors = [line for line in err.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and "Traceback" not in err, err
            assert "already exists" in errors[0] or "being written by another convert" in errors[0], err
    rows = _rows()
    assert rows
    for path, row in rows.items():
        assert _sha(path) == row.sha256, path
    f16 = rows[str(out / "glm4-chat-1m.F16.gguf")]
    q8 = rows[str(out / "glm4-chat-1m.Q8_0.gguf")]
    assert q8.parent == f16.path and f16.recipe["source_identity"] == q8.recipe["source_identity"]
    assert not list(out.glob(".*claim")) and not list(out.glob(".*partial*"))


def test_an_f16_from_another_checkpoint_is_not_reused(tiny_checkpoint, tmp_path):
    from registry.errors import RegistryError

    out = tmp_path / "builds"
    a, b = tiny_checkpoint("chatglm"), tiny_checkpoint("chatglm", seed=1)
    _convert(a, out)
    f16 = out / "glm4-chat-1m.F16.gguf"
    before = _rows()[str(f16)]
    with pytest.raises(RegistryError, match=rf"glm4-chat-1m\.F16\.gguf was built from {a} and cannot be reused "
                                            rf"for --from {b} \(.* differs in size or modification time\)"):
        _convert(b, out, quant="Q4_K")
    after = _rows()
    assert after[str(f16)].parent == str(a) == before.parent and str(out / "glm4-chat-1m.Q4_K_M.gguf") not in after
    assert not (out / "glm4-chat-1m.Q4_K_M.gguf").exists()
    # the same checkpoint still reuses it
    results, said = _convert(a, out, quant="Q4_K")
    assert any("reusing" in m for m in said) and _rows()[str(f16)].parent == str(a)


def test_an_unrecorded_f16_is_not_reused(tiny_checkpoint, tmp_path):
    from registry.errors import RegistryError

    out = tmp_path / "builds"
    _convert(tiny_checkpoint("chatglm"), out, record=False)
    with pytest.raises(RegistryError, match="exists but no artifact row says what it was built from"):
        _convert(tiny_checkpoint("chatglm"), out, quant="Q4_K")


def test_verify_of_a_temporarily_missing_file_keeps_its_row(tiny_checkpoint, tmp_path):
    from registry.hub import IntegrityError, verify

    out = tmp_path / "builds"
    _convert(tiny_checkpoint("chatglm"), out)
    q8 = out / "glm4-chat-1m.Q8_0.gguf"
    row = _rows()[str(q8)]
    aside = tmp_path / "aside.gguf"
    q8.rename(aside)  # an unmounted disk, a file being copied back
    r = _resolve(quant="Q8_0")
    with pytest.raises(IntegrityError, match="missing; its row is kept, marked missing"):
        verify(r)
    kept = _rows()[str(q8)]
    assert kept.missing_since is not None and (kept.id, kept.recipe, kept.parent) == (row.id, row.recipe, row.parent)
    aside.rename(q8)
    assert all(x["ok"] for x in verify(r))
    assert _rows()[str(q8)].missing_since is None


def test_a_database_from_before_the_new_columns_gets_them(tmp_path):
    """missing_since (artifacts) and process (deployments) are added to a database an earlier version wrote."""
    import sqlite3

    from registry.store import Store

    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE artifact (id INTEGER PRIMARY KEY, family VARCHAR NOT NULL, format VARCHAR NOT NULL,
            quantization VARCHAR NOT NULL, path TEXT NOT NULL UNIQUE, sha256 VARCHAR NOT NULL,
            size_bytes BIGINT NOT NULL, parent VARCHAR, recipe JSON, report JSON, created DATETIME NOT NULL);
        INSERT INTO artifact VALUES (1, 'glm4-chat-1m', 'ggufv2', 'Q8_0', '/x.gguf', 'ab', 3, NULL, '{"a": 1}', NULL,
            '2026-01-01 00:00:00');
        CREATE TABLE deployment (id INTEGER PRIMARY KEY, family VARCHAR NOT NULL, format VARCHAR NOT NULL,
            quantization VARCHAR NOT NULL, engine VARCHAR NOT NULL, argv JSON NOT NULL, env JSON NOT NULL,
            host VARCHAR NOT NULL, port INTEGER NOT NULL, pid INTEGER, status VARCHAR NOT NULL, log_path VARCHAR,
            artifact_id INTEGER, started DATETIME NOT NULL, stopped DATETIME);
        INSERT INTO deployment VALUES (1, 'glm4-chat-1m', 'ggufv2', 'Q8_0', 'llama.cpp', '["python"]', '{}',
            '127.0.0.1', 8080, NULL, 'stopped', NULL, 1, '2026-01-01 00:00:00', NULL);
    """)
    con.close()
    store = Store(f"sqlite:///{db}")
    (row,) = store.artifacts()
    assert row.recipe == {"a": 1} and row.missing_since is None
    assert store.mark_artifact_missing(row.id).missing_since is not None
    (dep,) = store.deployments()  # extra_args (launch ... -- ARGS) came later too
    assert dep.extra_args is None and dep.argv == ["python"]


# --- 5. a reused pid is not our server --------------------------------------------------------------


@pytest.fixture
def stranger():
    """An unrelated `python3 -m http.server`, as the adversarial run found behind a reused pid."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.2)
    yield p
    p.kill()
    p.wait()


def _server_argv():
    import sys

    return [sys.executable, "-m", "llama_cpp.server", "--model", "/m/glm.gguf", "--host", "127.0.0.1", "--port", "8080"]


def _deployment(pid, **kw):
    from registry.store import Store

    return Store().add_deployment(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K", engine="llama.cpp",
                                  argv=_server_argv(), env={}, port=8080, pid=pid, status="running", **kw)


@pytest.mark.parametrize("recorded", ["legacy-row", "other-start-time"])
def test_stop_does_not_signal_a_stranger_behind_a_reused_pid(stranger, recorded):
    from registry import launcher, procs

    kw = {}
    if recorded == "other-start-time":  # the row's process started at another time than the one now at this pid
        kw["process"] = {"pid": stranger.pid, "start": procs.start_time(stranger.pid) - 100, "cmdline": _server_argv()}
    dep = _deployment(stranger.pid, **kw)
    assert launcher.ps() == []  # not shown as running
    assert launcher.stop(dep) == "was not running"
    assert stranger.poll() is None  # never signalled


def test_the_recorded_process_is_recognised_and_stopped():
    import subprocess
    import sys

    from registry import launcher, procs

    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        me = procs.identity(p.pid)
        dep = _deployment(p.pid, process=me)
        assert [d.id for d in launcher.ps()] == [dep.id]
        assert launcher.stop(dep, grace=5) == "stopped"  # SIGTERM was enough ("killed" after the grace)
        p.wait(timeout=5)
        assert not procs.alive(p.pid, me["start"])
    finally:
        p.kill()
        p.wait()


# --- 7. launches on odd addresses, and at once ------------------------------------------------------


def test_client_host_reaches_the_family_bound():
    from registry.engines.base import client_host

    assert client_host("::") == "[::1]" and client_host("0.0.0.0") == "127.0.0.1"
    assert client_host("::1") == "[::1]" and client_host("127.0.0.2") == "127.0.0.2"


def _record_tiny(gguf: Path) -> None:
    from registry.store import Store

    Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="FP16", path=str(gguf),
                         sha256="0" * 64, size_bytes=gguf.stat().st_size)


LAUNCH = ("launch", "glm4-chat-1m", "-f", "ggufv2", "-q", "FP16", "--context", "256", "--timeout", "120", "--new",
          "--json")


@pytest.mark.slow
def test_launch_on_ipv6_wildcard_is_probed_on_ipv6_loopback(tiny_gguf):
    import json
    import urllib.error
    import urllib.request

    _record_tiny(tiny_gguf("chatglm", "F16"))
    try:
        # bound beyond loopback, the engine takes a key (its own setting)
        r = run_cli(*LAUNCH, "--host", "::", "--api-key", "k-test-1", env={"REGISTRY_NO_PRESTART": "1"})
        assert r.returncode == 0, r.stderr
        dep = json.loads(r.stdout)
        assert dep["host"] == "::" and "[::1]" in dep["address"]
        req = urllib.request.Request(dep["address"] + "/models", headers={"Authorization": "Bearer k-test-1"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200
        with pytest.raises(urllib.error.HTTPError) as no_key:
            urllib.request.urlopen(dep["address"] + "/models", timeout=30)
        assert no_key.value.code == 401
    finally:
        run_cli("stop", "--all")


@pytest.mark.slow
def test_two_launches_without_port_at_once_both_run(tiny_gguf):
    import json
    import os
    import subprocess
    import sys

    from conftest import ROOT

    _record_tiny(tiny_gguf("chatglm", "F16"))
    try:
        ps = [subprocess.Popen([sys.executable, "-m", "registry", *LAUNCH], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "REGISTRY_NO_PRESTART": "1"}) for _ in range(2)]
        outs = [p.communicate(timeout=200) for p in ps]
        assert [p.returncode for p in ps] == [0, 0], [e for _, e in outs]
        ports = sorted(json.loads(o)["port"] for o, _ in outs)
        assert ports[0] != ports[1]
        assert len(json.loads(run_cli("ps", "--json").stdout)) == 2
    finally:
        run_cli("stop", "--all")


# --- 4. interrupts --------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _convert_cli(*args):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    return subprocess.Popen([sys.executable, "-m", "registry", "convert", "glm4-chat-1m", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "REGISTRY_NO_PRESTART": "1"})


def _wait_for(cond, timeout=120.0, step=0.005):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(step)
    raise AssertionError("timed out waiting")


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory):
    """Big enough (~100M parameters) that quantizing it to Q4_K_M takes a while on two cores."""
    from converters.tiny import build_checkpoint

    return build_checkpoint("chatglm", tmp_path_factory.mktemp("big") / "ck", num_layers=6, ffn_hidden_size=16384)


@pytest.mark.slow
def test_ctrl_c_during_quantization_ends_it_with_130(big_checkpoint, tmp_path):
    import signal
    import time

    out = tmp_path / "builds"
    first = _convert_cli("--from", str(big_checkpoint), "--to", "ggufv2", "--quant", "F16", "--out", str(out))
    assert first.wait(timeout=300) == 0, first.stderr.read()
    p = _convert_cli("--from", str(big_checkpoint), "--to", "ggufv2", "--quant", "Q4_K", "--out", str(out))
    _wait_for(lambda: list(out.glob(".glm4-chat-1m.Q4_K_M.partial-*")) or p.poll() is not None)
    assert p.poll() is None, "quantization was over before it could be interrupted"
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=60)
    took = time.monotonic() - t0
    assert rc == 130 and took < 5, (rc, took, p.stderr.read())
    assert sorted(f.name for f in out.iterdir()) == ["glm4-chat-1m.F16.gguf"]  # no build, no temporary, no claim
    assert str(out / "glm4-chat-1m.Q4_K_M.gguf") not in _rows()


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGHUP", "SIGKILL"])
def test_an_interrupted_quant_all_leaves_no_unrecorded_build_and_a_rerun_works(tiny_checkpoint, tmp_path, sig):
    import signal

    out = tmp_path / "builds"
    src = str(tiny_checkpoint("chatglm"))
    p = _convert_cli("--from", src, "--to", "ggufv2", "--quant", "all", "--out", str(out))
    # the first quantized builds are under their final names, the run goes on with the next ones
    _wait_for(lambda: len([f for f in out.glob("glm4-chat-1m.*.gguf") if ".F16." not in f.name]) >= 2
              or p.poll() is not None, step=0.001)
    assert p.poll() is None, "the run was over before it could be interrupted"
    p.send_signal(getattr(signal, sig))
    rc = p.wait(timeout=60)
    assert rc == {"SIGINT": 130, "SIGHUP": 129, "SIGKILL": -9}[sig], p.stderr.read()
    rows = _rows()
    if sig != "SIGKILL":  # cleaned up at once: no final file without a row, no temporary (a closed terminal too)
        finals = [f for f in out.iterdir() if not f.name.startswith(".")]
        assert all(str(f) in rows for f in finals), (finals, list(rows))
        assert not list(out.glob(".*"))
    # a rerun goes ahead: what the dead run left unrecorded (and its temporaries) is removed first
    again = _convert_cli("--from", src, "--to", "ggufv2", "--quant", "all", "--out", str(out))
    assert again.wait(timeout=300) == 0, again.stderr.read()
    rows = _rows()
    finals = [f for f in out.iterdir() if not f.name.startswith(".")]
    assert finals and all(str(f) in rows and rows[str(f)].sha256 == _sha(f) for f in finals)
    assert not list(out.glob(".*"))


def test_temporaries_of_dead_runs_are_removed_and_live_ones_kept(tiny_checkpoint, tmp_path):
    import subprocess
    import sys

    from registry import procs

    out = tmp_path / "builds"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_start = procs.start_time(dead.pid)
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = out / f".glm4-chat-1m.F16.partial-{dead.pid}-{dead_start or 0}-abc123"
        stale.mkdir()
        (stale / "glm4-chat-1m.F16.gguf").write_bytes(b"\0" * 4096)
        stale_q = out / f".glm4-chat-1m.Q8_0.partial-{dead.pid}-{dead_start or 0}.gguf"
        stale_q.write_bytes(b"\0" * 100)
        busy = out / f".glm4-chat-1m.Q4_K_M.partial-{live.pid}-{procs.start_time(live.pid)}.gguf"
        busy.write_bytes(b"\0" * 100)
        _, said = _convert(tiny_checkpoint("chatglm"), out)
        assert not stale.exists() and not stale_q.exists() and busy.exists()
        assert any("left by interrupted runs" in m for m in said)
    finally:
        live.kill()
        live.wait()


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGKILL"])
def test_a_launch_killed_right_after_spawning_leaves_no_unknown_server(tiny_gguf, sig):
    import json
    import os
    import signal
    import subprocess
    import sys

    from conftest import ROOT
    from registry import procs

    _record_tiny(tiny_gguf("chatglm", "F16"))
    p = subprocess.Popen([sys.executable, "-m", "registry", *LAUNCH], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "REGISTRY_NO_PRESTART": "1"})
    try:
        def server():
            return [c for c in _children(p.pid) if "llama_cpp.server" in (procs.cmdline(c) or [])] or p.poll() is not None

        (child,) = _wait_for(server, step=0.001)
        assert child, p.stderr.read()
        who = procs.identity(child)
        p.send_signal(getattr(signal, sig))
        rc = p.wait(timeout=30)
        assert rc == {"SIGTERM": 143, "SIGHUP": 129, "SIGKILL": -9}[sig], p.stderr.read()
        rows = json.loads(run_cli("ps", "--json").stdout)  # the next registry command looks
        _wait_for(lambda: not procs.alive(child, who["start"]) or any(d["pid"] == child for d in rows), timeout=10,
                  step=0.05)
        assert not procs.alive(child, who["start"]) or any(d["pid"] == child for d in rows)
    finally:
        run_cli("stop", "--all")


@pytest.mark.parametrize("lie", ["sha", "etag"])
def test_a_hostile_mirrors_commit_or_etag_cannot_name_a_path_outside_the_cache(hub_server, gguf_bytes, tmp_path, lie):
    """The listing's `sha` names snapshots/<sha> and the ETag names blobs/<etag>: both come from the mirror."""
    victim = _victim(tmp_path)
    r = _resolve()
    src = r.hubs["huggingface"]
    hub_server.add(src.model_id, {src.files[0]: gguf_bytes})
    if lie == "sha":
        hub_server.lie_sha[src.model_id] = "../../../victim"
        want = r"answered commit '\.\./\.\./\.\./victim'.*not a 40-hex commit id"
    else:
        hub_server.lie_etag[src.files[0]] = "../../../victim/notes.txt"
        want = r"refusing ETag '\.\./\.\./\.\./victim/notes\.txt' from the hub"
    cache = tmp_path / "hf-cache"
    before = _files_outside(tmp_path, cache)
    with pytest.raises(HubError, match=want):
        pull(r, say=Said())
    assert victim.read_text() == "my notes" and sorted(victim.parent.iterdir()) == [victim]
    assert _files_outside(tmp_path, cache) - before <= set(tmp_path.rglob("registry.db*"))
