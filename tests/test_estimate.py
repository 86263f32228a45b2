"""Memory estimates (registry/estimate.py) against figures that do not come from the code under test:
KV bytes per token worked out by hand from the published config.json values each spec cites, and
llama.cpp's own account of the KV cache it allocates for a real GGUF."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import registry
from registry.estimate import engine_estimate, estimate, gguf_info, kv_bytes_per_token, llamacpp_estimate

# Per token, all layers, f16 (2 bytes). Hand-computed from the config.json values in the specs' sources:
# glm4-chat-1m (THUDM/glm-4-9b-chat-1m): K and V x 40 layers x 4 KV groups x 128 (kv_channels) x 2 B.
GLM4_CHAT_1M = 2 * 40 * 4 * 128 * 2  # 81,920 B = 80 KiB per token
# glm-4.6 (zai-org/GLM-4.6): K and V x 92 layers (MTP layer 92 keeps no cache) x 8 KV heads x 128 x 2 B.
GLM_46 = 2 * 92 * 8 * 128 * 2  # 376,832 B
# glm-5 (zai-org/GLM-5): MLA caches the 512-wide latent and the 64-wide rope key, one per token and layer;
# DSA's indexer adds its 128-wide key: 78 layers x (512 + 64 + 128) x 2 B.
GLM_5 = 78 * (512 + 64 + 128) * 2  # 109,824 B
# glm-5.3-flash (zai-org/GLM-5.3-Flash): of 45 layers only the 11 DSA layers cache per token (the 34 KDA layers keep
# a fixed state); their NoPE MLA latent is 512 wide with no rope key, plus the 128-wide indexer key.
GLM_53_FLASH = 11 * (512 + 0 + 128) * 2  # 14,080 B


@pytest.mark.parametrize("name, per_token", [("glm4-chat-1m", GLM4_CHAT_1M), ("glm-4.6", GLM_46), ("glm-5", GLM_5),
                                            ("glm-5.3-flash", GLM_53_FLASH)])
def test_kv_bytes_per_token_from_the_published_configs(name, per_token):
    arch = registry.get(name).architecture
    assert kv_bytes_per_token(arch) == per_token
    assert kv_bytes_per_token(arch, "fp8") == per_token / 2  # one byte per element
    assert kv_bytes_per_token(arch, "f32") == per_token * 2


def test_estimate_at_a_given_context_and_at_the_default():
    fam = registry.get("glm4-chat-1m")
    gguf = next(s for s in fam.specs if s.format == "ggufv2")
    at_32k = estimate(fam, gguf, "Q4_K", context=32768)
    assert at_32k.context == 32768 and at_32k.kv_cache == GLM4_CHAT_1M * 32768  # 2.68 GB
    full = estimate(fam, gguf, "Q4_K")
    # the 1M-token context's KV cache (85.9 GB) dwarfs the 5.5 GB of Q4_K_M weights
    assert full.context == 1048576 and full.kv_cache == GLM4_CHAT_1M * 1048576
    assert full.weights == int(9e9 * 4.89 / 8)  # llama.cpp's quantize table: Q4_K_M is 4.89 bits per weight
    two = engine_estimate(fam, fam.specs[0], "none", "vllm", context=32768, gpus=2)
    assert two.per_gpu == -(-(two.weights + two.kv_cache + two.overhead) // 2)
    assert two.kv_cache == GLM4_CHAT_1M * 32768


def _llamacpp_kv_log(paths, n_ctx: int) -> list[int]:
    """Bytes of every KV cache llama.cpp allocates for each GGUF, from its own log ("KV buffer size")."""
    code = (
        "import sys, llama_cpp\n"
        "for p in sys.argv[2:]:\n"
        "    print('MODEL', p, file=sys.stderr, flush=True)\n"
        "    llama_cpp.Llama(p, n_ctx=int(sys.argv[1]), n_batch=32, verbose=True).close()\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(n_ctx), *map(str, paths)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = []
    for chunk in r.stderr.split("MODEL ")[1:]:
        mib = [float(x) for x in re.findall(r"KV buffer size =\s+([\d.]+) MiB", chunk)]
        assert mib, chunk[-2000:]
        out.append(round(sum(mib) * 2**20))
    return out


@pytest.mark.slow
def test_llamacpp_kv_cache_is_what_llamacpp_allocates(tiny_gguf, tiny_checkpoint):
    """At n_ctx 8192 the KV cache outweighs a tiny model's weights (glm4moe: 12 MiB vs 9 MiB), so a
    wrong factor in it is no rounding error. GQA (chatglm, glm4moe: K and V per KV head) and MLA + DSA
    (glm-dsa: the latent-plus-rope key only, llama.cpp's V being a view of it, and the indexer's own
    key cache). The estimate must equal llama.cpp's figure to the byte."""
    archs = ["chatglm", "glm4moe", "glm-dsa"]
    paths = [tiny_gguf(a) for a in archs]
    n_ctx = 8192
    logged = _llamacpp_kv_log(paths, n_ctx)
    for arch, path, got in zip(archs, paths, logged):
        est = llamacpp_estimate(gguf_info(path), n_ctx)
        assert est.kv_cache == got, (arch, est.kv_cache, got)
    dsa = gguf_info(paths[2])
    assert dsa.mla and dsa.indexer_dim == 64
    # the same figure as the formula for the tiny GLM-5's config: latent + rope key + indexer key, f16
    cfg = json.loads((tiny_checkpoint("glm-dsa") / "config.json").read_text())
    per_token = cfg["num_hidden_layers"] * (cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"] + cfg["index_head_dim"]) * 2
    assert logged[2] == per_token * n_ctx


def test_show_and_fit_count_memory_the_same_way(monkeypatch, tmp_path):
    """Every build of every family: `registry show`'s (and the pages') figures at 32,768 tokens and at the full
    context are `registry fit`'s for the same quantization and context, on the machine show names; glm4-chat-1m's
    GGUF builds at 1M tokens carry llama.cpp's compute buffer (the attention scores at that context), beyond
    weights + KV."""
    from registry import launcher
    from registry.catalog import load
    from registry.views import family_view

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no cached download stands in for the hub copy
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    cat = load(include_user=False)
    checked = 0
    for name in cat.names():
        fam = cat.get(name)
        for spec, view in zip(fam.specs, family_view(fam)["specs"]):
            m = view["memory"]
            for ctx, kv, total in ((m["short_context"], "kv_cache_short_bytes", "memory_short_bytes"),
                                   (m["full_context"], "kv_cache_full_bytes", "memory_full_bytes")):
                rows = launcher.fit(name, hardware=m["hardware"], context=ctx, format=spec.format)["builds"]
                fit = {b["quantization"]: b for b in rows if b["size_in_billions"] == spec.size_in_billions}
                for b in m["builds"]:
                    f = fit[b["quantization"]]
                    where = (name, spec.format, b["quantization"], ctx)
                    assert f["context"] == ctx, where
                    assert (b["weights_bytes"], b[kv], b[total]) == (
                        f["weights_bytes"], f["kv_cache_bytes"], f["total_bytes"]), where
                    checked += 1
    assert checked > 500, checked
    fam = cat.get("glm4-chat-1m")
    gguf = next(s for s in family_view(fam)["specs"] if s["format"] == "ggufv2")["memory"]
    q4 = next(b for b in gguf["builds"] if b["quantization"] == "Q4_K")
    assert gguf["full_context"] == 1048576
    assert q4["total_full_bytes"] == q4["weights_bytes"] + q4["kv_cache_full_bytes"]  # the column "weights + KV"
    buffers = q4["memory_full_bytes"] - q4["total_full_bytes"]
    # n_ubatch 512 x 1M x (heads 32 + 1) x 4 bytes of attention scores and mask: ~70.9 GB
    assert buffers > 512 * 1048576 * 33 * 4
    # the commands people type say the same
    from conftest import run_cli

    shown = json.loads(run_cli("show", "glm4-chat-1m:Q4_K", "--json").stdout)
    row = next(b for s in shown["specs"] if s["format"] == "ggufv2" for b in s["memory"]["builds"]
               if b["quantization"] == "Q4_K")
    (b,) = json.loads(run_cli("fit", "glm4-chat-1m:Q4_K", "--hardware", "8xH200", "--context", "1M", "--json").stdout)["builds"]
    assert row["memory_full_bytes"] == b["total_bytes"] == q4["memory_full_bytes"]
    table = run_cli("show", "glm4-chat-1m", env={"COLUMNS": "250"}).stdout
    assert f"{b['total_bytes'] / 1e9:,.1f} GB" in next(x for x in table.splitlines() if x.startswith("Q4_K "))
