"""The package as people install it: a wheel and an sdist built from the committed files (git archive
HEAD, not the work tree), the wheel installed into a fresh venv outside the checkout and run from
another folder. Its dependencies come from the test venv through a .pth path line (offline, fast);
the package itself, its catalog and its data come only from the wheel."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def _committed_specs() -> list[str]:
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "registry/specs/*.yaml"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out, "no spec files committed under registry/specs/"
    return sorted(out)


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the wheel is built from the committed files (git archive HEAD)")
    src = tmp_path_factory.mktemp("committed")
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD"], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as t:
        t.extractall(src, filter="data")
    dist = tmp_path_factory.mktemp("dist")
    # setuptools' backend rewrites sys.argv while it builds: take the folder first; the names go last
    build = ("import sys\nfrom setuptools import build_meta as b\nout = sys.argv[1]\n"
             "w = b.build_wheel(out)\ns = b.build_sdist(out)\nprint(w, s)\n")
    r = subprocess.run([sys.executable, "-c", build, str(dist)], cwd=src, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel_name, sdist_name = r.stdout.split()[-2:]
    return {"wheel": dist / wheel_name, "sdist": dist / sdist_name}


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (--no-deps); returns its bin folder."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    # The test venv's packages as a plain path line: its .pth files (the editable install's finder
    # among them) are not processed from there, so `registry` can only come from the wheel.
    (purelib / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                        "-q", str(dists["wheel"])], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return venv / "bin"


def _run(bin_dir: Path, cwd: Path, home: Path, *argv: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REGISTRY_SPECS_DIR", "VIRTUAL_ENV")}
    env.update(REGISTRY_HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    return subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_sdist_and_wheel_carry_every_spec(dists):
    specs = _committed_specs()
    with tarfile.open(dists["sdist"]) as t:
        top = t.getnames()[0].split("/")[0]
        in_sdist = {n.split("/", 1)[1] for n in t.getnames() if "/" in n and n.startswith(top + "/")}
    assert not [s for s in specs if s not in in_sdist], "spec files missing from the sdist"
    with zipfile.ZipFile(dists["wheel"]) as z:
        in_wheel = set(z.namelist())
    assert not [s for s in specs if s not in in_wheel], "spec files missing from the wheel"
    # everything else read at run time: data tables, templates, the page
    for need in ("registry/data/hardware.yaml", "registry/data/gpus.yaml", "registry/data/family-template.yaml",
                 "registry/docs/templates/family.rst.j2", "registry/serve/page.html"):
        assert need in in_wheel, need


def test_installed_wheel_lists_shows_and_answers_python(installed, tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "elsewhere"
    cwd.mkdir()
    r = _run(installed, cwd, home, "registry", "list", "--json")
    assert r.returncode == 0, r.stderr
    names = {f["name"] for f in json.loads(r.stdout)}
    assert len(names) == len(_committed_specs()) and "glm4-chat-1m" in names
    r = _run(installed, cwd, home, "registry", "show", "glm4-chat-1m", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["context_length"] == 1048576
    code = ("import registry, json\n"
            "r = registry.resolve('glm4-chat-1m', 'ggufv2', 'Q4_K')\n"
            "print(json.dumps({'file': registry.__file__, 'ctx': registry.get('glm4-chat-1m').context_length,"
            " 'canonical': r.canonical}))\n")
    r = _run(installed, cwd, home, str(installed / "python"), "-c", code)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert Path(got["file"]).is_relative_to(installed.parent), got["file"]  # the wheel's copy, not the checkout
    assert got["ctx"] == 1048576 and got["canonical"] == "Q4_K_M"
    # `registry init` reads its template from the package; the file it writes validates
    r = _run(installed, cwd, home, "registry", "init", "my-glm")
    assert r.returncode == 0, r.stderr
    r = _run(installed, cwd, home, "registry", "fit", "glm4-chat-1m:Q4_K", "--hardware", "1xH100-80G", "--json")
    assert r.returncode == 0, r.stderr  # the hardware tables are package data too


def test_installed_docs_build_needs_out_then_writes_there(installed, tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "elsewhere"
    cwd.mkdir()
    r = _run(installed, cwd, home, "registry", "docs", "build")
    assert r.returncode == 1 and "--out DIR" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (cwd / "docs").exists()
    r = _run(installed, cwd, home, "registry", "docs", "build", "--out", "pages")
    assert r.returncode == 0, r.stderr
    assert str(cwd / "pages") in r.stdout or "pages" in r.stdout
    assert len(list((cwd / "pages").glob("*.rst"))) == len(_committed_specs()) + 1


def test_installed_wheel_runs_the_demo(installed, tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "elsewhere"
    cwd.mkdir()
    r = _run(installed, cwd, home, "registry", "demo", "--json", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["launch"]["answer"]["usage"]["completion_tokens"] > 0
    assert {b["gguf_type"] for b in out["builds"]} == {"F16", "Q4_K_M"}
