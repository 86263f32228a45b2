"""registry/sqlite_read.py's queries on a PostgreSQL store (REGISTRY_DATABASE_URL=postgresql://...), with psycopg
alone: `registry ps`, `list` and a launch's build look-up on a shared store cost SQLAlchemy and SQLModel's import
and engine set-up through the Store (~0.3 s of a 0.45 s `ps`), psycopg's import ~0.1 s.

The JSON columns come back as their text and the times as PostgreSQL gives them (naive UTC), so sqlite_read
turns both into the Store's values as it does SQLite's. A server that cannot be reached (or refuses the login) is
the Store's one-line error, at once; anything else this cannot read (another URL form, a table the Store has not
created or migrated yet) answers None and the caller uses the Store, which migrates.
"""

from __future__ import annotations

import os


def url() -> str | None:
    """The PostgreSQL URL this module reads, or None (no REGISTRY_DATABASE_URL, or another database)."""
    u = os.environ.get("REGISTRY_DATABASE_URL") or ""
    return u if u.startswith("postgresql://") else None  # what the Store hands psycopg (registry/store.py)


def select(sql: str, args: tuple = ()) -> list[tuple] | None:
    """The rows of one query written with sqlite3's `?` placeholders; None where the store cannot be read here."""
    u = url()
    if u is None:
        return None
    try:
        import psycopg
        from psycopg.types.string import TextLoader
    except ImportError:  # no 'postgres' extra: the Store says what to install
        return None
    try:
        con = psycopg.connect(u, autocommit=True)
    except psycopg.OperationalError as e:  # the Store's error (registry/store.py), without a second wait for it
        from . import redact
        from .errors import StoreError

        raise StoreError(redact.url(f"cannot open database {u!r}: {e}")) from None
    except psycopg.Error:
        return None
    try:
        with con:
            for t in ("json", "jsonb"):  # the text, as SQLite stores it: sqlite_read parses it the same way
                con.adapters.register_loader(t, TextLoader)
            return con.execute(sql.replace("?", "%s"), args).fetchall()
    except psycopg.Error:
        return None
