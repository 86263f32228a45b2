"""Every way a spec file can be wrong gives one error naming file, family, field and problem,
and leaves the store untouched.

Kinds covered (count kept for issue 17): 55 = the 52 entries of CASES (issue 17 added 10:
alias bomb, recursive alias, an integer over 4300 digits, an int key, a list key, .inf, .nan,
`true` and "8192" for an integer, -.inf) + non-UTF-8 + over the size limit + not a regular file
(/dev/zero, a FIFO: one kind, two cases).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from conftest import SPECS, run_cli
from registry.errors import SpecError
from registry.loader import MAX_SPEC_BYTES, read_spec_file

BASE = yaml.safe_load((SPECS / "glm4-chat-1m.yaml").read_text())
BASE["name"] = "my-glm"  # a user family; the shipped name is taken


def mutate(fn):
    d = copy.deepcopy(BASE)
    fn(d)
    return yaml.safe_dump(d, sort_keys=False)


def _set(path, value):
    def f(d):
        *head, last = path
        for k in head:
            d = d[k]
        d[last] = value
    return f


def _del(path):
    def f(d):
        *head, last = path
        for k in head:
            d = d[k]
        del d[last]
    return f


CASES = {
    # name: (file text, words the one error must contain)
    "wrong-type": (mutate(_set(["context_length"], "lots")), ["my-glm", "context_length", "lots"]),
    "unknown-key": (mutate(_set(["contex_length"], 5)), ["my-glm", "contex_length", "not permitted"]),
    "missing-required": (mutate(_del(["context_length"])), ["my-glm", "context_length", "required"]),
    "zero-context": (mutate(_set(["context_length"], 0)), ["my-glm", "context_length", "greater than 0"]),
    "negative-context": (mutate(_set(["context_length"], -5)), ["my-glm", "context_length", "greater than 0"]),
    "quant-not-in-format": (
        mutate(_set(["specs", 0, "quantizations"], ["none", "Q4_K"])),
        ["my-glm", "specs[0]", "Q4_K", "not a pytorch quantization"],
    ),
    "unknown-engine": (
        mutate(_set(["specs", 1, "engines"], ["llama.cpp", "ollama"])),
        ["my-glm", "specs[1].engines", "ollama"],
    ),
    "hub-id-not-org-name": (
        mutate(_set(["specs", 0, "hubs", "huggingface", "model_id"], "glm-4-9b-chat-1m")),
        ["my-glm", "specs[0].hubs.huggingface.model_id", "glm-4-9b-chat-1m"],
    ),
    "template-without-quantization": (
        mutate(_set(["specs", 1, "hubs", "huggingface", "file_template"], "glm-4-9b-chat-1m.gguf")),
        ["my-glm", "file_template", "{quantization}"],
    ),
    "template-escapes-cache": (
        mutate(_set(["specs", 1, "hubs", "huggingface", "file_template"], "../../{quantization}.gguf")),
        ["my-glm", "file_template", ".."],
    ),
    "revision-for-missing-quant": (
        mutate(_set(["specs", 1, "hubs", "huggingface", "revisions"], {"Q9_X": "branch"})),
        ["my-glm", "specs[1]", "revisions", "Q9_X", "lacks"],
    ),
    "engine-rule-missing-quant": (
        mutate(_set(["specs", 0, "engines", "vllm"], {"quantizations": ["2-bit"]})),
        ["my-glm", "specs[0]", "2-bit"],
    ),
    "duplicate-spec": (
        mutate(lambda d: d["specs"].append(copy.deepcopy(d["specs"][0]))),
        ["my-glm", "specs", "two specs share format 'pytorch'"],
    ),
    "unknown-ability": (mutate(_set(["abilities"], ["chat", "telepathy"])), ["my-glm", "abilities[1]", "telepathy"]),
    "moe-without-experts": (
        mutate(_set(["architecture", "kind"], "moe")),
        ["my-glm", "architecture", "experts"],
    ),
    "kv-heads-not-dividing": (
        mutate(_set(["architecture", "kv_heads"], 5)),
        ["my-glm", "architecture", "kv_heads"],
    ),
    "launch-flag-not-a-flag": (
        mutate(_set(["specs", 0, "launch"], [{"engine": "vllm", "args": {"max-model-len": 4}}])),
        ["my-glm", "specs[0].launch[0].args", "max-model-len"],
    ),
    "engine-does-not-load-format": (
        mutate(_set(["specs", 1, "engines"], ["llama.cpp", "vllm"])),
        ["my-glm", "specs[1]", "engine vllm does not load ggufv2 builds", "llama.cpp"],
    ),
    "tools-without-parser": (
        mutate(_del(["chat", "tool_call_parsers"])),
        ["my-glm", "abilities lists tools", "tool-call parser for vllm", "tool_call_note"],
    ),
    "every-layer-linear-attention": (
        mutate(_set(["architecture", "linear_attention_layers"], 40)),
        ["my-glm", "architecture", "linear_attention_layers (40) must be fewer than layers (40)"],
    ),
    "engine-floor-not-a-release": (
        mutate(_set(["engine_floors"], {"vllm": "latest"})),
        ["my-glm", "engine_floors", "'latest' is not a release number"],
    ),
    "no-parser-without-note": (
        mutate(_del(["chat", "tool_call_note"])),
        ["my-glm", "chat", "has no parser", "add tool_call_note"],
    ),
    # cross-field rules (registry/schema.py validators): each has a spec that breaks it
    "experts-per-token-over-experts": (
        mutate(lambda d: d["architecture"].update(kind="moe", experts=8, experts_per_token=9, active_params_b=1)),
        ["my-glm", "architecture", "experts_per_token (9) exceeds experts (8)"],
    ),
    "moe-without-active-params": (
        mutate(lambda d: d["architecture"].update(kind="moe", experts=8, experts_per_token=2)),
        ["my-glm", "architecture", "needs active_params_b"],
    ),
    "dense-with-experts": (
        mutate(_set(["architecture", "experts"], 8)), ["my-glm", "architecture", "dense architecture has no experts"],
    ),
    "active-over-total": (
        mutate(_set(["architecture", "active_params_b"], 10)),
        ["my-glm", "architecture", "active_params_b exceeds total_params_b"],
    ),
    "gqa-without-head-dim": (
        mutate(_del(["architecture", "head_dim"])), ["my-glm", "architecture", "gqa attention needs kv_heads and head_dim"],
    ),
    "mla-without-kv-lora-rank": (
        mutate(_set(["architecture", "attention"], "mla")),
        ["my-glm", "architecture", "mla attention needs kv_lora_rank and qk_rope_head_dim"],
    ),
    "dsa-without-indexer-topk": (
        mutate(lambda d: d["architecture"].update(attention="dsa", kv_lora_rank=512, qk_rope_head_dim=64)),
        ["my-glm", "architecture", "dsa attention needs indexer_topk"],
    ),
    "duplicate-quantization": (
        mutate(_set(["specs", 0, "quantizations"], ["4-bit", "none", "4-bit"])),
        ["my-glm", "specs[0]", "quantizations lists '4-bit' twice"],
    ),
    "template-with-another-placeholder": (
        mutate(_set(["specs", 1, "hubs", "huggingface", "file_template"], "m.{quantization}.{size}.gguf")),
        ["my-glm", "file_template", "placeholder other than {quantization}"],
    ),
    "length-mix-not-one": (
        mutate(_set(["specs", 0, "recipe"], {
            "tool": "llmcompressor", "method": "oneshot", "scheme": "W4A16",
            "calibration": {"length_mix": [{"min_tokens": 1, "max_tokens": 10, "fraction": 0.5}]}})),
        ["my-glm", "specs[0].recipe.calibration", "length_mix fractions must add up to 1"],
    ),
    "split-parts-for-missing-quant": (
        mutate(_set(["specs", 1, "hubs", "huggingface", "split_parts"], {"Q9_X": 2})),
        ["my-glm", "specs[1]", "split_parts names quantization 'Q9_X'", "lacks"],
    ),
    "gguf-without-file-template": (
        mutate(_del(["specs", 1, "hubs", "huggingface", "file_template"])),
        ["my-glm", "specs[1]", "a ggufv2 spec needs file_template"],
    ),
    "file-template-on-pytorch": (
        mutate(_set(["specs", 0, "hubs", "huggingface", "file_template"], "m.{quantization}.gguf")),
        ["my-glm", "specs[0]", "file_template is for ggufv2 specs"],
    ),
    "profile-engine-not-listed": (
        mutate(_set(["specs", 0, "launch"], [{"engine": "sglang"}])),
        ["my-glm", "specs[0]", "uses engine 'sglang' that the spec does not list"],
    ),
    "two-profiles-same-name": (
        mutate(_set(["specs", 0, "launch"], [{"engine": "vllm"}, {"engine": "vllm", "args": {"--dtype": "half"}}])),
        ["my-glm", "specs[0]", "two launch profiles share an engine and name"],
    ),
    # several uploaders may publish one format and size; one uploader only once
    "two-gguf-from-one-uploader": (
        mutate(lambda d: d["specs"].append(copy.deepcopy(d["specs"][1]))),
        ["my-glm", "two specs share format 'ggufv2' and size 9B from the same uploader 'legraphista'", "set uploader"],
    ),
    "file-templates-for-missing-quant": (
        mutate(_set(["specs", 1, "hubs", "huggingface", "file_templates"], {"Q9_X": "m-{quantization}.gguf"})),
        ["my-glm", "specs[1]", "file_templates names quantization 'Q9_X'", "lacks"],
    ),
    "file-templates-without-quantization": (
        mutate(_set(["specs", 1, "hubs", "huggingface", "file_templates"], {"Q2_K": "m.gguf"})),
        ["my-glm", "file_templates", "lacks '{quantization}'"],
    ),
    "uploader-not-an-account-name": (
        mutate(_set(["specs", 1, "uploader"], "bart owski")), ["my-glm", "specs[1].uploader", "bart owski"],
    ),
    "imatrix-on-a-non-gguf-spec": (
        mutate(_set(["specs", 0, "imatrix"], {"dataset": "calib.txt"})), ["my-glm", "imatrix describes GGUF builds"],
    ),
    "imatrix-names-a-quantization-the-spec-lacks": (
        mutate(_set(["specs", 1, "imatrix"], {"quantizations": ["IQ1_S"]})),
        ["my-glm", "imatrix names quantization(s) 'IQ1_S' that the spec lacks"],
    ),
    "invalid-yaml": ("name: my-glm\nspecs: [unclosed\n", ["invalid YAML", "line"]),
    "duplicate-key": ("name: my-glm\nname: other\n", ["'name' appears twice"]),
    "empty-file": ("", ["empty"]),
    "only-comments": ("# nothing here\n", ["no data"]),
    "file-is-a-list": (yaml.safe_dump([BASE]), ["top level must be a mapping", "list"]),
    # issue 17: memory bombs, unreadable numbers, non-string keys, non-finite floats, loose ints
    "alias-bomb": (
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(9)),
        ["aliases", "expand to over"],
    ),
    "recursive-alias": ("name: &a [*a]\n", ["aliases", "refer to themselves"]),
    "integer-over-4300-digits": (
        mutate(_set(["context_length"], 1)).replace("context_length: 1", "context_length: " + "9" * 5000),
        ["an integer has over 4300 digits"],
    ),
    "int-key": (mutate(lambda d: None) + "1: x\n", ["key 1 is not a string", "line"]),
    "list-key": (mutate(lambda d: None) + "? [a, b]\n: 1\n", ["key a list is not a string"]),
    "infinite-size": (mutate(_set(["specs", 0, "size_in_billions"], float("inf"))),
                      ["my-glm", "specs[0].size_in_billions", "finite number"]),
    "minus-infinite-size": (mutate(_set(["specs", 0, "size_in_billions"], float("-inf"))),
                            ["my-glm", "specs[0].size_in_billions", "finite number"]),
    "nan-size": (mutate(_set(["specs", 0, "size_in_billions"], float("nan"))),
                 ["my-glm", "specs[0].size_in_billions", "finite number"]),
    "bool-context": (mutate(_set(["context_length"], True)), ["my-glm", "context_length", "valid integer", "True"]),
    "string-context": (mutate(_set(["context_length"], "8192")), ["my-glm", "context_length", "valid integer", "'8192'"]),
}


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec_one_clear_error(case, tmp_path):
    text, words = CASES[case]
    path = _write(tmp_path, case, text)
    with pytest.raises(SpecError) as ei:
        read_spec_file(path)
    msg = str(ei.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert "\n" not in msg  # one error, one line


def test_non_utf8_file(tmp_path):
    path = _write(tmp_path, "latin1", "name: my-glm\ndescription: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError, match=r"not UTF-8 \(bad byte at offset \d+\)"):
        read_spec_file(path)


def test_huge_file(tmp_path):
    path = _write(tmp_path, "huge", "# " + "x" * (MAX_SPEC_BYTES + 10) + "\n")
    with pytest.raises(SpecError, match="over the .*-byte limit"):
        read_spec_file(path)


def test_not_a_regular_file(tmp_path):
    """/dev/zero never ends and a FIFO blocks on open: both refused before reading."""
    import os

    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    for path in (Path("/dev/zero"), fifo):
        with pytest.raises(SpecError, match="not a regular file"):
            read_spec_file(path)


def test_cli_validate_dev_zero_and_a_fifo_end_at_once(tmp_path):
    import os

    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    r = run_cli("validate", "/dev/zero", str(fifo))  # run_cli's timeout (120 s) fails a hang
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("not a regular file") == 2


def test_duplicate_family_names_in_one_validate_call(tmp_path):
    a = _write(tmp_path, "a", mutate(lambda d: None))
    b = _write(tmp_path, "b", mutate(lambda d: None))
    r = run_cli("validate", str(a), str(b))
    assert r.returncode == 1
    assert f"ok: {a}" in r.stdout
    assert "duplicate of the family in" in r.stderr and str(a) in r.stderr


@pytest.mark.parametrize("case", ["unknown-key", "quant-not-in-format", "file-is-a-list", "invalid-yaml"])
def test_register_bad_file_changes_nothing(case, tmp_path, registry_home):
    good = _write(tmp_path, "good", mutate(lambda d: None))
    assert run_cli("register", str(good)).returncode == 0
    db = registry_home / "registry.db"
    from registry.store import Store

    def user_rows():
        return [f.model_dump() for f in Store(f"sqlite:///{db}").user_families()]

    before = user_rows()
    assert [r["name"] for r in before] == ["my-glm"]
    bad = _write(tmp_path, case, CASES[case][0])
    r = run_cli("register", str(bad))
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and str(bad) in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("list", "--json")
    import json

    assert [x["name"] for x in json.loads(r.stdout) if x["origin"] == "user"] == ["my-glm"]
    # the user table holds the same row as before: body, source path and registration time unchanged
    assert user_rows() == before


def test_a_second_uploader_of_one_format_and_size_is_a_spec_of_its_own(tmp_path):
    """The same GGUF size from another uploader (its own hub repository, or an uploader key) loads."""
    def add(d):
        other = copy.deepcopy(d["specs"][1])
        other["hubs"] = {"huggingface": {"model_id": "bartowski/glm-4-9b-chat-1m-GGUF",
                                         "file_template": "glm-4-9b-chat-1m-{quantization}.gguf"}}
        d["specs"].append(other)
        local = copy.deepcopy(d["specs"][1])
        local.pop("hubs")
        local["uploader"] = "me"  # a local build, named
        d["specs"].append(local)
    fam = read_spec_file(_write(tmp_path, "two", mutate(add)))
    assert [s.publisher for s in fam.specs if s.format == "ggufv2"] == ["legraphista", "bartowski", "me"]
    assert fam.launch_name(fam.specs[2]) == "bartowski/my-glm" and fam.launch_name(fam.specs[0]) == "my-glm"
