"""ModelScope downloads through the real `modelscope` package, against a stand-in hub on 127.0.0.1.

tests/fixtures/msserver.py speaks the part of ModelScope's API that modelscope 1.40's
snapshot_download calls (file listing with sha256, file download); MODELSCOPE_ENDPOINT points at it.
No test touches the internet: each asserts which requests the stand-in saw.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import run_cli
from fixtures.msserver import ms_server  # noqa: F401  (the fixture)
from registry.catalog import load
from registry.hub import IntegrityError, pull, verify

pytest.importorskip("modelscope", reason="the dev extra installs modelscope")

GGUF_REPO = "LLM-Research/glm-4-9b-chat-1m-GGUF"  # registry/specs/glm4-chat-1m.yaml, its modelscope id
GGUF_FILE = "glm-4-9b-chat-1m.Q4_K.gguf"
PULL = ("pull", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", "--hub", "modelscope")
VERIFY = ("verify", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", "--json")


class Said(list):
    def __call__(self, msg):
        self.append(msg)


@pytest.fixture(scope="module")
def gguf_bytes(tiny_gguf):
    """A real GGUF file: the tiny GLM-4 checkpoint converted by converters/gguf."""
    return tiny_gguf("glm4").read_bytes()


def _artifacts():
    from registry import paths
    from registry.store import Store

    return Store().artifacts() if paths.has_database() else []


def _cache(tmp_path: Path, repo: str, revision: str) -> Path:
    """Where modelscope_hub keeps a snapshot: MODELSCOPE_CACHE/models/OWNER--NAME/snapshots/REVISION."""
    return tmp_path / "ms-cache" / "models" / repo.replace("/", "--") / "snapshots" / revision


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_pull_downloads_through_modelscope_records_and_verifies(ms_server, gguf_bytes, tmp_path):
    ms_server.add(GGUF_REPO, {GGUF_FILE: gguf_bytes, "glm-4-9b-chat-1m.Q8_0.gguf": b"GGUF other", "README.md": b"# card"})
    p = run_cli(*PULL, "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    got = Path(res["path"])
    assert res["source"] == "modelscope" and got == _cache(tmp_path, GGUF_REPO, "master") / GGUF_FILE
    assert got.read_bytes() == gguf_bytes
    import gguf

    assert gguf.GGUFReader(str(got)).fields["general.architecture"].contents() == "glm4"
    # the spec's 'main' means ModelScope's default branch; only the spec's file was fetched
    assert [(r["params"]["Revision"], r["params"]["FilePath"]) for r in ms_server.downloads()] == [("master", GGUF_FILE)]
    assert [r["params"]["Revision"] for r in ms_server.listings()] == ["master"]
    assert {r["path"] for r in ms_server.requests} == {  # and nothing else was asked
        f"/api/v1/models/{GGUF_REPO}/repo/files", f"/api/v1/models/{GGUF_REPO}/repo", "/api/v1/repos/internalAccelerationInfo"}
    (row,) = _artifacts()
    assert row.sha256 == hashlib.sha256(gguf_bytes).hexdigest() and row.path == str(got)
    assert row.parent == f"{GGUF_REPO}@main" and row.size_bytes == len(gguf_bytes)

    seen = len(ms_server.requests)
    v = run_cli(*VERIFY)
    assert v.returncode == 0, v.stderr
    assert [(x["ok"], x["sha256"]) for x in json.loads(v.stdout)] == [(True, row.sha256)]
    again = run_cli(*PULL, "--json")  # the store has it now: no request at all
    assert again.returncode == 0 and json.loads(again.stdout)["source"] == "store"
    assert len(ms_server.requests) == seen

    with open(got, "r+b") as f:  # bit rot in ModelScope's cache: verify compares the store's sha256
        f.seek(len(gguf_bytes) // 2)
        f.write(bytes([gguf_bytes[len(gguf_bytes) // 2] ^ 1]))
    bad = run_cli(*VERIFY)
    assert bad.returncode == 1 and f"the store recorded {row.sha256}" in bad.stdout + bad.stderr
    assert not got.exists()


def test_a_corrupted_download_is_refused_and_nothing_is_kept(ms_server, gguf_bytes, tmp_path):
    ms_server.add(GGUF_REPO, {GGUF_FILE: gguf_bytes})
    ms_server.corrupt.add(GGUF_FILE)  # the bytes contradict the listed sha256
    r = load(include_user=False).resolve("glm4-chat-1m", "ggufv2", "Q4_K")
    with pytest.raises(IntegrityError) as e:
        pull(r, hub="modelscope", say=Said())
    msg = str(e.value)
    assert "\n" not in msg and f"ModelScope served {GGUF_FILE} of {GGUF_REPO}@main" in msg
    assert "Hash mismatch" in msg and hashlib.sha256(gguf_bytes).hexdigest()[:16] in msg
    assert len(ms_server.downloads()) >= 2  # modelscope retried before refusing
    assert _files_under(_cache(tmp_path, GGUF_REPO, "master")) == []  # not under the final name, no partial
    assert _artifacts() == []
    ms_server.corrupt.clear()  # the hub serves good bytes again
    assert pull(r, hub="modelscope", say=Said()).path.read_bytes() == gguf_bytes


def test_a_revision_pin_reaches_modelscope(ms_server, gguf_bytes, tmp_path):
    ms_server.add(GGUF_REPO, {GGUF_FILE: b"GGUF the branch head"})
    ms_server.add(GGUF_REPO, {GGUF_FILE: gguf_bytes}, revision="v1.0")
    p = run_cli(*PULL, "--revision", "v1.0", "--json")
    assert p.returncode == 0, p.stderr
    got = Path(json.loads(p.stdout)["path"])
    assert got == _cache(tmp_path, GGUF_REPO, "v1.0") / GGUF_FILE and got.read_bytes() == gguf_bytes
    assert {r["params"]["Revision"] for r in ms_server.listings() + ms_server.downloads()} == {"v1.0"}
    (row,) = _artifacts()
    assert row.parent == f"{GGUF_REPO}@v1.0"
    missing = run_cli(*PULL, "--revision", "no-such-tag")
    err = missing.stderr.splitlines()[-1]  # after the licence notice: the error, on one line
    assert missing.returncode == 1 and f"ModelScope download of {GGUF_REPO}@no-such-tag failed" in err, missing.stderr
    assert "not found" in err
    assert ms_server.listings()[-1]["params"]["Revision"] == "no-such-tag"


def test_a_safetensors_snapshot_from_modelscope(ms_server, tiny_checkpoint, tmp_path):
    # glm-4-9b-chat's pytorch build on ModelScope (registry/specs/glm-4-9b-chat.yaml): the whole folder,
    # minus what names.SNAPSHOT_IGNORE leaves out.
    ckpt = tiny_checkpoint("glm4")
    files = {str(p.relative_to(ckpt)): p.read_bytes() for p in ckpt.rglob("*") if p.is_file()}
    assert any(n.endswith(".safetensors") for n in files) and "config.json" in files
    repo = "ZhipuAI/glm-4-9b-chat-hf"
    ms_server.add(repo, {**files, "model-q4.gguf": b"GGUF not this", "original/consolidated.pth": b"nor this"})
    r = load(include_user=False).resolve("glm-4-9b-chat", "pytorch", "none")
    res = pull(r, hub="modelscope", say=Said())
    assert res.source == "modelscope" and res.path == _cache(tmp_path, repo, "master")
    assert {n: (res.path / n).read_bytes() for n in _files_under(res.path)} == files
    assert sorted(q["params"]["FilePath"] for q in ms_server.downloads()) == sorted(files)
    (ok,) = verify(r)
    assert ok["ok"] and ok["path"] == str(res.path)

