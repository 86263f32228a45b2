"""The compiled catalog: the shipped spec files' parsed YAML, cached as JSON under the registry home.

Parsing YAML is most of a catalog load (PyYAML ~50 ms for the catalog, JSON under 1 ms); the cache
holds parsed data only, so every load still validates against the running schema. Its key is the
package version and the name and bytes of every spec file: an edited, added or removed spec, or an
upgrade, is a miss, never a stale answer. A cache that can't be read or written is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

FORMAT = 1  # the cache file's layout


def key(version: str, texts: list[tuple[str, str]]) -> str:
    h = hashlib.sha256(f"glm-registry {version} {FORMAT}\0".encode())
    for name, text in texts:
        data = text.encode("utf-8")
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _path():
    from . import paths

    return paths.home() / "cache" / "catalog.json"


def read(k: str) -> list[dict[str, Any]] | None:
    """The parsed specs stored under key k, or None (no cache, another key, unreadable)."""
    try:
        with open(_path(), encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(d, dict) or d.get("key") != k or not isinstance(d.get("specs"), list):
        return None
    return d["specs"]


def write(k: str, specs: list[dict[str, Any]]) -> None:
    """Store parsed specs under key k, only if JSON keeps them exactly (YAML dates, say, it would not)."""
    tmp = None
    try:
        text = json.dumps({"key": k, "specs": specs}, ensure_ascii=False, allow_nan=False)
        if json.loads(text)["specs"] != specs:
            return
        p = _path()
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
