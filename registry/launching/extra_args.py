"""Extra engine arguments (`registry launch FAMILY:QUANT ... -- ARGS`): checked before anything starts, then
added to the planned server command.

Each option is looked up in the engine's own argument parser (llama-cpp-python's server parser here;
vLLM's and SGLang's in the interpreter of the installation found on this machine, registry/engines/_argcheck.py),
and the whole command, plan and extras together, is parsed by it, so that a flag or value the engine does not
know is refused with its own message. An option the registry sets itself (the model, host, port, context,
GPU count, API key, or anything else already in the planned command) is refused, naming the registry's
option where it has one: a second value would be silently taken by the engine (argparse keeps the last)
and the plan's memory estimate, port claim or key handling would no longer describe the server.
The parsers' answers are kept under the registry home (parser_cache.py): a repeated launch, or an option
refused by name, does not import the engine again.
"""

from __future__ import annotations

from ..errors import RegistryError

CHECK_TIMEOUT = 300.0  # vLLM's parser imports torch: tens of seconds on a busy machine
NAME_ARG = "the NAME argument (the build to launch)"

# What the registry sets for each engine, by the parser's name for it (argparse dest), and the registry's
# option for it (None: the registry decides it, there is no option: the reason instead).
REGISTRY_SET: dict[str, dict[str, tuple[str | None, str]]] = {
    "llama.cpp": {
        "model": (None, NAME_ARG), "model_alias": (None, "clients and `registry serve` ask for the model by it"),
        "host": ("--host", ""), "port": ("--port", ""), "n_ctx": ("--context", ""), "n_threads": ("--threads", ""),
        "api_key": ("--api-key", ""), "config_file": (None, "a config file would replace the planned settings"),
    },
    "vllm": {
        "model_tag": (None, NAME_ARG), "model": (None, NAME_ARG), "host": ("--host", ""), "port": ("--port", ""),
        "max_model_len": ("--context", ""), "tensor_parallel_size": ("--gpus", ""),
        "tp": ("--gpus", ""), "pipeline_parallel_size": ("--nodes", ""), "api_key": ("--api-key", ""),
        "served_model_name": (None, "clients and `registry serve` ask for the model by it"),
        "revision": (None, "the spec's hub revision"),
    },
    "sglang": {
        "model_path": (None, NAME_ARG), "model": (None, NAME_ARG), "tp": ("--gpus", ""), "host": ("--host", ""), "port": ("--port", ""),
        "context_length": ("--context", ""), "tp_size": ("--gpus", ""), "nnodes": ("--nodes", ""),
        "node_rank": ("--nodes", ""), "dist_init_addr": ("--nodes", ""), "api_key": ("--api-key", ""),
        "served_model_name": (None, "clients and `registry serve` ask for the model by it"),
        "revision": (None, "the spec's hub revision"),
    },
}
HELP = {"llama.cpp": "`python -m llama_cpp.server --help` lists its options", "vllm": "`vllm serve --help` lists them",
        "sglang": "`python -m sglang.launch_server --help` lists them"}


def add(engine: str, commands: list, main, extra: list[str], local: bool) -> list[str]:
    """Check `extra` against `engine`'s parser and the planned `commands`, then append it to the server
    commands (every SGLang node's; vLLM's `vllm serve`, the `main` one, not its ray commands). Returns notes for
    the plan.
    Raises RegistryError, one line naming the argument, for what the registry sets or the engine refuses."""
    from .. import redact

    shown = " ".join(redact.argv(extra))
    if engine not in REGISTRY_SET:
        raise RegistryError(f"extra engine arguments ({shown}) go to llama.cpp, vLLM or SGLang; {engine} "
                            "takes none: leave them out, or choose one of those with --engine")
    if not extra[0].startswith("-"):
        raise RegistryError(f"extra argument {extra[0]!r}: give the engine's options after --, e.g. -- --seed 7")
    planned = main.argv[_program_length(main.argv):]
    flags = [a for a in extra if _is_flag(a)]
    have = [a for a in planned if _is_flag(a)]
    parser = _Parser.of(engine)
    dests = parser.dests(planned + extra, flags + have) if parser is not None else None
    notes = []
    if dests is None:  # no parser here: the names as written stand in for the parser's
        parser = None
        dests = {f: _norm(f) for f in flags + have}
        notes.append(f"extra arguments checked against the plan only: {engine} is not installed here to check "
                     "them with its own parser")
    elif not local:
        notes.append("extra arguments checked with this machine's engine; the other machine's release may differ")
    set_by_plan = {dests[f] for f in have if dests.get(f)}
    for f in flags:
        name = f.partition("=")[0]
        d = dests.get(f)
        if d is None and _norm(f) in REGISTRY_SET[engine]:  # an abbreviation the engine takes (SGLang's --tp)
            d = _norm(f)
        if d is None:
            raise RegistryError(f"extra argument {name}: {engine} has no such option ({HELP[engine]})")
        if d == "help":  # the parser would print its help and exit, here, instead of checking anything
            raise RegistryError(f"extra argument {name}: {HELP[engine]}")
        if d in REGISTRY_SET[engine]:
            opt, why = REGISTRY_SET[engine][d]
            if opt:
                raise RegistryError(f"extra argument {name}: the registry sets it; use the registry's own {opt} "
                                    "option instead (before the --)")
            raise RegistryError(f"extra argument {name}: the registry sets it ({why}); leave it out")
        if d in set_by_plan:
            raise RegistryError(f"extra argument {name}: the planned command already sets it (`registry launch "
                                "--dry-run` shows the command); leave it out"
                                + (", or choose another --profile" if engine != "llama.cpp" else ""))
    ok, error = parser.verdict(planned + extra) if parser is not None else (True, "")
    if not ok:
        raise RegistryError(f"extra arguments {shown}: {engine} refuses them: {error}")
    for c in commands:
        if engine == "sglang" or c is main:
            c.argv = [*c.argv, *extra]
    return notes


def _program_length(argv: list[str]) -> int:
    """Words before the server's own arguments: `vllm serve`, `PYTHON -m MODULE [serve]`."""
    if "serve" in argv[:5]:
        return argv.index("serve") + 1
    return 3 if len(argv) > 2 and argv[1] == "-m" else 1


def _is_flag(word: str) -> bool:
    if not word.startswith("-") or word == "-":
        return False
    try:
        float(word)  # a negative number is a value (--n_gpu_layers -1)
        return False
    except ValueError:
        return True


def _norm(flag: str) -> str:
    """An option as argparse names its dest: `--max-model-len=8` -> max_model_len."""
    return flag.partition("=")[0].lstrip("-").partition(".")[0].replace("-", "_")


class _Parser:
    """An engine's parser as the registry asks it: its option table, and its verdict on a whole argv, from the
    answers kept under the registry home (parser_cache.py) where they are, else from the parser itself (one
    run answers both, and is kept)."""

    def __init__(self, engine: str, python: str, identity: str | None, run):
        from . import parser_cache

        self.engine, self.python, self._run = engine, python, run  # run(args, flags) -> _argcheck.check's answer
        self._key = parser_cache.key(engine, python, identity)
        self._kept = parser_cache.read(engine, python, self._key) if self._key else {"table": None, "verdicts": {}}

    @classmethod
    def of(cls, engine: str) -> _Parser | None:
        """`engine`'s parser on this machine; None where there is none."""
        if engine == "llama.cpp":
            import sys

            from ..engines import _probe

            # no identity without the distribution: no kept answers, and the import below says if it is here
            return cls(engine, sys.executable, _probe.identity(LLAMA_CPP_DIST), _llamacpp) if (
                _probe.importable("llama_cpp")) else None
        from ..engines import found

        inst = found.find(engine, ())
        if not isinstance(inst, found.Installation):
            return None
        return cls(engine, inst.python, inst.identity, lambda args, flags: _in_engine(engine, inst, args, flags))

    def dests(self, args: list[str], flags: list[str]) -> dict[str, str | None] | None:
        """The parser's name for each of `flags` (None: it has no such option); `args`: the argv they come from,
        whose verdict a run of the parser answers at the same time. None: the parser can't be built here."""
        if self._kept["table"] is None and self._ask(args, flags) is None:
            return None
        table = self._kept["table"]
        if self.engine == "llama.cpp":
            return {f: _llamacpp_dest(table, f) for f in flags}
        from ..engines import _argcheck

        return {f: _argcheck.dest(table, f) for f in flags}

    def verdict(self, args: list[str]) -> tuple[bool, str]:
        """(the parser takes `args`, its message where it does not)."""
        from .parser_cache import verdict_key

        got = self._kept["verdicts"].get(verdict_key(args, self._kept["table"] or {}))
        if got is None:
            got = self._ask(args, [])
        if got is None:  # its table was kept, but the parser no longer builds here
            raise RegistryError(f"could not check the extra arguments: {self.engine}'s parser can't be built here")
        return got["ok"], got["error"]

    def _ask(self, args: list[str], flags: list[str]) -> dict | None:
        from . import parser_cache

        res = self._run(args, flags)
        if res is None:
            return None
        self._kept["table"] = res["table"]
        got = {"ok": res["ok"], "error": res["error"]}
        if res["parsed"] and parser_cache.keepable(args, res["error"]):  # not where a flag asked for the help
            self._kept["verdicts"][parser_cache.verdict_key(args, res["table"])] = got
        if self._key:
            parser_cache.write(self.engine, self.python, self._key, self._kept)
        return got


LLAMA_CPP_DIST = "llama_cpp_python"


def _llamacpp_dest(options: dict, flag: str) -> str | None:
    """llama-cpp-python's parser takes exact names only (no abbreviations, no `-` for `_`)."""
    name = flag.partition("=")[0]
    return options[name]["dest"] if name in options else None


def _llamacpp(args: list[str], flags: list[str]) -> dict | None:
    """llama-cpp-python's server parser, built as `python -m llama_cpp.server` builds it (llama_cpp/server/
    __main__.py: add_args_from_model over its Settings, then --config_file), with exact names: _argcheck.check's
    answer; None where it can't be built here."""
    import argparse
    import contextlib
    import io

    from ..engines._argcheck import table

    try:
        from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
        from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings
    except (ImportError, OSError):  # without its server's dependencies, or its library does not load here
        return None
    parser = argparse.ArgumentParser(prog="llama_cpp.server", allow_abbrev=False)
    add_args_from_model(parser, Settings)
    parser.add_argument("--config_file", type=str)
    options = table(parser)
    dests = {f: _llamacpp_dest(options, f) for f in flags}
    out = {"ok": True, "error": "", "dests": dests, "parsed": True, "table": options}
    if "help" in dests.values():  # argparse would print the help and exit: the caller refuses it first
        return {**out, "parsed": False}
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = parser.parse_args(args)
        parse_model_from_args(ServerSettings, ns)
        parse_model_from_args(ModelSettings, ns)
    except SystemExit:
        msg = [x for x in err.getvalue().splitlines() if "error:" in x] or [err.getvalue().strip()]
        return {**out, "ok": False, "error": msg[-1]}
    except ValueError as e:  # pydantic's validation error: its first line and the field's
        return {**out, "ok": False, "error": " ".join(str(e).split("\n")[:3])}
    return out


def _in_engine(engine: str, inst, args: list[str], flags: list[str]) -> dict:
    """registry/engines/_argcheck.py run by the interpreter of the engine's installation on this machine."""
    import json
    import subprocess
    from importlib.resources import files

    source = files("registry.engines").joinpath("_argcheck.py").read_text()
    try:
        out = subprocess.run([inst.python, "-c", source], input=json.dumps({"engine": engine, "args": args,
                                                                             "flags": flags}),
                             capture_output=True, text=True, timeout=CHECK_TIMEOUT)
        res = json.loads([x for x in out.stdout.splitlines() if x.startswith("{")][-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        raise RegistryError(f"could not check the extra arguments with {inst.describe()}: its parser did not "
                            "answer; leave them out, or try again") from None
    if res["table"] is None:
        raise RegistryError(f"could not check the extra arguments: {res['error']}")
    return res
