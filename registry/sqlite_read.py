"""Read the artifact rows of the default SQLite database with the standard library.

`registry launch` looks up the local build before it can hand the server its argv; through the
Store that look-up costs SQLAlchemy's import (~0.2 s, as long as the rest of the plan). This
module answers the same query with sqlite3 and returns rows with the Artifact model's fields.
Writes always go through registry.store; where the database is not the default SQLite file
(REGISTRY_DATABASE_URL, e.g. PostgreSQL) it answers None and callers use the Store.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from . import paths

COLUMNS = ("id", "family", "format", "quantization", "path", "sha256", "size_bytes", "parent", "recipe", "report",
           "created", "missing_since", "node")


@dataclass(frozen=True)
class ArtifactRow:
    """The fields of registry.store.Artifact (tests/test_store.py checks they stay the same)."""

    id: int
    family: str
    format: str
    quantization: str
    path: str
    sha256: str
    size_bytes: int
    parent: str | None
    recipe: dict[str, Any] | None
    report: dict[str, Any] | None
    created: datetime
    missing_since: datetime | None = None
    node: str = ""


def artifacts(family: str, format: str | None = None) -> list[ArtifactRow] | None:
    """The family's artifact rows (in this format, if given), oldest first, as Store().artifacts gives them;
    None when the database is not the default SQLite file or cannot be read this way."""
    import sqlite3

    if os.environ.get("REGISTRY_DATABASE_URL"):
        return None
    db = paths.home() / "registry.db"
    if not db.is_file():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
    except sqlite3.Error:
        return None
    try:
        where, args = ("family = ? AND format = ?", (family, format)) if format else ("family = ?", (family,))
        cur = con.execute(f"SELECT {', '.join(COLUMNS)} FROM artifact WHERE {where} ORDER BY id", args)
        rows = cur.fetchall()
    except sqlite3.Error:
        return None  # e.g. a database older than the artifact table: the Store creates it
    finally:
        con.close()
    return [_row(dict(zip(COLUMNS, r))) for r in rows]


def _row(d: dict) -> ArtifactRow:
    from .dbcheck import damaged_row

    k = "recipe"
    try:
        for k in ("recipe", "report"):
            d[k] = json.loads(d[k]) if d[k] is not None else None
        for k in ("created", "missing_since"):
            if d[k] is not None:
                t = d[k] if isinstance(d[k], datetime) else datetime.fromisoformat(d[k])
                d[k] = t if t.tzinfo else t.replace(tzinfo=timezone.utc)  # stored as UTC
    except (ValueError, TypeError):
        raise damaged_row("artifact", d["id"], k, d[k]) from None
    return ArtifactRow(**d)
