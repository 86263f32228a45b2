"""Before SQLAlchemy touches a SQLite state database: is it one, undamaged, and the registry's?

Opened read-only with the standard library, so a file that fails is left exactly as it was
(SQLAlchemy would set WAL mode and create the registry's tables in another program's database,
or print 150 lines of traceback for a damaged one). Every refusal names the file and what to do.
"""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from . import paths
from .errors import StoreError

HEADER = b"SQLite format 3\x00"
# The columns every released version of each table has: a table of that name without them is not
# ours. Columns added later are left to the store's own upgrade step.
CORE = {
    "user_family": {"id", "name", "body"},
    "artifact": {"id", "family", "format", "quantization", "path", "sha256"},
    "deployment": {"id", "family", "engine", "argv", "port"},
}


_TODO = ("it was not changed: move it aside (the registry then starts a new one there) or point "
         "REGISTRY_HOME or REGISTRY_DATABASE_URL elsewhere")


def check_sqlite(path: Path, tables: dict[str, set[str]] = CORE) -> None:
    """StoreError unless `path` is absent, empty, or a sound SQLite file holding only (some of) `tables`
    (name -> the columns the registry needs) or tables besides them."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    except OSError as e:
        raise StoreError(f"cannot open database {path}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise StoreError(f"database {path} is a directory, not a SQLite file; {_TODO}")
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"database {path} is not a regular file; {_TODO}")
    if st.st_size == 0:
        return  # SQLite's own empty database: the registry creates its tables
    try:
        with open(path, "rb") as f:
            head = f.read(len(HEADER))
    except OSError as e:
        raise StoreError(f"cannot read database {path}: {e.strerror}") from None
    if head != HEADER:
        raise StoreError(f"database {path} is not a SQLite database (its first bytes are {head[:8]!r}); {_TODO}")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    except sqlite3.Error as e:
        raise StoreError(f"cannot open database {path}: {e}") from None
    try:
        verdict = [r[0] for r in con.execute("PRAGMA quick_check(3)")]
        if verdict != ["ok"]:
            raise StoreError(f"database {path} is damaged ({'; '.join(map(str, verdict))[:200]}); "
                             f"restore it from a backup or {_TODO.split(': ', 1)[1]}")
        found = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        ours = found & set(tables)
        others = sorted(t for t in found - set(tables) if not t.startswith("sqlite_"))
        if others and not ours:
            raise StoreError(f"database {path} belongs to another program (tables {', '.join(others[:5])}), "
                             f"not glm-registry; {_TODO}")
        for t in sorted(ours):
            cols = {r[1] for r in con.execute(f'PRAGMA table_info("{t}")')}
            missing = sorted(tables[t] - cols)
            if missing:
                raise StoreError(f"database {path}: table {t} lacks column{'s' if len(missing) > 1 else ''} "
                                 f"{', '.join(missing)}, so it is another program's or another version's; {_TODO}")
    except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed"
        raise StoreError(f"database {path} is damaged or not a SQLite database ({e}); {_TODO}") from None
    finally:
        con.close()


def damaged_row(table: str, row_id, column: str, value) -> StoreError:
    """A stored row whose JSON or date does not load: which row, which column, and how to be rid of it."""
    kind = {"artifact": "artifact", "deployment": "deployment", "user_family": "user family"}.get(table, table)
    if table == "artifact":
        fix = f"remove the row with `registry rm {row_id}` (it asks first)"
    else:
        url = paths.database_url()
        db = url[len("sqlite:///"):] if url.startswith("sqlite:///") else "the database"
        fix = f"delete it: sqlite3 {db} 'DELETE FROM {table} WHERE id={row_id}'"
    return StoreError(f"{kind} row {row_id} has damaged stored data ({column} = {str(value)[:40]!r} does not load); "
                      f"{fix}")
