"""The engines' own argument parsers (vLLM's `vllm serve`, SGLang's `sglang.launch_server`), run by the
engine's interpreter: `python -c` with this file's text, a JSON request on stdin, one JSON line out. The
registry checks extra engine arguments (`registry launch ... -- ARGS`) with them; scripts/engines_parse.py
(the tests' check of every plan) loads this file for the same parsers. Standard library at the top: the
engine is imported only by the parser makers, in its own environment.

    echo '{"engine": "vllm", "args": [...], "flags": ["--foo", ...]}' | python -c "$(cat _argcheck.py)"
    -> {"ok": bool, "error": str, "dests": {flag: dest or null}, "deprecated": [...], "parsed": bool,
        "table": {option: {"dest": str, "value": bool, "deprecated": bool}}}

"parsed": false where the args were not parsed (a flag asks for the help, which argparse would print);
"table": the exact-name parser's options, which the registry keeps (registry/launching/parser_cache.py) to
name the options of later argvs without starting the engine again.

The parsers are built the way the entry points build them:
  vllm serve          vllm.entrypoints.common.cli_args.make_arg_parser on a FlexibleArgumentParser
                      (also without prefix abbreviations), validate_parsed_serve_args and
                      validate_api_server_args (what `vllm serve` checks before loading a model), the
                      tool-parser registry and quantization methods, AsyncEngineArgs.from_cli_args;
  sglang.launch_server  argparse + ServerArgs.add_cli_args (sglang.srt.server_args.prepare_server_args'
                      parser), parsed twice: as SGLang does, and without prefix abbreviations, so that a
                      plan only passes with exact flag names; then ServerArgs.from_cli_args.
Only the parsers run: nothing is started, no GPU is needed.
"""

import argparse
import contextlib
import io
import json
import sys


def _argparse(parser, args):
    """parse_args with argparse's exit turned into an error carrying its message."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(args)
    except SystemExit:
        msg = [line for line in err.getvalue().splitlines() if "error:" in line] or [err.getvalue().strip()]
        raise ValueError(msg[-1]) from None


def vllm_parser():
    """parse(args) -> deprecation notes, raising on what `vllm serve` refuses; parse.parser: the exact-name parser."""
    import os

    # The parser's defaults come from config dataclasses that ask for the platform; without a GPU vLLM
    # finds none ("Failed to infer device type"). Its own CPU platform answers; flags and choices are
    # the same for every platform.
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.common.cli_args import (make_arg_parser, validate_api_server_args,
                                                  validate_parsed_serve_args)
    from vllm.model_executor.layers.quantization import DEPRECATED_QUANTIZATION_METHODS, QUANTIZATION_METHODS
    from vllm.tool_parsers import ToolParserManager
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    exact = make_arg_parser(FlexibleArgumentParser(prog="vllm serve", allow_abbrev=False))
    tool_parsers = ToolParserManager.list_registered()

    def parse(args):
        ns = _argparse(parser, args)  # what `vllm serve` accepts
        # the flags vLLM registered as deprecated (FlexibleArgumentParser._deprecated, which it warns about
        # once per process) that this argv sets
        deprecated = [f"{'/'.join(a.option_strings)} is deprecated" for a in parser._deprecated
                      if getattr(ns, a.dest, a.default) != a.default]
        try:
            _argparse(exact, args)
        except ValueError as e:
            raise ValueError(f"only as an abbreviation: {e}") from None
        validate_parsed_serve_args(ns)  # `vllm serve`'s checks before loading
        validate_api_server_args(ns)  # the API server's: tool (with auto choice) and reasoning parser names
        # --tool-call-parser is free text to argparse; the server looks it up in this registry
        if ns.tool_call_parser and ns.tool_call_parser not in tool_parsers:
            raise KeyError(f"invalid tool call parser: {ns.tool_call_parser} (choose from {', '.join(tool_parsers)})")
        # --quantization too: the engine's get_quantization_config first checks this list (the rest of it
        # imports the method's kernels)
        if ns.quantization:
            if ns.quantization not in QUANTIZATION_METHODS:
                raise ValueError(f"Invalid quantization method: {ns.quantization} (vLLM's: {', '.join(QUANTIZATION_METHODS)})")
            if ns.quantization in DEPRECATED_QUANTIZATION_METHODS:
                deprecated.append(f"quantization method {ns.quantization} is deprecated")
        AsyncEngineArgs.from_cli_args(ns)  # the engine's arguments dataclass takes them
        return deprecated

    parse.parser = exact
    return parse


def _stub_triton():
    """sglang/__init__.py imports sglang.srt.utils.common, which imports triton (a GPU kernel compiler that
    the argument parser never uses) at its top. Without triton, SGLang's own stand-in is used: the
    meta-path finder and mock module of sglang/_platform_stubs.py (what SGLang installs where triton is
    unavailable, on macOS), loaded from its file so as not to import the sglang package first."""
    import importlib.util

    if importlib.util.find_spec("triton") is not None:
        return
    path = importlib.util.find_spec("sglang").submodule_search_locations[0] + "/_platform_stubs.py"
    spec = importlib.util.spec_from_file_location("_sglang_platform_stubs", path)
    stubs = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # its dataclasses look it up
    spec.loader.exec_module(stubs)
    sys.meta_path.insert(0, stubs._TritonFinder())
    triton = stubs._make_mock("triton")
    triton.__version__ = "3.0.0"
    triton.cdiv, triton.next_power_of_2, triton.Config = stubs._cdiv, stubs._next_power_of_2, stubs._Config


def sglang_parser():
    _stub_triton()
    from sglang.srt.server_args import ServerArgs

    loose = argparse.ArgumentParser(prog="sglang serve")
    ServerArgs.add_cli_args(loose)
    exact = argparse.ArgumentParser(prog="sglang serve", allow_abbrev=False)
    ServerArgs.add_cli_args(exact)

    def parse(args):
        ns = _argparse(loose, args)  # what SGLang itself accepts
        try:
            _argparse(exact, args)
        except ValueError as e:
            raise ValueError(f"only as an abbreviation: {e}") from None
        ServerArgs.from_cli_args(ns)  # the record prepare_server_args makes of them (its __post_init__ checks)
        return []

    parse.parser = exact
    return parse


MAKERS = {"vllm": vllm_parser, "sglang": sglang_parser}


def table(parser):
    """The parser's options: {option string: {"dest": its name for it, "value": takes a value, "deprecated"}}."""
    deprecated = getattr(parser, "_deprecated", ())  # vLLM's FlexibleArgumentParser keeps them apart
    return {opt: {"dest": a.dest, "value": a.nargs != 0,
                  "deprecated": bool(getattr(a, "deprecated", False) or a in deprecated)}
            for opt, a in parser._option_string_actions.items()}


def dest(options, flag):
    """The parser's name for an option as written (`--max-model-len`, `--max_model_len=8`, `-tp`,
    `--compilation-config.mode`: vLLM's dotted sub-keys), or None where it has no such option. options: table()'s."""
    name = flag.partition("=")[0]
    for cand in (name, name[:2] + name[2:].replace("_", "-"), name.partition(".")[0]):
        if cand in options:
            return options[cand]["dest"]
    return None


def check(engine, args, flags):
    """{"ok", "error", "dests", "deprecated", "parsed", "table"} for `args` (the command after its program) and
    the dests of `flags`."""
    parse = MAKERS[engine]()
    options = table(parse.parser)
    dests = {f: dest(options, f) for f in flags}
    out = {"ok": True, "error": "", "dests": dests, "deprecated": [], "parsed": True, "table": options}
    if "help" in dests.values():  # argparse would print the help and exit: the registry refuses it first
        return {**out, "parsed": False}
    try:
        return {**out, "deprecated": parse(args)}
    except Exception as e:  # the parser's own refusal, in its words
        return {**out, "ok": False, "error": f"{type(e).__name__}: {e}"}


if __name__ == "__main__":
    req = json.load(sys.stdin)
    try:
        out = check(req["engine"], req["args"], req["flags"])
    except Exception as e:  # the parser itself does not build here
        out = {"ok": False, "error": f"{req['engine']}'s parser could not be built: {type(e).__name__}: {e}",
               "dests": None, "deprecated": [], "parsed": False, "table": None}
    print(json.dumps(out))
