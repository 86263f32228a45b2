"""Read rows of the default SQLite database with the standard library: artifacts, user families, deployments.

`registry launch` looks up the local build before it can hand the server its argv, and `registry list` and
`ps` read the registered families and the deployments; through the Store each costs SQLAlchemy's import
(~0.2 s, more than the rest of the command). This module answers the same queries with sqlite3 and returns
rows with the models' fields. A PostgreSQL store (REGISTRY_DATABASE_URL=postgresql://...) is read the same
way with psycopg alone (registry/pg_read.py). Writes always go through registry.store; where the database is
another, or a table cannot be read this way (an older database the Store migrates), it answers None and
callers use the Store.
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


def _select(sql: str, args: tuple = ()) -> list[tuple] | None:
    """The rows of one query on the default SQLite file, read-only (or on the PostgreSQL store: pg_read); [] where
    there is no database yet, None where the database is another or the query fails (e.g. a table older than a
    column: the Store migrates); a file that is no sound registry database is the Store's error (dbcheck.py)."""
    import sqlite3

    if os.environ.get("REGISTRY_DATABASE_URL"):
        from .pg_read import select

        return select(sql, args)
    from .dbcheck import check_sqlite

    db = paths.home() / "registry.db"
    if not db.exists():
        return []
    check_sqlite(db)  # what the Store checks first: a damaged or foreign file is the same one-line error
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
    except sqlite3.Error:
        return None
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.Error:
        return None
    finally:
        con.close()


def artifacts(family: str, format: str | None = None) -> list[ArtifactRow] | None:
    """The family's artifact rows (in this format, if given), oldest first, as Store().artifacts gives them;
    None when the database is not the default SQLite file or cannot be read this way."""
    where, args = ("family = ? AND format = ?", (family, format)) if format else ("family = ?", (family,))
    rows = _select(f"SELECT {', '.join(COLUMNS)} FROM artifact WHERE {where} ORDER BY id", args)
    return None if rows is None else [_row(dict(zip(COLUMNS, r))) for r in rows]


def user_families() -> list[tuple[str, str, str | None]] | None:
    """(name, body as stored (JSON text), source path) of every registered family, by name, as
    Store().user_families gives them; None as above."""
    return _select("SELECT name, body, source_path FROM user_family ORDER BY name")


DEPLOYMENT_COLUMNS = ("id", "family", "format", "quantization", "engine", "argv", "env", "host", "port", "pid",
                      "status", "log_path", "artifact_id", "started", "stopped", "process", "node", "seen",
                      "extra_args")


@dataclass(frozen=True)
class DeploymentRow:
    """The fields of registry.store.Deployment, in its order (tests/test_store.py checks they stay the same)."""

    id: int
    family: str
    format: str
    quantization: str
    engine: str
    argv: list[str]
    env: dict[str, str]
    host: str
    port: int
    pid: int | None
    status: str
    log_path: str | None
    artifact_id: int | None
    started: datetime
    stopped: datetime | None
    process: dict[str, Any] | None
    node: str
    seen: datetime | None
    extra_args: list[str] | None

    def model_dump(self, mode: str = "json") -> dict[str, Any]:
        """As the model's model_dump(mode="json"): the times (UTC) in ISO form, as pydantic writes them."""
        if mode != "json":
            raise TypeError("a deployment row gives only model_dump(mode='json')")
        d = {k: getattr(self, k) for k in DEPLOYMENT_COLUMNS}
        for k in ("started", "stopped", "seen"):
            if d[k] is not None:
                d[k] = d[k].isoformat().removesuffix("+00:00") + "Z"
        return d


def deployments(node: str | None = None) -> list[DeploymentRow] | None:
    """Every node's deployment rows (or one node's), by id, as Store().deployments gives them; None as above,
    and where a row does not read back as the Store would read it (it says what is wrong)."""
    where, args = ("WHERE node = ? ", (node,)) if node else ("", ())
    rows = _select(f"SELECT {', '.join(DEPLOYMENT_COLUMNS)} FROM deployment {where}ORDER BY id", args)
    if rows is None:
        return None
    out = []
    for r in rows:
        d = dict(zip(DEPLOYMENT_COLUMNS, r))
        try:
            for k in ("argv", "env", "process", "extra_args"):
                d[k] = json.loads(d[k]) if d[k] is not None else None
            for k in ("started", "stopped", "seen"):
                if d[k] is not None:  # the Store's times are UTC: stored without a zone, given back with it
                    t = d[k] if isinstance(d[k], datetime) else datetime.fromisoformat(d[k])  # PostgreSQL's, SQLite's
                    d[k] = t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)
        except (ValueError, TypeError):
            return None
        if not isinstance(d["argv"], list) or not isinstance(d["env"], dict) or d["started"] is None:
            return None
        out.append(DeploymentRow(**d))
    return out


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
