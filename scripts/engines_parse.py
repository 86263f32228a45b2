"""Parse launch-plan argvs with the engines' own argument parsers (vLLM, SGLang, ray), in .venv-engines.

Run by tests/test_engine_parsers.py, never imported by the registry: it reads requests on stdin, each one
line holding a JSON list of {"engine": "vllm" | "sglang" | "ray", "argv": [...]}, and answers each with one
JSON line per argv, {"ok": bool, "error": str, "deprecated": [...]}, then a line {"versions": {...}}. One
process answers every request until stdin closes, so each engine's parser is built (its import: seconds)
once for all of them.

The parsers are the engines' own code, built the way their entry points build them: vLLM's and SGLang's
are registry/engines/_argcheck.py's (the ones `registry launch ... -- ARGS` checks extra arguments with);
  ray start           ray.scripts.scripts.start, the click command, parsed with make_context (no run).
Only the parsers run: nothing is started, no GPU is needed.
"""

from __future__ import annotations

import json
import sys

# The prefix of each engine's argv in a plan, dropped before parsing (the rest is the parser's input).
PREFIX = {"vllm": ["vllm", "serve"], "sglang": ["python3", "-m", "sglang.launch_server"], "ray": ["ray", "start"]}


def _strip(engine: str, argv: list[str]) -> list[str]:
    pre = PREFIX[engine]
    if argv[:len(pre)] != pre:
        raise ValueError(f"argv does not start with {' '.join(pre)!r}: {argv[:len(pre)]}")
    return argv[len(pre):]


def _parsers():
    """registry/engines/_argcheck.py, where the registry keeps the vLLM and SGLang parsers, loaded from its
    file: importing the registry package here would need the registry's dependencies in this environment."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "registry" / "engines" / "_argcheck.py"
    spec = importlib.util.spec_from_file_location("_registry_argcheck", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ray_parser():
    import click
    from ray.scripts.scripts import start

    def parse(args):
        try:
            start.make_context("ray start", list(args))
        except click.ClickException as e:
            raise ValueError(e.format_message()) from None
        return []

    return parse


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for d in ("vllm", "sglang", "ray", "torch"):
        try:
            out[d] = version(d)
        except PackageNotFoundError:
            out[d] = None
    return out


def main() -> int:
    makers = {**_parsers().MAKERS, "ray": ray_parser}
    parsers: dict = {}
    for line in sys.stdin:
        if line.strip():
            answer(json.loads(line), makers, parsers)
    return 0


def answer(items: list[dict], makers: dict, parsers: dict) -> None:
    """One request: a line per argv, then the versions line. parsers: those built so far (or why not)."""
    for item in items:
        engine = item["engine"]
        try:
            if engine not in parsers:
                try:
                    parsers[engine] = makers[engine]()
                except Exception as e:  # the engine's parser does not build: every argv of it fails
                    parsers[engine] = e
            if isinstance(parsers[engine], Exception):
                raise RuntimeError(f"{engine}'s parser could not be built: {parsers[engine]!r}")
            deprecated = parsers[engine](_strip(engine, item["argv"]))
            res = {"ok": True, "error": "", "deprecated": deprecated}
        except Exception as e:  # a rejected argv: the parser's message, for the test's report
            res = {"ok": False, "error": f"{type(e).__name__}: {e}", "deprecated": []}
        print(json.dumps(res), flush=True)
    print(json.dumps({"versions": versions()}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
