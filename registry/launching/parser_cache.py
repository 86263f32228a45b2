"""What the engines' argument parsers answered, kept under the registry home: people repeat the same
`registry launch TAG -- ARGS`, and building vLLM's or SGLang's parser imports the engine (seconds each time).

Two answers are kept for an installation: its option table (every option string, the parser's name for it,
whether it takes a value, whether it is deprecated: registry/engines/_argcheck.table), from which the options
of any argv are named, so that an option the engine does not know, or one the registry or the planned command
sets, is refused without starting the engine; and the verdict ({"ok", "error"}) of the full parse of each
exact argv, the latest MAX_VERDICTS of them.

The key holds everything those answers depend on, so that a kept answer is never stale: the interpreter (as
given and resolved), the engine distribution's identity (registry/engines/_probe.identity: its version, its
.dist-info folder and that folder's and its parent's modification times, so an install or upgrade of anything
beside it too, and its RECORD's hash), the source of the registry's code that builds and asks the parsers, and
the environment variables the engine reads for its defaults (a verdict's own key adds those named like one of
the parser's options: pydantic settings read them). API keys in the words or the environment are left out of
the keys (to a parser a key is free text), and a verdict whose message quotes one is not kept. An
installation without an identity (an editable one) is not kept. One file per engine and interpreter: another
key is a miss, and the file is rewritten. Writes go aside, then are renamed into place; a file that can't be
read, or is damaged, is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

FORMAT = 1  # the file's layout
MAX_VERDICTS = 256
# The environment variables each engine reads for its defaults, by prefix, and those that choose the devices
# its platform checks see.
ENV_PREFIXES = {"vllm": ("VLLM_",), "sglang": ("SGLANG_", "SGL_"), "llama.cpp": ("LLAMA_",)}
DEVICE_ENV = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")
# The registry's modules whose code decides the answers (how the parsers are built, asked and read).
CODE = (("launching", "extra_args.py"), ("launching", "parser_cache.py"), ("engines", "_argcheck.py"))


def key(engine: str, python: str, identity: str | None) -> str | None:
    """The key of `engine`'s answers from the installation run by `python`; None: not to be kept."""
    if not identity:
        return None
    from .. import paths

    h = hashlib.sha256(f"{FORMAT}\0{engine}\0{python}\0{os.path.realpath(python)}\0{identity}\0".encode())
    for parts in CODE:
        try:
            h.update(paths.resource(*parts).read_bytes())
        except OSError:
            return None
    h.update(_env(lambda k: k.startswith(ENV_PREFIXES[engine]) or k in DEVICE_ENV))
    return h.hexdigest()


def _env(chosen) -> bytes:
    """The chosen environment variables, a credential's value left out (redact.env): to the parsers a key is
    free text, whatever it is."""
    from .. import redact

    return json.dumps(sorted(redact.env({k: v for k, v in os.environ.items() if chosen(k)}).items())).encode()


def verdict_key(args: list[str], table: dict[str, Any]) -> str:
    """The key of the full parse of `args` under a table: the words, and the environment variables named as
    one of the parser's options (in any case), which settings classes read for what the words leave out. An
    API key's value is left out (redact.argv): only whether it reads as an option can change the verdict."""
    from .. import redact

    words = [w if w == a else w + ("-" if a.startswith("-") else "") for w, a in zip(redact.argv(args), args)]
    names = {o["dest"].lower() for o in table.values() if isinstance(o, dict) and isinstance(o.get("dest"), str)}
    h = hashlib.sha256(json.dumps(words).encode())
    h.update(_env(lambda k: k.lower() in names))
    return h.hexdigest()


def keepable(args: list[str], error: str) -> bool:
    """A verdict may be kept: its message quotes none of the API keys in `args` (secrets are never stored)."""
    from .. import redact

    return not any(a != w and a in error for w, a in zip(redact.argv(args), args))


def path(engine: str, python: str) -> Path:
    """The file of `engine`'s answers from the installation run by `python`."""
    from .. import paths

    tag = hashlib.sha256(python.encode()).hexdigest()[:16]
    return paths.home() / "cache" / f"parser-{engine.replace('.', '')}-{tag}.json"


def read(engine: str, python: str, k: str) -> dict[str, Any]:
    """{"table": the option table or None, "verdicts": {verdict key: {"ok", "error"}}} kept under key k; empty
    where there is none (no file, another key, a damaged file)."""
    empty: dict[str, Any] = {"table": None, "verdicts": {}}
    try:
        with open(path(engine, python), encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError):
        return empty
    if not isinstance(d, dict) or d.get("key") != k:
        return empty
    table, verdicts = d.get("table"), d.get("verdicts")
    if not (table is None or (isinstance(table, dict) and all(isinstance(o, dict) and isinstance(o.get("dest"), str)
                                                               for o in table.values()))):
        return empty
    if not isinstance(verdicts, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("ok"), bool) and isinstance(v.get("error"), str)
            for v in verdicts.values()):
        return empty
    return {"table": table, "verdicts": verdicts}


def write(engine: str, python: str, k: str, data: dict[str, Any]) -> None:
    """Keep `data` (read()'s shape) under key k, with the latest MAX_VERDICTS verdicts; a cache that can't be
    written is left as it was."""
    verdicts = dict(list(data["verdicts"].items())[-MAX_VERDICTS:])
    p = path(engine, python)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"key": k, "table": data["table"], "verdicts": verdicts}, f)
        os.replace(tmp, p)  # readers see the old file or the new one, never a part
    except (OSError, ValueError, TypeError):
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
