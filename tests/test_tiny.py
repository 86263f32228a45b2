"""Tiny GLM checkpoints (converters/tiny/): hub layout, real config keys, loadable weights,
GLM tokenizer, and the chatglm re-layout of its glm twin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from converters.tiny import tokenizer as tt
from converters.tiny import ARCHS, TinyCheckpointError, build_checkpoint, build_model

HF_ARCHS = [a for a in ARCHS if a != "chatglm"]
MOE_ARCHS = ["glm4moe", "glm-dsa"]

# Keys of the real repositories' config.json (see converters/tiny/ for the sources).
REAL_KEYS = {
    "glm": ["architectures", "attention_bias", "attention_dropout", "eos_token_id", "head_dim",
            "hidden_act", "hidden_size", "initializer_range", "intermediate_size",
            "max_position_embeddings", "model_type", "num_attention_heads", "num_hidden_layers",
            "num_key_value_heads", "pad_token_id", "partial_rotary_factor", "rms_norm_eps",
            "rope_theta", "tie_word_embeddings", "torch_dtype", "use_cache", "vocab_size"],
    "glm4": ["architectures", "attention_bias", "eos_token_id", "head_dim", "hidden_size",
             "intermediate_size", "max_position_embeddings", "model_type", "num_attention_heads",
             "num_hidden_layers", "num_key_value_heads", "pad_token_id", "partial_rotary_factor",
             "rms_norm_eps", "rope_theta", "tie_word_embeddings", "torch_dtype", "vocab_size"],
    "glm4moe": ["architectures", "attention_bias", "eos_token_id", "first_k_dense_replace",
                "head_dim", "hidden_size", "intermediate_size", "moe_intermediate_size", "n_group",
                "n_routed_experts", "n_shared_experts", "norm_topk_prob", "num_experts_per_tok",
                "num_hidden_layers", "num_key_value_heads", "num_nextn_predict_layers",
                "partial_rotary_factor", "rms_norm_eps", "rope_theta", "routed_scaling_factor",
                "topk_group", "use_qk_norm", "vocab_size"],
    "glm-dsa": ["architectures", "dtype", "ep_size", "first_k_dense_replace", "head_dim",
                "index_head_dim", "index_n_heads", "index_topk", "indexer_rope_interleave",
                "kv_lora_rank", "moe_intermediate_size", "moe_layer_freq", "n_routed_experts",
                "n_shared_experts", "num_nextn_predict_layers", "q_lora_rank", "qk_head_dim",
                "qk_nope_head_dim", "qk_rope_head_dim", "rope_interleave", "rope_parameters",
                "scoring_func", "topk_method", "v_head_dim", "vocab_size"],
    "chatglm": ["add_bias_linear", "add_qkv_bias", "apply_query_key_layer_scaling",
                "apply_residual_connection_post_layernorm", "architectures", "auto_map",
                "eos_token_id", "ffn_hidden_size", "hidden_size", "kv_channels", "layernorm_epsilon",
                "model_type", "multi_query_attention", "multi_query_group_num",
                "num_attention_heads", "num_layers", "original_rope", "pad_token_id",
                "padded_vocab_size", "post_layer_norm", "rmsnorm", "rope_ratio", "seq_length",
                "tie_word_embeddings", "torch_dtype", "vocab_size"],
}


def _index(d: Path) -> dict:
    return json.loads((d / "model.safetensors.index.json").read_text())


def _read_all(d: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for shard in sorted(set(_index(d)["weight_map"].values())):
        out.update(load_file(str(d / shard)))
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_hub_layout_and_config(tiny_checkpoint, arch):
    from safetensors import safe_open

    d = tiny_checkpoint(arch)
    index = _index(d)
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2
    n = len(shards)
    assert shards == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert sorted(p.name for p in d.glob("*.safetensors")) == shards
    seen, total = {}, 0
    for shard in shards:
        with safe_open(str(d / shard), "pt") as f:
            for name in f.keys():
                seen[name] = shard
                t = f.get_tensor(name)
                total += t.numel() * t.element_size()
    assert seen == index["weight_map"]  # every tensor where the index says, none unlisted
    assert index["metadata"]["total_size"] == total
    cfg = json.loads((d / "config.json").read_text())
    missing = [k for k in REAL_KEYS[arch] if k not in cfg]
    assert not missing
    assert cfg["architectures"] == [{"glm": "GlmForCausalLM", "glm4": "Glm4ForCausalLM",
                                     "glm4moe": "Glm4MoeForCausalLM", "glm-dsa": "GlmMoeDsaForCausalLM",
                                     "chatglm": "ChatGLMModel"}[arch]]
    assert (d / "generation_config.json").exists()
    vocab = cfg["padded_vocab_size"] if arch == "chatglm" else cfg["vocab_size"]
    assert vocab % 64 == 0 and 600 <= vocab <= 1000


def _row_lengths_ok(d: Path) -> list[str]:
    """Names of 2-D weights whose row length is not a multiple of 256 (K-quant blocks)."""
    from safetensors import safe_open

    bad = []
    for shard in sorted(set(_index(d)["weight_map"].values())):
        with safe_open(str(d / shard), "pt") as f:
            for name in f.keys():
                shape = f.get_slice(name).get_shape()
                if len(shape) == 2 and shape[1] % 256:
                    bad.append(f"{name}{shape}")
    return bad


@pytest.mark.parametrize("arch", ARCHS)
def test_k_quant_row_lengths(tiny_checkpoint, arch):
    # Every 2-D weight as stored, MLA's kv_b_proj and the DSA indexer included, has rows that
    # are whole K-quant blocks. (llama.cpp splits kv_b_proj into k_b with rows of
    # qk_nope_head_dim = 64, which its quantizer gives a fallback type, as for the real GLM-5.)
    assert _row_lengths_ok(tiny_checkpoint(arch)) == []


@pytest.mark.parametrize("arch", HF_ARCHS)
def test_loads_with_transformers_to_the_same_logits(tiny_checkpoint, arch):
    import torch
    from transformers import AutoModelForCausalLM

    d = tiny_checkpoint(arch)
    loaded = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    ref = build_model(arch)
    assert type(loaded).__name__ == json.loads((d / "config.json").read_text())["architectures"][0]
    ids = torch.tensor([[tt.NORMAL_VOCAB + 2, tt.NORMAL_VOCAB + 4, 5, 17, 300, 42, 599, 7, 8, 9]])
    with torch.no_grad():
        a, b = ref(ids).logits, loaded(ids).logits
    assert torch.isfinite(b).all()
    assert torch.equal(a, b)
    assert b.std() > 0.5  # not a flat distribution


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = build_checkpoint("glm4", tmp_path / "a", seed=3)
    b = build_checkpoint("glm4", tmp_path / "b", seed=3)
    c = build_checkpoint("glm4", tmp_path / "c", seed=4)
    for f in sorted(p.name for p in a.iterdir()):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    shard = sorted(a.glob("*.safetensors"))[0].name
    assert (a / shard).read_bytes() != (c / shard).read_bytes()


@pytest.mark.parametrize("arch", MOE_ARCHS)
def test_moe_per_expert_names_and_mtp_layer(tiny_checkpoint, arch):
    d = tiny_checkpoint(arch)
    cfg = json.loads((d / "config.json").read_text())
    names = set(_index(d)["weight_map"])
    L, E, k = cfg["num_hidden_layers"], cfg["n_routed_experts"], cfg["first_k_dense_replace"]
    assert not any("gate_up_proj" in n for n in names)  # no fused 3-D experts
    for layer in range(L + 1):  # the MTP layer is an MoE layer too
        p = f"model.layers.{layer}.mlp."
        if layer < k:
            assert {p + "gate_proj.weight", p + "up_proj.weight", p + "down_proj.weight"} <= names
            assert not any(n.startswith(p + "experts.") for n in names)
            continue
        for e in range(E):
            for proj in ("gate_proj", "up_proj", "down_proj"):
                assert f"{p}experts.{e}.{proj}.weight" in names
        assert f"{p}experts.{E}.gate_proj.weight" not in names
        assert {p + "gate.weight", p + "gate.e_score_correction_bias",
                p + "shared_experts.gate_proj.weight"} <= names
    mtp = f"model.layers.{L}."
    for t in ("eh_proj.weight", "enorm.weight", "hnorm.weight", "shared_head.norm.weight",
              "input_layernorm.weight", "post_attention_layernorm.weight"):
        assert mtp + t in names
    assert f"model.layers.{L + 1}.eh_proj.weight" not in names
    sd = _read_all(d)
    h = cfg["hidden_size"]
    assert tuple(sd[mtp + "eh_proj.weight"].shape) == (h, 2 * h)
    assert sd[f"{mtp}mlp.experts.0.gate_proj.weight"].ndim == 2
    import torch

    assert sd[f"{mtp}mlp.gate.e_score_correction_bias"].dtype == torch.float32
    assert sd["model.embed_tokens.weight"].dtype == torch.bfloat16
    assert sd[f"model.layers.{k}.mlp.gate.e_score_correction_bias"].abs().sum() > 0


def test_glm45_mtp_layout_option(tiny_checkpoint):
    d = tiny_checkpoint("glm4moe", mtp_shared_tensors=True)
    names = set(_index(d)["weight_map"])
    assert {"model.layers.3.embed_tokens.weight", "model.layers.3.shared_head.head.weight"} <= names
    assert "model.layers.3.shared_head.head.weight" not in _index(tiny_checkpoint("glm4moe"))["weight_map"]


@pytest.mark.parametrize("arch", HF_ARCHS)
def test_tokenizer_specials_and_chat_template(tiny_checkpoint, arch):
    from transformers import AutoTokenizer

    d = tiny_checkpoint(arch)
    tok = AutoTokenizer.from_pretrained(d)
    specials = tt.GLM45_SPECIALS if arch in MOE_ARCHS else tt.GLM4_SPECIALS
    assert [tok.convert_tokens_to_ids(s) for s in specials] == list(
        range(tt.NORMAL_VOCAB, tt.NORMAL_VOCAB + len(specials)))
    assert len(tok) == tt.NORMAL_VOCAB + len(specials)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["eos_token_id"] == [tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|user|>", "<|observation|>")]
    assert cfg["pad_token_id"] == tok.convert_tokens_to_ids("<|endoftext|>")
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好, who are you?"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text.startswith("[gMASK]<sop>")
    assert "<|user|>\n你好, who are you?" in text
    assert text.rstrip("\n").endswith("<|assistant|>")
    ids = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert list(ids[:2]) == [tok.convert_tokens_to_ids("[gMASK]"), tok.convert_tokens_to_ids("<sop>")]
    assert tok.decode(tok.encode("hello 世界 42", add_special_tokens=False)) == "hello 世界 42"
    assert (d / "chat_template.jinja").exists() == (arch in MOE_ARCHS)


def _tiktoken_encode(text: str, ranks: dict[bytes, int]) -> list[int]:
    """Reference tiktoken-style encoder: split with GLM's pattern, then merge the lowest-ranked
    adjacent pair until none is in the vocabulary."""
    import regex

    out = []
    for piece in regex.findall(tt.GLM4_SPLIT_PATTERN, text):
        parts = [bytes([b]) for b in piece.encode("utf-8")]
        while len(parts) > 1:
            best = min(range(len(parts) - 1), key=lambda i: ranks.get(parts[i] + parts[i + 1], 1 << 30))
            if parts[best] + parts[best + 1] not in ranks:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        out.extend(ranks[p] for p in parts)
    return out


def test_chatglm_tokenizer_files(tiny_checkpoint):
    from transformers import AutoTokenizer

    d = tiny_checkpoint("chatglm")
    assert not (d / "tokenizer.json").exists()
    ranks = tt.read_tiktoken_file(d / "tokenizer.model")
    lines = (d / "tokenizer.model").read_text().splitlines()
    assert len(lines) == len(ranks) == tt.NORMAL_VOCAB
    assert [int(line.split(" ")[1]) for line in lines] == list(range(tt.NORMAL_VOCAB))
    # Same vocabulary as the glm twin's tokenizer.json, and it encodes text to the same ids.
    hf = AutoTokenizer.from_pretrained(tiny_checkpoint("glm"))
    hf_vocab = {tt.token_bytes(t): i for t, i in hf.get_vocab().items() if i < tt.NORMAL_VOCAB}
    assert hf_vocab == ranks
    for text in ["Hello, how are you today?", "你好！今天天气怎么样？", "def f(x):\n    return x * 1024\n",
                 "unseen wörds ünd Ωmega 🙂"]:
        assert _tiktoken_encode(text, ranks) == hf.encode(text, add_special_tokens=False), text
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "ChatGLM4Tokenizer"
    assert cfg["chat_template"].startswith("[gMASK]<sop>")
    dec = cfg["added_tokens_decoder"]
    assert [dec[str(tt.NORMAL_VOCAB + i)]["content"] for i in range(len(tt.GLM4_SPECIALS))] == tt.GLM4_SPECIALS


def test_chatglm_weights_are_the_relaid_twin(tmp_path):
    import torch

    over = {"num_layers": 3, "rope_ratio": 2}
    c = build_checkpoint("chatglm", tmp_path / "c", seed=7, twin=tmp_path / "g", **over)
    g = tmp_path / "g"
    # The twin is exactly the glm checkpoint of the same seed and (translated) overrides.
    direct = build_checkpoint("glm", tmp_path / "direct", seed=7, num_hidden_layers=3, rope_theta=20000.0)
    assert _read_all(g).keys() == _read_all(direct).keys()
    assert all(torch.equal(_read_all(g)[k], v) for k, v in _read_all(direct).items())
    ccfg = json.loads((c / "config.json").read_text())
    gcfg = json.loads((g / "config.json").read_text())
    assert ccfg["num_layers"] == gcfg["num_hidden_layers"] == 3
    assert ccfg["rope_ratio"] * 10000 == gcfg["rope_theta"]
    assert ccfg["kv_channels"] * ccfg["num_attention_heads"] == ccfg["hidden_size"]
    assert ccfg["multi_query_group_num"] == gcfg["num_key_value_heads"]
    assert ccfg["ffn_hidden_size"] == gcfg["intermediate_size"]
    assert ccfg["padded_vocab_size"] == gcfg["vocab_size"]
    assert ccfg["layernorm_epsilon"] == gcfg["rms_norm_eps"]
    assert ccfg["seq_length"] == gcfg["max_position_embeddings"]
    cs, gs = _read_all(c), _read_all(g)
    hd, nh, kv = ccfg["kv_channels"], ccfg["num_attention_heads"], ccfg["multi_query_group_num"]
    assert torch.equal(cs["transformer.embedding.word_embeddings.weight"], gs["model.embed_tokens.weight"])
    assert torch.equal(cs["transformer.output_layer.weight"], gs["lm_head.weight"])
    assert torch.equal(cs["transformer.encoder.final_layernorm.weight"], gs["model.norm.weight"])
    for i in range(3):
        cp, gp = f"transformer.encoder.layers.{i}.", f"model.layers.{i}."
        qkv_w, qkv_b = cs[cp + "self_attention.query_key_value.weight"], cs[cp + "self_attention.query_key_value.bias"]
        assert qkv_w.shape == ((nh + 2 * kv) * hd, ccfg["hidden_size"])
        q, k, v = qkv_w.split([nh * hd, kv * hd, kv * hd])
        qb, kb, vb = qkv_b.split([nh * hd, kv * hd, kv * hd])
        for got, name in ((q, "q"), (k, "k"), (v, "v")):
            assert torch.equal(got, gs[gp + f"self_attn.{name}_proj.weight"])
        for got, name in ((qb, "q"), (kb, "k"), (vb, "v")):
            assert torch.equal(got, gs[gp + f"self_attn.{name}_proj.bias"])
        assert torch.equal(cs[cp + "self_attention.dense.weight"], gs[gp + "self_attn.o_proj.weight"])
        h4 = cs[cp + "mlp.dense_h_to_4h.weight"]
        gate, up = h4.chunk(2)
        gate_up = gs[gp + "mlp.gate_up_proj.weight"]
        assert torch.equal(gate, gate_up[: ccfg["ffn_hidden_size"]]) and torch.equal(up, gate_up[ccfg["ffn_hidden_size"]:])
        assert torch.equal(cs[cp + "mlp.dense_4h_to_h.weight"], gs[gp + "mlp.down_proj.weight"])
        assert torch.equal(cs[cp + "input_layernorm.weight"], gs[gp + "input_layernorm.weight"])
        assert torch.equal(cs[cp + "post_attention_layernorm.weight"], gs[gp + "post_attention_layernorm.weight"])
    assert cs["transformer.rotary_pos_emb.inv_freq"].shape == (hd // 4,)
    assert not [k for k in cs if k.startswith("model.")]


def test_chatglm_forward_matches_twin(tiny_checkpoint):
    """A from-the-paper ChatGLM forward pass over the chatglm tensors gives the twin's logits:
    proves the re-layout (q/k/v order, gate|up order, rotary on interleaved pairs of the first
    half of each head, rope base 10000 * rope_ratio) is the same model."""
    import torch

    d = tiny_checkpoint("chatglm")
    cfg = json.loads((d / "config.json").read_text())
    w = {k: v.float() for k, v in _read_all(d).items()}
    nh, kv, hd = cfg["num_attention_heads"], cfg["multi_query_group_num"], cfg["kv_channels"]
    eps = cfg["layernorm_epsilon"]
    ids = torch.tensor([5, 17, 300, 42, 599, 7, 8, tt.NORMAL_VOCAB + 2])
    T = len(ids)

    def rms(x, wt):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * wt

    rot = hd // 2
    base = 10000 * cfg["rope_ratio"]
    theta = 1.0 / base ** (torch.arange(0, rot, 2).float() / rot)
    ang = torch.arange(T).float()[:, None] * theta[None]  # [T, rot/2]
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]

    def rope(x):  # x [T, heads, hd]; pairs (0,1),(2,3).. of the first `rot` dims
        xr, xp = x[..., :rot], x[..., rot:]
        a, b = xr[..., 0::2], xr[..., 1::2]
        out = torch.stack([a * cos - b * sin, b * cos + a * sin], -1).flatten(-2)
        return torch.cat([out, xp], -1)

    h = w["transformer.embedding.word_embeddings.weight"][ids]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for i in range(cfg["num_layers"]):
        p = f"transformer.encoder.layers.{i}."
        x = rms(h, w[p + "input_layernorm.weight"])
        qkv = x @ w[p + "self_attention.query_key_value.weight"].T + w[p + "self_attention.query_key_value.bias"]
        q, k, v = qkv.split([nh * hd, kv * hd, kv * hd], -1)
        q, k, v = rope(q.view(T, nh, hd)), rope(k.view(T, kv, hd)), v.view(T, kv, hd)
        k, v = k.repeat_interleave(nh // kv, 1), v.repeat_interleave(nh // kv, 1)
        att = torch.einsum("thd,shd->hts", q, k) / hd ** 0.5 + mask
        o = torch.einsum("hts,shd->thd", att.softmax(-1), v).reshape(T, nh * hd)
        h = h + o @ w[p + "self_attention.dense.weight"].T
        x = rms(h, w[p + "post_attention_layernorm.weight"])
        g, u = (x @ w[p + "mlp.dense_h_to_4h.weight"].T).chunk(2, -1)
        h = h + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.dense_4h_to_h.weight"].T
    logits = rms(h, w["transformer.encoder.final_layernorm.weight"]) @ w["transformer.output_layer.weight"].T
    twin = build_model("chatglm")
    with torch.no_grad():
        ref = twin(ids[None]).logits[0]
    assert (logits - ref).abs().max() < 1e-3 * ref.abs().max()
    assert torch.equal(logits.argmax(-1), ref.argmax(-1))


def test_pair_fixture_gives_chatglm_and_its_twin(tiny_chatglm_pair):
    c, g = tiny_chatglm_pair(num_layers=3)
    assert json.loads((c / "config.json").read_text())["architectures"] == ["ChatGLMModel"]
    gcfg = json.loads((g / "config.json").read_text())
    assert gcfg["architectures"] == ["GlmForCausalLM"] and gcfg["num_hidden_layers"] == 3
    import torch

    assert torch.equal(_read_all(c)["transformer.output_layer.weight"], _read_all(g)["lm_head.weight"])
    assert tiny_chatglm_pair(num_layers=3) == (c, g)  # cached


def test_bad_input_is_a_clear_error_and_leaves_nothing(tmp_path):
    with pytest.raises(TinyCheckpointError, match="unknown tiny architecture 'glm9'"):
        build_checkpoint("glm9", tmp_path / "x")
    with pytest.raises(TinyCheckpointError, match="unknown override.*hiden_size"):
        build_checkpoint("glm", tmp_path / "x", hiden_size=512)
    with pytest.raises(TinyCheckpointError, match="vocab_size 100"):
        build_checkpoint("glm", tmp_path / "x", vocab_size=100)
    with pytest.raises(TinyCheckpointError, match="twin="):
        build_checkpoint("glm", tmp_path / "x", twin=tmp_path / "y")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(TinyCheckpointError, match="not an empty directory"):
        build_checkpoint("glm", busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]  # no temp dirs left behind


def test_overrides_change_the_checkpoint(tiny_checkpoint):
    d = tiny_checkpoint("glm4moe", hidden_size=512, n_routed_experts=4, num_hidden_layers=2, dtype="float32")
    cfg = json.loads((d / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["n_routed_experts"], cfg["num_hidden_layers"], cfg["torch_dtype"]) == (512, 4, 2, "float32")
    names = _index(d)["weight_map"]
    assert "model.layers.2.eh_proj.weight" in names and "model.layers.1.mlp.experts.3.up_proj.weight" in names
    assert "model.layers.1.mlp.experts.4.up_proj.weight" not in names
    import torch

    assert _read_all(d)["model.embed_tokens.weight"].dtype == torch.float32
