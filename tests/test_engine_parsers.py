"""Every launch plan for vLLM and SGLang parses with the engines' own argument parsers (issue 15, Proof).

The plans come from the launcher (registry.launcher.plan) for every family, format and quantization each
engine serves, every launch profile, on named profiles and hardware strings, on 1, 2 and 4 nodes; their
argvs (the server and the `ray start` head/worker commands) go to scripts/engines_parse.py in
.venv-engines (scripts/engines-env.sh: vLLM 0.33.0, SGLang 0.5.23, ray 2.60.0 without GPU
dependencies), one subprocess per engine, kept for the module's tests (each builds its parser once). A flag
or value the engines do not know fails here. llama.cpp plans go through llama-cpp-python's server parser, in
this environment.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("ENGINES_VENV") or ROOT / ".venv-engines")
PARSE = ROOT / "scripts" / "engines_parse.py"
CREATE = "bash scripts/engines-env.sh"
PINNED = {"vllm": "0.33.0", "sglang": "0.5.23", "ray": "2.60.0"}

ENGINES = ("vllm", "sglang")
# Every named profile with GPUs, and hardware strings people type (issue 15): datacenter, workstation and
# consumer GPUs, plain memory sizes.
HARDWARE = ("8xB200", "4xH100-80G", "8xH100-80G", "2xH200", "4xA100-80G", "4xRTX-PRO-6000", "8xRTX-PRO-6000",
            "8xH200", "1xH100-80G", "1xRTX-4090", "2xL40S", "4xA100-40G", "1xL4", "2xRTX-5090", "24GB", "2x80GB")
# Multi-node plans: GPUs per node on these, over 2 and 4 nodes.
MULTI_NODE = ("8xH200", "8xB200", "4xH100-80G", "4xA100-40G")
# The flags a user adds: a context (--max-model-len / --context-length), a GPU count, a wildcard host, a port.
OPTIONS = ({"context": 4096}, {"gpus": 8}, {"host": "0.0.0.0", "port": 9000}, {"context": 32768, "nodes": 2})


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _python() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        msg = f"{VENV} is missing: `{CREATE}` creates it (vLLM, SGLang and ray without GPU dependencies)"
        if _in_ci():
            pytest.fail(f"in CI the engines' environment must exist ({msg}; scripts/setup.sh runs it when CI is set)")
        pytest.skip(msg)
    return py


def _builds():
    """(family, format, quantization, engine, profile) for every build an engine's rule lists, each profile."""
    from registry.catalog import load

    cat = load(include_user=False)
    for name in cat.names():
        for spec in cat.get(name).specs:
            for q in spec.quantizations:
                for engine in ENGINES:
                    if engine in spec.engines_for(q):
                        for prof in [None, *(p.name for p in spec.profiles(engine))]:
                            yield name, spec.format, q, engine, prof


def _plans():
    """Every plan the launcher makes for those builds: {argv tuple: (engine, where it came from)}."""
    from registry import launcher
    from registry.errors import RegistryError

    argvs: dict[tuple, tuple[str, str]] = {}
    counts = {"plans": 0, "refused": 0, "nodes": set(), "builds": set()}
    for name, fmt, q, engine, prof in _builds():
        cases = ([(hw, {"nodes": 1}) for hw in HARDWARE] + [(hw, {"nodes": n}) for hw in MULTI_NODE for n in (2, 4)]
                 + [(hw, {"nodes": 1, **o}) for hw in ("8xH200", "8xB200") for o in OPTIONS])
        for hw, opts in cases:
            try:
                p = launcher.plan(name, fmt, q, engine=engine, hardware=hw, profile=prof, **opts)
            except RegistryError:  # does not fit or cannot run there: the reasons are other tests' business
                counts["refused"] += 1
                continue
            counts["plans"] += 1
            counts["nodes"].add(opts["nodes"])
            counts["builds"].add((name, fmt, q, engine))
            where = f"registry launch {name} -f {fmt} -q {q} --engine {engine} --hardware {hw}" + "".join(
                f" --{k} {v}" for k, v in opts.items()) + (f" --profile {prof}" if prof else "")
            for c in p.commands:
                kind = "ray" if c.argv[0] == "ray" else engine
                argvs.setdefault(tuple(c.argv), (kind, where))
    return argvs, counts


class _Parsers:
    """scripts/engines_parse.py, one process per engine (SGLang's triton stand-in must not reach vLLM's
    imports), each answering every request of the module's tests: the engine's import, seconds, is paid once."""

    TIMEOUT = 600.0

    def __init__(self, py: Path):
        self.py = py
        self.procs: dict[str, tuple[subprocess.Popen, queue.Queue, object]] = {}

    def _proc(self, kind: str):
        if kind not in self.procs:
            err = tempfile.TemporaryFile("w+")  # warnings can be long: a file, not a pipe nobody reads
            proc = subprocess.Popen([str(self.py), str(PARSE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=err, text=True, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            lines: queue.Queue = queue.Queue()

            def read():  # a thread, so that a parser that hangs fails the test after TIMEOUT
                for line in proc.stdout:
                    lines.put(line)
                lines.put(None)

            threading.Thread(target=read, daemon=True).start()
            self.procs[kind] = (proc, lines, err)
        return self.procs[kind]

    def _stderr(self, kind: str) -> str:
        err = self.procs[kind][2]
        err.seek(0)
        return err.read()[-3000:]

    def _drop(self, kind: str) -> None:
        """A process in an unknown state answers no later request: the next one starts anew."""
        proc, _, err = self.procs.pop(kind)
        proc.kill()
        proc.wait()
        err.close()

    def _send(self, kind: str, batch: list[dict]) -> None:
        proc = self._proc(kind)[0]
        try:
            proc.stdin.write(json.dumps(batch) + "\n")
            proc.stdin.flush()
        except BaseException:
            self._drop(kind)
            raise

    def _receive(self, kind: str, n: int) -> list[dict]:
        proc, lines, _ = self.procs[kind]
        try:
            got: list[dict] = []
            while not got or "versions" not in got[-1]:
                try:
                    line = lines.get(timeout=self.TIMEOUT)
                except queue.Empty:
                    line = None
                assert line is not None, f"{kind}: no answer (exit {proc.poll()}):\n{self._stderr(kind)}"
                if line.startswith("{"):
                    got.append(json.loads(line))
            assert len(got) == n + 1, self._stderr(kind)
        except BaseException:
            self._drop(kind)
            raise
        assert got[-1]["versions"][kind] == PINNED[kind], got[-1]["versions"]
        return got[:-1]

    def parse(self, items: list[dict]) -> list[dict]:
        """Each item's answer ({"ok", "error", "deprecated"}), in order. The engines work on their requests
        at the same time."""
        out: list[dict | None] = [None] * len(items)
        idx = {kind: [n for n, i in enumerate(items) if i["engine"] == kind] for kind in dict.fromkeys(
            i["engine"] for i in items)}
        for kind, ns in idx.items():
            self._send(kind, [items[n] for n in ns])
        for kind, ns in idx.items():
            for n, res in zip(ns, self._receive(kind, len(ns))):
                out[n] = res
        return out

    def close(self) -> list[str]:
        """Ends the processes; what went wrong in them."""
        bad = []
        for kind, (proc, _, err) in self.procs.items():
            proc.stdin.close()
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            if code != 0:
                bad.append(f"{kind}: exit {code}: {self._stderr(kind)}")
            err.close()
        return bad


@pytest.fixture(scope="module")
def engine_parsers():
    parsers = _Parsers(_python())
    yield parsers
    bad = parsers.close()
    assert not bad, "\n".join(bad)


@pytest.mark.engines
def test_every_plan_parses_with_the_engines_own_parsers(engine_parsers):
    argvs, counts = _plans()
    # every build an engine's rule lists is planned somewhere (else its flags would go unchecked)
    assert counts["builds"] == {b[:4] for b in _builds()}, sorted({b[:4] for b in _builds()} - counts["builds"])
    by_kind = {k: sum(1 for kind, _ in argvs.values() if kind == k) for k in ("vllm", "sglang", "ray")}
    # the sweep reaches what it claims: both engines, multi-node ray commands, 1, 2 and 4 nodes
    assert counts["nodes"] == {1, 2, 4} and all(by_kind[k] > 0 for k in by_kind), (counts, by_kind)
    items = [{"engine": kind, "argv": list(argv)} for argv, (kind, _) in argvs.items()]
    bad = []
    for (argv, (kind, where)), res in zip(argvs.items(), engine_parsers.parse(items)):
        if not res["ok"] or res["deprecated"]:
            bad.append(f"{kind}: {res['error'] or '; '.join(res['deprecated'])}\n  from: {where}\n  argv: "
                       f"{' '.join(argv)}")
    print(f"parsed {len(items)} distinct argvs ({by_kind}) from {counts['plans']} plans of "
          f"{len(counts['builds'])} builds ({counts['refused']} refused)", file=sys.stderr)
    assert not bad, f"{len(bad)} of {len(items)} argvs rejected by the engines' parsers:\n" + "\n".join(bad[:20])


@pytest.mark.engines
def test_the_parsers_reject_what_the_engines_do_not_know(engine_parsers):
    """The check can fail: made-up flags and values, and SGLang's --tp abbreviation, are refused."""
    items = [
        {"engine": "vllm", "argv": ["vllm", "serve", "m", "--no-such-flag", "1"]},
        {"engine": "vllm", "argv": ["vllm", "serve", "m", "--tool-call-parser", "glm99"]},
        {"engine": "vllm", "argv": ["vllm", "serve", "m", "--quantization", "awq9"]},
        {"engine": "vllm", "argv": ["vllm", "serve", "m", "--tensor-parallel-size", "two"]},
        {"engine": "sglang", "argv": ["python3", "-m", "sglang.launch_server", "--model", "m", "--tp", "8"]},
        {"engine": "sglang", "argv": ["python3", "-m", "sglang.launch_server", "--model", "m",
                                      "--reasoning-parser", "glm99"]},
        {"engine": "ray", "argv": ["ray", "start", "--head", "--port=sixty"]},
        {"engine": "vllm", "argv": ["vllm", "serve", "m", "--max-model", "4096"]},
        {"engine": "vllm", "argv": ["vllm", "serve", "m", "--tensor-parallel-size", "4",
                                    "--tool-call-parser", "glm45", "--enable-auto-tool-choice"]},
        {"engine": "sglang", "argv": ["python3", "-m", "sglang.launch_server", "--model", "m", "--tp-size", "8"]},
        {"engine": "ray", "argv": ["ray", "start", "--address=HEAD_IP:6379", "--block"]},
    ]
    res = engine_parsers.parse(items)
    assert [x["ok"] for x in res] == [False] * 8 + [True] * 3, res
    assert "--no-such-flag" in res[0]["error"] and "glm99" in res[1]["error"] and "awq9" in res[2]["error"]
    assert "abbreviation" in res[4]["error"] and "glm99" in res[5]["error"] and "abbreviation" in res[7]["error"]


def test_every_llamacpp_plan_parses_with_its_server_parser():
    """llama.cpp plans (GGUF builds on GPUs, partial offload, CPU machines) through llama-cpp-python's own
    server parser, built as `python -m llama_cpp.server` builds it, and its settings models."""
    pytest.importorskip("llama_cpp.server.settings")
    import argparse

    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings

    from registry import launcher
    from registry.catalog import load
    from registry.errors import RegistryError
    from registry.prestart import LLAMA_CPP_SERVER

    parser = argparse.ArgumentParser(prog="llama_cpp.server", allow_abbrev=False)  # exact flag names
    add_args_from_model(parser, Settings)
    parser.add_argument("--config_file", type=str)  # as llama_cpp/server/__main__.py adds it
    cat = load(include_user=False)
    seen, bad = set(), []
    for name in cat.names():
        for spec in cat.get(name).specs:
            for q in spec.quantizations:
                if "llama.cpp" not in spec.engines_for(q):
                    continue
                for hw, ctx in (("1xRTX-4090", None), ("1xL4", 200000), ("2xL40S", None), ("cpu-64GB", None),
                                ("M3-Ultra-96G", None), ("8xH200", 32768)):
                    try:
                        p = launcher.plan(name, spec.format, q, engine="llama.cpp", hardware=hw,
                                          context=min(ctx, cat.get(name).context_length) if ctx else None)
                    except RegistryError:
                        continue
                    argv = p.main.argv
                    assert argv[:3] == ["python3", "-m", LLAMA_CPP_SERVER], argv
                    seen.add(tuple(argv))
                    err = io.StringIO()
                    try:
                        with contextlib.redirect_stderr(err):
                            args = parser.parse_args(argv[3:])
                        parse_model_from_args(ServerSettings, args)
                        parse_model_from_args(ModelSettings, args)
                    except (SystemExit, ValueError) as e:
                        bad.append(f"{name} {spec.format} {q} on {hw}: {err.getvalue().strip() or e}\n  {' '.join(argv)}")
    print(f"parsed {len(seen)} distinct llama.cpp argvs", file=sys.stderr)
    assert len(seen) > 10 and any("--n_gpu_layers" in a for a in seen), len(seen)
    assert not bad, "\n".join(bad[:20])


@pytest.mark.engines
def test_extra_engine_arguments_are_checked_by_the_engines_own_parsers(engine_parsers):
    """`registry launch TAG --dry-run -- ARGS` for vLLM and SGLang: the registry asks the engine's parser (the
    installation REGISTRY_VLLM / REGISTRY_SGLANG names, here .venv-engines) before planning further; what it
    accepts is in the planned command, which the same parsers then take whole."""
    from conftest import run_cli

    py = _python()
    env = {"REGISTRY_VLLM": str(py), "REGISTRY_SGLANG": str(py)}
    cases = {"vllm": ("glm4-chat-1m:none", ["--max-num-seqs", "8", "--enable-prefix-caching", "--seed=3"]),
             "sglang": ("glm-4-9b-0414:none", ["--chunked-prefill-size", "4096", "--enable-metrics"])}
    items = []
    for engine, (tag, extra) in cases.items():
        r = run_cli("launch", tag, "--engine", engine, "--hardware", "8xH200", "--dry-run", "--json", "--", *extra,
                    env=env)
        assert r.returncode == 0, r.stderr
        p = json.loads(r.stdout)
        assert p["extra_args"] == extra and p["argv"][-len(extra):] == extra, p["argv"]
        items.append({"engine": engine, "argv": p["argv"]})
        text = run_cli("launch", tag, "--engine", engine, "--hardware", "8xH200", "--dry-run", "--", *extra,
                       env=env).stdout
        assert " ".join(extra) in text, text
    assert [x["ok"] for x in engine_parsers.parse(items)] == [True, True]
    # refused before anything starts: what the engine does not know, a bad value, what the registry sets
    for engine, extra, says in (
            ("vllm", ["--no-such-flag", "1"], "extra argument --no-such-flag: vllm has no such option"),
            ("vllm", ["--max-num-seqs", "many"], "vllm refuses them"),
            ("vllm", ["-tp", "2"], "extra argument -tp: the registry sets it; use the registry's own --gpus"),
            ("vllm", ["--max-model-len", "4096"], "the registry's own --context"),
            ("vllm", ["--trust-remote-code"], "--trust-remote-code: the planned command already sets it"),
            ("sglang", ["--bogus"], "extra argument --bogus: sglang has no such option"),
            ("sglang", ["--tp", "2"], "extra argument --tp: the registry sets it; use the registry's own --gpus"),
            ("sglang", ["--port=9"], "extra argument --port: the registry sets it; use the registry's own --port")):
        r = run_cli("launch", cases[engine][0], "--engine", engine, "--hardware", "8xH200", "--dry-run", "--",
                    *extra, env=env)
        assert r.returncode == 1 and says in r.stderr and r.stderr.count("\n") == 1, (extra, r.stderr)


def _import_traced(*args: str) -> tuple[subprocess.CompletedProcess, bool]:
    """`registry ARGS` with Python's import trace: (the run, whether it imported llama-cpp-python's server)."""
    from conftest import run_cli

    r = run_cli(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    return r, any(line.startswith("import time:") and line.split("|")[-1].strip() == "llama_cpp.server"
                  for line in r.stderr.splitlines())


def test_llamacpp_answers_are_kept_and_a_damaged_cache_file_is_ignored(registry_home):
    """What llama-cpp-python's server parser answered is kept under the registry home (registry/launching/
    parser_cache.py): a repeated check, and an option refused from its option table, do not import it (its
    import is most of such a launch's time); a new argv is parsed by it; a damaged cache file is a miss, then
    rewritten."""
    pytest.importorskip("llama_cpp.server.settings")
    import sys

    from registry.launching import parser_cache

    cache = parser_cache.path("llama.cpp", sys.executable)
    dry = ("launch", "glm4-chat-1m:FP16", "--dry-run", "--json", "--")
    r, imported = _import_traced(*dry, "--seed", "7")
    assert r.returncode == 0 and json.loads(r.stdout)["argv"][-2:] == ["--seed", "7"], r.stderr[-2000:]
    assert imported and cache.is_file()
    kept = json.loads(cache.read_text())
    assert kept["table"]["--n_batch"]["dest"] == "n_batch" and kept["table"]["--n_batch"]["value"], kept["table"]
    assert list(kept["verdicts"].values()) == [{"ok": True, "error": ""}], kept["verdicts"]
    again, imported = _import_traced(*dry, "--seed", "7")
    assert again.returncode == 0 and again.stdout == r.stdout and not imported, again.stderr[-2000:]
    no, imported = _import_traced(*dry, "--no-such-option", "1")
    assert no.returncode == 1 and not imported
    assert "error: extra argument --no-such-option: llama.cpp has no such option" in no.stderr
    bad, imported = _import_traced(*dry, "--n_batch", "many")  # a new argv: its parser's verdict
    assert bad.returncode == 1 and imported and "llama.cpp refuses them" in bad.stderr and "'many'" in bad.stderr
    cache.write_text(cache.read_text()[:100])  # a write cut short (by a full disk, say)
    r, imported = _import_traced(*dry, "--seed", "7")
    assert r.returncode == 0 and imported and json.loads(r.stdout)["argv"][-2:] == ["--seed", "7"]
    assert json.loads(cache.read_text())["table"] == kept["table"]  # rewritten whole


@pytest.mark.engines
def test_a_repeated_check_does_not_start_the_engine_until_it_is_installed_again(tmp_path):
    """SGLang's answers are kept too: in an environment of its own whose interpreter counts its runs of the
    argument check (a .pth file; its packages are .venv-engines', its sglang metadata a copy), a repeated
    check and an option refused from the kept option table start no engine; a damaged cache file is ignored
    and rewritten; sglang installed again (its .dist-info written anew) is asked again."""
    import shutil

    from conftest import run_cli
    from registry.launching import parser_cache

    py = _python()
    env_dir = tmp_path / "sglang-env"
    subprocess.run([str(py), "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    engine_py = str(env_dir / "bin" / "python")

    def purelib(python: str) -> Path:
        return Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True, timeout=60).stdout.strip())

    site, engines_site = purelib(engine_py), purelib(str(py))
    runs = tmp_path / "argcheck-runs"
    (site / "engines.pth").write_text(f"import site; site.addsitedir({str(engines_site)!r})\n")
    (site / "zz_count.pth").write_text(  # the argument check is the interpreter's `-c` program
        f"import os, sys; 'def check(engine' in ' '.join(sys.orig_argv) and open({str(runs)!r}, 'a').write("
        f"f'{{os.getpid()}}\\n')\n")
    (meta,) = engines_site.glob("sglang-*.dist-info")

    def install_metadata():  # what an installer writes: the files anew, with this moment's times
        shutil.rmtree(site / meta.name, ignore_errors=True)
        for f in meta.rglob("*"):
            if f.is_file():
                (site / meta.name / f.relative_to(meta)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, site / meta.name / f.relative_to(meta))

    def launch(*extra):
        return run_cli("launch", "glm-4-9b-0414:none", "--engine", "sglang", "--hardware", "8xH200", "--dry-run",
                       "--json", "--", *extra, env={"REGISTRY_SGLANG": engine_py})

    def count() -> int:  # the processes (the engine's packages may have site's files read again in one)
        return len(set(runs.read_text().split())) if runs.exists() else 0

    install_metadata()
    cache = parser_cache.path("sglang", engine_py)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text('{"key": "')  # damaged
    first = launch("--enable-metrics")
    assert first.returncode == 0 and json.loads(first.stdout)["argv"][-1] == "--enable-metrics", first.stderr[-2000:]
    assert count() == 1
    kept = json.loads(cache.read_text())
    assert kept["table"]["--enable-metrics"]["dest"] == "enable_metrics" and len(kept["verdicts"]) == 1
    again = launch("--enable-metrics")
    assert again.returncode == 0 and again.stdout == first.stdout and count() == 1, again.stderr[-2000:]
    for extra, says in ((["--bogus"], "extra argument --bogus: sglang has no such option"),
                        (["--port=9"], "extra argument --port: the registry sets it; use the registry's own --port")):
        r = launch(*extra)
        assert r.returncode == 1 and says in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert count() == 1
    install_metadata()  # installed again: another identity, asked again
    r = launch("--enable-metrics")
    assert r.returncode == 0 and r.stdout == first.stdout and count() == 2, r.stderr[-2000:]
    assert json.loads(cache.read_text())["key"] != kept["key"]
    assert launch("--enable-metrics").returncode == 0 and count() == 2
