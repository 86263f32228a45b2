"""The read commands' fast path (registry/cli/fast.py on the plain families of registry/plain.py) against typer
on the pydantic models (REGISTRY_TYPER_ONLY=1): the same stdout, stderr and exit code for every command line,
and neither typer nor pydantic imported where the fast path answers."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT, SPECS, run_cli

FAMILIES = ["glm4-chat-1m", "glm-4.5-air", "glm-5", "cogagent-9b", "glm-4-9b-0414", "glm-5.3-flash"]
FORMS = [
    ("list",), ("list", "--json"), ("list", "--format", "ggufv2", "--json"), ("list", "-q", "Q4_K_M"),
    ("list", "--engine=vllm", "--ability", "VISION"), ("list", "--min-context", "1000000", "--json"),
    ("list", "-f", "mlx", "-e", "mlx-lm"),
    ("list", "--format", "nope"), ("list", "--quant", "Q9_K"), ("list", "--ability", "tools", "--min-context", "99999999"),
    *[(cmd, f, *j) for f in FAMILIES for cmd in ("show", "fit") for j in ((), ("--json",))],
    ("show", "glm4-chat-1m:Q4_K"), ("show", "GLM-4.5-Air", "--json"), ("show", "zai-org/GLM-4.5-Air"),
    ("show", "bartowski/glm-4-9b-0414", "--json"), ("show", "glm4-chat-1m", "--artifacts", "--json"),
    ("show", "nope"), ("show", "nope", "--json"),
    ("search", "unsloth"), ("search", "mlx", "4bit", "--json"), ("search", "--json", "glm-4.7", "awq"),
    ("search", "nothing-matches-this"), ("search", "q4_k_m", "bartowski"),
    ("resolve", "glm4-chat-1m:Q4_K"), ("resolve", "glm4-chat-1m:Q4_K", "--json"),
    ("resolve", "glm-4-9b-0414", "-q", "Q5_K_M", "--from", "bartowski", "--json"),
    ("resolve", "glm4-chat-1m", "--format=pytorch", "--quant", "none", "--size", "9"),
    ("resolve", "glm4-chat-1m", "--quant", "Q9"), ("resolve", "glm4-chat-1m"), ("resolve", "nope:Q4_K"),
    ("fit", "glm-4.5-air", "--hardware", "8xH100-80G", "--context", "max"),
    ("fit", "glm-5", "--quant", "auto", "--hardware", "8xH200", "--json"),
    ("fit", "glm4-chat-1m", "-q", "Q4_K", "--context", "32k", "--format", "ggufv2"),
    ("fit", "glm4-chat-1m", "--context", "lots"), ("fit", "nope"),
    ("ps",), ("ps", "--json"), ("ps", "-a", "--json"), ("ps", "--all", "--node", "elsewhere"),
]
# typer's own: help, usage errors, forms the fast path leaves to it (their answers must stay typer's)
TYPER_FORMS = [("list", "--help"), ("show",), ("show", "a", "b"), ("list", "--min-context", "x"),
               ("resolve", "glm4-chat-1m", "--size", "-1"), ("list", "--bogus"), ("ps", "--json=1"), ("search",)]


def _both(args: tuple[str, ...], env: dict | None = None) -> tuple[subprocess.CompletedProcess, ...]:
    """Each in a process of its own, forked from an interpreter with the frameworks imported (fixtures/forkcli.py):
    what is compared is what the two paths print; what they import and how fast they start, _heavy and
    bench/cli_startup.py measure in fresh interpreters."""
    from fixtures.forkcli import run_forked

    return run_forked(*args, env=env), run_forked(*args, env={**(env or {}), "REGISTRY_TYPER_ONLY": "1"})


def _compare(forms, env: dict | None = None) -> dict[tuple[str, ...], int]:
    """Each form both ways: the same stdout, stderr and exit code; the exit codes."""
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda a: _both(a, env), forms))
    for args, (fast, slow) in zip(forms, results):
        what = "registry " + " ".join(args)
        assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr), what
        assert "Traceback" not in fast.stderr, what
    return {args: fast.returncode for args, (fast, _) in zip(forms, results)}


def test_every_read_command_form_prints_what_typer_prints():
    run_cli("list")  # the compiled catalog written: both paths read it from here on
    codes = _compare(FORMS)
    assert codes[("list", "--json")] == 0 and codes[("show", "nope")] == 1  # the forms ran, found and not found
    assert codes[("show", "glm-5", "--json")] == 0 and codes[("fit", "glm-5", "--json")] == 0


def test_tables_at_a_terminal_are_the_same():
    """FORCE_COLOR: rich takes stdout for a terminal (boxed tables, bold), on both paths."""
    forms = [("list",), ("show", "glm-5"), ("show", "glm4-chat-1m:Q4_K"), ("fit", "glm4-chat-1m"), ("ps",)]
    codes = _compare(forms, env={"FORCE_COLOR": "1", "COLUMNS": "120"})
    assert set(codes.values()) == {0}
    assert "\x1b[1m" in run_cli("show", "glm-5", env={"FORCE_COLOR": "1"}).stdout


def test_typer_keeps_help_and_usage_errors():
    codes = _compare([("list", "--json"), ("show", "nope"), *TYPER_FORMS])
    assert codes[("list", "--json")] == 0 and codes[("show", "nope")] == 1
    assert run_cli("show").returncode == 2 and run_cli("list", "--bogus").returncode == 2


def test_with_user_families_and_a_store(tmp_path):
    """A registered family (from the store) beside the shipped ones: both paths list, show and search it."""
    spec = tmp_path / "my-glm.yaml"
    r = run_cli("init", "my-glm", "--out", str(spec))
    assert r.returncode == 0, r.stderr
    run_cli("list")  # the shipped catalog compiled
    r = run_cli("register", str(spec))
    assert r.returncode == 0, r.stderr
    assert _heavy("list", "--json") == ["pydantic"]  # the registered family validated once (no SQLAlchemy)
    assert _heavy("list", "--json") == []  # then cached as the shipped ones are
    from registry.store import Store

    Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K_M", path="/x/a.gguf",
                         sha256="ab" * 32, size_bytes=5 * 2**30, parent="THUDM/glm-4-9b-chat-1m",
                         recipe={"scheme": "Q4_K_M", "method": "convert"}, report={"kl_divergence": 0.01,
                                                                                 "top1_agreement": 0.97})
    codes = _compare([("list", "--json"), ("list",), ("show", "my-glm"), ("show", "my-glm", "--json"),
                      ("show", "glm4-chat-1m"), ("search", "my-glm", "--json"), ("show", "nope"), ("ps",),
                      ("ps", "--json"), ("show", "glm4-chat-1m", "--artifacts"),
                      ("show", "glm4-chat-1m", "--artifacts", "--json")])
    assert codes[("show", "my-glm", "--json")] == 0 and codes[("show", "nope")] == 1
    arts = json.loads(run_cli("show", "glm4-chat-1m", "--artifacts", "--json").stdout)["artifacts"]
    assert [(a["quantization"], a["gguf_type"]) for a in arts] == [("Q4_K", "Q4_K_M")]  # the catalog's name
    assert any(r["name"] == "my-glm" and r["origin"] == "user" for r in json.loads(run_cli("list", "--json").stdout))
    # registered again with another description: the rows changed, so the cached family is not used
    import yaml

    d = yaml.safe_load(spec.read_text())
    spec.write_text(yaml.safe_dump({**d, "description": "Edited. " + d["description"]}, sort_keys=False))
    assert run_cli("register", "--replace", str(spec)).returncode == 0
    assert json.loads(run_cli("show", "my-glm", "--json").stdout)["description"].startswith("Edited. ")


PROBE = """
import sys
from registry.cli import main
sys.argv = ["registry", *sys.argv[1:]]
try:
    main()
finally:
    heavy = sorted({m.split(".")[0] for m in sys.modules} & {"typer", "pydantic", "yaml", "sqlalchemy", "rich"})
    print("HEAVY", *heavy, file=sys.stderr)
"""


def _heavy(*args: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)
    return r.stderr.strip().splitlines()[-1].split()[1:]


@pytest.mark.parametrize("args", [("list",), ("list", "--json"), ("show", "glm-5"), ("show", "glm-5", "--json"),
                                  ("search", "unsloth"), ("resolve", "glm4-chat-1m:Q4_K", "--json"),
                                  ("fit", "glm4-chat-1m", "--json"), ("ps",), ("ps", "--json"), ("show", "nope")])
def test_fast_path_imports_no_framework(args):
    _heavy(*args)  # the compiled catalog and data tables written (a miss validates with pydantic, parses YAML)
    assert _heavy(*args) == []


def test_typer_takes_what_the_fast_path_does_not():
    assert "typer" in _heavy("list", "--help")
    assert "typer" in _heavy("show")


def test_plain_families_answer_as_the_models():
    """Every method and field the commands use, on every shipped family: the plain object (from the dump) gives
    what the validated model gives."""
    from registry import plain
    from registry.catalog import _load_shipped
    from registry.engines import RANK
    from registry.schema import Family

    models = [e.family for e in _load_shipped(SPECS)]
    plains = plain.families(json.loads(json.dumps(plain.shape(Family))),
                            [json.loads(json.dumps(m.model_dump(mode="json", exclude_none=True))) for m in models])
    dump = lambda x: x.model_dump(mode="json", exclude_none=True) if x is not None else None  # noqa: E731
    for m, p in zip(models, plains):
        assert dump(p) == dump(m)
        assert (p.formats(), p.quantizations(), p.engines(), p.uploaders()) == (
            m.formats(), m.quantizations(), m.engines(), m.uploaders())
        assert [p.engine_takes(e) for e in RANK] == [m.engine_takes(e) for e in RANK]
        assert (p.name, p.context_length, p.architecture.kind, p.licence.name) == (
            m.name, m.context_length, m.architecture.kind, m.licence.name)
        if m.chat is not None:
            assert [p.chat.tool_parser_for(e) for e in RANK] == [m.chat.tool_parser_for(e) for e in RANK]
        for ps, ms in zip(p.specs, m.specs):
            assert (ps.publisher, ps.size_label, ps.engine_rule_text(), p.launch_name(ps)) == (
                ms.publisher, ms.size_label, ms.engine_rule_text(), m.launch_name(ms))
            assert [ps.min_compute_capability(e) for e in (None, *RANK)] == [
                ms.min_compute_capability(e) for e in (None, *RANK)]
            assert [dump(x) for e in RANK for x in ps.profiles(e)] == [dump(x) for e in RANK for x in ms.profiles(e)]
            for q in ms.quantizations:
                assert (ps.engines_for(q), ps.canonical_quant(q), dump(ps.recipe_for(q))) == (
                    ms.engines_for(q), ms.canonical_quant(q), dump(ms.recipe_for(q)))
                for hub in ms.hubs:
                    h, g = ps.hubs[hub], ms.hubs[hub]
                    assert (h.files_for(q), h.model_id_for(q), h.revision_for(q), h.all_model_ids()) == (
                        g.files_for(q), g.model_id_for(q), g.revision_for(q), g.all_model_ids())
    with pytest.raises(AttributeError):
        plains[0].no_such_field  # noqa: B018
    with pytest.raises(TypeError):
        plains[0].model_dump()  # only the dump it stores


def test_cache_of_families_follows_the_version(registry_home):
    """The fast path reads the validated families from the cache under the current key (a stale family there is
    what it shows: the test can tell), and never under another version's key."""
    from registry import __version__, compiled

    env = {"REGISTRY_SPECS_DIR": str(SPECS)}
    show = lambda: json.loads(run_cli("show", "glm-4-9b-0414", "--json", env=env).stdout)["description"]  # noqa: E731
    real = show()
    cache = registry_home / "cache" / "catalog.json"
    d = json.loads(cache.read_text())
    texts = [(n, (SPECS / n).read_text(encoding="utf-8")) for n in sorted(p.name for p in SPECS.glob("*.yaml"))]
    assert d["key"] == compiled.key(__version__, texts) and len(d["families"]) == len(texts)
    for f in d["families"]:
        f["description"] = "stale"
    cache.write_text(json.dumps(d))
    assert show() == "stale"  # read from the cache: the key is the files' and this version's
    d["key"] = compiled.key("0.0.0-older", texts)
    cache.write_text(json.dumps(d))
    assert show() == real  # another version's families are not used
    assert json.loads(cache.read_text())["key"] == compiled.key(__version__, texts)


@pytest.fixture
def server_like():
    """A running process whose command line a deployment row records (as a server's would be)."""
    argv = [sys.executable, "-c", "import time; time.sleep(120)", "fast-path-test"]
    p = subprocess.Popen(argv)
    yield p, argv
    p.kill()
    p.wait()


def test_ps_reads_the_store_with_sqlite_and_writes_through_it(server_like, registry_home):
    """Rows that need no write (a live process, a stopped one) are read with the standard library; a row whose
    process is gone goes through the Store, which marks it exited; every form prints what typer prints."""
    from registry import sqlite_read
    from registry.store import Deployment, Store

    assert list(sqlite_read.DEPLOYMENT_COLUMNS) == list(Deployment.model_fields)
    proc, argv = server_like
    s = Store()
    common = dict(family="glm4-chat-1m", format="ggufv2", quantization="Q4_K", engine="llama.cpp", env={"A": "1"})
    s.add_deployment(**common, argv=argv, port=8090, pid=proc.pid, status="running",
                     process={"pid": proc.pid, "cmdline": argv})
    s.add_deployment(**common, argv=["x", "--api-key", "secret"], port=8091, pid=None, status="stopped")
    forms = [("ps",), ("ps", "--json"), ("ps", "-a"), ("ps", "--all", "--json"), ("ps", "--node", "elsewhere")]
    _compare(forms)
    assert [d["status"] for d in json.loads(run_cli("ps", "-a", "--json").stdout)] == ["running", "stopped"]
    assert _heavy("ps", "-a", "--json") == []  # nothing to write: no SQLAlchemy
    got = sqlite_read.deployments()
    assert [g.model_dump() for g in got] == [d.model_dump(mode="json") for d in s.deployments()]

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = s.add_deployment(**common, argv=argv, port=8092, pid=gone.pid, status="running")
    r = run_cli("ps", "--json")
    assert r.returncode == 0 and [d["port"] for d in json.loads(r.stdout)] == [8090]
    assert next(d for d in s.deployments() if d.id == dead.id).status == "exited"  # written by the Store
    _compare(forms)


def test_a_bad_store_is_the_same_error_both_ways(registry_home):
    """A file that is no registry database: the fast path's sqlite3 reads give the Store's one-line error."""
    run_cli("list")
    (registry_home / "registry.db").write_bytes(b"not a database\n" * 100)
    codes = _compare([("list", "--json"), ("search", "glm"), ("ps",), ("ps", "--json"), ("show", "nope")])
    assert set(codes.values()) == {1}
    r = run_cli("list", "--json")
    assert "is not a SQLite database" in r.stderr and len(r.stderr.splitlines()) == 1


def _rows(stdout: str) -> list[dict]:
    """convert --json rows without what differs between two builds (the row id and time)."""
    return [{k: v for k, v in r.items() if k not in ("artifact_id", "created_at")} for r in json.loads(stdout)]


def test_gguf_convert_runs_without_typer_and_does_what_typer_does(tiny_checkpoint, registry_home, tmp_path):
    """`convert --to ggufv2` takes the fast path (a conversion's wall time is its I/O, not typer's start-up): the
    same build, row, output and exit codes as typer's path; forms it does not take stay typer's."""
    src = str(tiny_checkpoint("glm4"))
    fast_out, typer_out = tmp_path / "fast", tmp_path / "typer"
    fast_out.mkdir()
    typer_out.mkdir()
    form = ("convert", "glm-4-9b-0414", "--from", src, "--to", "ggufv2", "-q", "FP16", "--json")
    fast = run_cli(*form, "--out", str(fast_out))
    slow = run_cli(*form, "--out", str(typer_out), env={"REGISTRY_TYPER_ONLY": "1"})
    assert fast.returncode == slow.returncode == 0, fast.stderr + slow.stderr
    (a,), (b,) = _rows(fast.stdout), _rows(slow.stdout)
    assert a["sha256"] == b["sha256"] and a["path"] == str(fast_out / "glm-4-9b-0414.F16.gguf")
    assert {**a, "path": None} == {**b, "path": None} and fast.stderr == slow.stderr
    assert {r["path"] for r in json.loads(run_cli("show", "glm-4-9b-0414", "--artifacts", "--json").stdout)["artifacts"]} \
        == {a["path"], b["path"]}
    # the same refusals, word for word: an existing output, a bad size, an unknown family, a missing checkpoint
    again = form + ("--out", str(fast_out))
    codes = _compare([again, (*again, "--force", "--split-max-size", "lots"), ("convert", "nope", "--from", src,
                      "--to", "gguf", "-q", "F16"), ("convert", "glm-4-9b-0414", "--from", str(tmp_path / "none"),
                      "--to", "ggufv2", "--quant", "F16", "--out", str(tmp_path))])
    assert set(codes.values()) == {1}
    forced = run_cli(*again, "--force")
    assert forced.returncode == 0 and _rows(forced.stdout)[0]["sha256"] == a["sha256"]
    # through the fast path: neither typer nor pydantic imported; the rest (no --from, other formats) is typer's
    assert not {"typer", "pydantic"} & set(_heavy(*again, "--force"))
    assert "typer" in _heavy("convert", "glm-4-9b-0414", "--to", "ggufv2", "-q", "F16")
    assert "typer" in _heavy("convert", "glm-4-9b-0414", "--from", src, "--to", "compressed-tensors", "-q", "W4A16",
                             "--dry-run", "--json")
