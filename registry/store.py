"""The one database of things that change: user families, local artifacts, deployments, nodes.

SQLite in the user's data dir by default (WAL, busy timeout, writers serialised with
BEGIN IMMEDIATE so concurrent processes queue instead of failing); PostgreSQL when
REGISTRY_DATABASE_URL says so, which several machines may share: every artifact and deployment
row records the node (machine) that wrote it, and each node acts only on its own rows.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Text, UniqueConstraint, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Field, Session, SQLModel, create_engine, select

from . import paths, redact
from .dbcheck import damaged_row
from .errors import NotFoundError, StoreError


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UserFamily(SQLModel, table=True):
    __tablename__ = "user_family"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    body: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    source_path: str | None = None
    registered_at: datetime = Field(default_factory=utcnow)


class Artifact(SQLModel, table=True):
    __tablename__ = "artifact"
    # one machine's path: two machines of a team may each keep a build at the same path
    __table_args__ = (UniqueConstraint("node", "path", name="artifact_node_path_key"),)
    id: int | None = Field(default=None, primary_key=True)
    family: str = Field(index=True)
    format: str
    quantization: str
    path: str = Field(sa_column=Column(Text, nullable=False))
    sha256: str
    size_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    parent: str | None = None
    recipe: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    report: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created: datetime = Field(default_factory=utcnow)
    # set by `registry verify` when the file is not there: the row keeps its recipe and provenance
    missing_since: datetime | None = None
    node: str = Field(sa_column=Column(Text, nullable=False))  # the machine whose disk holds `path`


class Deployment(SQLModel, table=True):
    __tablename__ = "deployment"
    id: int | None = Field(default=None, primary_key=True)
    family: str = Field(index=True)
    format: str
    quantization: str
    engine: str
    argv: list[str] = Field(sa_column=Column(JSON, nullable=False))
    env: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    host: str = "127.0.0.1"
    port: int
    pid: int | None = None
    status: str = "starting"  # starting | running | failed | stopped
    log_path: str | None = None
    artifact_id: int | None = Field(default=None, foreign_key="artifact.id")
    started: datetime = Field(default_factory=utcnow)
    stopped: datetime | None = None
    # the process as it was at spawn ({"start": /proc start time, "cmdline": [...]}): a reused pid is not ours
    process: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    node: str = Field(sa_column=Column(Text, nullable=False))  # the machine the process runs on
    # when its node last found the process alive (its `ps`, or its `registry serve` every few seconds)
    seen: datetime | None = None
    # `registry launch ... -- ARGS`: the extra engine arguments (secrets redacted), also in argv
    extra_args: list[str] | None = Field(default=None, sa_column=Column(JSON))


class Node(SQLModel, table=True):
    """A machine sharing this store; `registry serve` registers its URL and heart-beats (registry/nodes.py)."""

    __tablename__ = "node"
    name: str = Field(primary_key=True)
    url: str | None = None  # where other nodes reach its serve; None while none runs
    heartbeat: datetime | None = None
    version: str | None = None


_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # let the 'begin' hook below issue BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 60000")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Take the write lock up front: a deferred transaction that later upgrades to a
        # writer fails with 'database is locked' instead of waiting on busy_timeout.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(url: str | None = None) -> Engine:
    url = url or paths.database_url()
    with _lock:
        if url in _engines:
            return _engines[url]
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            from pathlib import Path

            from .dbcheck import check_sqlite

            db = Path(url[len("sqlite:///"):])
            check_sqlite(db)  # a damaged or foreign file: one line, left untouched
            _private(db)
        if url.startswith("postgresql://"):
            url_driver = "postgresql+psycopg://" + url[len("postgresql://"):]
        else:
            url_driver = url
        try:
            engine = create_engine(url_driver, pool_pre_ping=not url.startswith("sqlite"))
        except Exception as e:  # bad URL or missing driver
            raise StoreError(redact.url(  # the parser's message may quote the URL too
                f"cannot open database {url!r}: {e}; for PostgreSQL install the 'postgres' extra")) from None
        if engine.dialect.name == "sqlite":
            _sqlite_setup(engine)
        try:
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    # Several processes may create the schema at once; serialise them.
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7240931)")
                SQLModel.metadata.create_all(conn)
                _add_columns(conn)
        except OperationalError as e:
            raise StoreError(redact.url(f"cannot open database {url!r}: {e.orig}")) from None
        _engines[url] = engine
        return engine


def _private(db) -> None:
    """The database file readable by its owner only (0600), made so before SQLite opens it: SQLite gives
    its -wal and -shm files the main file's mode, and deployments' rows say what runs where."""
    import os

    try:
        if db.exists():
            if db.stat().st_mode & 0o077 and db.stat().st_uid == os.getuid():
                os.chmod(db, 0o600)
                for extra in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                    if extra.exists():
                        os.chmod(extra, 0o600)
        else:
            db.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError:
        pass  # a read-only place: SQLite says what is wrong when it opens the file


# Columns added after their table was first released: create_all makes missing tables only, so a
# database written by an earlier version gets them here (NULL in old rows, but `node`: the rows of a
# store written before nodes existed belong to the machine that opens it first with this version).
_ADDED_COLUMNS = (("artifact", "missing_since"), ("deployment", "process"), ("artifact", "node"), ("deployment", "node"),
                  ("deployment", "seen"), ("deployment", "extra_args"))


def _add_columns(conn: Any) -> None:
    from sqlalchemy import inspect

    insp = inspect(conn)
    pg = conn.dialect.name == "postgresql"
    for table, column in _ADDED_COLUMNS:
        have = {c["name"] for c in insp.get_columns(table)}
        if column in have or not {"id", "family", "format"} <= have:  # present, or not our table
            continue
        if column == "node":
            # NOT NULL needs a default for the rows already there: this node (a checked name, safe to quote)
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN node TEXT NOT NULL DEFAULT '{paths.node()}'")
            if pg:  # new rows always name their node; SQLite cannot drop a default, and never needs it
                conn.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN node DROP DEFAULT")
            if table == "artifact" and pg:
                _path_unique_per_node(conn, insp)
        else:  # the type create_all would give it in this dialect
            sql_type = SQLModel.metadata.tables[table].c[column].type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")


def damaged(session: Any, model: Any) -> StoreError | None:
    """The first row of `model`'s table whose stored JSON or date does not load, as an error naming the row,
    the column and the way out; None when every row loads. Read back one row, then one column, at a time
    through the same ORM reading that failed (only after a query failed)."""
    for row_id in session.exec(select(model.id).order_by(model.id)).all():
        try:
            session.exec(select(model).where(model.id == row_id)).all()
            continue
        except (ValueError, TypeError, AttributeError):
            pass
        for col in model.__table__.columns:
            try:
                session.exec(select(getattr(model, col.name)).where(model.id == row_id)).all()
            except (ValueError, TypeError, AttributeError):
                from sqlalchemy import text

                raw = session.connection().execute(text(f"SELECT {col.name} FROM {model.__tablename__} WHERE id = :i"),
                                                   {"i": row_id}).scalar()
                return damaged_row(model.__tablename__, row_id, col.name, raw)
    return None


def _load(session: Any, query: Any, model: Any) -> list:
    try:
        return list(session.exec(query))
    except (ValueError, TypeError, AttributeError) as e:  # JSON that does not parse, a date that is not one
        raise (damaged(session, model) or StoreError(f"cannot read table {model.__tablename__}: {e}")) from None


def _path_unique_per_node(conn: Any, insp: Any) -> None:
    """An earlier version made artifact.path unique across the store; shared by several machines it is
    unique per node. (A SQLite store keeps its old constraint: SQLite cannot drop it, and one machine
    writes it.)"""
    for uc in insp.get_unique_constraints("artifact"):
        if uc["column_names"] == ["path"]:
            conn.exec_driver_sql(f'ALTER TABLE artifact DROP CONSTRAINT "{uc["name"]}"')
    conn.exec_driver_sql("ALTER TABLE artifact ADD CONSTRAINT artifact_node_path_key UNIQUE (node, path)")


class Store:
    """Typed operations on the state database. Each method is one transaction."""

    def __init__(self, url: str | None = None):
        self.node = paths.node()  # a bad REGISTRY_NODE is refused before anything is written
        self.single = paths.single_machine(url)  # every row is this machine's (paths.owns)
        self.engine = get_engine(url)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # -- user families --

    def register_family(self, name: str, body: dict[str, Any], source_path: str | None = None,
                        replace: bool = False) -> UserFamily:
        row = UserFamily(name=name, body=body, source_path=source_path)
        with self.session() as s:
            old = s.exec(select(UserFamily).where(UserFamily.name == name)).first()
            if old is not None and replace:  # in one transaction: no moment without the family
                old.body, old.source_path, old.registered_at = body, source_path, utcnow()
                s.add(old)
                s.commit()
                s.refresh(old)
                return old
            if old is not None:
                raise StoreError(
                    f"family {name!r} is already registered; `registry register --replace FILE` replaces it"
                )
            s.add(row)
            try:
                s.commit()
            except IntegrityError:
                raise StoreError(f"family {name!r} is already registered") from None
            return row

    def unregister_family(self, name: str) -> None:
        with self.session() as s:
            row = s.exec(select(UserFamily).where(UserFamily.name == name)).first()
            if row is None:
                names = [r.name for r in s.exec(select(UserFamily))]
                from .errors import not_found

                raise not_found("user family", name, names, "only families added with `registry register` can be removed")
            s.delete(row)
            s.commit()

    def user_families(self) -> list[UserFamily]:
        with self.session() as s:
            return list(s.exec(select(UserFamily).order_by(UserFamily.name)))

    # -- artifacts --

    def add_artifact(self, **fields: Any) -> Artifact:
        row = Artifact(**{"node": self.node, **fields})
        with self.session() as s:
            q = select(Artifact).where(Artifact.path == row.path)
            old = s.exec(q if self.single else q.where(Artifact.node == row.node)).first()
            if old is not None:
                # re-recording the same file replaces its facts in place: the id stays, so the
                # deployments that served the earlier build still point at a row
                for k, v in row.model_dump(exclude={"id"}).items():
                    setattr(old, k, v)
                row = old
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def artifacts(self, family: str | None = None, format: str | None = None, quantization: str | None = None,
                  node: str | None = None) -> list[Artifact]:
        """Every node's rows, or one node's."""
        with self.session() as s:
            q = select(Artifact)
            if node:
                q = q.where(Artifact.node == node)
            if family:
                q = q.where(Artifact.family == family)
            if format:
                q = q.where(Artifact.format == format)
            if quantization:
                q = q.where(Artifact.quantization == quantization)
            return _load(s, q.order_by(Artifact.id), Artifact)

    def artifact_at(self, path: str) -> Artifact | None:
        """The row recording the file or folder at `path` on this machine, if any."""
        with self.session() as s:
            q = select(Artifact).where(Artifact.path == str(path))
            rows = _load(s, q if self.single else q.where(Artifact.node == self.node), Artifact)
            return rows[0] if rows else None

    def artifact_heads(self) -> dict[int, tuple[str, str, str]]:
        """id -> (path, node, family) of every artifact row, read without the columns that may be damaged
        (so that `registry rm ID` can remove a row whose recipe or dates no longer load)."""
        with self.session() as s:
            return {i: (p, n, f) for i, p, n, f in s.exec(select(Artifact.id, Artifact.path, Artifact.node,
                                                                  Artifact.family))}

    def mark_artifact_missing(self, artifact_id: int, missing: bool = True) -> Artifact:
        """Flag (or clear) a row whose file is not there; its recipe and provenance stay."""
        with self.session() as s:
            row = s.get(Artifact, artifact_id)
            if row is None:
                raise NotFoundError(f"no artifact with id {artifact_id}")
            row.missing_since = (row.missing_since or utcnow()) if missing else None
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def remove_artifact(self, artifact_id: int) -> None:
        with self.session() as s:
            row = s.get(Artifact, artifact_id)
            if row is None:
                raise NotFoundError(f"no artifact with id {artifact_id}")
            s.delete(row)
            s.commit()

    def remove_artifacts(self, ids: list[int]) -> None:
        """Delete these rows in one transaction; deployments that served them keep their history, unlinked."""
        from sqlalchemy import delete, update

        # statements, not loaded rows: a row whose stored JSON is damaged is removed like any other
        with self.session() as s:
            s.execute(update(Deployment).where(Deployment.artifact_id.in_(ids)).values(artifact_id=None))  # type: ignore
            s.execute(delete(Artifact).where(Artifact.id.in_(ids)))  # type: ignore[union-attr]
            s.commit()

    # -- deployments --

    def add_deployment(self, **fields: Any) -> Deployment:
        row = Deployment(**{"node": self.node, **fields})
        with self.session() as s:
            s.add(row)
            s.commit()
            return row

    def update_deployment(self, dep_id: int, **fields: Any) -> Deployment:
        with self.session() as s:
            row = s.get(Deployment, dep_id)
            if row is None:
                raise NotFoundError(f"no deployment with id {dep_id}")
            for k, v in fields.items():
                setattr(row, k, v)
            s.add(row)
            s.commit()
            return row

    def deployments(self, status: str | None = None, family: str | None = None,
                    node: str | None = None) -> list[Deployment]:
        """Every node's rows, or one node's."""
        with self.session() as s:
            q = select(Deployment)
            if node:
                q = q.where(Deployment.node == node)
            if status:
                q = q.where(Deployment.status == status)
            if family:
                q = q.where(Deployment.family == family)
            return _load(s, q.order_by(Deployment.id), Deployment)

    def mark_exited(self, dep_id: int, when: datetime) -> Deployment:
        """A deployment whose process is gone, found by `ps` or a serve's check: 'exited', but only if the row is
        still starting or running when written (the check and the write one statement). A `registry stop` that
        wrote 'stopped' between that reader's look and its write keeps its word. The row as it is now."""
        from sqlalchemy import update

        with self.engine.begin() as conn:
            conn.execute(update(Deployment).where(Deployment.id == dep_id,  # type: ignore[arg-type]
                                                  Deployment.status.in_(("starting", "running")))  # type: ignore[union-attr]
                         .values(status="exited", stopped=when))
        with self.session() as s:
            row = s.get(Deployment, dep_id)
            if row is None:
                raise NotFoundError(f"no deployment with id {dep_id}")
            return row

    def mark_seen(self, ids: list[int]) -> None:
        """This node found these deployments' processes alive just now (one transaction)."""
        if not ids:
            return
        from sqlalchemy import update

        with self.engine.begin() as conn:
            conn.execute(update(Deployment).where(Deployment.id.in_(ids)).values(seen=utcnow()))  # type: ignore[union-attr]

    # -- nodes --

    def heartbeat(self, url: str | None, version: str | None) -> Node:
        """Register this node (or refresh it): its serve URL (None: none runs) and the time."""
        with self.session() as s:
            row = s.get(Node, self.node)
            if row is None:
                row = Node(name=self.node)
            row.url, row.version, row.heartbeat = url, version, utcnow()
            s.add(row)
            try:
                s.commit()
            except IntegrityError:  # two processes of this node registered it at once: the other won
                s.rollback()
                return self.heartbeat(url, version)
            return row

    def nodes(self) -> list[Node]:
        with self.session() as s:
            return list(s.exec(select(Node).order_by(Node.name)))
