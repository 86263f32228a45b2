"""The compiled catalog: the shipped spec files' parsed YAML, cached as JSON under the registry home.

Parsing YAML is most of a catalog load (PyYAML ~50 ms for the catalog, JSON under 1 ms). The cache holds
the parsed data, which a load through the models validates against the running schema, and beside it each
family as validated (its dump) with the schema's shape: the plain families of registry/plain.py, which the
CLI's read commands use without importing pydantic. Its key is the package version, the source of the
modules that define the schema, pydantic's version, and the name and bytes of every spec file: an edited,
added or removed spec, an edit of the schema or an upgrade is a miss, never a stale answer. A cache that
can't be read or written is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

FORMAT = 2  # the cache file's layout
# The modules whose code decides what a validated family is (its dump).
SCHEMA_MODULES = ("schema.py", "facts.py", "formats.py", "vocabulary.py", "spec_methods.py")


def _code() -> bytes:
    """The schema's source and pydantic's version file, as far as they can be read (a zip install: the
    package version alone tells releases apart)."""
    import importlib.util
    from pathlib import Path

    here = Path(__file__).parent
    out = []
    for name in SCHEMA_MODULES:
        try:
            out.append((here / name).read_bytes())
        except OSError:
            out.append(b"?")
    spec = importlib.util.find_spec("pydantic")
    try:
        out.append(Path(spec.origin).with_name("version.py").read_bytes() if spec and spec.origin else b"?")
    except OSError:
        out.append(b"?")
    return b"\0".join(out)


def key(version: str, texts: list[tuple[str, str]]) -> str:
    h = hashlib.sha256(f"glm-registry {version} {FORMAT}\0".encode())
    h.update(_code())
    for name, text in texts:
        data = text.encode("utf-8")
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _path(name: str = "catalog"):
    from . import paths

    return paths.home() / "cache" / f"{name}.json"


def _read(k: str, name: str = "catalog") -> dict[str, Any] | None:
    try:
        with open(_path(name), encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(d, dict) or d.get("key") != k or not isinstance(d.get("specs"), list):
        return None
    return d


def read(k: str) -> list[dict[str, Any]] | None:
    """The parsed specs stored under key k, or None (no cache, another key, unreadable)."""
    d = _read(k)
    return None if d is None else d["specs"]


def read_families(k: str, name: str = "catalog") -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The schema's shape and the validated families stored under key k, or None. name: the shipped catalog's
    file, or 'user' (the registered families, keyed by their rows)."""
    d = _read(k, name)
    if d is None or not isinstance(d.get("shape"), dict) or not isinstance(d.get("families"), list):
        return None
    if len(d["families"]) != len(d["specs"]):
        return None
    return d["shape"], d["families"]


def write(k: str, specs: list[dict[str, Any]], families: list[dict[str, Any]] | None = None,
          shape: dict[str, Any] | None = None, name: str = "catalog") -> None:
    """Store parsed specs under key k (and the validated families with the schema's shape), only if JSON keeps
    them exactly (YAML dates, say, it would not)."""
    tmp = None
    try:
        d: dict[str, Any] = {"key": k, "specs": specs}
        if families is not None and shape is not None:
            d.update(families=families, shape=shape)
        text = json.dumps(d, ensure_ascii=False, allow_nan=False)
        back = json.loads(text)
        if back["specs"] != specs or back.get("families") != d.get("families"):
            return
        p = _path(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, p)  # readers see the old file or the new one, never a part
    except (OSError, ValueError, TypeError):
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def parsed_yaml(name: str, text: str) -> Any:
    """A shipped data file (registry/data/NAME), parsed by PyYAML once and kept as JSON beside the catalog,
    keyed by its bytes and the package version: `show` and `fit` name machines from hardware.yaml on every
    run, and importing and running PyYAML cost more than the rest of those commands."""
    from .version import __version__

    k = hashlib.sha256(f"glm-registry {__version__} {FORMAT}\0{name}\0".encode() + text.encode("utf-8")).hexdigest()
    cache = "data-" + name.rsplit(".", 1)[0]
    d = _read(k, cache)
    if d is not None and len(d["specs"]) == 1:
        return d["specs"][0]
    import yaml

    data = yaml.safe_load(text)
    write(k, [data], name=cache)
    return data
