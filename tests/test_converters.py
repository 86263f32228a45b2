"""What both converters share: the source checkpoint check, the quality maths, recording builds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import registry
from converters.options import ConvertResult, record
from converters.quality import compare_logits, repeat_to
from converters.source import checkpoint_config
from registry.errors import RegistryError

# --- source checkpoint ---------------------------------------------------------------------


def _checkpoint(tmp_path: Path, cfg) -> Path:
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "config.json").write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    return d


def test_checkpoint_config_returns_the_class_the_family_names(tmp_path):
    fam = registry.get("glm-4.7")
    src = _checkpoint(tmp_path, {"architectures": ["SomethingElse", "Glm4MoeForCausalLM"], "hidden_size": 8})
    cfg, arch = checkpoint_config(src, fam)
    assert arch == "Glm4MoeForCausalLM" and cfg["hidden_size"] == 8


@pytest.mark.parametrize("cfg, message", [
    ({"architectures": ["LlamaForCausalLM"]},
     r"ckpt/config.json names LlamaForCausalLM; family glm-4.7 is Glm4MoeForCausalLM: convert a checkpoint of glm-4.7"),
    ({"model_type": "glm"}, r"config.json names no architecture .*; family glm-4.7 is Glm4MoeForCausalLM.*registry list"),
    ("{not json", r"ckpt/config.json: not valid JSON"),
    ("[1, 2]", r"config.json: expected a JSON object, got list"),
])
def test_checkpoint_config_errors_name_file_class_and_family(tmp_path, cfg, message):
    with pytest.raises(RegistryError, match=message):
        checkpoint_config(_checkpoint(tmp_path, cfg), registry.get("glm-4.7"))


def test_checkpoint_config_needs_a_directory_with_config(tmp_path):
    fam = registry.get("glm-4.7")
    with pytest.raises(RegistryError, match="not a directory"):
        checkpoint_config(tmp_path / "nowhere", fam)
    with pytest.raises(RegistryError, match="no config.json"):
        checkpoint_config(tmp_path, fam)


# --- quality maths -------------------------------------------------------------------------


def test_compare_logits_matches_the_definition():
    p = [[0.5, 0.5, 0.0], [0.7, 0.2, 0.1]]
    q = [[0.9, 0.1, 0.0], [0.1, 0.6, 0.3]]
    eps = 1e-300  # log(0) stand-in; its terms weigh p=0 and vanish
    ref = [[math.log(x + eps) for x in row] for row in p]
    got = [[math.log(x + eps) + 7.0 for x in row] for row in q]  # a constant shift is no change
    rep = compare_logits(ref, got, "F16")
    want = sum(sum(a * math.log(a / b) for a, b in zip(pr, qr) if a) for pr, qr in zip(p, q)) / 2
    assert rep["kl_divergence"] == pytest.approx(want, rel=1e-9)
    assert rep["top1_agreement"] == 0.5 and rep["tokens"] == 2 and rep["reference"] == "F16"
    same = compare_logits(got, got, "source")
    assert same["kl_divergence"] == 0.0 and same["top1_agreement"] == 1.0


def test_compare_logits_is_stable_for_large_logits_and_checks_shapes():
    rep = compare_logits([[1000.0, 0.0]], [[0.0, 1000.0]], "F16")
    assert math.isfinite(rep["kl_divergence"]) and rep["kl_divergence"] == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="one shape"):
        compare_logits([[0.0, 1.0]], [[0.0, 1.0, 2.0]], "F16")


def test_repeat_to():
    assert repeat_to([1, 2, 3], 7) == [1, 2, 3, 1, 2, 3, 1]
    assert repeat_to([1, 2, 3], 2) == [1, 2]


# --- recording -----------------------------------------------------------------------------


def test_record_stores_every_result_and_sets_its_id(tmp_path, registry_home):
    from registry.store import Store

    results = [ConvertResult("glm-4.7", "ggufv2", q, tmp_path / f"m.{q}.gguf", c * 64, 10 + i,
                             parent="src", recipe={"quant": q}, report={"kl_divergence": 0.1 * i})
               for i, (q, c) in enumerate([("F16", "a"), ("Q4_K_M", "b")])]
    record(results)
    rows = {a.id: a for a in Store().artifacts(family="glm-4.7")}
    assert sorted(rows) == sorted(r.artifact_id for r in results)
    for r in results:
        row = rows[r.artifact_id]
        assert (row.quantization, row.path, row.sha256, row.size_bytes, row.parent, row.recipe, row.report) == \
            (r.quantization, str(r.path), r.sha256, r.size_bytes, r.parent, r.recipe, r.report)
