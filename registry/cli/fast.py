"""The read commands without typer: `list`, `show`, `search`, `resolve`, `fit` and `ps` as people type them, and
`convert --to ggufv2` (a conversion's wall time should be its I/O, not ~0.15 s of typer building its options).

Typer and click (~75 ms) and pydantic with the schema's models (~55 ms) are most of a read command's time;
`python -c pass` is ~20 ms. A command line this module recognises in full (the command, its options in the
forms `--name VALUE`, `--name=VALUE`, `-x VALUE` and flags, values that need no conversion beyond int or
float, the right number of arguments) runs the same function the typer command runs (registry/cli/reads.py)
on the compiled catalog's plain families (registry/plain.py). Anything else (--help, a usage error, a value
starting with '-', another command) answers None and goes to typer, so its messages and exit codes stay
typer's. REGISTRY_TYPER_ONLY=1 sends every command line through typer and the models (the tests compare both).
"""

from __future__ import annotations

import os
import re
import sys

COMPLETE_VAR = "_REGISTRY_COMPLETE"  # set by the script `registry completion SHELL` prints: typer answers
# option -> (parameter, kind): kind 'flag', 'str', 'int', 'float' or 'path' (the typer command's type)
JSON = {"--json": ("json_", "flag")}
FORMAT = {"--format": ("format", "str"), "-f": ("format", "str")}
QUANT = {"--quant": ("quant", "str"), "-q": ("quant", "str")}

# command -> (positional parameter, how many: 1, or -1 for one or more; None: none), options
COMMANDS: dict[str, tuple[str | None, int, dict[str, tuple[str, str]]]] = {
    "list": (None, 0, {**FORMAT, **QUANT, "--engine": ("engine", "str"), "-e": ("engine", "str"),
                       "--ability": ("ability", "str"), "--min-context": ("min_context", "int"), **JSON}),
    "show": ("name", 1, {"--artifacts": ("artifacts", "flag"), "--node": ("node", "str"), **JSON}),
    "search": ("words", -1, {**JSON}),
    "resolve": ("name", 1, {**FORMAT, **QUANT, "--size": ("size", "float"), "--from": ("uploader", "str"), **JSON}),
    "fit": ("name", 1, {"--hardware": ("hardware", "str"), "--context": ("context", "str"), **QUANT, **FORMAT,
                        **JSON}),
    "ps": (None, 0, {"--all": ("all_", "flag"), "-a": ("all_", "flag"), "--node": ("node", "str"), **JSON}),
    # the GGUF build's options; run() takes it only with --from and --to ggufv2 (compressed-tensors builds import
    # torch: typer's start-up is nothing beside that)
    "convert": ("name", 1, {"--from": ("source", "path"), "--to": ("to", "str"), **QUANT, "--out": ("out", "path"),
                            "--keep-f16": ("keep_f16", "flag"), "--report": ("report", "flag"),
                            "--outtype": ("outtype", "str"), "--keep-mtp": ("keep_mtp", "flag"),
                            "--split-max-size": ("split_max_size", "str"), "--calibration": ("calibration", "str"),
                            "--imatrix": ("imatrix", "path"), "--chunks": ("chunks", "int"),
                            "--chunk-size": ("chunk_size", "int"), "--no-record": ("no_record", "flag"),
                            "--force": ("force", "flag"), **JSON}),
}
DEFAULTS = {"flag": False, "str": None, "int": None, "float": None, "path": None}
# what click's int and float types take without a message of their own; anything else goes to typer
INT_RE = re.compile(r"[0-9]+\Z")
FLOAT_RE = re.compile(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)\Z")


def parse(argv: list[str]) -> tuple[str, dict] | None:
    """(command, parameters) of a command line the fast path takes in full, else None."""
    if not argv or argv[0] not in COMMANDS:
        return None
    cmd, rest = argv[0], argv[1:]
    positional, count, options = COMMANDS[cmd]
    params = {p: DEFAULTS[kind] for p, kind in options.values()}
    words: list[str] = []
    i = 0
    while i < len(rest):
        a = rest[i]
        i += 1
        if not a.startswith("-"):
            words.append(a)
            continue
        name, eq, value = a.partition("=")
        if name not in options or (eq and not name.startswith("--")):
            return None  # --help, --, -, an unknown option or a short one with '=': typer says what it is
        param, kind = options[name]
        if kind == "flag":
            if eq:
                return None
            params[param] = True
            continue
        if not eq:
            if i >= len(rest) or rest[i].startswith("-"):
                return None
            value = rest[i]
            i += 1
        if kind == "int":
            if not INT_RE.match(value):
                return None
            params[param] = int(value)
        elif kind == "float":
            if not FLOAT_RE.match(value):
                return None
            params[param] = float(value)
        elif kind == "path":
            from pathlib import Path

            params[param] = Path(value)
        else:
            params[param] = value
    if count == 0 and words or count == 1 and len(words) != 1 or count == -1 and not words:
        return None
    if positional is not None:
        params[positional] = words if count == -1 else words[0]
    return cmd, params


def run(argv: list[str]) -> int | None:
    """Run a read command line; its exit code, or None when typer should take it."""
    if os.environ.get("REGISTRY_TYPER_ONLY") or os.environ.get(COMPLETE_VAR):
        return None
    parsed = parse(argv)
    if parsed is None:
        return None
    cmd, p = parsed
    if cmd == "convert":
        return _convert(p)
    from . import reads

    if cmd != "ps":
        from ..catalog import use_plain

        use_plain()
    try:
        if cmd == "list":
            return reads.list_families(p["format"], p["quant"], p["engine"], p["ability"], p["min_context"],
                                       p["json_"])
        if cmd == "show":
            return reads.show(p["name"], p["artifacts"], p["node"], p["json_"])
        if cmd == "search":
            return reads.search(p["words"], p["json_"])
        if cmd == "resolve":
            return reads.resolve(p["name"], p["format"], p["quant"], p["size"], p["uploader"], p["json_"])
        if cmd == "fit":
            return reads.fits(p["name"], p["hardware"], p["context"], p["quant"], p["format"], p["json_"])
        return reads.deployments(p["all_"], p["node"], p["json_"], stdlib=True)
    except KeyboardInterrupt:
        return 130  # as typer: the exit code, no message
    except BrokenPipeError:  # as click: `registry list | head -1` is no error worth a traceback
        sys.stdout = _Quiet(sys.stdout)
        sys.stderr = _Quiet(sys.stderr)
        return 1


def _convert(p: dict) -> int | None:
    from ..naming import format_name

    if p["source"] is None or format_name(p["to"]) != "ggufv2":
        return None  # typer: its usage error for a missing --from, the compressed-tensors options
    from .converts import convert

    p = dict(p)
    return convert(p.pop("name"), p.pop("source"), **p)


class _Quiet:
    """A stream whose flush at exit does not complain of the closed pipe (click's PacifyFlushWrapper)."""

    def __init__(self, wrapped) -> None:
        self.wrapped = wrapped

    def flush(self) -> None:
        try:
            self.wrapped.flush()
        except BrokenPipeError:
            pass

    def __getattr__(self, attr: str):
        return getattr(self.wrapped, attr)
