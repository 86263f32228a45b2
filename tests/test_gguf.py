"""GGUF converter, end to end on tiny GLM checkpoints: llama.cpp loads every build and agrees with Transformers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow
HF_ARCHS = ["glm", "glm4", "glm4moe", "glm-dsa"]
TOKENS = list(range(3, 40))


def gguf_logits(path: Path, tokens=TOKENS, **kw):
    import llama_cpp
    import numpy as np

    m = llama_cpp.Llama(str(path), logits_all=True, n_ctx=128, verbose=False, **kw)
    try:
        m.eval(tokens)
        return np.array(m.scores[: len(tokens)])
    finally:
        m.close()


def hf_logits(src: Path, tokens=TOKENS):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].numpy()


def gguf_meta(path: Path) -> tuple[dict, set[str]]:
    from gguf import GGUFReader

    r = GGUFReader(path)
    kv = {}
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or not f.data:
            continue
        kv[f.name] = f.contents()
    return kv, {t.name for t in r.tensors}


@pytest.mark.parametrize("arch", HF_ARCHS)
def test_f16_logits_match_transformers(arch, tiny_checkpoint, tiny_gguf):
    import numpy as np

    ref = hf_logits(tiny_checkpoint(arch))
    got = gguf_logits(tiny_gguf(arch))
    assert (ref.argmax(-1) == got.argmax(-1)).all()
    # F16 weights vs float32 Transformers: observed max error ~0.02 on logits of magnitude ~8.
    err = np.abs(ref - got).max(-1)
    if arch == "glm-dsa":
        # F16 weights move the DSA indexer's scores a little; where two keys score that close at the
        # top-k boundary llama.cpp picks the other one and that query's logits differ (1 position of
        # 37 here). test_glm5_sparse_attention_equals_transformers checks every position exactly.
        assert (err < 0.06).mean() > 0.9, err.round(3)
    else:
        assert err.max() < 0.06, err.round(3)


def test_glm5_sparse_attention_equals_transformers(tiny_checkpoint, tmp_path):
    """GLM-5 with the DSA indexer active (index_topk 16 < 37 prompt tokens): an F32 build with an f32
    KV cache gives Transformers' float32 logits at every position, so the MLA split (k_b / v_b with
    v_head_dim != qk_nope_head_dim) and the indexer tensors and keys are all converted right."""
    import numpy as np
    import torch

    from converters.gguf import convert

    src = tiny_checkpoint("glm-dsa")
    cfg = json.loads((src / "config.json").read_text())
    assert cfg["v_head_dim"] != cfg["qk_nope_head_dim"] and cfg["index_topk"] < len(TOKENS)
    ref = hf_logits(src)
    f32 = convert(src, tmp_path / "glm5.F32.gguf", "F32")
    got = gguf_logits(f32, type_k=0, type_v=0)  # GGML_TYPE_F32 caches: no f16 rounding of the keys
    assert np.abs(ref - got).max() < 1e-3
    # The indexer is not a no-op here: attending to every key (top-k above the prompt length) changes
    # the logits of the positions past index_topk, and only those.
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    dense_modules = [m for m in model.modules() if hasattr(m, "index_topk")]
    assert dense_modules
    for m in dense_modules:
        m.index_topk = 4096
    with torch.no_grad():
        dense = model(torch.tensor([TOKENS])).logits[0].numpy()
    k = cfg["index_topk"]
    assert np.abs(dense - ref)[:k].max() < 1e-4 and np.abs(dense - ref)[k:].max(-1).min() > 0.01


def test_chatglm_equals_its_glm_twin(tiny_checkpoint, tiny_gguf):
    import numpy as np

    kv, names = gguf_meta(tiny_gguf("chatglm"))
    assert kv["general.architecture"] == "chatglm"
    assert kv["tokenizer.ggml.pre"] == "chatglm-bpe"
    assert "blk.0.attn_qkv.weight" in names and "blk.0.attn_qkv.bias" in names
    twin_kv, twin_names = gguf_meta(tiny_gguf("glm"))
    assert twin_kv["tokenizer.ggml.pre"] == "glm4" and twin_names == names
    for k in ("chatglm.rope.dimension_count", "chatglm.rope.freq_base", "chatglm.attention.head_count_kv"):
        assert kv[k] == twin_kv[k], k
    # Same weights, same GGUF tensors: identical logits, and the same token ids for the same text.
    assert np.array_equal(gguf_logits(tiny_gguf("chatglm")), gguf_logits(tiny_gguf("glm")))
    import llama_cpp

    toks = []
    for arch in ("chatglm", "glm"):
        m = llama_cpp.Llama(str(tiny_gguf(arch)), vocab_only=True, verbose=False)
        toks.append(m.tokenize("[gMASK]<sop><|user|>\nhello world<|assistant|>".encode(), add_bos=False, special=True))
        m.close()
    assert toks[0] == toks[1] and toks[0][0] == kv["tokenizer.ggml.bos_token_id"]


def test_vocab_and_hparams_written(tiny_checkpoint, tiny_gguf):
    cfg = json.loads((tiny_checkpoint("glm4moe") / "config.json").read_text())
    kv, names = gguf_meta(tiny_gguf("glm4moe"))
    assert kv["glm4moe.expert_count"] == cfg["n_routed_experts"]
    assert kv["glm4moe.expert_shared_count"] == cfg["n_shared_experts"]
    assert kv["glm4moe.leading_dense_block_count"] == cfg["first_k_dense_replace"]
    assert kv["glm4moe.expert_feed_forward_length"] == cfg["moe_intermediate_size"]
    assert kv["glm4moe.block_count"] == cfg["num_hidden_layers"]  # MTP dropped by default
    assert not any(".nextn." in n for n in names)
    assert f"blk.{cfg['num_hidden_layers'] - 1}.ffn_gate_exps.weight" in names
    assert f"blk.{cfg['num_hidden_layers'] - 1}.exp_probs_b.bias" in names
    tokens = kv["tokenizer.ggml.tokens"]
    # config.json's eos_token_id is a list whose first entry is <|endoftext|>; the template writes
    # [gMASK]<sop> itself, so llama.cpp must not add a BOS
    assert tokens[kv["tokenizer.ggml.eos_token_id"]] == "<|endoftext|>" and kv["tokenizer.ggml.eos_token_id"] == cfg["eos_token_id"][0]
    assert kv["tokenizer.ggml.add_bos_token"] is False
    assert tokens[kv["tokenizer.ggml.eot_token_id"]] == "<|user|>"
    assert tokens[kv["tokenizer.ggml.eom_token_id"]] == "<|observation|>"
    assert tokens[kv["tokenizer.ggml.bos_token_id"]] == "[gMASK]"
    assert "tokenizer.chat_template" in kv and kv["tokenizer.ggml.merges"]
    # n_group > 1 in the fixture: group-limited routing is written (llama.cpp's expert groups)
    assert (kv["glm4moe.expert_group_count"], kv["glm4moe.expert_group_used_count"]) == (cfg["n_group"], cfg["topk_group"])
    assert cfg["n_group"] > 1
    dsa, _ = gguf_meta(tiny_gguf("glm-dsa"))
    dcfg = json.loads((tiny_checkpoint("glm-dsa") / "config.json").read_text())
    assert dsa["glm-dsa.attention.indexer.head_count"] == dcfg["index_n_heads"]
    assert dsa["glm-dsa.attention.indexer.key_length"] == dcfg["index_head_dim"]
    assert dsa["glm-dsa.attention.indexer.top_k"] == dcfg["index_topk"]
    assert dsa["glm-dsa.attention.kv_lora_rank"] == dcfg["kv_lora_rank"]
    # MLA in llama.cpp's terms: the cache holds the latent (kv_lora_rank) plus the rope key; each head's
    # key is nope + rope and its value v_head_dim long (GLM-5: 192 + 64 and 256).
    assert dsa["glm-dsa.attention.key_length"] == dcfg["kv_lora_rank"] + dcfg["qk_rope_head_dim"]
    assert dsa["glm-dsa.attention.value_length"] == dcfg["kv_lora_rank"]
    assert dsa["glm-dsa.attention.key_length_mla"] == dcfg["qk_nope_head_dim"] + dcfg["qk_rope_head_dim"]
    assert dsa["glm-dsa.attention.value_length_mla"] == dcfg["v_head_dim"] != dcfg["qk_nope_head_dim"]
    # In an F16 build the MoE router and the indexer's head weights stay F32 (as llama.cpp's
    # convert_hf_to_gguf keeps them): they pick experts and keys, where rounding flips choices.
    from gguf import GGUFReader

    types = {t.name: t.tensor_type.name for t in GGUFReader(tiny_gguf("glm-dsa")).tensors}
    assert types["blk.1.ffn_gate_inp.weight"] == types["blk.1.indexer.proj.weight"] == "F32"
    assert types["blk.1.indexer.attn_k.weight"] == types["blk.1.attn_v_b.weight"] == "F16"
    # every 1-D tensor (norms, biases) stays F32, as llama.cpp's own converter writes them
    one_d = [t for t in GGUFReader(tiny_gguf("glm4")).tensors if len(t.shape) == 1]
    assert one_d and {t.tensor_type.name for t in one_d} == {"F32"}
    moe_types = {t.name: t.tensor_type.name for t in GGUFReader(tiny_gguf("glm4moe")).tensors}
    assert moe_types["blk.1.ffn_gate_inp.weight"] == "F32" and moe_types["blk.1.ffn_up_exps.weight"] == "F16"


def test_keep_mtp_writes_the_nextn_block(tiny_checkpoint, tmp_path):
    from converters.gguf import convert

    src = tiny_checkpoint("glm4moe")
    n = json.loads((src / "config.json").read_text())["num_hidden_layers"]
    p = convert(src, tmp_path / "mtp.gguf", keep_mtp=True)
    kv, names = gguf_meta(p)
    assert kv["glm4moe.block_count"] == n + 1 and kv["glm4moe.nextn_predict_layers"] == 1
    assert {f"blk.{n}.nextn.eh_proj.weight", f"blk.{n}.nextn.enorm.weight", f"blk.{n}.nextn.hnorm.weight"} <= names
    import numpy as np

    assert np.array_equal(gguf_logits(p), gguf_logits(convert(src, tmp_path / "nomtp.gguf")))


def test_every_quant_level_loads_and_generates(tiny_gguf):
    import llama_cpp

    from converters.gguf.quantize import LADDER

    sizes = {}
    for q in LADDER:
        path = tiny_gguf("glm4", q)
        sizes[q] = path.stat().st_size
        m = llama_cpp.Llama(str(path), n_ctx=64, verbose=False)
        try:
            out = []
            for tok in m.generate(TOKENS[:8], temp=0.0):
                out.append(tok)
                if len(out) == 4:
                    break
            assert len(out) == 4, q
        finally:
            m.close()
    assert sizes["Q2_K"] < sizes["Q4_K_M"] < sizes["Q6_K"] < sizes["Q8_0"] < tiny_gguf("glm4").stat().st_size


@pytest.mark.parametrize("arch", ["glm4moe", "glm-dsa", "chatglm"])
def test_q4_k_loads_for_each_architecture(arch, tiny_gguf):
    p = tiny_gguf(arch, "Q4_K")  # registry name; the _M variant is built
    assert p.name.endswith("Q4_K_M.gguf")
    assert gguf_logits(p).shape[0] == len(TOKENS)


def test_kl_grows_as_bits_shrink(tiny_gguf):
    from converters.gguf import quality_report

    levels = ["Q8_0", "Q6_K", "Q4_K_M", "Q2_K"]
    rep = quality_report(tiny_gguf("glm4"), {q: tiny_gguf("glm4", q) for q in levels})
    kls = [rep[q]["kl_divergence"] for q in levels]
    assert kls == sorted(kls) and len(set(kls)) == 4, rep
    assert rep["Q8_0"]["top1_agreement"] >= rep["Q2_K"]["top1_agreement"]
    assert set(rep["Q8_0"]) == {"reference", "tokens", "kl_divergence", "top1_agreement"}


def test_split_output_loads(tiny_checkpoint, tiny_gguf, tmp_path):
    import numpy as np

    from converters.gguf.core import convert_files

    files = convert_files(tiny_checkpoint("glm4"), tmp_path / "glm4.gguf", split_max_size=1 << 20)
    assert len(files) > 1
    assert [f.name for f in files] == [f"glm4-{i:05d}-of-{len(files):05d}.gguf" for i in range(1, len(files) + 1)]
    assert sorted(tmp_path.iterdir()) == files  # no temp leftovers
    assert np.array_equal(gguf_logits(files[0]), gguf_logits(tiny_gguf("glm4")))
    from converters.gguf.quantize import quantize_files

    q = quantize_files(files[0], tmp_path / "glm4.Q4_K_M.gguf", "Q4_K")
    assert [f.name for f in q] == [f"glm4.Q4_K_M-{i:05d}-of-{len(files):05d}.gguf" for i in range(1, len(files) + 1)]
    assert np.array_equal(gguf_logits(q[0]), gguf_logits(tiny_gguf("glm4", "Q4_K_M")))
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    from registry.errors import RegistryError

    kept = [f.read_bytes() for f in q]
    with pytest.raises(RegistryError, match="split build of glm4.Q4_K_M.gguf"):  # would replace every part
        quantize_files(files[0], tmp_path / "glm4.Q4_K_M.gguf", "Q4_K")
    assert [f.read_bytes() for f in q] == kept


def test_quantize_refuses_an_output_whose_split_parts_exist(tiny_gguf, tmp_path):
    from converters.gguf.quantize import quantize_files
    from registry.errors import RegistryError

    part = tmp_path / "m.Q4_K_M-00001-of-00002.gguf"
    part.write_text("keep me")
    with pytest.raises(RegistryError, match="split build of m.Q4_K_M.gguf.*already exists"):
        quantize_files(tiny_gguf("glm4"), tmp_path / "m.Q4_K_M.gguf", "Q4_K")
    assert [p.name for p in tmp_path.iterdir()] == [part.name] and part.read_text() == "keep me"


def test_convert_stops_before_the_first_pass_when_a_split_part_of_a_target_exists(tiny_checkpoint, tmp_path):
    from converters.gguf import run_convert
    from converters.options import ConvertRequest
    from registry.errors import RegistryError

    out = tmp_path / "builds"
    out.mkdir()
    part = out / "glm4-chat-1m.Q4_K_M-00001-of-00002.gguf"
    part.write_text("keep me")
    req = ConvertRequest(family="glm4-chat-1m", source=tiny_checkpoint("chatglm"), to="ggufv2", quant="Q4_K",
                         out=out, progress=False, say=lambda m: None)
    with pytest.raises(RegistryError, match="split build of glm4-chat-1m.Q4_K_M.gguf"):
        run_convert(req)
    assert [p.name for p in out.iterdir()] == [part.name]  # no F16 pass was written


def test_cli_convert_records_artifact(tiny_checkpoint, tmp_path):
    out = tmp_path / "builds"
    r = run_cli("convert", "glm4-chat-1m", "--from", str(tiny_checkpoint("chatglm")), "--to", "ggufv2",
                "--quant", "Q4_K", "--out", str(out), "--report", "--json")
    assert r.returncode == 0, r.stderr
    assert "differs in size" in r.stderr  # a tiny checkpoint is a warning, not an error
    results = {x["gguf_type"]: x for x in json.loads(r.stdout)}
    assert set(results) == {"Q4_K_M", "F16"}
    q4 = results["Q4_K_M"]
    assert (q4["quantization"], results["F16"]["quantization"]) == ("Q4_K", "FP16")  # the catalog's names
    assert Path(q4["path"]).is_file() and q4["parent"] == results["F16"]["path"]
    assert 0 <= q4["report"]["kl_divergence"] and 0 <= q4["report"]["top1_agreement"] <= 1
    from registry.store import Store

    rows = {a.quantization: a for a in Store().artifacts(family="glm4-chat-1m", format="ggufv2")}
    assert set(rows) == {"Q4_K_M", "F16"}
    import hashlib

    assert rows["Q4_K_M"].sha256 == hashlib.sha256(Path(q4["path"]).read_bytes()).hexdigest()
    assert rows["Q4_K_M"].report["reference"] == "F16" and rows["Q4_K_M"].recipe["quant"] == "Q4_K_M"
    table = run_cli("convert", "glm4-chat-1m", "--from", str(tiny_checkpoint("chatglm")), "--to", "ggufv2",
                    "--quant", "Q8_0", "--out", str(out), "--report")
    assert table.returncode == 0, table.stderr
    assert "KL divergence" in table.stdout and "reusing" in table.stderr


def _no_trace(directory: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p for p in directory.iterdir() if ".partial" in p.name]


def test_cli_wrong_architecture_for_family(tiny_checkpoint, tmp_path):
    r = run_cli("convert", "glm4-chat-1m", "--from", str(tiny_checkpoint("glm4")), "--to", "ggufv2",
                "--quant", "Q4_K", "--out", str(tmp_path))
    assert r.returncode == 1
    assert "Glm4ForCausalLM" in r.stderr and "ChatGLMModel" in r.stderr and r.stderr.startswith("error:")
    # nothing in the output folder (the registry home beside it holds the compiled catalog)
    assert [p.name for p in tmp_path.iterdir()] in ([], ["home"])
    assert not (tmp_path / "home").exists() or not list((tmp_path / "home").glob("**/*.gguf"))
    from registry import paths

    if paths.has_database():
        from registry.store import Store

        assert Store().artifacts() == []


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _index(d: Path) -> dict:
    return json.loads((d / "model.safetensors.index.json").read_text())


@pytest.mark.parametrize("damage, message", [
    ("missing_shard", "is missing"),
    ("truncated", "truncated"),
    ("corrupt_header", "corrupt safetensors header"),
    ("index_names_missing_tensor", "does not hold it"),
    ("unknown_architecture", "not a GLM architecture"),
    ("config_missing_key", "missing hidden_size"),
    ("no_tokenizer", "neither tokenizer.json nor tokenizer.model"),
])
def test_bad_checkpoint_gives_clear_error_and_no_file(damage, message, tiny_checkpoint, tmp_path):
    from converters.gguf import convert
    from registry.errors import RegistryError

    src = _copy(tiny_checkpoint("glm4"), tmp_path / "src")
    shard = src / sorted(set(_index(src)["weight_map"].values()))[-1]
    if damage == "missing_shard":
        shard.unlink()
    elif damage == "truncated":
        data = shard.read_bytes()
        shard.write_bytes(data[: len(data) - 100])
    elif damage == "corrupt_header":
        data = bytearray(shard.read_bytes())
        data[8:16] = b"\x00garbage"
        shard.write_bytes(bytes(data))
    elif damage == "index_names_missing_tensor":
        idx = _index(src)
        idx["weight_map"]["model.layers.0.mlp.extra.weight"] = shard.name
        (src / "model.safetensors.index.json").write_text(json.dumps(idx))
    elif damage in ("unknown_architecture", "config_missing_key"):
        cfg = json.loads((src / "config.json").read_text())
        if damage == "unknown_architecture":
            cfg["architectures"] = ["LlamaForCausalLM"]
        else:
            del cfg["hidden_size"]
        (src / "config.json").write_text(json.dumps(cfg))
    elif damage == "no_tokenizer":
        (src / "tokenizer.json").unlink()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(RegistryError, match=message):
        convert(src, out_dir / "m.gguf")
    _no_trace(out_dir, out_dir / "m.gguf")


def test_glm5_config_that_does_not_match_the_weights_is_a_clear_error(tiny_checkpoint, tmp_path):
    from converters.gguf import convert
    from converters.gguf.reader import CheckpointError

    src = _copy(tiny_checkpoint("glm-dsa"), tmp_path / "src")
    cfg = json.loads((src / "config.json").read_text())
    cfg["v_head_dim"] //= 2  # kv_b_proj's rows no longer add up to heads x (nope + v)
    (src / "config.json").write_text(json.dumps(cfg))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(CheckpointError) as e:
        convert(src, out_dir / "m.gguf")
    msg = str(e.value)
    assert "kv_b_proj" in msg and f"v_head_dim {cfg['v_head_dim']}" in msg and "config.json" in msg
    assert "use the config.json that came with the checkpoint" in msg
    _no_trace(out_dir, out_dir / "m.gguf")


def test_output_problems(tiny_checkpoint, tmp_path):
    from converters.gguf import convert
    from registry.errors import RegistryError

    src = tiny_checkpoint("glm")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RegistryError, match="does not exist"):
        convert(src, blocker / "m.gguf")  # the "directory" is a file: not writable as a directory
    existing = tmp_path / "m.gguf"
    existing.write_text("keep me")
    with pytest.raises(RegistryError, match="already exists"):
        convert(src, existing)
    assert existing.read_text() == "keep me"


def test_interrupt_leaves_no_file(tiny_checkpoint, tmp_path):
    """Ctrl-C in the middle of writing tensor data: no file under the output name, no temp dir left."""
    from converters.gguf.core import arch_for
    from converters.gguf.reader import Checkpoint
    from converters.gguf.writer import write_gguf

    class CtrlC:
        def start(self, n, b): ...
        def tensor(self, i, name):
            if i == 3:
                raise KeyboardInterrupt

        def advance(self, n): ...

    ck = Checkpoint(tiny_checkpoint("glm4"))
    arch = arch_for(ck)
    with pytest.raises(KeyboardInterrupt):
        write_gguf(tmp_path / "m.gguf", arch.gguf_arch, arch.write_hparams, arch.plan(), "F16", None, CtrlC())
    assert list(tmp_path.iterdir()) == []


def test_quant_all_builds_the_ladder_from_one_f16_pass(tiny_checkpoint, tmp_path):
    from converters.gguf import run_convert
    from converters.gguf.quantize import LADDER
    from converters.options import ConvertRequest
    from registry.store import Store

    said = []
    req = ConvertRequest(family="glm-4.6", source=tiny_checkpoint("glm4moe"), to="ggufv2", quant="all",
                         out=tmp_path / "builds", report=True, progress=False, say=said.append)
    results = run_convert(req)
    by_q = {r.quantization: r for r in results}
    assert set(by_q) == set(LADDER) | {"F16"}
    f16 = by_q["F16"]
    assert all(r.parent == str(f16.path) for q, r in by_q.items() if q != "F16")
    assert f16.parent == str(tiny_checkpoint("glm4moe")) and f16.report is None
    assert all(0 <= by_q[q].report["kl_divergence"] for q in LADDER)
    assert any("differs in size" in m for m in said)
    rows = Store().artifacts(family="glm-4.6", format="ggufv2")
    assert {r.quantization for r in rows} == set(by_q) and all(r.sha256 == by_q[r.quantization].sha256 for r in rows)
    assert sorted(p.name for p in (tmp_path / "builds").iterdir()) == sorted(r.path.name for r in results)


def test_bf16_build_copies_the_source_bits(tiny_checkpoint, tiny_gguf):
    import numpy as np
    from gguf import GGUFReader

    from converters.gguf.reader import Checkpoint

    src = tiny_checkpoint("glm4moe")
    p = tiny_gguf("glm4moe", "BF16")
    r = GGUFReader(p)
    t = {x.name: x for x in r.tensors}
    ck = Checkpoint(src)
    name = "model.layers.1.mlp.experts.1.up_proj.weight"
    ref = ck.ref(name)
    raw = np.fromfile(ref.path, dtype=np.uint16, count=ref.nbytes // 2, offset=ref.offset)
    stacked = np.asarray(t["blk.1.ffn_up_exps.weight"].data).view(np.uint16).reshape(-1)
    assert np.array_equal(stacked[raw.size: 2 * raw.size], raw)  # expert 1 of the stacked tensor
    a, b = gguf_logits(p), gguf_logits(tiny_gguf("glm4moe"))
    assert (a.argmax(-1) == b.argmax(-1)).mean() > 0.9 and np.abs(a - b).max() < 0.1


def test_bf16_build_across_filesystems_copies_through_a_buffer(tiny_checkpoint, tiny_gguf, tmp_path, monkeypatch):
    # copy_file_range fails with EXDEV when the checkpoint and the output lie on different filesystems;
    # the writer then copies through a buffer, and the file is the same byte for byte.
    import errno
    import os

    from converters.gguf.core import convert

    def exdev(*args):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", exdev)
    p = convert(tiny_checkpoint("glm4moe"), tmp_path / "glm4moe.BF16.gguf", "BF16")
    assert p.read_bytes() == tiny_gguf("glm4moe", "BF16").read_bytes()


def test_split_build_is_found_as_a_local_artifact(tiny_checkpoint, tmp_path):
    out = tmp_path / "builds"
    r = run_cli("convert", "glm4-chat-1m", "--from", str(tiny_checkpoint("chatglm")), "--to", "ggufv2",
                "--quant", "Q8_0", "--out", str(out), "--split-max-size", "1M", "--json")
    assert r.returncode == 0, r.stderr
    built = {x["quantization"]: x for x in json.loads(r.stdout)}["Q8_0"]
    assert "-00001-of-" in built["path"]
    # offline pull finds the recorded split build (all parts present), with no hub at all
    r = run_cli("pull", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q8_0", "--offline", "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["source"] == "store" and got["path"] == built["path"]
    # verify re-computes the recorded digest over all the parts
    v = run_cli("verify", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q8_0", "--json")
    assert v.returncode == 0, v.stdout + v.stderr
    assert [x["sha256"] for x in json.loads(v.stdout) if x["path"] == built["path"]] == [built["sha256"]]
    # a missing part makes it unusable: the offline pull says what is missing instead
    parts = sorted(Path(built["path"]).parent.glob("*-of-*.gguf"))
    parts[-1].unlink()
    r = run_cli("pull", "glm4-chat-1m", "--format", "ggufv2", "--quant", "Q8_0", "--offline", "--json")
    assert r.returncode == 1 and "offline" in r.stderr.lower()


@pytest.mark.parametrize("backend", ["ggml", "table"])
def test_bf16_to_f16_equals_numpys_cast_for_every_bit_pattern(backend):
    # The F16 writer converts bf16 with ggml's SIMD rows (or a table where libggml-cpu can't load):
    # every one of the 65536 patterns must come out as numpy's float32 -> float16 cast gives it
    # (rounding, inf, signed zero, subnormals); a NaN stays a NaN.
    import numpy as np

    from converters.gguf.bf16 import to_f16

    every = np.arange(1 << 16, dtype=np.uint32)
    with np.errstate(over="ignore"):
        want = (every << 16).view(np.float32).astype(np.float16)
    got = to_f16(every.astype(np.uint16).reshape(256, 256), backend=backend).reshape(-1)
    assert got.dtype == np.float16
    nan = np.isnan(want)
    assert np.array_equal(got.view(np.uint16)[~nan], want.view(np.uint16)[~nan]) and np.isnan(got[nan]).all()
    assert np.isinf(got[every == 0x4780]).all() and got[every == 0x3F80][0] == 1.0  # 65536 -> inf; 1.0 stays 1.0
    out = np.empty(5, np.float16)  # into a given array, from a non-contiguous source
    assert to_f16(every.astype(np.uint16)[0x3F80:0x3F8A:2], out, backend=backend) is not None
    assert np.array_equal(out, want[0x3F80:0x3F8A:2])


def test_q8_edge_variants_are_their_mix_with_q8_0_embeddings_and_output(tiny_gguf):
    """bartowski's Q4_K_L is llama.cpp's Q4_K_M with token_embd and output in Q8_0; everything else
    is the plain mix's, tensor for tensor; and the build evaluates in llama.cpp."""
    from gguf import GGUFReader

    def types(p):
        return {t.name: t.tensor_type.name for t in GGUFReader(p).tensors}

    for variant, base in (("Q4_K_L", "Q4_K_M"), ("Q3_K_XL", "Q3_K_L")):
        got, ref = types(tiny_gguf("glm", variant)), types(tiny_gguf("glm", base))
        assert set(got) == set(ref)
        assert (got["token_embd.weight"], got["output.weight"]) == ("Q8_0", "Q8_0")
        assert ref["token_embd.weight"] != "Q8_0" or ref["output.weight"] != "Q8_0"
        assert {k: v for k, v in got.items() if not k.startswith(("token_embd", "output."))} == \
            {k: v for k, v in ref.items() if not k.startswith(("token_embd", "output."))}
    import llama_cpp

    llm = llama_cpp.Llama(str(tiny_gguf("glm", "Q4_K_L")), n_ctx=64, verbose=False)
    assert len(llm.tokenize(b"hello")) > 0 and llm.eval(llm.tokenize(b"hello")) is None


def test_mxfp4_moe_puts_the_routed_experts_in_mxfp4(tiny_gguf):
    from gguf import GGUFReader

    types = {t.name: t.tensor_type.name for t in GGUFReader(tiny_gguf("glm4moe", "MXFP4_MOE")).tensors}
    experts = {v for k, v in types.items() if "_exps" in k and k.endswith(".weight")}
    assert experts == {"MXFP4"}
    assert types["blk.0.attn_q.weight"] != "MXFP4"


def test_unsloth_dynamic_names_are_refused_with_what_to_do():
    from converters.gguf.quantize import llama_quant_name
    from registry.errors import RegistryError

    with pytest.raises(RegistryError, match=r"UD-Q4_K_XL is an Unsloth Dynamic quant.*registry pull.*build Q4_K_M"):
        llama_quant_name("ud-q4_k_xl")
    with pytest.raises(RegistryError, match=r"build IQ2_M with --imatrix"):
        llama_quant_name("UD-IQ2_M")


def test_every_ggufv2_quantization_in_the_catalog_is_buildable_or_said_why_not():
    import registry
    from converters.gguf.quantize import llama_quant_name
    from registry.errors import RegistryError

    names = {q for fam in registry.families() for s in fam.specs if s.format == "ggufv2" for q in s.quantizations}
    assert {"IQ3_XS", "Q4_K_L", "Q6_K_L", "MXFP4_MOE", "UD-Q4_K_XL"} <= names  # the catalog's own spread
    for q in names:
        if q.upper().startswith("UD-"):
            with pytest.raises(RegistryError, match="Unsloth Dynamic"):
                llama_quant_name(q)
        else:
            llama_quant_name(q)


@pytest.mark.parametrize("arch,outtype,split", [
    ("glm4", "F16", None),  # bf16 -> F16 on the span pipeline's workers
    ("glm4", "BF16", None),  # bytes copied unchanged by the workers
    ("glm4", "Q8_0", None),  # converted block by block through the writer's own file object
    ("glm4", "F16", 1 << 20),  # a split build: the shards' bytes in order
    ("glm4moe", "F16", None),  # experts assembled from parts (the float32 path)
])
def test_sha256_taken_while_writing_is_the_files_sha256(tiny_checkpoint, tmp_path, arch, outtype, split):
    from converters.gguf.core import convert_build
    from registry.hub.integrity import sha256_files

    files, sha = convert_build(tiny_checkpoint(arch), tmp_path / "m.gguf", outtype, split_max_size=split)
    assert (len(files) > 1) == bool(split)
    assert sha == sha256_files(files)  # what `registry verify` computes from the bytes on disk
