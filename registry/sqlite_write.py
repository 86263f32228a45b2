"""Record a build's artifact row with the standard library, where the Store would first import SQLAlchemy.

`registry convert` ends by recording what it built; through the Store that costs SQLAlchemy's and SQLModel's
import (~0.2 s, a tenth of converting a 700 MB checkpoint to GGUF). On the default SQLite file, when its
artifact table has this version's columns (registry/sqlite_read.py's COLUMNS), this module writes the row as
Store.add_artifact does: one BEGIN IMMEDIATE transaction (writers queue on the busy timeout), the row of the
same path (on this node, where the store is shared) updated in place so that its id stays, and the column
encodings the Store's types write (JSON text, 'null' for a JSON None; UTC times without a zone). Anywhere else
(another database, none yet, a table the Store has to migrate, a SQLite error) it answers None and the caller
records through the Store, which then says what is wrong. tests/test_store.py checks that the Store reads
these rows back as it reads its own.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

from . import paths
from .sqlite_read import COLUMNS


def add_artifact(family: str, format: str, quantization: str, path: str, sha256: str, size_bytes: int,
                 parent: str | None = None, recipe: dict | None = None, report: dict | None = None) -> int | None:
    """The row's id once written, or None where the Store has to write it."""
    import sqlite3

    if os.environ.get("REGISTRY_DATABASE_URL"):
        return None
    db = paths.home() / "registry.db"
    if not db.exists():
        return None  # the Store creates it, with its schema and its file mode
    from .dbcheck import check_sqlite

    check_sqlite(db)  # what the Store checks first: a damaged or foreign file is the same one-line error
    node, single = paths.node(), paths.single_machine()
    row: dict[str, Any] = {
        "family": family, "format": format, "quantization": quantization, "path": str(path), "sha256": sha256,
        "size_bytes": int(size_bytes), "parent": parent,
        "recipe": json.dumps(recipe), "report": json.dumps(report),
        # SQLAlchemy's SQLite DateTime: 'YYYY-MM-DD HH:MM:SS.ffffff', the zone dropped (the Store's times are UTC)
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "missing_since": None, "node": node,
    }
    try:
        con = sqlite3.connect(str(db), timeout=60, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        con.execute("PRAGMA busy_timeout = 60000")
        con.execute("PRAGMA synchronous = NORMAL")
        if {r[1] for r in con.execute("PRAGMA table_info(artifact)")} != set(COLUMNS):
            return None  # no table yet, or one of an older version: the Store migrates it
        con.execute("BEGIN IMMEDIATE")
        try:
            where, args = ("path = ?", (row["path"],)) if single else ("path = ? AND node = ?", (row["path"], node))
            old = con.execute(f"SELECT id FROM artifact WHERE {where}", args).fetchone()
            names = list(row)
            if old is not None:
                con.execute(f"UPDATE artifact SET {', '.join(f'{k} = ?' for k in names)} WHERE id = ?",
                            (*row.values(), old[0]))
                row_id = old[0]
            else:
                cur = con.execute(f"INSERT INTO artifact ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                                  tuple(row.values()))
                row_id = cur.lastrowid
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return int(row_id)
    except sqlite3.Error:
        return None  # nothing was written (rolled back): the Store tries, and names what is wrong
    finally:
        con.close()
