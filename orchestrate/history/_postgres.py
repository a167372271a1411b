"""The history in a PostgreSQL database, shared by many processes and machines (psycopg 3).

    PostgresStore       an SQLStore: connects, applies the migrations (:mod:`._schema`) in
                        the PostgreSQL dialect under an advisory lock, describes errors
                        without the URL's password

What is PostgreSQL here: the driver, the connection (autocommit; one for reads and one
for the writer thread), the advisory lock that makes concurrent first starts safe, and
the schema the URL's `search_path` selects. The queries, the writer thread and the schema
are shared with SQLite (:mod:`._sql`). psycopg is an optional extra, imported only here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from orchestrate._errors import StoreError
from orchestrate._secrets import redact_url, redact_values
from orchestrate.history._schema import MIGRATIONS_TABLE, POSTGRESQL, pending
from orchestrate.history._sql import Connection, SQLStore

INSTALL_HINT = "pip install 'orchestrate[postgres]'"
HINT = (
    "check the URL (--db or ORCHESTRATE_DATABASE_URL) and that the server is up, or run "
    "with --no-history"
)
CONNECT_TIMEOUT_S = 10
# The advisory lock's first key: ours ("ORCH"); the second is the schema's, so that
# histories in two schemas of one database migrate independently.
LOCK_KEY = 0x4F524348


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "a postgresql:// history needs the psycopg driver, which is not installed",
            hint=INSTALL_HINT,
        ) from None
    return psycopg


def password_of(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


class PostgresStore(SQLStore):
    """The history in a PostgreSQL database, opened (and created or migrated) by :meth:`open`."""

    hint = HINT

    def __init__(self, url: str, db: Connection | None = None, secrets: Sequence[str] = ()) -> None:
        self.url = url
        self.errors = (_psycopg().Error,)
        super().__init__(db or self.connect(), redact_url(url), secrets)

    @classmethod
    def open(cls, url: str, *, secrets: Sequence[str] = ()) -> PostgresStore:
        """Connect and migrate; StoreError (without the password) when the database cannot
        be reached, refuses us, or was made by a newer orchestrate."""
        errors = (_psycopg().Error,)
        try:
            store = cls(url, secrets=secrets)
        except errors as exc:
            raise StoreError(
                f"cannot connect to the run history {redact_url(url)}: {describe(url, exc)}",
                hint=HINT,
            ) from None
        try:
            _migrate(store.db, store.location)
        except errors as exc:
            store.db.close()
            raise store.failure(exc) from None
        except BaseException:
            store.db.close()
            raise
        return store

    def connect(self) -> Connection:
        psycopg = _psycopg()
        from psycopg.rows import dict_row

        try:
            raw = psycopg.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="orchestrate",
            )
        except psycopg.ProgrammingError as exc:  # not a URL libpq can read
            raise psycopg.OperationalError(f"invalid database URL ({exc})") from None
        return Connection(raw, paramstyle="format")

    def describe(self, exc: BaseException) -> str:
        return describe(self.url, exc)


def describe(url: str, exc: BaseException) -> str:
    """A driver error on one line, without the URL's password (libpq may quote the URL)."""
    text = "; ".join(" ".join(line.split()) for line in str(exc).splitlines() if line.strip())
    password = password_of(url)
    if password:
        text = redact_values(text, [password])
    return redact_url(text) or type(exc).__name__


def _migrate(db: Connection, location: str) -> None:
    """Create or migrate the schema. The usual case (up to date) takes no lock; otherwise
    one transaction holds an advisory lock, so processes that start at once migrate once."""
    applied = _applied(db)
    if applied is not None and not pending(applied, location):
        return
    with db.transaction():
        db.execute(f"SELECT pg_advisory_xact_lock({LOCK_KEY}, hashtext(current_schema()))")
        applied = _applied(db)  # again: another process may have been first
        if applied is None:
            if _has_table(db, "runs"):
                raise StoreError(
                    f"{location} holds a `runs` table that is not orchestrate's",
                    hint="point the URL's search_path at another schema, or " + HINT,
                )
            db.execute(MIGRATIONS_TABLE)
            applied = []
        for migration in pending(applied, location):
            for statement in migration.sql(POSTGRESQL):
                db.execute(statement)
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (migration.name, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
            )


def _applied(db: Connection) -> list[str] | None:
    """The migrations applied, or None when the schema has no `_migrations` table."""
    if not _has_table(db, "_migrations"):
        return None
    return [row["name"] for row in db.query("SELECT name FROM _migrations ORDER BY applied_at")]


def _has_table(db: Connection, name: str) -> bool:
    # A query of the catalog, not to_regclass(): after waiting for the lock, this sees
    # what the process that held it committed.
    return bool(
        db.query(
            "SELECT 1 FROM information_schema.tables WHERE table_name = ? "
            "AND table_schema = current_schema()",
            (name,),
        )
    )
