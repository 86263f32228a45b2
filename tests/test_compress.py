"""compressed-tensors builds on tiny GLM checkpoints: recipes, vLLM's tensor layout, quality, bad input.

Each build runs llm-compressor for real on a tiny random model (CPU, a few short calibration
samples); builds are cached per module so several tests read the same output.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

pytestmark = pytest.mark.slow

CALIB = ROOT / "tests" / "data" / "calibration_chat.jsonl"
SAMPLES, SEQ = 6, 48


def _request(family, source, quant, out, **kw):
    from converters.options import ConvertRequest

    kw.setdefault("calibration", str(CALIB))
    kw.setdefault("samples", SAMPLES)
    kw.setdefault("max_seq_len", SEQ)
    kw.setdefault("report", True)
    kw.setdefault("record", True)
    return ConvertRequest(family=family, source=Path(source), to="compressed-tensors", quant=quant, out=Path(out),
                          progress=False, say=lambda m: None, **kw)


def convert(family, source, quant, out, **kw):
    from converters.compressed_tensors import run_convert

    return run_convert(_request(family, source, quant, out, **kw))


def invoke(*argv: str) -> tuple[int, str, str]:
    """`registry ARGV` in this interpreter (typer's runner, as the docs' tests run ~200 launch plans):
    (exit code, stdout, stderr), a RegistryError as the one line and exit code 1 registry prints
    (registry/cli/__init__.py). This process imports torch, transformers and llm-compressor once; a
    fresh interpreter spends ~5 s on them before each command starts. For tests of what a command
    computes from its options; the CLI tests that run it as a user does use run_cli."""
    import gc

    from typer.testing import CliRunner

    from registry.cli import app, error_label
    from registry.errors import RegistryError

    try:
        r = CliRunner().invoke(app, list(argv))
    finally:
        gc.unfreeze()  # a build freezes what start-up loaded, for its own process's life; this one goes on
    err = r.stderr
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        if not isinstance(r.exception, RegistryError):
            raise r.exception
        return 1, r.stdout, err + f"{error_label()} {r.exception}\n"  # as registry.cli.main prints it
    return r.exit_code, r.stdout, err


def tensors(path: Path) -> dict:
    """name -> (dtype string, shape) over every shard of a build."""
    from safetensors import safe_open

    out = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(f, "pt") as s:
            for k in s.keys():
                sl = s.get_slice(k)
                out[k] = (sl.get_dtype(), list(sl.get_shape()))
    return out


def qconfig(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())["quantization_config"]


def starve_experts(src: Path, dest: Path, experts=(6, 7)) -> Path:
    """A copy of a MoE checkpoint whose router never picks `experts` (large negative score bias)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dest)
    for f in dest.glob("*.safetensors"):
        sd = load_file(f)
        hit = False
        for k, t in sd.items():
            if k.endswith("mlp.gate.e_score_correction_bias"):
                t[list(experts)] = -1e4
                hit = True
        if hit:
            save_file(sd, f, metadata={"format": "pt"})
    return dest


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("ct-home")


@pytest.fixture(scope="module")
def builds(tmp_path_factory, tiny_checkpoint, home):
    """Lazily built outputs, shared by the tests of this module: key -> ConvertResult."""
    import os

    root = tmp_path_factory.mktemp("ct-builds")
    cache: dict = {}
    starved = {}

    def moe_src(layers=3):
        if layers not in starved:
            over = {} if layers == 3 else {"num_hidden_layers": layers}
            starved[layers] = starve_experts(tiny_checkpoint("glm4moe", **over), root / f"moe-starved-{layers}")
        return starved[layers]

    recipes = {
        "fp8": lambda: ("glm-4-9b-chat", tiny_checkpoint("glm"), "FP8_DYNAMIC", {}),
        "gs32": lambda: ("glm-4-9b-chat", tiny_checkpoint("glm"), "W4A16_GS32", {"method": "rtn"}),
        "gs128": lambda: ("glm-4-9b-chat", tiny_checkpoint("glm"), "W4A16_GS128", {"method": "rtn"}),
        "gs64-awq-glm4": lambda: ("glm-4-9b-0414", tiny_checkpoint("glm4"), "W4A16_GS64", {"method": "awq"}),
        "awq": lambda: ("glm-4.6", moe_src(4), "AWQ", {}),
        "nvfp4-natural": lambda: ("glm-4.7", moe_src(), "NVFP4", {"all_experts": False}),
        "nvfp4-all": lambda: ("glm-4.7", moe_src(), "NVFP4", {"all_experts": True}),
    }

    def get(key):
        if key not in cache:
            family, src, quant, kw = recipes[key]()
            old = os.environ.get("REGISTRY_HOME")
            os.environ["REGISTRY_HOME"] = str(home)  # one store for the module's builds
            try:
                (cache[key],) = convert(family, src, quant, root / key, **kw)
            finally:
                if old is not None:
                    os.environ["REGISTRY_HOME"] = old
        return cache[key]

    return get


# --- calibration ---------------------------------------------------------------------------


def test_length_mix_follows_seed_000_fractions():
    from converters.compressed_tensors.calibration import Bucket, scaled_mix, target_lengths

    mix = (Bucket(256, 1024, 0.9), Bucket(1024, 2048, 0.1))
    lengths = target_lengths(200, mix, 2048, random.Random(0))
    assert sum(256 <= n <= 1024 for n in lengths) >= 180 - 1
    assert sum(n > 1024 for n in lengths) >= 19
    short = scaled_mix(mix, 512)  # a short --max-seq-len shrinks the mix proportionally
    assert max(b.max_tokens for b in short) == 512 and short[0].min_tokens == 64


def test_calibration_renders_the_chat_template(tiny_checkpoint):
    from transformers import AutoTokenizer

    from converters.compressed_tensors.calibration import CalibrationPlan, read_jsonl, tokenize

    src = tiny_checkpoint("glm")
    tok = AutoTokenizer.from_pretrained(src)
    plan = CalibrationPlan(source=str(CALIB), split="train", samples=5, max_seq_len=40, seed=3)
    ids = tokenize(read_jsonl(CALIB), tok, plan)
    assert len(ids) == 5 and all(0 < len(x) <= 40 for x in ids)
    # GLM's template starts every conversation with [gMASK]<sop>.
    head = tok.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    assert all(x[:2] == head for x in ids)
    assert tokenize(read_jsonl(CALIB), tok, plan) == ids  # the seed fixes the draw


def test_calibration_set_is_read_and_tokenized_once_per_run(tiny_checkpoint, monkeypatch):
    """`--quant all` builds share one CalibrationData: the set is read once, each distinct plan tokenized once."""
    from converters.compressed_tensors import calibration
    from converters.compressed_tensors.build import CalibrationData
    from converters.compressed_tensors.calibration import CalibrationPlan

    calls = {"read": 0, "tokenize": 0}

    def counted(name, fn):
        def wrapper(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapper

    monkeypatch.setattr(calibration, "read_conversations", counted("read", calibration.read_conversations))
    monkeypatch.setattr(calibration, "tokenize", counted("tokenize", calibration.tokenize))
    data = CalibrationData(tiny_checkpoint("glm"))
    plan = CalibrationPlan(source=str(CALIB), split="train", samples=4, max_seq_len=24, seed=1)
    first = data.token_ids(plan)
    assert data.token_ids(CalibrationPlan(str(CALIB), "train", 4, 24, 1)) is first  # an equal plan: no work
    assert calls == {"read": 1, "tokenize": 1}
    other = data.token_ids(CalibrationPlan(str(CALIB), "train", 4, 24, 2))  # another draw, same file
    assert other != first and calls == {"read": 1, "tokenize": 2}


# --- each recipe: layout vLLM expects ------------------------------------------------------


def _check_side_files(out: Path, src: Path):
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        if (src / name).exists():
            assert (out / name).read_bytes() == (src / name).read_bytes(), name
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))
    assert json.loads((out / "glm_registry_recipe.json").read_text())["quantization"]


def test_fp8_dynamic_layout(builds, tiny_checkpoint):
    res = builds("fp8")
    out = res.path
    q = qconfig(out)
    assert q["quant_method"] == "compressed-tensors" and q["format"] == "float-quantized"
    g = q["config_groups"]["group_0"]
    assert g["weights"]["num_bits"] == 8 and g["weights"]["type"] == "float"
    assert g["input_activations"]["dynamic"] is True  # dynamic per-token activation scales
    assert "lm_head" in q["ignore"]
    t = tensors(out)
    for name, (dtype, shape) in t.items():
        if name.endswith("_proj.weight"):
            assert dtype == "F8_E4M3", name
            assert t[name[: -len("weight")] + "weight_scale"][1] == [shape[0], 1]
    assert t["lm_head.weight"][0] == "BF16" and t["model.embed_tokens.weight"][0] == "BF16"
    assert res.recipe["method"] == "data-free" and "calibration" not in res.recipe
    assert res.recipe["spec_source"] == "the GizzmoShifu/glm-4-9b-chat-hf-fp8 model card"
    assert res.recipe["calibration_spec"]["length_mix"][0]["fraction"] == 0.9
    _check_side_files(out, tiny_checkpoint("glm"))


@pytest.mark.parametrize("key,gs", [("gs32", 32), ("gs128", 128), ("gs64-awq-glm4", 64)])
def test_w4a16_pack_quantized_layout(builds, key, gs):
    res = builds(key)
    q = qconfig(res.path)
    assert q["format"] == "pack-quantized"
    w = q["config_groups"]["group_0"]["weights"]
    assert (w["num_bits"], w["type"], w["symmetric"], w["strategy"], w["group_size"]) == (4, "int", True, "group", gs)
    assert q["config_groups"]["group_0"]["input_activations"] is None  # weight-only
    t = tensors(res.path)
    packed = [k for k in t if k.endswith(".weight_packed")]
    assert packed and not any(k.endswith("_proj.weight") for k in t)  # every Linear packed ...
    for k in packed:
        base = k[: -len("weight_packed")]
        rows, cols8 = t[k][1]
        assert t[k][0] == "I32" and t[base + "weight_shape"][0] == "I64"
        assert t[base + "weight_scale"][1] == [rows, cols8 * 8 // gs]
    assert t["lm_head.weight"][0] == "BF16"  # ... but lm_head, kept in high precision (seed 001)
    assert res.recipe["method"] == ("awq" if "awq" in key else "rtn")


def test_awq_reproduces_seed_002(builds):
    res = builds("awq")
    from registry.catalog import load

    spec = next(s for s in load().get("glm-4.6").specs if s.format == "compressed-tensors").recipe
    assert res.recipe["ignore"] == spec.ignore and res.recipe["targets"] == spec.targets
    assert res.recipe["group_size"] == 128 and res.recipe["method"] == "awq"
    t = tensors(res.path)
    # the first three layers, shared experts and the router stay unquantized; layer 3 is packed
    assert not any(k.startswith(f"model.layers.{i}.") and "packed" in k for i in range(3) for k in t)
    assert "model.layers.3.self_attn.q_proj.weight_packed" in t
    assert "model.layers.3.mlp.experts.0.down_proj.weight_packed" in t
    assert t["model.layers.3.mlp.shared_experts.up_proj.weight"][0] == "BF16"
    assert "model.layers.3.mlp.gate.weight" in t
    # MTP removed (seed 002): no layer 4 tensors, and config.json says so
    assert not any(k.startswith("model.layers.4.") for k in t)
    assert json.loads((res.path / "config.json").read_text())["num_nextn_predict_layers"] == 0


def test_nvfp4_quantizes_expert_mlps_only(builds):
    res = builds("nvfp4-all")
    q = qconfig(res.path)
    assert q["format"] == "nvfp4-pack-quantized"
    t = tensors(res.path)
    experts = [k for k in t if ".mlp.experts." in k]
    assert experts
    for k in (k for k in experts if k.endswith(".weight_packed")):
        base = k[: -len("weight_packed")]
        assert t[k][0] == "U8"
        assert t[base + "weight_scale"][0] == "F8_E4M3"
        assert t[base + "weight_global_scale"][0] == "F32"
        assert t[base + "input_global_scale"][0] == "F32"
    assert not any(k.endswith(".mlp.experts.0.up_proj.weight") for k in t)
    for k, (dtype, _) in t.items():  # attention, dense MLP, shared experts, router: untouched
        if ".self_attn." in k or ".shared_experts." in k or k.startswith("model.layers.0.mlp."):
            assert dtype in ("BF16", "F32") and k.endswith((".weight", ".bias")), k


def test_all_experts_calibration_reaches_starved_experts(builds):
    import torch
    from safetensors import safe_open

    natural = builds("nvfp4-natural").recipe["calibration"]["expert_coverage"]
    every = builds("nvfp4-all").recipe["calibration"]["expert_coverage"]
    # the tiny router never picks experts 6 and 7 ...
    assert natural["all_experts"] is False
    assert {n.rsplit(".", 1)[1] for n in natural["experts_without_tokens"]} == {"6", "7"}
    # ... all-experts calibration gives every expert calibration tokens
    assert every["experts_without_tokens"] == [] and every["min_tokens"] > 0
    path = builds("nvfp4-all").path
    for f in path.glob("*.safetensors"):
        with safe_open(f, "pt") as s:
            for k in s.keys():
                if k.endswith("input_global_scale"):
                    v = float(s.get_tensor(k).float()[0])
                    assert math.isfinite(v) and 0 < v < 1e8, (k, v)


# --- quality -------------------------------------------------------------------------------


def test_decompressed_logits_close_and_ordered(builds):
    fp8, g32, g128 = (builds(k).report for k in ("fp8", "gs32", "gs128"))
    for r in (fp8, g32, g128):
        assert set(r) == {"reference", "tokens", "kl_divergence", "top1_agreement"}
        assert r["reference"] == "source" and r["tokens"] == 128
        # The tiny random model's next-token distributions are broad (entropy ~5 nats), so even
        # FP8's ~4% weight error moves them by ~0.05 nats; int4 by ~0.3-0.4.
        assert 0 <= r["kl_divergence"] < 0.6 and 0.15 <= r["top1_agreement"] <= 1
    assert fp8["kl_divergence"] < 0.15
    assert fp8["kl_divergence"] < g32["kl_divergence"] < g128["kl_divergence"]
    assert fp8["top1_agreement"] > g128["top1_agreement"]
    assert builds("nvfp4-all").report["kl_divergence"] < 0.6


def test_builds_are_recorded_with_recipe(builds, home, monkeypatch):
    res = builds("gs32")
    monkeypatch.setenv("REGISTRY_HOME", str(home))
    from registry.store import Store

    rows = {a.path: a for a in Store().artifacts(family="glm-4-9b-chat", format="compressed-tensors")}
    row = rows[str(res.path)]
    assert row.quantization == "W4A16_GS32" and row.recipe["group_size"] == 32
    assert row.report["kl_divergence"] == res.report["kl_divergence"] and row.sha256 == res.sha256


# --- CLI -----------------------------------------------------------------------------------


def test_cli_convert_records_and_show_displays_recipe(tiny_checkpoint, tmp_path):
    src = tiny_checkpoint("glm4moe")
    out = tmp_path / "glm47-gs64"
    r = run_cli("convert", "glm-4.7", "--from", str(src), "--to", "compressed-tensors", "--quant", "W4A16_GS64",
                "--calibration", str(CALIB), "--samples", "4", "--max-seq-len", "32", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    (res,) = json.loads(r.stdout)
    assert res["quantization"] == "W4A16_GS64" and res["artifact_id"] and res["path"] == str(out)
    assert res["recipe"]["calibration"]["all_experts"] is True  # glm-4.7's spec: all-experts (seed 001)
    assert qconfig(out)["config_groups"]["group_0"]["weights"]["group_size"] == 64
    shown = run_cli("show", "glm-4.7", "--artifacts", "--json")
    assert shown.returncode == 0, shown.stderr
    (art,) = json.loads(shown.stdout)["artifacts"]
    assert art["path"] == str(out) and art["recipe"]["group_size"] == 64 and "group 64" in art["recipe_summary"]
    table = run_cli("show", "glm-4.7", "--artifacts")
    assert "Built artifacts" in table.stdout and "W4A16_GS64" in table.stdout
    assert "registry show glm-4.7 --artifacts" in run_cli("show", "glm-4.7").stdout  # the hint
    # the recorded digest is the one `registry verify` re-computes for a build folder
    v = run_cli("verify", "glm-4.7", "--format", "compressed-tensors", "--quant", "W4A16_GS64", "--json")
    assert v.returncode == 0, v.stdout + v.stderr
    assert [x["ok"] for x in json.loads(v.stdout)] == [True]


def test_cli_explicit_seed_and_no_all_experts_win_over_the_spec(tiny_checkpoint, tmp_path):
    """glm-4.7's spec calibrates all experts; --no-all-experts turns that off, --seed reaches the recipe."""
    out = tmp_path / "glm47-natural"
    rc, stdout, stderr = invoke(
        "convert", "glm-4.7", "--from", str(tiny_checkpoint("glm4moe")), "--to", "compressed-tensors", "--quant",
        "W4A16_GS64", "--calibration", str(CALIB), "--samples", "4", "--max-seq-len", "32", "--seed", "5",
        "--no-all-experts", "--no-record", "--out", str(out), "--json")
    assert rc == 0, stderr[-2000:]
    (res,) = json.loads(stdout)
    calib = res["recipe"]["calibration"]
    assert calib["all_experts"] is False and calib["seed"] == 5
    assert res["artifact_id"] is None


def test_explicit_seed_zero_beats_the_spec_seed(tmp_path):
    """glm-4.6's AWQ recipe pins seed 42 (seed 002); an explicit 0 is a choice, not "unset"."""
    import registry
    from converters.compressed_tensors import recipes
    from converters.compressed_tensors.build import plan_calibration

    recipe = recipes.build(registry.get("glm-4.6"), "AWQ", None)
    assert recipe["calibration_spec"]["seed"] == 42

    def seed(**kw):
        return plan_calibration(_request("glm-4.6", tmp_path, "AWQ", tmp_path / "o", **kw), recipe).seed

    assert (seed(seed=0), seed(seed=7), seed(seed=None), seed()) == (0, 7, 42, 42)


# --- bad input -----------------------------------------------------------------------------


def _assert_nothing_left(out: Path, home: Path):
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))
    if (home / "registry.db").exists():
        from registry.store import Store

        assert Store().artifacts() == []


@pytest.mark.parametrize("source, quant, kw, message", [
    (("glm", {}), "NVFP4", {}, "routed-expert MLPs only.*dense"),
    (("chatglm-remote-code", {}), "FP8_DYNAMIC", {}, "do not cover ChatGLMModel"),
    (("glm4moe", {}), "FP8_DYNAMIC", {}, r"config.json names Glm4MoeForCausalLM; family glm-4-9b-chat is GlmForCausalLM"),
    (("glm", {"intermediate_size": 96}), "W4A16_GS64", {"method": "rtn"},
     r"group size 64 does not divide the input width 96 of .*down_proj"),
], ids=["nvfp4-on-dense", "remote-code-layout", "another-family", "group-size-does-not-divide"])
def test_unfit_source_for_glm4_9b_chat_is_refused(source, quant, kw, message, tiny_checkpoint, tiny_chatglm_pair,
                                                  tmp_path, registry_home):
    from registry.errors import RegistryError

    arch, over = source
    src = tiny_chatglm_pair()[0] if arch == "chatglm-remote-code" else tiny_checkpoint(arch, **over)
    out = tmp_path / "o"
    with pytest.raises(RegistryError, match=message):
        convert("glm-4-9b-chat", src, quant, out, **kw)
    _assert_nothing_left(out, registry_home)


def test_broken_calibration_line_is_named(tiny_checkpoint, tmp_path, registry_home):
    from registry.errors import RegistryError

    lines = CALIB.read_text().splitlines()
    lines[2] = lines[2][:-5]  # truncated JSON on line 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    with pytest.raises(RegistryError, match=r"bad.jsonl: line 3 is not valid JSON"):
        convert("glm-4.7", tiny_checkpoint("glm4moe"), "W4A16_GS64", out, calibration=str(bad))
    _assert_nothing_left(out, registry_home)
    bad.write_text('{"messages": [{"role": "user"}]}\n')
    with pytest.raises(RegistryError, match="line 1: every message needs string 'role' and 'content'"):
        convert("glm-4.7", tiny_checkpoint("glm4moe"), "W4A16_GS64", out, calibration=str(bad))


def test_too_few_samples(tiny_checkpoint, tmp_path, registry_home):
    from registry.errors import RegistryError

    out = tmp_path / "o"
    with pytest.raises(RegistryError, match=r"has 32 conversations but 100 samples were asked"):
        convert("glm-4.7", tiny_checkpoint("glm4moe"), "W4A16_GS64", out, samples=100)
    with pytest.raises(RegistryError, match="--samples must be a positive number"):
        convert("glm-4.7", tiny_checkpoint("glm4moe"), "W4A16_GS64", out, samples=0)
    _assert_nothing_left(out, registry_home)


def test_existing_output_is_left_alone(tiny_checkpoint, tmp_path, registry_home):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = run_cli("convert", "glm-4-9b-chat", "--from", str(tiny_checkpoint("glm")), "--to", "compressed-tensors",
                "--quant", "FP8_DYNAMIC", "--out", str(out))
    assert r.returncode == 1
    assert "error:" in r.stderr and "already exists" in r.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    from registry.store import Store

    assert r.stdout == "" and Store().artifacts() == []  # nothing built, nothing recorded


def test_unsupported_quantization_and_method(tiny_checkpoint, tmp_path, registry_home):
    from registry.errors import RegistryError

    src = tiny_checkpoint("glm")
    with pytest.raises(RegistryError, match="not a compressed-tensors quantization"):
        convert("glm-4-9b-chat", src, "Q4_K", tmp_path / "a")
    with pytest.raises(RegistryError, match="--method 'hqq' is not a W4A16 method; use one of: awq, gptq, rtn"):
        convert("glm-4-9b-chat", src, "W4A16_GS32", tmp_path / "b", method="hqq")
    with pytest.raises(RegistryError, match="--method applies to W4A16 builds only; FP8_BLOCK has one method"):
        convert("glm-4-9b-chat", src, "FP8_BLOCK", tmp_path / "b", method="gptq")
    with pytest.raises(RegistryError, match="no AWQ recipe|explicit ignore list"):
        convert("glm-4-9b-chat", src, "AWQ", tmp_path / "c")
    _assert_nothing_left(tmp_path / "a", registry_home)


def test_dataset_directory_goes_through_datasets(tmp_path, tiny_checkpoint):
    """A dataset directory (hub snapshot layout) is read by datasets.load_dataset, split and all."""
    from transformers import AutoTokenizer

    from converters.compressed_tensors.calibration import CalibrationPlan, read_conversations, read_jsonl, tokenize

    d = tmp_path / "calib-ds"
    (d / "data").mkdir(parents=True)
    shutil.copy(CALIB, d / "data" / "train.jsonl")
    convs = read_conversations(str(d), "train")
    assert convs == read_jsonl(CALIB)
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint("glm4"))
    assert len(tokenize(convs, tok, CalibrationPlan(str(d), "train", 4, 32, 0))) == 4


def test_glm5_nvfp4_follows_seed_003(tiny_checkpoint, tmp_path, registry_home):
    """GLM-5's NVFP4 recipe comes from its modelopt spec (seed 003): routed experts only, MLA attention untouched."""
    (res,) = convert("glm-5", tiny_checkpoint("glm-dsa"), "NVFP4", tmp_path / "g5", samples=2, max_seq_len=16,
                     report=False)
    assert res.recipe["spec_source"] == "the lukealonso/GLM-5-NVFP4 model card" and res.recipe["spec_tool"] == "modelopt"
    t = tensors(res.path)
    packed = {k for k in t if k.endswith("weight_packed")}
    assert packed and all(".mlp.experts." in k for k in packed)
    assert all(t[k][0] == "BF16" for k in t if ".self_attn." in k and k.endswith(".weight"))


def test_quant_all_builds_every_spec_quantization(tiny_checkpoint, tmp_path, registry_home):
    """`--quant all` for glm-4.7 makes its three branches (seed 001), each under OUT/<quant>, each recorded."""
    from registry.store import Store

    out = tmp_path / "branches"
    res = convert("glm-4.7", tiny_checkpoint("glm4moe"), "all", out, method="rtn", report=False)
    assert [r.quantization for r in res] == ["W4A16_GS32", "W4A16_GS64", "W4A16_GS128"]
    for r in res:
        assert r.path == out / r.quantization
        assert qconfig(r.path)["config_groups"]["group_0"]["weights"]["group_size"] == r.recipe["group_size"]
    assert sorted(a.quantization for a in Store().artifacts(family="glm-4.7")) == sorted(r.quantization for r in res)
    with pytest.raises(Exception, match="AWQ by definition"):
        convert("glm-4.6", tiny_checkpoint("glm4moe"), "AWQ", tmp_path / "x", method="rtn")


# --- data-free builds by shard -------------------------------------------------------------


def one_tensor_per_shard(src: Path, dest: Path) -> Path:
    """A copy of a checkpoint with every tensor in its own shard: every fused set (q/k/v, gate/up)
    is split across shards, the case the by-shard path has to read partners for."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
    state = {}
    for f in sorted(src.glob("*.safetensors")):
        state.update(load_file(f))
    names = sorted(state)
    wm = {}
    for i, k in enumerate(names, 1):
        shard = f"model-{i:05d}-of-{len(names):05d}.safetensors"
        save_file({k: state[k]}, dest / shard, metadata={"format": "pt"})
        wm[k] = shard
    (dest / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    return dest


def all_tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


@pytest.mark.parametrize("arch, family, quant, kw, reshard", [
    ("glm", "glm-4-9b-chat", "FP8_DYNAMIC", {}, False),
    ("glm4moe", "glm-4.7", "W4A16_GS32", {"method": "rtn"}, False),
    ("glm4moe", "glm-4.7", "NVFP4A16", {}, True),
    ("glm", "glm-4-9b-chat", "FP8_BLOCK", {}, True),
], ids=["fp8-dense", "w4a16-rtn-moe-mtp", "nvfp4a16-fused-sets-across-shards", "fp8-block-dense"])
def test_by_shard_matches_the_loaded_build(arch, family, quant, kw, reshard, tiny_checkpoint, tmp_path,
                                           registry_home):
    """The data-free path never loads the model, and writes what loading it and running oneshot writes."""
    import torch

    src = tiny_checkpoint(arch)
    if reshard:
        src = one_tensor_per_shard(src, tmp_path / "src")
    (ref,) = convert(family, src, quant, tmp_path / "loaded", path="loaded", report=False, record=False, **kw)
    (got,) = convert(family, src, quant, tmp_path / "by-shard", report=False, record=False, **kw)
    assert (ref.recipe["path"], got.recipe["path"]) == ("loaded", "by-shard")
    cfg_ref = json.loads((ref.path / "config.json").read_text())
    cfg_got = json.loads((got.path / "config.json").read_text())
    assert cfg_got == cfg_ref  # quantization_config (groups, ignore list, format) and the rest
    a, b = all_tensors(ref.path), all_tensors(got.path)
    assert sorted(b) == sorted(a)
    for k in a:
        assert b[k].dtype == a[k].dtype and b[k].shape == a[k].shape, k
        x, y = a[k], b[k]
        if not x.is_floating_point():
            x, y = x.to(torch.int64), y.to(torch.int64)
        assert torch.allclose(x.double(), y.double(), rtol=0, atol=0), k
    if arch == "glm4moe":  # MTP layer dropped, as transformers drops it
        assert not any(k.startswith("model.layers.3.") for k in b) and cfg_got["num_nextn_predict_layers"] == 0
        assert got.recipe["drop_mtp"] is True
    idx = json.loads((got.path / "model.safetensors.index.json").read_text())
    assert set(idx["weight_map"]) == set(b)
    if quant == "FP8_BLOCK":  # one scale per 128 x 128 block of every quantized weight, partial blocks too
        w = b["model.layers.0.mlp.down_proj.weight"]
        assert w.dtype == torch.float8_e4m3fn
        assert tuple(b["model.layers.0.mlp.down_proj.weight_scale"].shape) == tuple(-(-n // 128) for n in w.shape)
        assert qconfig(got.path)["config_groups"]["group_0"]["weights"]["block_structure"] == [128, 128]
    assert (got.path / "recipe.yaml").read_text() == (ref.path / "recipe.yaml").read_text()


def test_by_shard_build_interrupted_leaves_nothing(tiny_checkpoint, tmp_path, registry_home, monkeypatch):
    """Ctrl-C in the middle of the shards: no output under the final name, no temp dir, no artifact row."""
    from converters.compressed_tensors import shard

    real = shard._run_job
    calls = []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(shard, "_run_job", interrupted)
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        convert("glm-4-9b-chat", tiny_checkpoint("glm"), "FP8_DYNAMIC", out, report=False)
    assert len(calls) == 2
    _assert_nothing_left(out, registry_home)


def test_killed_build_leaves_no_final_name_and_the_next_run_sweeps_it(tiny_checkpoint, tmp_path, registry_home):
    """SIGTERM and SIGHUP: cleaned up like Ctrl-C. SIGKILL: only the hidden temp dir stays, removed by the next build."""
    import signal
    import subprocess
    import sys
    import time

    src = one_tensor_per_shard(tiny_checkpoint("glm4moe"), tmp_path / "src")  # ~200 shards: seconds of work
    out = tmp_path / "built"

    def start():
        return subprocess.Popen([sys.executable, "-m", "registry", "convert", "glm-4.7", "--from", str(src), "--to",
                                 "compressed-tensors", "--quant", "NVFP4A16", "--out", str(out)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGKILL):
        p = start()
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".built.tmp-*/model-0001*")) and time.monotonic() < deadline:
            assert p.poll() is None, p.communicate()[1][-2000:]
            time.sleep(0.005)
        p.send_signal(sig)
        p.communicate(timeout=300)  # a hang guard: the signal waits for the C call under way
        assert not out.exists()
        left = list(tmp_path.glob(".built.tmp-*"))
        assert left == [] if sig != signal.SIGKILL else len(left) == 1
    from registry.store import Store

    assert Store().artifacts() == []
    # the next build, in this interpreter (the signals above need a process of their own; the sweep does not,
    # and a fresh interpreter would spend ~5 s importing torch first)
    (res,) = convert("glm-4.7", src, "NVFP4A16", out, report=False)
    assert res.path == out and out.is_dir() and list(tmp_path.glob(".built.tmp-*")) == []
    assert [a.path for a in Store().artifacts()] == [str(out)]


# --- --dry-run -----------------------------------------------------------------------------


def sparse_checkpoint(arch, dest, shard_bytes, **overrides):
    """A checkpoint whose shards have real safetensors headers and holes for data (sparse files):
    the sizes of a big model, no disk used; only for what reads headers (the --dry-run plan)."""
    import torch

    from converters.compressed_tensors.layout import meta_model
    from converters.tiny import _hub_config

    dest.mkdir(parents=True)
    cfg = _hub_config(arch, overrides)
    (dest / "config.json").write_text(json.dumps(cfg))
    model = meta_model(dest)
    names = sorted(model.state_dict().items())
    dt = {torch.bfloat16: "BF16", torch.float32: "F32"}
    shards, cur, size = [], [], 0
    for k, v in names:
        n = v.numel() * v.element_size()
        if cur and size + n > shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append((k, v, n))
        size += n
    shards.append(cur)
    wm = {}
    for i, items in enumerate(shards, 1):
        f = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        off, header = 0, {}
        for k, v, n in items:
            header[k] = {"dtype": dt[v.dtype], "shape": list(v.shape), "data_offsets": [off, off + n]}
            off += n
            wm[k] = f
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with open(dest / f, "wb") as fh:
            fh.write(len(raw).to_bytes(8, "little"))
            fh.write(raw)
            fh.truncate(8 + len(raw) + off)
    (dest / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    return dest


def dry_run(*args, in_process=False):
    """`registry convert ... --dry-run --json`: (exit code, the plans, stderr). in_process: through invoke();
    the plan itself takes well under a second at these tests' scale."""
    argv = ["convert", *args, "--to", "compressed-tensors", "--dry-run", "--json"]
    if in_process:
        rc, out, err = invoke(*argv)
    else:
        r = run_cli(*argv)
        rc, out, err = r.returncode, r.stdout, r.stderr
    return rc, (json.loads(out) if out.strip() else None), err


def test_dry_run_plans_by_shard_and_matches_the_build(tiny_checkpoint, tmp_path):
    src = tiny_checkpoint("glm4moe")
    out = tmp_path / "o"
    rc, (plan,), err = dry_run("glm-4.7", "--from", str(src), "--quant", "NVFP4A16", "--out", str(out))
    assert rc == 0, err[-2000:]
    assert plan["path"] == "by-shard" and plan["device"] == "cpu" and plan["fits"] and plan["reasons"] == []
    assert plan["shards"] == 4 and plan["disk_offload_bytes"] == 0 and plan["gpu_bytes"] == 0
    assert not out.exists()  # nothing built
    (res,) = convert("glm-4.7", src, "NVFP4A16", out, report=False, record=False)
    weights = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    assert abs(plan["output_bytes"] - weights) / weights < 0.05  # headers aside, the sizes the plan adds up
    rc, (awq,), _ = dry_run("glm-4.7", "--from", str(src), "--quant", "W4A16_GS64", "--method", "awq",
                            "--out", str(tmp_path / "a"), in_process=True)
    assert awq["path"] == "by-layer"


def test_dry_run_at_355b_scale_by_shard_fits_by_layer_needs_offload(tmp_path):
    """A ~300 GB MoE (sparse files: real headers, no data): FP8 by shard needs about two output
    shards of RAM, whatever the model size; AWQ by layer with every layer on CPU needs the whole
    model, and is refused with the way out; with --offload-dir it needs a layer."""
    src = sparse_checkpoint("glm4moe", tmp_path / "big", 5 * 10**9, hidden_size=8192, intermediate_size=16384,
                            moe_intermediate_size=16384, num_hidden_layers=24, num_attention_heads=64,
                            num_key_value_heads=8, head_dim=128, n_routed_experts=16, num_experts_per_tok=2,
                            first_k_dense_replace=1)
    out = str(tmp_path / "o")
    rc, (fp8,), err = dry_run("glm-4.6", "--from", str(src), "--quant", "FP8_DYNAMIC", "--out", out, in_process=True)
    assert fp8 is not None, err[-2000:]
    assert fp8["path"] == "by-shard" and fp8["source_bytes"] > 250 * 2**30
    assert fp8["peak_ram_bytes"] - fp8["floor_bytes"] < 3 * fp8["largest_shard_bytes"]
    assert 0.45 < fp8["output_bytes"] / fp8["source_bytes"] < 0.55  # FP8 halves bf16 (embeddings, lm_head aside)
    rc, (awq,), _ = dry_run("glm-4.6", "--from", str(src), "--quant", "AWQ", "--samples", "8", "--max-seq-len", "64",
                            "--out", out, in_process=True)
    assert awq["path"] == "by-layer" and awq["peak_ram_bytes"] > awq["source_bytes"]
    import psutil

    if awq["peak_ram_bytes"] > psutil.virtual_memory().available:
        assert rc == 1 and not awq["fits"] and any("--offload-dir" in r for r in awq["reasons"])
    rc, (off,), _ = dry_run("glm-4.6", "--from", str(src), "--quant", "AWQ", "--samples", "8", "--max-seq-len", "64",
                            "--out", out, "--offload-dir", str(tmp_path / "off"), in_process=True)
    assert off["peak_ram_bytes"] - off["floor_bytes"] < 6 * off["largest_layer_bytes"]
    assert off["disk_offload_bytes"] == off["source_bytes"]
    rc, _, err = dry_run("glm-4.6", "--from", str(src), "--quant", "FP8_DYNAMIC", "--out", out, "--device", "cuda:99",
                        in_process=True)
    assert rc == 1


# --- calibrated builds by layer ------------------------------------------------------------


def test_by_layer_with_offload_dir_matches_the_loaded_build(tiny_checkpoint, tmp_path, registry_home):
    """AWQ on a MoE, all experts calibrated: layers wait on disk (--offload-dir) and are calibrated one at a
    time, and the build is the one the whole-model path writes; the offload folder is removed after."""
    import torch

    src = tiny_checkpoint("glm4moe")
    kw = dict(method="awq", samples=4, max_seq_len=32, report=False, record=False)
    (ref,) = convert("glm-4.7", src, "W4A16_GS64", tmp_path / "loaded", path="loaded", **kw)
    off = tmp_path / "offload"
    (got,) = convert("glm-4.7", src, "W4A16_GS64", tmp_path / "by-layer", offload_dir=off, **kw)
    assert (ref.recipe["path"], got.recipe["path"], got.recipe["device"]) == ("loaded", "by-layer", "cpu")
    assert got.recipe["calibration"]["expert_coverage"] == ref.recipe["calibration"]["expert_coverage"]
    assert got.recipe["calibration"]["expert_coverage"]["experts_without_tokens"] == []
    assert qconfig(got.path) == qconfig(ref.path)
    a, b = all_tensors(ref.path), all_tensors(got.path)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert off.is_dir() and list(off.iterdir()) == []


def test_gptq_by_layer_with_offload_dir_matches_the_loaded_build(tiny_checkpoint, tmp_path, registry_home):
    """GPTQ (W4A16, error compensated against each layer's calibration inputs) on a MoE, all experts
    calibrated, layers waiting on disk: the build the whole-model path writes, and not round-to-nearest's."""
    import torch

    src = tiny_checkpoint("glm4moe")
    kw = dict(samples=4, max_seq_len=32, report=False, record=False)
    (ref,) = convert("glm-4.7", src, "W4A16_GS64", tmp_path / "loaded", path="loaded", method="gptq", **kw)
    (got,) = convert("glm-4.7", src, "W4A16_GS64", tmp_path / "by-layer", offload_dir=tmp_path / "off",
                     method="gptq", **kw)
    (rtn,) = convert("glm-4.7", src, "W4A16_GS64", tmp_path / "rtn", method="rtn", **kw)
    assert (got.recipe["path"], got.recipe["modifier"], got.recipe["method"]) == ("by-layer", "GPTQModifier", "gptq")
    assert got.recipe["calibration"]["expert_coverage"]["experts_without_tokens"] == []
    assert qconfig(got.path) == qconfig(ref.path)
    weights = qconfig(got.path)["config_groups"]["group_0"]["weights"]
    assert weights.pop("actorder") == "static"  # GPTQ's column order: groups kept in place, no g_idx to ship
    rtn_weights = qconfig(rtn.path)["config_groups"]["group_0"]["weights"]
    assert rtn_weights.pop("actorder") is None and weights == rtn_weights  # the same int4 layout vLLM reads
    a, b, r = all_tensors(ref.path), all_tensors(got.path), all_tensors(rtn.path)
    assert sorted(a) == sorted(b) == sorted(r)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    packed = [k for k in a if k.endswith(".weight_packed")]
    assert packed and sum(not torch.equal(b[k], r[k]) for k in packed) > len(packed) // 2


def test_dry_run_counts_gptq_hessians(tiny_checkpoint, tmp_path):
    """GPTQ holds an fp32 in x in Hessian for every quantized Linear of the layer being calibrated:
    the plan needs that much more than AWQ's, computed here from config.json alone."""
    src = tiny_checkpoint("glm")
    cfg = json.loads((src / "config.json").read_text())
    h, attn, inter = cfg["hidden_size"], cfg["num_attention_heads"] * cfg["head_dim"], cfg["intermediate_size"]
    # q, k, v and gate_up read the hidden state, o the attention output, down the MLP's
    hessians = 4 * (4 * h * h + attn * attn + inter * inter)
    args = ("glm-4-9b-chat", "--from", str(src), "--quant", "W4A16_GS32", "--samples", "4", "--max-seq-len", "32",
            "--calibration", str(CALIB), "--out", str(tmp_path / "o"))
    rc, (awq,), err = dry_run(*args, "--method", "awq", in_process=True)
    assert rc == 0, err[-2000:]
    rc, (gptq,), err = dry_run(*args, "--method", "gptq", in_process=True)
    assert rc == 0, err[-2000:]
    assert gptq["path"] == "by-layer" and (gptq["peak_ram_bytes"] - gptq["floor_bytes"]) - (awq["peak_ram_bytes"] - awq["floor_bytes"]) == hessians


def test_calibrated_scheme_is_not_built_by_shard(tiny_checkpoint, tmp_path, registry_home):
    from registry.errors import RegistryError

    with pytest.raises(RegistryError, match="NVFP4 calibrates activations.*built by layer"):
        convert("glm-4.7", tiny_checkpoint("glm4moe"), "NVFP4", tmp_path / "o", path="by-shard", samples=2,
                max_seq_len=16)
    _assert_nothing_left(tmp_path / "o", registry_home)
