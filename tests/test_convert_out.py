"""`registry convert --to ggufv2 --quant Q --out FILE.gguf`: one file under that name, the F16 pass removed or
kept beside it (--keep-f16), nothing under the final name on failure, and the build recorded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import run_cli
from registry import gguf_header

Q4_K_M, F16 = 15, 1  # llama.cpp's LLAMA_FTYPE_MOSTLY_Q4_K_M and _F16 (general.file_type)


@pytest.fixture
def outdir(tmp_path):
    d = tmp_path / "builds"  # tmp_path itself holds the test's REGISTRY_HOME
    d.mkdir()
    return d


def _artifacts():
    from registry import paths

    if not paths.has_database():
        return []
    from registry.store import Store

    return Store().artifacts(family="glm4-chat-1m")


def test_out_file_of_one_quantization_writes_that_file(tiny_checkpoint, outdir):
    src = tiny_checkpoint("chatglm")
    out = outdir / "mine.gguf"
    r = run_cli("convert", "glm4-chat-1m", "--from", str(src), "--to", "ggufv2", "--quant", "Q4_K",
                "--out", str(out), "--report", "--json")
    assert r.returncode == 0, r.stderr
    (res,) = json.loads(r.stdout)  # the one build asked for; the F16 pass was scratch
    assert res["path"] == str(out) and (res["quantization"], res["gguf_type"]) == ("Q4_K", "Q4_K_M")
    assert res["parent"] == str(src)
    assert res["report"]["reference"] == "F16" and 0 <= res["report"]["top1_agreement"] <= 1
    assert [p.name for p in outdir.iterdir()] == ["mine.gguf"]  # no F16 file, no partial left
    assert gguf_header.read(out).metadata["general.file_type"] == Q4_K_M
    (row,) = _artifacts()
    assert (row.path, row.quantization) == (str(out), "Q4_K_M")
    assert row.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert row.recipe["first_pass"] == "F16"
    # the same name again is refused before any work, and the file stays as it was
    before = out.read_bytes()
    again = run_cli("convert", "glm4-chat-1m", "--from", str(src), "--to", "ggufv2", "--quant", "Q4_K",
                    "--out", str(out))
    assert again.returncode == 1 and "already exists" in again.stderr
    assert out.read_bytes() == before and [p.name for p in outdir.iterdir()] == ["mine.gguf"]


def test_keep_f16_leaves_the_first_pass_beside_it(tiny_checkpoint, outdir):
    out = outdir / "mine-q8.gguf"
    r = run_cli("convert", "glm4-chat-1m", "--from", str(tiny_checkpoint("chatglm")), "--to", "ggufv2",
                "--quant", "q8_0", "--out", str(out), "--keep-f16", "--json")
    assert r.returncode == 0, r.stderr
    got = {x["gguf_type"]: x for x in json.loads(r.stdout)}  # llama.cpp's names (the catalog's: Q8_0, FP16)
    f16 = outdir / "glm4-chat-1m.F16.gguf"
    assert set(got) == {"Q8_0", "F16"} and got["Q8_0"]["path"] == str(out) and got["F16"]["path"] == str(f16)
    assert got["Q8_0"]["parent"] == str(f16)
    assert sorted(p.name for p in outdir.iterdir()) == ["glm4-chat-1m.F16.gguf", "mine-q8.gguf"]
    assert gguf_header.read(f16).metadata["general.file_type"] == F16
    assert {a.quantization: a.path for a in _artifacts()} == {"Q8_0": str(out), "F16": str(f16)}
    # a second single-file build beside it reuses that F16 pass and leaves it there
    out2 = outdir / "mine-q4.gguf"
    r = run_cli("convert", "glm4-chat-1m", "--from", str(tiny_checkpoint("chatglm")), "--to", "ggufv2",
                "--quant", "Q4_K", "--out", str(out2), "--json")
    assert r.returncode == 0 and "reusing" in r.stderr, r.stderr
    assert f16.is_file() and out2.is_file()


def test_out_file_with_several_quantizations_asks_for_a_directory(tiny_checkpoint, outdir):
    r = run_cli("convert", "glm4-chat-1m", "--from", str(tiny_checkpoint("chatglm")), "--to", "ggufv2",
                "--quant", "all", "--out", str(outdir / "x.gguf"))
    assert r.returncode == 1 and [ln for ln in r.stderr.splitlines() if ln.startswith("error:")] == [r.stderr.splitlines()[-1]]
    assert "give a directory" in r.stderr
    assert list(outdir.iterdir()) == []


def test_failed_quantization_leaves_nothing(tiny_checkpoint, outdir, monkeypatch):
    """llama.cpp failing the quantize step (a real error path of quantize_files): neither the build nor the
    scratch F16 pass nor a partial file is left, and nothing is recorded."""
    import llama_cpp

    from converters.gguf import run_convert
    from converters.options import ConvertRequest
    from registry.errors import RegistryError

    monkeypatch.setattr(llama_cpp, "llama_model_quantize", lambda *a: 1)
    out = outdir / "mine.gguf"
    req = ConvertRequest(family="glm4-chat-1m", source=tiny_checkpoint("chatglm"), to="ggufv2", quant="Q4_K",
                         out=out, progress=False, say=lambda m: None)
    with pytest.raises(RegistryError, match="could not quantize"):
        run_convert(req)
    assert list(outdir.iterdir()) == []
    assert _artifacts() == []
