"""Bad inputs other than spec files: each gives one clear line (exit 1, no traceback) and changes nothing.

Kinds covered here (count kept up to date for issue 17): 40
  checkpoints that contradict their config.json (12; each converted with exit 0 before, to a GGUF
    llama.cpp refuses): a tensor missing from a shard and the index, a tensor missing from the index
    only, num_hidden_layers over and under the tensors (layer 1 was dropped as MTP), hidden_size,
    num_attention_heads and head_dim that contradict the tensors, a transposed gate_up_proj; per
    architecture: glm's num_key_value_heads, chatglm's multi_query_group_num, glm4moe's
    moe_intermediate_size, glm-dsa's num_hidden_layers against its MTP layer;
  malformed converter inputs (10; each a traceback before): safetensors header a JSON list, string
    data_offsets, a negative shape, weight_map a list, weight_map with an int shard, tokenizer.json
    {"model": 5}, a string hidden_size, a string rms_norm_eps, num_hidden_layers -1,
    max_position_embeddings 1e30;
  output and disk (5): --out /dev/null, a read-only output filesystem, the file-size limit (EFBIG)
    and a full disk (ENOSPC) in the F16 pass, a full disk while llama.cpp quantizes;
  state databases (6): garbage bytes, a truncated SQLite file, a zero-filled SQLite header, another
    program's database, a table named artifact with other columns, a directory in the file's place;
  the Python API (6): registry.get(None), get(5), resolve with an int quant or a string size,
    search(None), families(min_context="x");
  messages (1): verify of a build converted here suggests the convert command, not pull.
Hangs (hub, --timeout, --host) are in tests/test_hangs.py; spec files in tests/test_bad_specs.py.
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


# --- state databases: a file that is not the registry's SQLite database is named and left as it was ---


def _real_db(path: Path) -> bytes:
    """A registry database with artifact rows (through the Store), as bytes."""
    from registry.store import Store

    url = f"sqlite:///{path}"
    s = Store(url)
    for i in range(40):  # a few pages of rows, so a truncation cuts through data
        s.add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K", path=f"/m/{i}.gguf" + "x" * 500,
                       sha256="0" * 64, size_bytes=1)
    s.engine.dispose()
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA journal_mode=DELETE")  # everything in the one file
    con.close()
    return path.read_bytes()


def _foreign_db(path: Path, sql: str) -> bytes:
    import sqlite3

    con = sqlite3.connect(path)
    con.executescript(sql)
    con.close()
    return path.read_bytes()


DATABASES = {
    # name: (writes the bad database at the path given and returns its bytes (None: a directory), words)
    "garbage-bytes": (lambda p: (p.write_bytes(b"\x89PNG not a database at all\n" * 40), p.read_bytes())[1],
                      ["is not a SQLite database"]),
    "truncated-sqlite": (lambda p: (p.write_bytes(_real_db(p.with_suffix(".full"))[:5000]), p.read_bytes())[1],
                         ["damaged"]),
    "zeroed-header": (lambda p: (p.write_bytes(b"\0" * 100 + _real_db(p.with_suffix(".full"))[100:]), p.read_bytes())[1],
                      ["is not a SQLite database"]),
    "foreign-schema": (lambda p: _foreign_db(p, "CREATE TABLE songs (id INTEGER PRIMARY KEY, title TEXT);"
                                                "INSERT INTO songs (title) VALUES ('a');"),
                       ["belongs to another program", "songs"]),
    "foreign-table-named-artifact": (lambda p: _foreign_db(p, "CREATE TABLE artifact (id INTEGER PRIMARY KEY, url TEXT);"),
                                     ["table artifact lacks columns", "family"]),
    "directory": (lambda p: (p.mkdir(), None)[1], ["is a directory"]),
}


@pytest.mark.parametrize("case", sorted(DATABASES))
def test_bad_database_is_one_line_and_left_untouched(case, registry_home):
    registry_home.mkdir(parents=True, exist_ok=True)
    db = registry_home / "registry.db"
    make, words = DATABASES[case]
    before = make(db)
    r = run_cli("ps")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: ") and str(db) in r.stderr and "move it aside" in r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    if before is not None:
        assert db.read_bytes() == before  # never modified
        assert not db.with_name("registry.db-wal").exists() and not db.with_name("registry.db-journal").exists()


def test_a_good_database_still_opens(registry_home):
    registry_home.mkdir(parents=True, exist_ok=True)
    _real_db(registry_home / "registry.db")
    r = run_cli("show", "glm4-chat-1m", "--artifacts", "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["artifacts"]) == 40


# --- the Python API: wrong types get one ArgumentError naming the argument ---


@pytest.mark.parametrize("call, words", [
    (lambda registry: registry.get(None), "family name must be a string, not NoneType"),
    (lambda registry: registry.get(5), "family name must be a string, not int 5"),
    (lambda registry: registry.resolve("glm4-chat-1m", "ggufv2", 4), "quant must be a string"),
    (lambda registry: registry.resolve("glm4-chat-1m", "ggufv2", "Q4_K", size="9"), "size must be a number or None"),
    (lambda registry: registry.search(None), "search text must be a string"),
    (lambda registry: registry.families(min_context="x"), "min_context must be a number or None"),
])
def test_python_api_given_wrong_types(call, words):
    import registry
    from registry.errors import ArgumentError

    with pytest.raises(ArgumentError, match=words) as ei:
        call(registry)
    assert isinstance(ei.value, TypeError) and isinstance(ei.value, registry.RegistryError)


# --- output: a full disk, a read-only filesystem, a file-size limit, /dev/null ---

CONVERT = ("convert", "glm-4-9b-0414", "--to", "ggufv2")


def _unshare_ok() -> bool:
    """A private mount namespace (root, or user namespaces) lets a test mount a small or read-only tmpfs."""
    import subprocess

    if not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return r.returncode == 0


needs_mount = pytest.mark.skipif(not _unshare_ok(), reason="cannot mount a tmpfs in a private namespace here")


def _on_tmpfs(mnt: Path, opts: str, argv: list[str]):
    """Run argv with a fresh tmpfs (mount options `opts`) at `mnt`, then list what is left there on stdout."""
    import os
    import subprocess
    import sys

    mnt.mkdir(exist_ok=True)
    script = 'mount -t tmpfs -o "$1" tmpfs "$2" || exit 99; d="$2"; shift 2; "$@"; rc=$?; echo "LEFT:$(ls -A "$d")"; exit $rc'
    if argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", opts, str(mnt), *argv], capture_output=True,
                          text=True, timeout=300, env=os.environ.copy(), cwd=Path(__file__).resolve().parent.parent)


def _one_error(r) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    return errors[0]


@needs_mount
def test_disk_full_in_the_f16_pass_says_so_and_how_much(tiny_checkpoint, tmp_path):
    mnt = tmp_path / "small"
    r = _on_tmpfs(mnt, "size=1m", ["python", "-m", "registry", *CONVERT, "--from", str(tiny_checkpoint(ARCH)),
                                   "--quant", "F16", "--out", str(mnt)])
    err = _one_error(r)
    assert "disk full" in err and "needs about" in err and "MiB free" in err and str(mnt) in err, err
    assert "LEFT:\n" in r.stdout or r.stdout.rstrip().endswith("LEFT:")  # no partial file stays behind


@needs_mount
def test_read_only_output_filesystem(tiny_checkpoint, tmp_path):
    mnt = tmp_path / "ro"
    for out in (mnt, mnt / "sub"):  # the directory itself, and one convert has to create
        r = _on_tmpfs(mnt, "ro", ["python", "-m", "registry", *CONVERT, "--from", str(tiny_checkpoint(ARCH)),
                                  "--quant", "F16", "--out", str(out)])
        err = _one_error(r)
        assert "read-only filesystem" in err and "--out" in err, err


@needs_mount
def test_disk_full_while_quantizing_says_so_and_how_much(tiny_gguf, tmp_path):
    """issue 17 point 9: ENOSPC in llama.cpp's quantize was 'could not quantize (code 1)'."""
    f16 = tiny_gguf(ARCH)
    mnt = tmp_path / "small"
    code = ("import sys\nfrom pathlib import Path\nfrom converters.gguf.quantize import quantize\n"
            "from registry.errors import RegistryError\n"
            f"try:\n    quantize(Path({str(f16)!r}), Path({str(mnt / 'm.Q8_0.gguf')!r}), 'Q8_0')\n"
            "except RegistryError as e:\n    print('error:', e, file=sys.stderr); sys.exit(1)\n")
    r = _on_tmpfs(mnt, "size=256k", ["python", "-c", code])
    err = _one_error(r)
    assert "disk full" in err and "Q8_0 needs about" in err and "could not quantize" not in err, err
    assert r.stdout.rstrip().endswith("LEFT:")  # the partial output was removed


def test_file_size_limit_in_the_f16_pass(tiny_checkpoint, tmp_path):
    """RLIMIT_FSIZE (ulimit -f): writes past it fail with EFBIG (Python ignores SIGXFSZ)."""
    import os
    import resource
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    r = subprocess.run([sys.executable, "-m", "registry", *CONVERT, "--from", str(tiny_checkpoint(ARCH)), "--quant", "F16",
                        "--out", str(out)], capture_output=True, text=True, preexec_fn=limit, timeout=300,
                       env=os.environ.copy(), cwd=Path(__file__).resolve().parent.parent)
    err = _one_error(r)
    assert "file-size limit" in err and "needs about" in err, err
    assert list(out.iterdir()) == []


def test_out_dev_null(tiny_checkpoint):
    r = run_cli(*CONVERT, "--from", str(tiny_checkpoint(ARCH)), "--quant", "Q8_0", "--out", "/dev/null")
    err = _one_error(r)
    assert "--out /dev/null is not a directory" in err


# --- messages that pointed the wrong way ---


def test_verify_of_a_converted_build_suggests_the_convert_command(tmp_path, registry_home):
    """issue 17 point 9: verify said `registry pull` for a build converted here (its source is local)."""
    import hashlib

    from registry.catalog import load
    from registry.hub import IntegrityError, verify
    from registry.store import Store

    build = tmp_path / "glm4-chat-1m.Q4_K.gguf"
    build.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    src = tmp_path / "checkpoint"
    Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K", path=str(build),
                         sha256=hashlib.sha256(build.read_bytes()).hexdigest(), size_bytes=build.stat().st_size,
                         parent=str(tmp_path / "glm4-chat-1m.F16.gguf"),
                         recipe={"tool": "glm-registry", "converter": "gguf", "source": str(src), "quant": "Q4_K"})
    build.write_bytes(b"GGUF" + bytes(range(255, -1, -1)) * 64)  # same size, other bytes
    with pytest.raises(IntegrityError) as ei:
        verify(load(include_user=False).resolve("glm4-chat-1m", "ggufv2", "Q4_K"))
    msg = str(ei.value)
    assert f"registry convert glm4-chat-1m --from {src} --to ggufv2 --quant Q4_K" in msg, msg
    assert "registry pull" not in msg


# --- every architecture: its own tiny checkpoint passes the tensor check, a contradicting config does not ---

CONTRADICTIONS = {
    # arch: (config change, words the error must contain)
    "glm": ({"num_key_value_heads": 4}, ["k_proj.weight", "num_key_value_heads 4"]),
    "chatglm": ({"multi_query_group_num": 4}, ["query_key_value.weight", "multi_query_group_num 4"]),
    "glm4moe": ({"moe_intermediate_size": 128}, ["experts.0.gate_proj.weight", "moe_intermediate_size 128"]),
    # MTP at layer 3: with 2 layers, layer 2 would be taken for the NextN block and layer 3 dropped
    "glm-dsa": ({"num_hidden_layers": 2}, ["model.layers.2.eh_proj.weight", "missing"]),
}


@pytest.mark.parametrize("arch", sorted(CONTRADICTIONS))
def test_each_architecture_checks_its_tensors(arch, tiny_checkpoint, tmp_path):
    from converters.gguf.core import arch_for
    from converters.gguf.reader import Checkpoint, CheckpointError

    good = tiny_checkpoint(arch)
    arch_for(Checkpoint(good)).check_tensors()  # the real layout passes
    arch_for(Checkpoint(good), keep_mtp=True).check_tensors()
    src = tmp_path / "src"
    shutil.copytree(good, src)
    change, words = CONTRADICTIONS[arch]
    _edit_config(src, **change)
    with pytest.raises(CheckpointError) as ei:
        arch_for(Checkpoint(src)).plan()
    for w in words:
        assert w in str(ei.value), str(ei.value)
