"""The history in one SQLite file, `$ORCHESTRATE_HOME/history.db` (stdlib sqlite3).

    SQLiteStore         an SQLStore: creates the file, its connections and PRAGMAs, and
                        applies the migrations (:mod:`._schema`) in the SQLite dialect

What is SQLite here: the file, the PRAGMAs (WAL, busy timeout, foreign keys), the mark in
the file header that makes a file ours (`application_id`), and `PRAGMA user_version`,
which holds the number of migrations applied so an up-to-date file opens without a lock.
The queries, the writer thread and the schema are shared with PostgreSQL (:mod:`._sql`).

Only this module imports :mod:`sqlite3`, and only the commands that need the history
import this module, so `orchestrate --help` and `validate` never pay for it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from orchestrate._errors import StoreError
from orchestrate._files import create_private_file, private_folder
from orchestrate.history._schema import MIGRATIONS, MIGRATIONS_TABLE, SQLITE, newer_schema, pending
from orchestrate.history._sql import Connection, SQLStore
from orchestrate.history._store import NO_HISTORY_HINT

APPLICATION_ID = 0x4F524348  # "ORCH", in the file header: marks the file as ours
BUSY_TIMEOUT_MS = 30_000


def _connect(path: Path) -> Connection:
    db = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    db.row_factory = sqlite3.Row
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA synchronous = NORMAL")  # WAL: durable through a crash of the process
    # IMMEDIATE: a writer takes the lock at once, so two never deadlock upgrading a read.
    return Connection(db, begin="BEGIN IMMEDIATE")


def _migrate(db: Connection, path: Path) -> None:
    """Bring the schema up to date, in one IMMEDIATE transaction so two processes can race.

    `PRAGMA user_version` holds the number of migrations applied, so the usual case (ours,
    up to date) costs two reads of the file header and no lock.
    """
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if app_id == APPLICATION_ID and version == len(MIGRATIONS):
        return
    if app_id == APPLICATION_ID and version > len(MIGRATIONS):
        raise newer_schema(str(path), version)
    _refuse_foreign(db, path)  # before the lock: a foreign file is not even locked
    with db.transaction():
        tables = _refuse_foreign(db, path)  # again: another process may have been first
        if "_migrations" not in tables:
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(MIGRATIONS_TABLE)
        applied = [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY rowid")]
        for migration in pending(applied, str(path)):
            for statement in migration.sql(SQLITE):
                db.execute(statement)
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (migration.name, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
            )
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")


def _refuse_foreign(db: Connection, path: Path) -> set[str]:
    """The file's tables; StoreError, having written nothing, if the file is not ours."""
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if app_id not in (0, APPLICATION_ID) or (tables and "_migrations" not in tables):
        raise StoreError(f"{path} is not an orchestrate history database", hint=NO_HISTORY_HINT)
    return tables


class SQLiteStore(SQLStore):
    """The history database in a file, opened (and created or migrated) by :meth:`open`."""

    errors = (sqlite3.Error,)

    def __init__(self, path: Path, db: Connection, secrets: Sequence[str] = ()) -> None:
        super().__init__(db, str(path), secrets)
        self.path = path

    @classmethod
    def open(cls, path: Path, *, secrets: Sequence[str] = ()) -> SQLiteStore:
        """Open the history, creating it; StoreError when it is corrupt, foreign or newer."""
        try:
            private_folder(path.parent)
        except OSError as exc:
            raise StoreError(
                f"cannot create {path.parent}: {exc.strerror}", hint=NO_HISTORY_HINT
            ) from None
        try:
            create_private_file(path)
        except OSError as exc:
            raise StoreError(
                f"cannot create {path}: {exc.strerror}", hint=NO_HISTORY_HINT
            ) from None
        db = None
        try:
            db = _connect(path)
            _migrate(db, path)  # first: a file that is not ours is refused untouched
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                db.execute("PRAGMA journal_mode = WAL")
        except StoreError:
            if db is not None:
                db.close()
            raise
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise StoreError(
                f"cannot use the run history {path}: {exc}", hint=NO_HISTORY_HINT
            ) from None
        return cls(path, db, secrets)

    def connect(self) -> Connection:
        return _connect(self.path)
