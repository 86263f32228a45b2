"""Writing a family of your own: `registry init`, every error from `registry validate`, `register --replace`."""

from __future__ import annotations

import json

import yaml

from conftest import SPECS, run_cli


def _init(tmp_path, name="my-glm"):
    path = tmp_path / f"{name}.yaml"
    r = run_cli("init", name, "--out", str(path))
    assert r.returncode == 0, r.stderr
    return path, r


def test_init_writes_a_commented_template_that_validates(tmp_path):
    path, r = _init(tmp_path)
    text = path.read_text()
    assert "FILL IN" in text and text.count("#") > 20  # commented: says what each field is
    assert f"registry validate {path}" in r.stdout and f"registry register {path}" in r.stdout
    v = run_cli("validate", str(path))
    assert v.returncode == 0, v.stderr
    assert v.stdout.strip() == f"ok: {path} (my-glm)"
    # its architecture is the shipped spec's it says it copies, so the numbers are sourced facts
    tmpl = yaml.safe_load(text)
    shipped = yaml.safe_load((SPECS / "glm-4-9b-0414.yaml").read_text())
    assert tmpl["architecture"] == shipped["architecture"]
    assert tmpl["context_length"] == shipped["context_length"]
    # an existing file is kept, a bad or shipped name refused: each one line
    again = run_cli("init", "my-glm", "--out", str(path))
    assert again.returncode == 1 and "exists; pass --force" in again.stderr and again.stderr.count("\n") == 1
    assert run_cli("init", "my-glm", "--out", str(path), "--force").returncode == 0
    bad = run_cli("init", "My GLM", "--out", str(tmp_path / "x.yaml"))
    assert bad.returncode == 1 and "lower-case" in bad.stderr and not (tmp_path / "x.yaml").exists()
    taken = run_cli("init", "glm-4.6", "--out", str(tmp_path / "y.yaml"))
    assert taken.returncode == 1 and "shipped family" in taken.stderr and not (tmp_path / "y.yaml").exists()


def test_validate_prints_every_error_with_its_field_path(tmp_path):
    path, _ = _init(tmp_path)
    d = yaml.safe_load(path.read_text())
    d["context_length"] = "lots"
    d["architecture"]["kind"] = "dnse"
    del d["architecture"]["layers"]
    d["vendr"] = "me"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(d))
    r = run_cli("validate", str(bad))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    fields = {"context_length", "architecture.kind", "architecture.layers", "vendr"}
    assert len(lines) == len(fields), r.stderr
    for line in lines:
        assert line.startswith(f"error: {bad}: family 'my-glm': field ")
    assert {line.split(": field ")[1].split(":")[0] for line in lines} == fields
    assert "more error" not in r.stderr
    assert "'lots'" in r.stderr and "'dnse'" in r.stderr
    j = run_cli("validate", str(bad), "--json")
    assert j.returncode == 1
    (res,) = json.loads(j.stdout)
    assert res["ok"] is False and len(res["errors"]) == 4
    # other commands keep one line, and say where to see the rest
    reg = run_cli("register", str(bad))
    assert reg.returncode == 1 and reg.stderr.count("\n") == 1
    assert "[and 3 more errors; `registry validate` on the file lists them all]" in reg.stderr


def test_register_replace(tmp_path):
    path, _ = _init(tmp_path)
    assert run_cli("register", str(path)).returncode == 0
    d = yaml.safe_load(path.read_text())
    d["description"] = "The second version."
    path.write_text(yaml.safe_dump(d))
    r = run_cli("register", str(path))
    assert r.returncode == 1 and "registry register --replace" in r.stderr
    assert json.loads(run_cli("show", "my-glm", "--json").stdout)["description"] == "A fine-tune of GLM-4-9B-0414."
    r = run_cli("register", "--replace", str(path))
    assert r.returncode == 0 and r.stdout.startswith("replaced my-glm"), r.stderr
    assert json.loads(run_cli("show", "my-glm", "--json").stdout)["description"] == "The second version."
    names = [x["name"] for x in json.loads(run_cli("list", "--json").stdout) if x["origin"] == "user"]
    assert names == ["my-glm"]
    # --replace of a name not yet registered simply registers it
    other, _ = _init(tmp_path, "my-other")
    r = run_cli("register", "--replace", str(other))
    assert r.returncode == 0 and r.stdout.startswith("registered my-other"), r.stderr
    # a shipped name stays refused with --replace
    shadow = tmp_path / "shadow.yaml"
    shadow.write_text((SPECS / "glm-5.yaml").read_text())
    r = run_cli("register", "--replace", str(shadow))
    assert r.returncode == 1 and "a shipped family has this name" in r.stderr
