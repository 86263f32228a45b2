"""Importance matrices: collected in llama.cpp from a tiny GLM build, written and read in llama.cpp's
imatrix GGUF and legacy .dat layouts, and passed to llama_model_quantize for IQ and K-quant builds."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
DATA = Path(__file__).parent / "data"
CALIB = DATA / "seed_004.txt"
CHUNK = 64


@pytest.fixture(scope="session")
def chatglm_imatrix(tiny_gguf):
    """(F16 build, its imatrix collected over seed_004.txt in chunks of 64 tokens)."""
    from converters.gguf.calibration import calibration_tokens
    from converters.gguf.collect import collect_imatrix

    f16 = tiny_gguf("chatglm")
    toks, bos = calibration_tokens(CALIB, f16)
    return f16, collect_imatrix(f16, toks, dataset=CALIB.name, chunk_size=CHUNK, bos=bos)


def _tensor(path: Path, name: str):
    import numpy as np
    from gguf import GGUFReader

    t = next(t for t in GGUFReader(path).tensors if t.name == name)
    from gguf.quants import dequantize

    return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float64).reshape([int(x) for x in t.shape[::-1]])


def _field(path: Path, key: str):
    return _fields(path, key)[0]


def _fields(path: Path, *keys: str) -> list:
    """The values of `keys`, from one read of the file's header (a read costs 40 ms)."""
    from gguf import GGUFReader

    fields = GGUFReader(path).fields
    return [fields[k].contents() for k in keys]


# --- collection ----------------------------------------------------------------------------


def test_first_layer_sums_equal_the_normalized_embeddings(chatglm_imatrix):
    """blk.0.attn_qkv reads rmsnorm(token_embd[t]) * attn_norm: recompute it from the GGUF's own weights."""
    import numpy as np

    from converters.gguf.calibration import calibration_tokens
    from converters.gguf.collect import chunks_of

    f16, im = chatglm_imatrix
    toks, bos = calibration_tokens(CALIB, f16)
    chunks = chunks_of(toks, CHUNK, None, bos)
    emb = _tensor(f16, "token_embd.weight")
    norm = _tensor(f16, "blk.0.attn_norm.weight")
    eps = float(_field(f16, "chatglm.attention.layer_norm_rms_epsilon"))
    x = emb[np.array([t for c in chunks for t in c])]
    x = x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * norm
    sums, counts = im.entries["blk.0.attn_qkv.weight"]
    assert counts.tolist() == [len(chunks) * CHUNK] == [im.tokens]
    assert np.allclose(sums[0], (x * x).sum(0), rtol=2e-3, atol=1e-3)
    assert im.chunk_count == len(chunks) and im.chunk_size == CHUNK and im.datasets == [CALIB.name]


def test_every_block_matmul_weight_is_collected(chatglm_imatrix):
    from gguf import GGUFReader

    f16, im = chatglm_imatrix
    mats = {t.name: [int(x) for x in t.shape] for t in GGUFReader(f16).tensors
            if t.name.startswith("blk.") and len(t.shape) >= 2}
    assert set(im.entries) == set(mats)  # output.weight and token_embd are not inputs of blk.* matmuls
    for name, (sums, counts) in im.entries.items():
        assert sums.shape == (1, mats[name][0]) and (sums > 0).all(), name


def test_moe_experts_are_counted_per_expert(tiny_gguf):
    import numpy as np

    from converters.gguf.calibration import calibration_tokens
    from converters.gguf.collect import collect_imatrix

    f16 = tiny_gguf("glm4moe")
    toks, bos = calibration_tokens(CALIB, f16)
    im = collect_imatrix(f16, toks, dataset="seed", chunk_size=CHUNK, n_chunks=4, bos=bos)
    n_tok = 4 * CHUNK
    used, n_exp = int(_field(f16, "glm4moe.expert_used_count")), int(_field(f16, "glm4moe.expert_count"))
    for b in (1, 2):  # layer 0 is dense (first_k_dense_replace = 1)
        sums, counts = im.entries[f"blk.{b}.ffn_gate_exps.weight"]
        assert sums.shape[0] == n_exp and counts.sum() == n_tok * used and (counts > 0).sum() > 1
        # each token's `used` experts and the shared expert read the same normalized hidden state
        shared, n_shared = im.entries[f"blk.{b}.ffn_gate_shexp.weight"]
        assert n_shared.tolist() == [n_tok]
        assert np.allclose(sums.sum(0) / used, shared[0], rtol=1e-4)
        down, dcounts = im.entries[f"blk.{b}.ffn_down_exps.weight"]
        assert np.array_equal(dcounts, counts)


def test_too_little_calibration_text_is_a_clear_error(tiny_gguf, tmp_path):
    from converters.gguf.calibration import calibration_tokens
    from converters.gguf.collect import chunks_of
    from registry.errors import RegistryError

    short = tmp_path / "short.txt"
    short.write_text("hello world")
    toks, bos = calibration_tokens(short, tiny_gguf("chatglm"))
    with pytest.raises(RegistryError, match=r"fewer than one chunk of 512.*more text or a smaller --chunk-size"):
        chunks_of(toks, 512, None, bos)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(RegistryError, match="is empty"):
        calibration_tokens(empty, tiny_gguf("chatglm"))


def test_chat_jsonl_is_rendered_through_the_builds_template(tiny_gguf):
    from converters.gguf.calibration import render_text

    text = render_text(DATA / "calibration_chat.jsonl", tiny_gguf("chatglm"))
    assert text.count("[gMASK]<sop>") == sum(1 for line in (DATA / "calibration_chat.jsonl").open() if line.strip())
    assert "<|user|>" in text and "Give one example of quantization." in text


# --- files ---------------------------------------------------------------------------------


def test_gguf_file_has_llama_cpps_layout_and_reads_back(chatglm_imatrix, tmp_path):
    import numpy as np
    from gguf import GGUFReader

    from converters.gguf.imatrix_file import read_imatrix, write_imatrix

    _, im = chatglm_imatrix
    p = write_imatrix(im, tmp_path / "m.imatrix.gguf")
    r = GGUFReader(p)
    keys = {f.name for f in r.fields.values() if not f.name.startswith("GGUF.")}
    assert keys == {"general.type", "imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"}
    assert r.fields["general.type"].contents() == "imatrix"
    assert r.fields["imatrix.datasets"].contents() == [CALIB.name]
    t = {x.name: x for x in r.tensors}
    s = t["blk.0.attn_qkv.weight.in_sum2"]
    assert [int(v) for v in s.shape] == [256, 1] and [int(v) for v in t["blk.0.attn_qkv.weight.counts"].shape] == [1, 1]
    back = read_imatrix(p)
    assert back.chunk_count == im.chunk_count and back.chunk_size == CHUNK and back.tokens == im.tokens
    for name in im.entries:
        assert np.allclose(back.values()[name], im.values()[name], rtol=1e-6)
    assert [x.name for x in tmp_path.iterdir()] == ["m.imatrix.gguf"]  # no temp file left


def test_legacy_dat_is_read_as_llama_quantize_reads_it(tmp_path):
    """A .dat laid out by hand as llama-imatrix's save_imatrix_legacy writes it: values are mean * ncall."""
    import numpy as np

    from converters.gguf.imatrix_file import read_imatrix, write_imatrix

    mean = np.array([0.5, 2.0, 4.0, 1.0], dtype=np.float32)
    ncall = 3
    name = b"blk.0.attn_qkv.weight"
    raw = struct.pack("<i", 1) + struct.pack("<i", len(name)) + name + struct.pack("<ii", ncall, 4) \
        + (mean * ncall).tobytes() + struct.pack("<i", 7) + struct.pack("<i", 9) + b"wiki.text"
    p = tmp_path / "old.dat"
    p.write_bytes(raw)
    im = read_imatrix(p)
    assert im.legacy and im.chunk_count == 7 and im.datasets == ["wiki.text"]
    assert np.allclose(im.values()["blk.0.attn_qkv.weight"], mean)
    again = read_imatrix(write_imatrix(im, tmp_path / "again.gguf"))  # legacy -> GGUF keeps the means
    assert np.allclose(again.values()["blk.0.attn_qkv.weight"], mean)


@pytest.mark.parametrize("content, message", [
    (b"", r"truncated legacy imatrix"),
    (struct.pack("<i", 0), r"neither an imatrix GGUF nor a legacy .dat"),
    (struct.pack("<i", 1) + struct.pack("<i", 5) + b"abc", r"truncated legacy imatrix"),
])
def test_damaged_imatrix_files_are_clear_errors(tmp_path, content, message):
    from converters.gguf.imatrix_file import read_imatrix
    from registry.errors import RegistryError

    p = tmp_path / "bad.dat"
    p.write_bytes(content)
    with pytest.raises(RegistryError, match=message):
        read_imatrix(p)
    with pytest.raises(RegistryError, match="does not exist"):
        read_imatrix(tmp_path / "missing.gguf")


def test_a_model_gguf_is_not_an_imatrix(tiny_gguf):
    from converters.gguf.imatrix_file import read_imatrix
    from registry.errors import RegistryError

    with pytest.raises(RegistryError, match=r"missing imatrix metadata \(imatrix.datasets"):
        read_imatrix(tiny_gguf("chatglm"))


# --- quantization --------------------------------------------------------------------------


@pytest.mark.parametrize("quant", ["IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "Q2_K_S"])
def test_types_that_need_an_imatrix_refuse_without_one(quant, chatglm_imatrix, tmp_path):
    from converters.gguf.quantize import quantize
    from registry.errors import RegistryError

    f16, _ = chatglm_imatrix
    with pytest.raises(RegistryError, match=rf"^GGUF {quant} needs an importance matrix; pass --imatrix FILE .*--calibration FILE"):
        quantize(f16, tmp_path / "x.gguf", quant)
    assert not list(tmp_path.iterdir())


def test_every_iq_type_builds_with_the_imatrix_and_evaluates(chatglm_imatrix, tmp_path):
    import llama_cpp
    import numpy as np

    from converters.gguf.imatrix_file import write_imatrix
    from converters.gguf.quantize import IQ_LADDER, quantize

    f16, im = chatglm_imatrix
    imf = write_imatrix(im, tmp_path / "m.imatrix.gguf")
    for q in IQ_LADDER:
        p = quantize(f16, tmp_path / f"m.{q}.gguf", q, imatrix=im, imatrix_path=imf)
        ftype, entries, dataset, chunks, file = _fields(p, "general.file_type", "quantize.imatrix.entries_count",
                                                        "quantize.imatrix.dataset", "quantize.imatrix.chunks_count",
                                                        "quantize.imatrix.file")
        assert ftype == getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{q}"), q
        assert entries == len(im.entries)
        assert dataset == CALIB.name
        assert chunks == im.chunk_count
        assert file == str(imf)
        m = llama_cpp.Llama(str(p), n_ctx=64, logits_all=True, verbose=False)
        try:
            m.eval(list(range(3, 19)))
            assert np.isfinite(np.array(m.scores[:16])).all(), q
        finally:
            m.close()


def test_an_imatrix_of_another_model_is_refused_by_llama_cpp(tiny_gguf, chatglm_imatrix, tmp_path):
    from converters.gguf.quantize import quantize
    from registry.errors import RegistryError

    _, im = chatglm_imatrix  # ChatGLM names blk.N.attn_qkv; glm4 has separate attn_q/k/v
    with pytest.raises(RegistryError, match=r"could not quantize .* to IQ2_XS .*imatrix may not cover every weight"):
        quantize(tiny_gguf("glm4"), tmp_path / "x.gguf", "IQ2_XS", imatrix=im)


# --- the commands --------------------------------------------------------------------------


def test_cli_imatrix_writes_and_records_the_file(chatglm_imatrix, tmp_path):
    import json
    import numpy as np

    from conftest import run_cli
    from converters.gguf.imatrix_file import read_imatrix

    f16, im = chatglm_imatrix
    out = tmp_path / "glm4.imatrix.gguf"
    r = run_cli("imatrix", "glm4-chat-1m", "--from", str(f16), "--calibration", str(CALIB), "--chunk-size", str(CHUNK),
                "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["format"] == "imatrix" and got["quantization"] == "F16" and got["parent"] == str(f16)
    assert got["recipe"]["calibration"]["tokens"] == im.tokens and got["recipe"]["calibration"]["dataset"] == str(CALIB)
    back = read_imatrix(out)
    for name in im.entries:  # a second collection over the same text gives the same statistics
        assert np.allclose(back.values()[name], im.values()[name], rtol=1e-5)
    shown = run_cli("show", "glm4-chat-1m", "--artifacts", "--json")
    rows = [a for a in json.loads(shown.stdout)["artifacts"] if a["format"] == "imatrix"]
    assert [a["path"] for a in rows] == [str(out)]
    assert f"imatrix over {im.tokens} tokens" in rows[0]["recipe_summary"]
    again = run_cli("imatrix", "glm4-chat-1m", "--from", str(f16), "--calibration", str(CALIB), "--out", str(out))
    assert again.returncode != 0 and "already exists" in again.stderr


def test_cli_imatrix_refuses_a_quantized_build(tiny_gguf, tmp_path):
    from conftest import run_cli

    r = run_cli("imatrix", "glm4-chat-1m", "--from", str(tiny_gguf("chatglm", "Q8_0")), "--calibration", str(CALIB),
                "--out", str(tmp_path / "x.imatrix.gguf"))
    assert r.returncode != 0 and "is not an F16/BF16 build" in r.stderr
    assert [p.name for p in tmp_path.iterdir()] in ([], ["home"])  # no output; the registry home holds the catalog cache
    assert not list(tmp_path.glob("**/*.gguf"))


def test_cli_convert_refuses_iq2_without_an_imatrix_before_any_work(tiny_checkpoint, tmp_path):
    from conftest import run_cli

    out = tmp_path / "builds"
    r = run_cli("convert", "glm4-chat-1m", "--from", str(tiny_checkpoint("chatglm")), "--to", "ggufv2",
                "--quant", "IQ2_XS", "--out", str(out))
    assert r.returncode != 0
    assert "GGUF IQ2_XS needs an importance matrix; pass --imatrix FILE" in r.stderr and "--calibration FILE" in r.stderr
    assert not out.exists() or not list(out.iterdir())


@pytest.fixture(scope="session")
def skewed_chatglm(tiny_checkpoint, tmp_path_factory):
    from converters.tiny import skew_norms

    return skew_norms(tiny_checkpoint("chatglm"), tmp_path_factory.mktemp("skewed") / "ckpt")


def test_imatrix_builds_beat_plain_q2_k_on_a_skewed_model(skewed_chatglm, tmp_path):
    """--calibration collects, quantizes and reports with and without the imatrix; --imatrix reuses it."""
    import json

    from conftest import run_cli

    out = tmp_path / "builds"
    r = run_cli("convert", "glm4-chat-1m", "--from", str(skewed_chatglm), "--to", "ggufv2", "--quant", "Q2_K",
                "--calibration", str(CALIB), "--chunk-size", str(CHUNK), "--out", str(out), "--report", "--json")
    assert r.returncode == 0, r.stderr
    res = {x["format"] + ":" + x["quantization"]: x for x in json.loads(r.stdout)}
    assert set(res) == {"ggufv2:Q2_K", "ggufv2:FP16", "imatrix:F16"}  # the catalog spells F16 FP16
    imf = res["imatrix:F16"]["path"]
    q2 = res["ggufv2:Q2_K"]
    assert q2["recipe"]["imatrix"]["path"] == imf and q2["recipe"]["imatrix"]["artifact_id"] is not None
    rep, plain = q2["report"], q2["report"]["without_imatrix"]
    assert rep["imatrix"] is True
    # observed: KL 1.32 with the imatrix vs 1.58 without (top-1 0.11 vs 0.08)
    assert rep["kl_divergence"] < 0.95 * plain["kl_divergence"], rep
    r2 = run_cli("convert", "glm4-chat-1m", "--from", str(skewed_chatglm), "--to", "ggufv2", "--quant", "IQ3_XS",
                 "--imatrix", imf, "--out", str(out), "--report", "--json")
    assert r2.returncode == 0, r2.stderr
    assert "reusing" in r2.stderr
    iq3 = {x["quantization"]: x for x in json.loads(r2.stdout)}["IQ3_XS"]
    assert iq3["report"]["without_imatrix"] is None  # IQ3_XS cannot be built without one
    assert iq3["report"]["kl_divergence"] < 0.9 * plain["kl_divergence"], iq3["report"]  # observed 0.85 vs 1.58
    assert iq3["recipe"]["imatrix"]["sha256"] == res["imatrix:F16"]["sha256"]
    table = run_cli("convert", "glm4-chat-1m", "--from", str(skewed_chatglm), "--to", "ggufv2", "--quant", "Q3_K_S",
                    "--imatrix", imf, "--out", str(out), "--report", env={"COLUMNS": "240"})
    assert table.returncode == 0, table.stderr
    assert "KL without imatrix" in table.stdout and "top-1 without imatrix" in table.stdout
