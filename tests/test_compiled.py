"""The compiled catalog (registry/compiled.py): a cache of the parsed specs that is never wrong after an
edit, an added or removed file, or an upgrade of the package."""

from __future__ import annotations

import json
import shutil

import yaml

from conftest import SPECS, run_cli


def _show(env: dict, name: str = "glm-4-9b-0414") -> dict:
    r = run_cli("show", name, "--json", env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_cache_is_written_then_follows_every_edit(tmp_path, registry_home):
    specs = tmp_path / "specs"
    shutil.copytree(SPECS, specs)
    env = {"REGISTRY_SPECS_DIR": str(specs)}
    before = _show(env)["description"]
    cache = registry_home / "cache" / "catalog.json"
    assert cache.is_file() and len(json.loads(cache.read_text())["specs"]) == len(list(specs.glob("*.yaml")))
    stamp = cache.stat().st_mtime_ns

    _show(env)  # unchanged files: the cache is read, not rewritten
    assert cache.stat().st_mtime_ns == stamp

    f = specs / "glm-4-9b-0414.yaml"
    d = yaml.safe_load(f.read_text())
    d["description"] = "edited by hand"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    assert _show(env)["description"] == "edited by hand" != before
    assert cache.stat().st_mtime_ns != stamp  # the edit was a miss, and the cache was rebuilt

    # a removed file: the family is gone; an added one: it is there
    (specs / "glm-4-9b-0414.yaml").rename(tmp_path / "away.yaml")
    r = run_cli("show", "glm-4-9b-0414", env=env)
    assert r.returncode == 1 and "glm-4-9b-0414" in r.stderr
    (tmp_path / "away.yaml").rename(specs / "copy-of-it.yaml")
    assert _show(env)["name"] == "glm-4-9b-0414"

    # a bad edit is reported as the file's error, whatever the cache holds
    (specs / "copy-of-it.yaml").write_text("name: [unclosed\n")
    r = run_cli("list", env=env)
    assert r.returncode == 1 and "copy-of-it.yaml" in r.stderr and "invalid YAML" in r.stderr, r.stderr


def test_cache_of_another_version_or_damaged_is_not_used(tmp_path, registry_home):
    from registry import __version__, compiled

    env = {"REGISTRY_SPECS_DIR": str(SPECS)}
    real = _show(env)["description"]
    cache = registry_home / "cache" / "catalog.json"
    d = json.loads(cache.read_text())
    names = sorted(p.name for p in SPECS.glob("*.yaml"))
    texts = [(n, (SPECS / n).read_text(encoding="utf-8")) for n in names]
    assert d["key"] == compiled.key(__version__, texts)
    for s in d["specs"]:
        s["description"] = "stale"
    # the same files under another package version: an upgrade must not read it
    cache.write_text(json.dumps({"key": compiled.key("0.0.0-older", texts), "specs": d["specs"]}))
    assert _show(env)["description"] == real
    cache.write_text("{not json")  # damaged: ignored and rewritten
    assert _show(env)["description"] == real
    assert json.loads(cache.read_text())["key"] == compiled.key(__version__, texts)


def test_cache_that_cannot_be_written_is_skipped(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "cache").write_text("a file where the cache folder would go")  # mkdir fails, even as root
    r = run_cli("list", "--json", env={"REGISTRY_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) == len(list(SPECS.glob("*.yaml")))
