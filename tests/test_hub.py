"""registry.hub: resolve, download and verify builds, offline-first.

No test touches the internet. Offline tests run huggingface_hub's own cache look-ups on a cache
layout the test writes (blobs, snapshots, refs). Download tests talk to tests/fixtures/hubserver.py,
a local HTTP server on 127.0.0.1 that stands in for the Hugging Face Hub (HF_ENDPOINT points at
it) and speaks the hub's URL scheme as huggingface_hub 1.33 calls it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SPECS, run_cli
from fixtures.hubserver import write_hf_cache
from registry.catalog import HubFiles, load
from registry.errors import SpecError
from registry.hub import HubError, IntegrityError, OfflineError, fetch, pull, verify
from registry.hub.names import safe_relative_name
from registry.schema import GGUF_ALIASES, HubSource


def _resolve(name="glm4-chat-1m", fmt="ggufv2", quant="Q4_K"):
    return load(include_user=False).resolve(name, fmt, quant)


@pytest.fixture(scope="session")
def gguf_file(tmp_path_factory):
    """A real GGUF file (gguf's writer, one F32 tensor) of about 3 MiB: big enough to outgrow a 1 MiB disk."""
    import gguf
    import numpy as np

    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    w = gguf.GGUFWriter(str(path), "glm4")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.random.default_rng(0).standard_normal((768, 1024), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def _artifacts(family=None):
    from registry import paths
    from registry.store import Store

    if not paths.has_database():
        return []
    return Store().artifacts(family=family)


class Said(list):
    def __call__(self, msg):
        self.append(msg)


# --- name resolution for every shipped spec ---------------------------------------------------


def test_every_quant_of_every_gguf_spec_resolves_to_a_safe_file_name():
    cat = load(include_user=False)
    checked = 0
    for name in cat.names():
        for spec in cat.get(name).specs:
            if spec.format != "ggufv2":
                continue
            for q in spec.quantizations:
                r = cat.resolve(name, "ggufv2", q, size=spec.size_in_billions, uploader=spec.publisher)
                for hub, h in r.hubs.items():
                    assert h.files, (name, q, hub)
                    for f in h.files:
                        assert safe_relative_name(f) == f
                        assert re.search(r"\.gguf$|\.gguf\.part\d+of\d+$", f), f
                        assert q in f or GGUF_ALIASES.get(q, q) in f, (q, f)
                    checked += 1
    assert checked >= 17 * 2  # glm4-chat-1m's seventeen GGUF quants on two hubs at least


def test_every_revision_per_quant_resolves():
    cat = load(include_user=False)
    seen = 0
    for name in cat.names():
        for spec in cat.get(name).specs:
            for hub, src in spec.hubs.items():
                for q in spec.quantizations:
                    r = cat.resolve(name, spec.format, q, size=spec.size_in_billions, uploader=spec.publisher)
                    assert r.hubs[hub].revision == src.revisions.get(q, src.revision)
                    if q in src.revisions:
                        seen += 1
                        assert r.hubs[hub].revision != src.revision
    assert seen >= 3  # seed 001's three branches


def test_split_part_names_in_both_styles():
    src = HubSource(model_id="o/r", file_template="m.{quantization}.gguf", split_parts={"Q8_0": 3})
    assert src.files_for("Q8_0") == ["m.Q8_0-00001-of-00003.gguf", "m.Q8_0-00002-of-00003.gguf", "m.Q8_0-00003-of-00003.gguf"]
    old = src.model_copy(update={"split_style": "part", "split_parts": {"Q8_0": 2}})
    assert old.files_for("Q8_0") == ["m.Q8_0.gguf.part1of2", "m.Q8_0.gguf.part2of2"]


@pytest.mark.parametrize("bad", ["../escape.gguf", "a/../../b.gguf", "/etc/passwd", "a//b.gguf", "a\\b.gguf", "./x.gguf"])
def test_file_names_that_would_escape_the_cache_are_refused(bad, hub_server):
    r = _resolve()
    evil = dataclasses.replace(r, hubs={"huggingface": HubFiles("huggingface", r.hubs["huggingface"].model_id, "main", [bad])})
    with pytest.raises(HubError, match="refusing file name"):
        pull(evil, say=Said())
    assert hub_server.requests == []  # refused before any request


def test_a_spec_file_template_with_dotdot_is_refused(tmp_path):
    from registry.loader import read_spec_file

    text = (SPECS / "glm4-chat-1m.yaml").read_text().replace(
        'file_template: "glm-4-9b-chat-1m.{quantization}.gguf"', 'file_template: "../../{quantization}.gguf"', 1)
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(SpecError, match=r"file_template.*\.\."):
        read_spec_file(f)


# --- offline: huggingface_hub's own look-ups on a real cache layout --------------------------


def test_offline_pull_uses_the_hf_cache_and_makes_no_request(hub_server, gguf_file, monkeypatch, tmp_path):
    r = _resolve()
    src = r.hubs["huggingface"]
    commit = write_hf_cache(tmp_path / "hf-cache", src.model_id, "main", {src.files[0]: gguf_file, "README.md": b"hi"})
    snapshot = tmp_path / "hf-cache" / "models--legraphista--glm-4-9b-chat-1m-GGUF" / "snapshots" / commit
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = pull(r, say=Said())
    assert res.source == "cache" and res.commit == commit and res.path == snapshot / src.files[0]
    assert res.path.read_bytes() == gguf_file
    (row,) = _artifacts("glm4-chat-1m")
    assert row.sha256 == hashlib.sha256(gguf_file).hexdigest() and row.size_bytes == len(gguf_file)
    assert row.parent == f"{src.model_id}@{commit}" and row.quantization == "Q4_K" and row.path == str(res.path)
    # Online now: the store answers (fetch() is pull() reduced to the path), still without a request.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert pull(r, say=Said()).source == "store"
    assert fetch(r, say=Said()) == snapshot / src.files[0]
    assert hub_server.requests == []


def test_hf_hub_offline_1_makes_no_request_even_when_the_hub_has_the_file(hub_server, gguf_file, monkeypatch):
    r = _resolve()
    hub_server.add(r.hubs["huggingface"].model_id, {r.hubs["huggingface"].files[0]: gguf_file})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="lacks glm-4-9b-chat-1m.Q4_K.gguf"):
        pull(r, say=Said())
    assert hub_server.requests == []


def test_a_file_named_like_a_digest_outside_the_cache_has_no_content_address(tmp_path):
    from registry.hub.integrity import content_address

    f = tmp_path / hashlib.sha256(b"other bytes").hexdigest()  # a build someone named by a hash
    f.write_bytes(b"these bytes")
    assert content_address(f) is None  # only a blob in a cache's blobs/ folder is named by its content
    blob = tmp_path / "models--o--r" / "blobs" / hashlib.sha256(b"x").hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"x")
    assert content_address(blob) == ("sha256", blob.name)


def test_offline_and_missing_says_exactly_what(hub_server, monkeypatch):
    r = _resolve()
    with pytest.raises(OfflineError) as e:
        pull(r, offline=True, say=Said())
    msg = str(e.value)
    assert "legraphista/glm-4-9b-chat-1m-GGUF@main lacks glm-4-9b-chat-1m.Q4_K.gguf" in msg
    assert os.environ["HF_HUB_CACHE"] in msg and "registry pull glm4-chat-1m" in msg
    assert hub_server.requests == []


def test_offline_snapshot_names_the_missing_shard(hub_server, tmp_path, monkeypatch):
    r = _resolve("glm4-chat-1m", "pytorch", "none")
    src = r.hubs["huggingface"]
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    files = {"config.json": b"{}", "model.safetensors.index.json": json.dumps(index).encode(),
             "model-00001-of-00002.safetensors": b"x" * 100}
    write_hf_cache(tmp_path / "hf-cache", src.model_id, "main", files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="lacks model-00002-of-00002.safetensors"):
        pull(r, say=Said())
    files["model-00002-of-00002.safetensors"] = b"y" * 100
    commit = write_hf_cache(tmp_path / "hf-cache", src.model_id, "main", files)
    res = pull(r, say=Said())
    assert res.source == "cache" and res.path.name == commit and (res.path / "config.json").is_file()
    assert hub_server.requests == []


def test_offline_cli_is_one_line_and_exit_1(hub_server):
    p = run_cli("pull", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q8_0", "--offline")
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "glm-4-9b-chat-1m.Q8_0.gguf" in p.stderr
    assert hub_server.requests == []


# --- downloads from the stand-in hub ---------------------------------------------------------


def test_pull_gguf_downloads_verifies_and_records(hub_server, gguf_file):
    from huggingface_hub import hf_hub_download

    r = _resolve()
    src = r.hubs["huggingface"]
    name = src.files[0]
    commit = hub_server.add(src.model_id, {name: gguf_file, "glm-4-9b-chat-1m.Q8_0.gguf": b"other", "README.md": b"card"})
    said = Said()

    def say(msg):  # the licence notice must come before any request
        said.append((msg, len(hub_server.requests)))

    res = pull(r, say=say)
    assert res.source == "download" and res.commit == commit and res.path.read_bytes() == gguf_file
    notices = [m for m, n in said if "registration" in m]
    assert notices and said[0][1] == 0
    assert "https://huggingface.co/THUDM/glm-4-9b-chat-1m/blob/main/LICENSE" in notices[0]
    assert res.notices == [m for m, _ in said]
    sha = hashlib.sha256(gguf_file).hexdigest()
    assert os.path.realpath(res.path).endswith(f"/blobs/{sha}")  # content-addressed like hf_hub_download
    (row,) = _artifacts("glm4-chat-1m")
    assert (row.sha256, row.size_bytes, row.parent) == (sha, len(gguf_file), f"{src.model_id}@{commit}")  # the commit
    # Only the requested file came down; the Q8_0 file and the card did not.
    assert [g["path"].rsplit("/", 1)[-1] for g in hub_server.gets()] == [name]
    # huggingface_hub itself finds it in its cache: the layout is shared.
    assert hf_hub_download(src.model_id, name, local_files_only=True, cache_dir=os.environ["HF_HUB_CACHE"]) == str(res.path)
    import gguf

    assert gguf.GGUFReader(res.path).tensors[0].name == "token_embd.weight"
    before = len(hub_server.requests)
    assert pull(r, say=Said()).source == "store" and len(hub_server.requests) == before


def test_pull_records_the_commit_and_revision_pins_one(hub_server, gguf_file):
    """Two commits on main: a plain pull takes the newest and records its commit; --revision takes the old one
    (a store artifact of another commit does not answer it), and the CLI shows the commit."""
    r = _resolve()
    src = r.hubs["huggingface"]
    name = src.files[0]
    old = hub_server.add(src.model_id, {name: gguf_file})
    newer = gguf_file + b"\0" * 64  # another commit of the same file name
    new = hub_server.add(src.model_id, {name: newer})
    assert old != new
    res = pull(r, say=Said())
    assert res.commit == new and res.path.read_bytes() == newer
    pinned = pull(r, say=Said(), revision=old)
    assert (pinned.source, pinned.commit) == ("download", old) and pinned.path.read_bytes() == gguf_file
    parents = sorted(a.parent for a in _artifacts("glm4-chat-1m"))
    assert parents == sorted([f"{src.model_id}@{new}", f"{src.model_id}@{old}"])
    again = pull(r, say=Said(), revision=old)  # now the store has it at that commit
    assert again.source == "store" and again.path == pinned.path
    out = run_cli("pull", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", "--revision", old)
    assert out.returncode == 0, out.stderr
    assert f"{src.model_id}@{old}" in out.stdout


def test_pull_split_gguf_returns_the_first_part(hub_server, gguf_file):
    r = _resolve()
    src = HubSource(model_id="o/split-GGUF", file_template="m.{quantization}.gguf", split_parts={"Q4_K": 2})
    parts = src.files_for("Q4_K")
    half = len(gguf_file) // 2
    hub_server.add("o/split-GGUF", {parts[0]: gguf_file[:half], parts[1]: gguf_file[half:]})
    rs = dataclasses.replace(r, hubs={"huggingface": HubFiles("huggingface", "o/split-GGUF", "main", parts)})
    res = pull(rs, say=Said(), progress=True)  # rich bars on stderr
    assert res.path.name == parts[0] and (res.path.parent / parts[1]).read_bytes() == gguf_file[half:]
    assert sorted(Path(a.path).name for a in _artifacts("glm4-chat-1m")) == parts
    assert pull(rs, say=Said()).path == res.path  # from the store, both parts present


def test_pull_snapshot_skips_what_engines_do_not_need(hub_server):
    r = _resolve("glm4-chat-1m", "pytorch", "none")
    src = r.hubs["huggingface"]
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    files = {"config.json": b'{"architectures": ["ChatGLMModel"]}', "model.safetensors.index.json": json.dumps(index).encode(),
             "model-00001-of-00002.safetensors": os.urandom(5000), "model-00002-of-00002.safetensors": os.urandom(3000),
             "tokenizer_config.json": b"{}", "tokenization_chatglm.py": b"# remote code", "README.md": b"card",
             "original/consolidated.pth": b"p" * 1000, "model.Q4_K.gguf": b"g" * 1000}
    commit = hub_server.add(src.model_id, files)
    res = pull(r, say=Said())
    got = sorted(p.relative_to(res.path).as_posix() for p in res.path.rglob("*") if p.is_file())
    assert got == sorted(["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
                          "model-00002-of-00002.safetensors", "tokenizer_config.json", "tokenization_chatglm.py"])
    assert res.path.name == commit and res.path.parent.name == "snapshots"
    (row,) = _artifacts("glm4-chat-1m")
    assert row.path == str(res.path) and row.size_bytes == sum(len(files[f]) for f in got)
    assert all(r_["ok"] for r_ in verify(r))  # every file against its content address
    # A regular (non-LFS) file is checked by its git blob id, the name of its cache blob.
    cfg = Path(os.path.realpath(res.path / "config.json"))
    cfg.write_bytes(b'{"architectures": ["ChatGLMModeX"]}')
    results = verify(r, raise_on_error=False)
    (bad,) = [x for x in results if not x["ok"]]
    assert bad["path"] == str(res.path / "config.json") and "git-sha1" in bad["problems"][0]
    assert Path(bad["moved_to"]).read_bytes().endswith(b'ModeX"]}') and not cfg.exists()
    from huggingface_hub import scan_cache_dir

    scan = scan_cache_dir(os.environ["HF_HUB_CACHE"])  # the cache stays consistent for other tools
    assert scan.warnings == [] and [r_.repo_id for r_ in scan.repos] == [src.model_id]
    assert _artifacts() == []
    with pytest.raises(OfflineError, match="lacks config.json"):
        pull(r, offline=True, say=Said())
    before = len(hub_server.requests)
    assert (pull(r, say=Said()).path / "config.json").read_bytes() == files["config.json"]
    # only the missing file is asked for; the snapshot's other files are kept as they are
    fetched = {q["path"].rsplit("/", 1)[-1] for q in hub_server.requests[before:] if "/resolve/" in q["path"]}
    assert fetched == {"config.json"}


def test_revision_per_quant_downloads_that_branch(hub_server):
    r = _resolve("glm-4.7", "compressed-tensors", "W4A16_GS64")
    src = r.hubs["huggingface"]
    assert src.revision == "W4A16_GS64"
    hub_server.add(src.model_id, {"README.md": b"landing page"}, branch="main")
    files = {"config.json": b"{}", "model.safetensors": b"w" * 64}
    commit = hub_server.add(src.model_id, files, branch="W4A16_GS64")
    res = pull(r, say=Said())
    assert res.commit == commit and (res.path / "model.safetensors").read_bytes() == b"w" * 64
    ref = Path(os.environ["HF_HUB_CACHE"]) / "models--TheHouseOfTheDude--GLM-4.7_Compressed-Tensors" / "refs" / "W4A16_GS64"
    assert ref.read_text() == commit


def test_a_revision_that_does_not_exist(hub_server):
    r = _resolve("glm-4.7", "compressed-tensors", "W4A16_GS32")
    hub_server.add(r.hubs["huggingface"].model_id, {"README.md": b"landing page"}, branch="main")
    with pytest.raises(HubError, match=r"revision 'W4A16_GS32' does not exist in TheHouseOfTheDude/GLM-4.7_Compressed-Tensors; it has: main"):
        pull(r, say=Said())
    assert _artifacts() == []


def test_a_quant_whose_file_is_not_in_the_repo_lists_what_is(hub_server, gguf_file):
    r = _resolve(quant="Q8_0")
    hub_server.add(r.hubs["huggingface"].model_id, {"glm-4-9b-chat-1m.Q4_K.gguf": gguf_file, "README.md": b"card"})
    with pytest.raises(HubError, match=r"has no file glm-4-9b-chat-1m\.Q8_0\.gguf; it has: glm-4-9b-chat-1m\.Q4_K\.gguf$"):
        pull(r, say=Said())
    assert hub_server.gets() == [] and _artifacts() == []


def test_an_unknown_repo(hub_server):
    with pytest.raises(HubError, match="repository legraphista/glm-4-9b-chat-1m-GGUF not found at http://127.0.0.1"):
        pull(_resolve(), say=Said())


def test_checksum_mismatch_moves_the_download_aside(hub_server, gguf_file):
    r = _resolve()
    name = r.hubs["huggingface"].files[0]
    hub_server.add(r.hubs["huggingface"].model_id, {name: gguf_file})
    hub_server.corrupt.add(name)
    with pytest.raises(IntegrityError) as e:
        pull(r, say=Said())
    moved = Path(re.search(r"moved to (\S+);", str(e.value)).group(1))
    assert moved.is_file() and moved.read_bytes()[1:] == gguf_file[1:] and ".corrupt-" in moved.name
    sha = hashlib.sha256(gguf_file).hexdigest()
    assert sha in str(e.value)
    blobs = moved.parent
    assert not (blobs / sha).exists() and not (blobs / f"{sha}.incomplete").exists()
    assert _artifacts() == []
    hub_server.corrupt.clear()  # the hub serves good bytes again: a fresh download
    assert pull(r, say=Said()).path.read_bytes() == gguf_file


def test_a_dropped_connection_is_retried(hub_server, gguf_file):
    r = _resolve()
    name = r.hubs["huggingface"].files[0]
    hub_server.add(r.hubs["huggingface"].model_id, {name: gguf_file})
    hub_server.drop_after[name] = 1_000_000
    res = pull(r, say=Said())
    assert res.path.read_bytes() == gguf_file
    # retried after the drop. The body is written in 1 MiB chunks, so nothing reached the disk before
    # the drop at 1,000,000 bytes and the retry starts at 0 (no Range header).
    assert [g["range"] for g in hub_server.gets()] == [None, None]
    assert len(_artifacts()) == 1


def test_a_connection_dropped_after_some_bytes_resumes_where_they_end(hub_server, gguf_file):
    """The body is written in 1 MiB chunks: dropped 4 KiB after the second, the retry asks for the rest
    (Range) and the file is whole."""
    from registry.hub.integrity import CHUNK

    r = _resolve()
    name = r.hubs["huggingface"].files[0]
    data = (gguf_file * (3 * CHUNK // len(gguf_file) + 1))[: 3 * CHUNK - 5]
    hub_server.add(r.hubs["huggingface"].model_id, {name: data})
    hub_server.drop_after[name] = 2 * CHUNK + 4096
    said = Said()
    assert pull(r, say=said).path.read_bytes() == data
    assert [g["range"] for g in hub_server.gets()] == [None, f"bytes={2 * CHUNK}-"]
    assert any("connection dropped" in m and f"resuming {name} at {2 * CHUNK:,} bytes" in m for m in said), said


def _hub_with_partial_download(hub_server, gguf_file: bytes, partial: bytes):
    """The hub serves the Q4_K file; the cache holds `partial` as huggingface_hub's .incomplete blob."""
    r = _resolve()
    src = r.hubs["huggingface"]
    hub_server.add(src.model_id, {src.files[0]: gguf_file})
    sha = hashlib.sha256(gguf_file).hexdigest()
    blobs = Path(os.environ["HF_HUB_CACHE"]) / "models--legraphista--glm-4-9b-chat-1m-GGUF" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{sha}.incomplete").write_bytes(partial)
    return r, sha


def test_a_partial_file_from_an_interrupted_pull_is_resumed(hub_server, gguf_file):
    r, sha = _hub_with_partial_download(hub_server, gguf_file, gguf_file[:1234567])
    said = Said()
    res = pull(r, say=said)
    assert res.path.read_bytes() == gguf_file
    assert [g["range"] for g in hub_server.gets()] == ["bytes=1234567-"]
    assert any("resuming" in m and "1,234,567" in m for m in said)


def test_a_server_that_ignores_range_still_gives_a_good_file(hub_server, gguf_file):
    hub_server.ignore_range = True
    r, sha = _hub_with_partial_download(hub_server, gguf_file, gguf_file[:5000])
    res = pull(r, say=Said())
    assert [g["range"] for g in hub_server.gets()] == ["bytes=5000-"]  # asked, got the whole file (200)
    assert res.path.read_bytes() == gguf_file and _artifacts()[0].sha256 == sha


def test_a_partial_file_longer_than_the_file_is_moved_aside(hub_server, gguf_file):
    r, sha = _hub_with_partial_download(hub_server, gguf_file, gguf_file + b"trailing junk")
    said = Said()
    res = pull(r, say=said)
    assert res.path.read_bytes() == gguf_file
    assert [g["range"] for g in hub_server.gets()] == [None]  # downloaded afresh, not resumed
    (msg,) = [m for m in said if "was longer than" in m]
    moved = Path(msg.rsplit("moved it to ", 1)[1])
    assert moved.read_bytes() == gguf_file + b"trailing junk"  # kept for inspection


def test_a_partial_file_with_wrong_bytes_is_caught(hub_server, gguf_file):
    r, sha = _hub_with_partial_download(hub_server, gguf_file, b"\0" * 1000)
    with pytest.raises(IntegrityError, match="checksum mismatch.*moved to"):
        pull(r, say=Said())
    assert _artifacts() == []
    assert pull(r, say=Said()).path.read_bytes() == gguf_file


def test_hf_token_opens_a_gated_repo(hub_server, gguf_file, monkeypatch):
    r = _resolve()
    fam = r.family.model_copy(update={"licence": r.family.licence.model_copy(update={"gated": True})})
    rg = dataclasses.replace(r, family=fam)
    src = r.hubs["huggingface"]
    hub_server.add(src.model_id, {src.files[0]: gguf_file}, gated=True)
    hub_server.token = "hf_test_token"
    said = Said()
    with pytest.raises(HubError, match=r"is gated: accept its licence at http://127\.0\.0\.1:\d+/legraphista/glm-4-9b-chat-1m-GGUF.*HF_TOKEN"):
        pull(rg, say=said)
    assert any("is gated on huggingface" in m and "https://huggingface.co/legraphista/glm-4-9b-chat-1m-GGUF" in m for m in said)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    assert pull(rg, say=Said()).path.read_bytes() == gguf_file
    assert {q["authorization"] for q in hub_server.requests[-3:]} == {"Bearer hf_test_token"}


def test_verify_finds_a_corrupted_cached_file_and_moves_it_aside(hub_server, gguf_file):
    r = _resolve()
    src = r.hubs["huggingface"]
    hub_server.add(src.model_id, {src.files[0]: gguf_file})
    res = pull(r, say=Said())
    (ok,) = verify(r)
    assert ok["ok"] and ok["sha256"] == hashlib.sha256(gguf_file).hexdigest()
    blob = Path(os.path.realpath(res.path))
    with open(blob, "r+b") as f:  # bit rot: same size, one byte changed
        f.seek(2_000_000)
        f.write(b"\x42")
    with pytest.raises(IntegrityError) as e:
        verify(r)
    moved = Path(re.search(r"moved to (\S+?);", str(e.value)).group(1))
    assert moved.is_file() and not blob.exists() and str(res.path) in str(e.value)
    assert _artifacts() == []  # the row no longer describes a file that is there
    again = pull(r, say=Said())
    assert again.source == "download" and again.path.read_bytes() == gguf_file
    p = run_cli("verify", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", "--json")
    assert p.returncode == 0, p.stderr
    assert [x["ok"] for x in json.loads(p.stdout)] == [True]


def test_verify_without_a_row_checks_the_cache_by_content_address(hub_server, gguf_file, tmp_path):
    r = _resolve()
    src = r.hubs["huggingface"]
    bad = bytearray(gguf_file)
    bad[100] ^= 1
    write_hf_cache(tmp_path / "hf-cache", src.model_id, "main", {src.files[0]: gguf_file})
    blob = tmp_path / "hf-cache" / "models--legraphista--glm-4-9b-chat-1m-GGUF" / "blobs" / hashlib.sha256(gguf_file).hexdigest()
    blob.write_bytes(bytes(bad))  # the blob no longer matches its name
    p = run_cli("verify", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K")
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    assert "the hub's checksum (its cache blob name) is" in p.stderr and "moved to" in p.stderr
    assert not blob.exists() and len(list(blob.parent.glob("*.corrupt-*"))) == 1
    assert hub_server.requests == []


def _record_local(path: Path, sha256: str, size: int, quant="Q4_K_M", fmt="ggufv2", family="glm4-chat-1m"):
    """The row `registry convert` writes for a local build (converters/options.py: record)."""
    from registry.store import Store

    return Store().add_artifact(family=family, format=fmt, quantization=quant, path=str(path), sha256=sha256,
                                size_bytes=size, parent="/src/checkpoint", recipe={"quant": quant}, report=None)


def test_verify_finds_a_corrupted_local_build(hub_server, gguf_file, tmp_path):
    # A build outside the Hugging Face cache has no content address: only the store's sha256 can tell.
    build = tmp_path / "builds" / "glm4-chat-1m.Q4_K_M.gguf"
    build.parent.mkdir()
    build.write_bytes(gguf_file)
    sha = hashlib.sha256(gguf_file).hexdigest()
    _record_local(build, sha, len(gguf_file))
    (ok,) = verify(_resolve())
    assert ok["ok"] and ok["sha256"] == sha and ok["path"] == str(build)
    with open(build, "r+b") as f:  # same size, one byte changed
        f.seek(len(gguf_file) // 2)
        f.write(b"\x42" if gguf_file[len(gguf_file) // 2] != 0x42 else b"\x43")
    bad_sha = hashlib.sha256(build.read_bytes()).hexdigest()
    with pytest.raises(IntegrityError) as e:
        verify(_resolve())
    msg = str(e.value)
    assert f"sha256 is {bad_sha} but the store recorded {sha}" in msg and "\n" not in msg
    moved = Path(re.search(r"moved to (\S+?);", msg).group(1))
    assert moved.parent == build.parent and ".corrupt-" in moved.name and not build.exists()
    assert hashlib.sha256(moved.read_bytes()).hexdigest() == bad_sha  # kept for inspection, not deleted
    assert _artifacts() == []  # the row no longer describes a file that is there
    assert hub_server.requests == []


def test_verify_finds_a_changed_file_in_a_local_folder_build(hub_server, tmp_path):
    # A folder build (a compressed-tensors output) is recorded with the sha256 of its sha256sum-style
    # manifest: '<sha256>  <relative path>' lines sorted by path. Computed here from that definition.
    out = tmp_path / "glm-4.7-W4A16_GS64"
    (out / "sub").mkdir(parents=True)
    files = {"config.json": b'{"architectures": ["Glm4MoeForCausalLM"]}', "model.safetensors": os.urandom(4096),
             "sub/recipe.yaml": b"quant: W4A16_GS64\n"}
    for name, data in files.items():
        (out / name).write_bytes(data)
    manifest = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n" for n in sorted(files))
    digest = hashlib.sha256(manifest.encode()).hexdigest()
    _record_local(out, digest, sum(map(len, files.values())), quant="W4A16_GS64", fmt="compressed-tensors",
                  family="glm-4.7")
    r = _resolve("glm-4.7", "compressed-tensors", "W4A16_GS64")
    (ok,) = verify(r)
    assert ok["ok"] and ok["sha256"] == digest
    (out / "sub" / "recipe.yaml").write_bytes(b"quant: W4A16_GS32\n")  # same size, other bytes
    with pytest.raises(IntegrityError, match=f"folder digest is [0-9a-f]{{64}} but the store recorded {digest}"):
        verify(r)
    assert _artifacts() == []
    assert hub_server.requests == []


def test_verify_with_nothing_local_says_so(hub_server):
    p = run_cli("verify", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q2_K")
    assert p.returncode == 1 and "no local copy of glm4-chat-1m ggufv2 Q2_K" in p.stderr


def test_cli_pull_json(hub_server, gguf_file):
    r = _resolve(quant="Q8_0")
    src = r.hubs["huggingface"]
    hub_server.add(src.model_id, {src.files[0]: gguf_file})
    p = run_cli("pull", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q8_0", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["source"] == "download" and Path(d["path"]).read_bytes() == gguf_file
    assert "registration" in p.stderr  # the licence notice goes to stderr, the JSON stays clean


def _wait_for(cond, what: str, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_two_pulls_at_once_download_once(hub_server, gguf_file):
    """The second pull starts while the first one's download is held open by the hub, so it finds the
    blob lock taken (it says so and waits) rather than a finished file; released, it downloads nothing."""
    import sys
    import threading

    from conftest import ROOT

    r = _resolve()
    src = r.hubs["huggingface"]
    name = src.files[0]
    hub_server.add(src.model_id, {name: gguf_file})
    gate = threading.Event()
    hub_server.hold[name] = gate
    cmd = [sys.executable, "-m", "registry", "pull", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q4_K", "--json"]

    def start():
        # the first download is held open on purpose until the second pull waits: the stall timeout (30 s)
        # must not end it meanwhile on a loaded machine
        env = {**os.environ, "REGISTRY_HUB_TIMEOUT": "300"}
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        lines: list[str] = []
        t = threading.Thread(target=lambda: lines.extend(iter(p.stderr.readline, "")), daemon=True)
        t.start()
        return p, lines, t

    first, first_err, t1 = start()
    try:
        _wait_for(lambda: len(hub_server.gets()) == 1, "the first pull's GET")  # it holds the lock now
        second, second_err, t2 = start()
        try:
            # Either the second says it waits on the lock (right) or sends its own GET (no lock): both
            # happen while the first download is still held open, so the outcome does not depend on timing.
            _wait_for(lambda: any("waiting for another download" in x for x in second_err) or len(hub_server.gets()) > 1,
                      "the second pull to wait on the lock or to download")
        finally:
            gate.set()
            outs = [p.communicate(timeout=120)[0] for p in (first, second)]
            t1.join(10)
            t2.join(10)
    finally:
        gate.set()
    assert [p.returncode for p in (first, second)] == [0, 0], (first_err, second_err)
    assert len(hub_server.gets()) == 1, second_err  # one download; the second found the blob after the lock
    assert any(f"waiting for another download of {name}" in x for x in second_err)
    assert not any("waiting" in x for x in first_err)
    paths = {json.loads(o)["path"] for o in outs}
    assert len(paths) == 1 and Path(paths.pop()).read_bytes() == gguf_file
    assert len(_artifacts()) == 1


def test_token_is_not_sent_to_another_host_on_redirect(hub_server, gguf_file, monkeypatch):
    # The hub answers an LFS file with a 302 to its CDN (a signed URL on another host): the token goes to
    # the hub only, as hf_hub_download does. Here the CDN is the same server under the name localhost.
    r = _resolve()
    src = r.hubs["huggingface"]
    name = src.files[0]
    hub_server.add(src.model_id, {name: gguf_file})
    hub_server.redirect[name] = hub_server.url.replace("127.0.0.1", "localhost")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")
    res = pull(r, say=Said())
    assert res.path.read_bytes() == gguf_file and res.source == "download"
    hub_calls = [q for q in hub_server.requests if "/resolve/" in q["path"] or q["path"].startswith("/api/")]
    cdn_calls = [q for q in hub_server.requests if q["path"].startswith("/cdn/")]
    assert hub_calls and {q["authorization"] for q in hub_calls} == {"Bearer hf_secret_token"}
    assert [q["method"] for q in cdn_calls] == ["GET"] and cdn_calls[0]["authorization"] is None
    (row,) = _artifacts("glm4-chat-1m")
    assert row.sha256 == hashlib.sha256(gguf_file).hexdigest()


def test_a_spec_without_a_hub_says_to_build_it(hub_server):
    with pytest.raises(HubError, match=r"not published on a hub.*registry convert glm-4-9b-chat --from \./\S+ --to ggufv2 --quant Q4_K_M"):
        # the build made here (bartowski also publishes it, and a plain resolve takes that one: tests/test_daily.py)
        pull(load(include_user=False).resolve("glm-4-9b-chat", "ggufv2", "Q4_K_M", uploader="local"), say=Said())


def test_modelscope_without_its_package(hub_server, monkeypatch):
    # the dev extra installs modelscope (tests/test_modelscope.py); hide it: `import modelscope` fails
    monkeypatch.setitem(sys.modules, "modelscope", None)
    monkeypatch.setenv("REGISTRY_HUB", "modelscope")
    with pytest.raises(HubError, match=r"pip install 'glm-registry\[modelscope\]'"):
        pull(_resolve(), say=Said())
    with pytest.raises(HubError, match="not published on modelscope"):
        pull(_resolve("glm-4.7", "compressed-tensors", "W4A16_GS32"), say=Said())
    assert hub_server.requests == []


# --- disk full ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root and mount rights; skipped otherwise)."""
    d = tmp_path / "small"
    d.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a 1 MiB tmpfs to fill the disk needs root")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)


def test_disk_full_keeps_the_partial_file_and_resumes(hub_server, gguf_file, small_disk, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(small_disk / "hf"))
    r = _resolve()
    src = r.hubs["huggingface"]
    hub_server.add(src.model_id, {src.files[0]: gguf_file})
    said = Said()
    with pytest.raises(HubError) as e:
        pull(r, say=said)
    msg = str(e.value)
    assert msg.startswith("disk full while downloading glm-4-9b-chat-1m.Q4_K.gguf") and "pull again to resume" in msg
    partial = Path(re.search(r"kept in (\S+);", msg).group(1))
    kept = partial.stat().st_size
    assert 0 < kept < len(gguf_file) and gguf_file.startswith(partial.read_bytes())
    assert f"{kept:,} of {len(gguf_file):,} bytes" in msg
    assert any("warning" in m and "free" in m for m in said)
    assert _artifacts() == [] and not (small_disk / "hf" / "models--legraphista--glm-4-9b-chat-1m-GGUF" / "snapshots").exists()
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)  # space freed
    res = pull(r, say=Said())
    assert res.path.read_bytes() == gguf_file
    assert hub_server.gets()[-1]["range"] == f"bytes={kept}-"
    assert len(_artifacts()) == 1


def test_two_uploaders_of_one_quantization_pull_their_own_files(hub_server, gguf_file):
    """bartowski's and legraphista's GGUF of GLM-4-9B-Chat at Q4_K_M: each pull asks its own repository for its
    own file name, and the file pulled from one uploader never answers for the other."""
    cat = load(include_user=False)
    bart = cat.resolve("glm-4-9b-chat", "ggufv2", "Q4_K_M", uploader="bartowski")
    leg = cat.resolve("legraphista/glm-4-9b-chat", "ggufv2", "Q4_K_M")
    b, lg = bart.hubs["huggingface"], leg.hubs["huggingface"]
    assert (b.model_id, b.files) == ("bartowski/glm-4-9b-chat-GGUF", ["glm-4-9b-chat-Q4_K_M.gguf"])
    assert (lg.model_id, lg.files, leg.quantization) == ("legraphista/glm-4-9b-chat-GGUF", ["glm-4-9b-chat.Q4_K.gguf"], "Q4_K")
    other = gguf_file + b"\0" * 32  # another uploader's conversion: other bytes
    hub_server.add(b.model_id, {b.files[0]: gguf_file})
    hub_server.add(lg.model_id, {lg.files[0]: other})
    first = pull(bart, say=Said())
    assert first.source == "download" and first.path.read_bytes() == gguf_file
    second = pull(leg, say=Said())  # the store holds bartowski's Q4_K_M: not legraphista's build
    assert second.source == "download" and second.path.read_bytes() == other
    assert pull(bart, say=Said()).path == first.path and pull(leg, say=Said()).path == second.path
    assert sorted(a.parent.split("@")[0] for a in _artifacts("glm-4-9b-chat")) == [b.model_id, lg.model_id]
    out = run_cli("pull", "glm-4-9b-chat", "--format", "ggufv2", "--quant", "Q4_K", "--from", "legraphista")
    assert out.returncode == 0, out.stderr
    assert "legraphista/glm-4-9b-chat-GGUF@" in out.stdout
    bad = run_cli("pull", "glm-4-9b-chat", "--format", "ggufv2", "--quant", "Q4_K", "--from", "bartowsky")
    assert bad.returncode != 0 and "nearest: bartowski" in bad.stderr


def test_the_installed_huggingface_hub_is_inside_the_pin_and_has_every_internal_name():
    """registry/hub/hfinternals.py uses huggingface_hub names beyond its documented API, known to work
    in the range pyproject.toml pins: an upgrade outside it, or one that drops a name, fails here."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    from registry.hub import hfinternals

    deps = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(Requirement(d) for d in deps if Requirement(d).name.replace("-", "_") == "huggingface_hub")
    assert pin.specifier.contains(version("huggingface_hub")), f"huggingface_hub {version('huggingface_hub')} is outside {pin}"
    assert str(pin.specifier) == "<2,>=1.20", "hfinternals.py's docstring names the range; change both together"
    assert hfinternals.missing() == []


def test_the_internal_names_check_reports_a_missing_name(monkeypatch):
    from registry.hub import hfinternals

    monkeypatch.setattr(hfinternals, "NAMES", hfinternals.NAMES + (("huggingface_hub.utils", "no_such_name"),
                                                                  ("huggingface_hub.no_such_module", "x")))
    assert hfinternals.missing() == ["huggingface_hub.utils.no_such_name", "huggingface_hub.no_such_module.x"]
