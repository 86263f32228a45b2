"""Hardening (issue 17, points 1, 2, 4, 5, 7): what an adversarial run broke, each kind a test here.

Kinds of bad input tested in this module (the count asked for by issue 17):

  spec revisions (9): '..' components, an absolute path, a backslash, a space/control character,
     one of ~^:?*[, '@{', an empty component, a '.'-component or '.lock', in `revision` and in `revisions`
  hub data (3): a branch name that escapes the cache (refs/<revision>) served by a mirror,
     a `--revision` that escapes it, a poisoned refs/<branch> file whose content is not a commit
Total: 12 kinds.
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
