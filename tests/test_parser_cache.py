"""The kept answers of the engines' argument parsers (registry/launching/parser_cache.py): their keys, what
is never stored, and the file's handling. The engines' own runs are in tests/test_engine_parsers.py."""

from __future__ import annotations

import json
import sys

from registry.launching import parser_cache

TABLE = {"--port": {"dest": "port", "value": True, "deprecated": False},
         "--api-key": {"dest": "api_key", "value": True, "deprecated": False}}


def test_the_keys_follow_what_the_answers_depend_on(monkeypatch):
    k = parser_cache.key("vllm", sys.executable, "vllm 0.33.0 /site/vllm-0.33.0.dist-info 1 2 abc")
    assert k and k == parser_cache.key("vllm", sys.executable, "vllm 0.33.0 /site/vllm-0.33.0.dist-info 1 2 abc")
    assert parser_cache.key("vllm", sys.executable, None) is None  # nothing vouches for the installation
    others = {parser_cache.key("vllm", sys.executable, "vllm 0.33.0 /site/vllm-0.33.0.dist-info 1 3 abc"),
              parser_cache.key("sglang", sys.executable, "vllm 0.33.0 /site/vllm-0.33.0.dist-info 1 2 abc"),
              parser_cache.key("vllm", "/other/python", "vllm 0.33.0 /site/vllm-0.33.0.dist-info 1 2 abc")}
    monkeypatch.setenv("VLLM_TARGET_DEVICE", "cuda")  # the engine reads it for its defaults
    others.add(parser_cache.key("vllm", sys.executable, "vllm 0.33.0 /site/vllm-0.33.0.dist-info 1 2 abc"))
    assert k not in others and len(others) == 4
    with_device = parser_cache.key("vllm", sys.executable, "vllm 0.33.0 /site/vllm-0.33.0.dist-info 1 2 abc")
    monkeypatch.setenv("SGLANG_MEM_X", "1")  # another engine's variable
    assert parser_cache.key("vllm", sys.executable, "vllm 0.33.0 /site/vllm-0.33.0.dist-info 1 2 abc") == with_device
    monkeypatch.setenv("VLLM_API_KEY", "s3cret")  # a credential: its value is no parser's business
    keyed = parser_cache.key("vllm", sys.executable, "vllm 0.33.0 /site/vllm-0.33.0.dist-info 1 2 abc")
    monkeypatch.setenv("VLLM_API_KEY", "other")
    assert keyed == parser_cache.key("vllm", sys.executable, "vllm 0.33.0 /site/vllm-0.33.0.dist-info 1 2 abc")
    assert keyed != with_device  # set, it is part of the key; its value is not

    v = parser_cache.verdict_key(["--port", "1"], TABLE)
    assert v == parser_cache.verdict_key(["--port", "1"], TABLE) != parser_cache.verdict_key(["--port", "2"], TABLE)
    monkeypatch.setenv("PORT", "9")  # pydantic settings read a variable named as an option
    assert parser_cache.verdict_key(["--port", "1"], TABLE) != v
    a, b = (parser_cache.verdict_key(["--api-key", s], TABLE) for s in ("s3cret", "other"))
    assert a == b != parser_cache.verdict_key(["--api-key", "-x"], TABLE)  # read as an option: another verdict
    assert parser_cache.keepable(["--api-key", "s3cret"], "bad value")
    assert not parser_cache.keepable(["--api-key", "s3cret"], "bad value 's3cret'")
    assert not parser_cache.keepable(["--api-key=s3cret"], "unrecognized arguments: --api-key=s3cret")


def test_the_file_is_written_whole_read_back_and_a_damaged_one_is_a_miss(registry_home):
    path = parser_cache.path("sglang", sys.executable)
    empty = {"table": None, "verdicts": {}}
    assert parser_cache.read("sglang", sys.executable, "k") == empty  # none yet
    verdicts = {str(n): {"ok": n % 2 == 0, "error": "" if n % 2 == 0 else f"no {n}"}
                for n in range(parser_cache.MAX_VERDICTS + 10)}
    parser_cache.write("sglang", sys.executable, "k", {"table": TABLE, "verdicts": verdicts})
    got = parser_cache.read("sglang", sys.executable, "k")
    assert got["table"] == TABLE and list(got["verdicts"]) == list(verdicts)[10:]  # the latest kept
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert parser_cache.read("sglang", sys.executable, "another key") == empty
    assert parser_cache.read("vllm", sys.executable, "k") == empty  # another engine's file
    whole = path.read_text()
    for damaged in (whole[: len(whole) // 2], "[]", json.dumps({"key": "k", "table": {"--x": 1}, "verdicts": {}}),
                    json.dumps({"key": "k", "table": TABLE, "verdicts": {"a": {"ok": "yes", "error": ""}}}), "\0"):
        path.write_text(damaged)
        assert parser_cache.read("sglang", sys.executable, "k") == empty, damaged
    path.unlink()
    path.mkdir()  # can't be written: left as it is, no error
    parser_cache.write("sglang", sys.executable, "k", {"table": TABLE, "verdicts": {}})
    assert path.is_dir() and parser_cache.read("sglang", sys.executable, "k") == empty
