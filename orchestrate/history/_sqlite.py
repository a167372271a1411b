"""The history in one SQLite file, `$ORCHESTRATE_HOME/history.db` (stdlib sqlite3).

    SQLiteStore         a HistoryStore: opens the file, applies migrations, answers
    │                   queries (main thread), queues writes
    └── Writer          a thread with its own connection; writes arrive through a queue
                        and are committed in batches, so a run never waits for the disk

The schema is versioned by an ordered list of named migration functions; each applied one
is recorded in the `_migrations` table. A file from a newer orchestrate (a migration we do
not know) or a file that is not ours is refused with a clear :class:`StoreError`.

What is SQLite here: the migrations and PRAGMAs, the connections, the writer thread, and
`?` placeholders; the statements themselves are plain SQL (an upsert is `ON CONFLICT ...
DO UPDATE`). Records become rows, and rows results, only in :mod:`._store`.

Only this module imports :mod:`sqlite3`, and only the commands that need the history
import this module, so `orchestrate --help` and `validate` never pay for it.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrate._errors import StoreError, UsageError
from orchestrate._files import create_private_file, private_folder
from orchestrate._result import RunResult
from orchestrate.history._store import (
    BATCH_END_COLUMNS,
    BATCH_START_COLUMNS,
    NO_HISTORY_HINT,
    RESPONSE_COLUMNS,
    RUN_END_COLUMNS,
    RUN_START_COLUMNS,
    STEP_COLUMNS,
    BatchRecord,
    BatchRow,
    CachedResponse,
    RunRecord,
    StepRecord,
    StoredStep,
    batch_end_values,
    batch_summary,
    batch_values,
    resolved,
    response_values,
    run_document,
    run_end_values,
    run_summary,
    run_values,
    step_result,
    step_values,
)

APPLICATION_ID = 0x4F524348  # "ORCH", in the file header: marks the file as ours
BUSY_TIMEOUT_MS = 30_000


# --- migrations ------------------------------------------------------------------------------
# Append only: never edit or reorder a migration once released, add a new one.


def m001_initial(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE runs (
            run_id        TEXT PRIMARY KEY,
            workflow      TEXT NOT NULL,
            file          TEXT,              -- the path as given on the command line
            file_path     TEXT,              -- the same, absolute
            file_sha256   TEXT,              -- of the workflow file's bytes
            git_commit    TEXT,              -- HEAD of the file's repository, if any
            status        TEXT NOT NULL,     -- running | succeeded | failed | cancelled
            mode          TEXT NOT NULL,     -- live | mock | replay
            started_at    TEXT NOT NULL,     -- ISO 8601, UTC
            started       REAL NOT NULL,     -- the same, as Unix seconds
            finished_at   TEXT,
            duration_ms   INTEGER,
            input_tokens  INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            inputs        TEXT NOT NULL,     -- JSON
            outputs       TEXT,              -- JSON
            error_step    TEXT,
            error_type    TEXT,
            error_message TEXT,
            resumed_from  TEXT,
            provenance    TEXT,              -- JSON: versions, sub-workflow hashes
            document      TEXT               -- the result document, outputs and steps left out
        )""")
    db.execute("CREATE INDEX runs_by_start ON runs (started)")
    db.execute("CREATE INDEX runs_by_workflow ON runs (workflow, started)")
    db.execute("CREATE INDEX runs_by_file ON runs (file_path, started)")
    db.execute("""
        CREATE TABLE steps (
            run_id        TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            position      INTEGER NOT NULL,  -- the step's place in the file, from 0
            step_id       TEXT NOT NULL,
            kind          TEXT NOT NULL,     -- llm | function | workflow
            status        TEXT NOT NULL,     -- succeeded | failed | skipped | cancelled
            output        TEXT,              -- JSON
            error_type    TEXT,
            error_message TEXT,
            provider      TEXT,
            model         TEXT,              -- the exact model id the provider reported
            response_id   TEXT,              -- the provider's id for the response
            attempts      INTEGER NOT NULL DEFAULT 0,
            duration_ms   INTEGER NOT NULL DEFAULT 0,
            input_tokens  INTEGER,
            output_tokens INTEGER,
            cached        INTEGER NOT NULL DEFAULT 0,  -- answered from the response cache
            reused        INTEGER NOT NULL DEFAULT 0,  -- taken from an earlier run
            fingerprint   TEXT,              -- sha256 of the rendered request
            definition    TEXT,              -- sha256 of the step as written
            request       TEXT,              -- JSON: the rendered request
            finished_at   TEXT,              -- ISO 8601, UTC
            extra         TEXT,              -- JSON: the rest of the step's result entry
            PRIMARY KEY (run_id, step_id)
        )""")
    db.execute("""
        CREATE TABLE responses (              -- the response cache (run --cache)
            key           TEXT PRIMARY KEY,  -- sha256 of provider, model, messages, settings
            provider      TEXT NOT NULL,
            model         TEXT,              -- the exact model id of the answer
            request       TEXT NOT NULL,     -- JSON
            response      TEXT NOT NULL,     -- JSON: text, usage, model, response_id
            created       REAL NOT NULL      -- Unix seconds
        )""")
    db.execute("CREATE INDEX responses_by_age ON responses (created)")


def m002_step_items(db: sqlite3.Connection) -> None:
    # JSON: the items of a for_each that succeeded (see _store.items_value), for --resume
    db.execute("ALTER TABLE steps ADD COLUMN items TEXT")



def m003_batches(db: sqlite3.Connection) -> None:
    # A batch's rows are runs: they name their batch, and `runs list` leaves them out (the
    # partial indexes keep it fast however many rows a batch has).
    db.execute("ALTER TABLE runs ADD COLUMN batch_id TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN batch_row INTEGER")  # the row's index, from 0
    db.execute("ALTER TABLE runs ADD COLUMN batch_line INTEGER")  # its line in the data file
    db.execute("CREATE INDEX runs_by_batch ON runs (batch_id, batch_row) "
               "WHERE batch_id IS NOT NULL")
    db.execute("CREATE INDEX runs_alone_by_start ON runs (started) WHERE batch_id IS NULL")
    db.execute("CREATE INDEX runs_alone_by_workflow ON runs (workflow, started) "
               "WHERE batch_id IS NULL")
    db.execute("""
        CREATE TABLE batches (
            batch_id      TEXT PRIMARY KEY,
            workflow      TEXT NOT NULL,
            file          TEXT,              -- the workflow's path as given
            file_path     TEXT,              -- the same, absolute
            file_sha256   TEXT,
            data          TEXT,              -- the data file as given (- for stdin)
            data_path     TEXT,              -- the same, absolute
            status        TEXT NOT NULL,     -- running | succeeded | failed | cancelled
            mode          TEXT NOT NULL,     -- live | mock | replay
            started_at    TEXT NOT NULL,
            started       REAL NOT NULL,
            finished_at   TEXT,
            duration_ms   INTEGER,
            rows          INTEGER NOT NULL,
            succeeded     INTEGER NOT NULL DEFAULT 0,
            failed        INTEGER NOT NULL DEFAULT 0,
            cancelled     INTEGER NOT NULL DEFAULT 0,
            input_tokens  INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            settings      TEXT NOT NULL,     -- JSON: --map, shared inputs, --model, ...
            resumed_from  TEXT,              -- the batch whose unfinished rows this one ran
            summary       TEXT               -- JSON: the summary document
        )""")
    db.execute("CREATE INDEX batches_by_start ON batches (started)")


def m004_cost(db: sqlite3.Connection) -> None:
    """What runs and steps cost, and the price it was computed with, so that a later
    change of the price table does not rewrite old runs. Runs recorded before are NULL
    (unknown)."""
    db.execute("ALTER TABLE runs ADD COLUMN cost_usd REAL")
    db.execute("ALTER TABLE steps ADD COLUMN cost_usd REAL")
    db.execute("ALTER TABLE steps ADD COLUMN price TEXT")  # JSON: USD per million tokens
    db.execute("ALTER TABLE steps ADD COLUMN cached_input_tokens INTEGER")
    db.execute("ALTER TABLE steps ADD COLUMN cache_write_tokens INTEGER")


def m005_checks(db: sqlite3.Connection) -> None:
    """Each run's checks (SPEC 9) as JSON, so a batch's rows give their verdicts without
    reading every document. Runs recorded before have none (NULL)."""
    db.execute("ALTER TABLE runs ADD COLUMN checks TEXT")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    m001_initial, m002_step_items, m003_batches, m004_cost, m005_checks,
)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                         check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA synchronous = NORMAL")  # WAL: durable through a crash of the process
    return db


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the schema up to date, in one IMMEDIATE transaction so two processes can race.

    `PRAGMA user_version` holds the number of migrations applied, so the usual case (ours,
    up to date) costs two reads of the file header and no lock.
    """
    known = [m.__name__ for m in MIGRATIONS]
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if app_id == APPLICATION_ID and version == len(known):
        return
    if app_id == APPLICATION_ID and version > len(known):
        raise StoreError(
            f"{path} was written by a newer orchestrate (schema {version}, this version "
            f"knows {len(known)})", hint="upgrade orchestrate, or " + NO_HISTORY_HINT)
    _refuse_foreign(db, path)  # before the lock: a foreign file is not even locked
    db.execute("BEGIN IMMEDIATE")
    try:
        tables = _refuse_foreign(db, path)  # again: another process may have been first
        if "_migrations" not in tables:
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        applied = [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY rowid")]
        unknown = [name for name in applied if name not in known]
        if unknown:
            raise StoreError(
                f"{path} was written by a newer orchestrate (schema {len(applied)}, this "
                f"version knows {len(known)}; unknown migration {unknown[-1]})",
                hint="upgrade orchestrate, or " + NO_HISTORY_HINT)
        for migration in MIGRATIONS:
            if migration.__name__ not in applied:
                migration(db)
                db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                           (migration.__name__, time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                              time.gmtime())))
        db.execute(f"PRAGMA user_version = {len(known)}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _refuse_foreign(db: sqlite3.Connection, path: Path) -> set[str]:
    """The file's tables; StoreError, having written nothing, if the file is not ours."""
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if app_id not in (0, APPLICATION_ID) or (tables and "_migrations" not in tables):
        raise StoreError(f"{path} is not an orchestrate history database",
                         hint=NO_HISTORY_HINT)
    return tables


def _corrupt(path: Path, exc: Exception) -> StoreError:
    return StoreError(f"cannot use the run history {path}: {exc}", hint=NO_HISTORY_HINT)


def _insert(table: str, columns: Sequence[str], *, key: Sequence[str] | None = None) -> str:
    """An INSERT of `columns`; with `key`, an upsert: a later row replaces the earlier."""
    sql = (f"INSERT INTO {table} ({', '.join(columns)})"
           f" VALUES ({', '.join('?' * len(columns))})")
    if key is not None:
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        sql += f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    return sql


_INSERT_RUN = _insert("runs", RUN_START_COLUMNS)
_FINISH_RUN = (f"UPDATE runs SET {', '.join(f'{c} = ?' for c in RUN_END_COLUMNS)}"
               " WHERE run_id = ?")
_CANCEL_RUN = ("UPDATE runs SET status = 'cancelled', error_type = 'cancelled', "
               "error_message = 'the run was interrupted' "
               "WHERE run_id = ? AND status = 'running'")
_UPSERT_STEP = _insert("steps", STEP_COLUMNS, key=("run_id", "step_id"))
_UPSERT_RESPONSE = _insert("responses", RESPONSE_COLUMNS, key=("key",))
_INSERT_BATCH = _insert("batches", BATCH_START_COLUMNS)
_FINISH_BATCH = (f"UPDATE batches SET {', '.join(f'{c} = ?' for c in BATCH_END_COLUMNS)}"
                 " WHERE batch_id = ?")
# A run still going (or whose process died) has its tokens in its finished steps.
_LIST_RUNS = ("SELECT *, CASE WHEN status = 'running' THEN"
              " (SELECT coalesce(sum(s.input_tokens), 0)"
              " FROM steps s WHERE s.run_id = runs.run_id) ELSE input_tokens END AS tokens_in,"
              " CASE WHEN status = 'running' THEN (SELECT coalesce(sum(s.output_tokens), 0)"
              " FROM steps s WHERE s.run_id = runs.run_id) ELSE output_tokens END AS tokens_out,"
              " CASE WHEN status = 'running' THEN (SELECT CASE WHEN"
              " sum(s.input_tokens IS NOT NULL AND s.cost_usd IS NULL) THEN NULL"
              " ELSE coalesce(sum(s.cost_usd), 0) END"
              " FROM steps s WHERE s.run_id = runs.run_id) ELSE cost_usd END AS cost"
              " FROM runs")


class SQLiteStore:
    """The history database, opened (and created or migrated) by :meth:`open`."""

    def __init__(self, path: Path, db: sqlite3.Connection, secrets: Sequence[str] = ()) -> None:
        self.path = path
        self.location = str(path)
        self.db = db
        self.secrets = tuple(secrets)
        self._writer: Writer | None = None

    @classmethod
    def open(cls, path: Path, *, secrets: Sequence[str] = ()) -> SQLiteStore:
        """Open the history, creating it; StoreError when it is corrupt, foreign or newer."""
        try:
            private_folder(path.parent)
        except OSError as exc:
            raise StoreError(f"cannot create {path.parent}: {exc.strerror}",
                             hint=NO_HISTORY_HINT) from None
        try:
            create_private_file(path)
        except OSError as exc:
            raise StoreError(f"cannot create {path}: {exc.strerror}",
                             hint=NO_HISTORY_HINT) from None
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
            raise _corrupt(path, exc) from None
        return cls(path, db, secrets)

    def close(self) -> None:
        """Write what is queued, then close; StoreError when a write failed."""
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            self._writer = None
            self.db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def writer(self) -> Writer:
        """The background writer, started on first use."""
        if self._writer is None:
            self._writer = Writer(self.path)
        return self._writer

    # --- writing (on the writer thread) ----------------------------------------------------

    def insert_run(self, make: Callable[[], RunRecord]) -> None:
        secrets = self.secrets

        def write(db: sqlite3.Connection) -> None:
            values = run_values(make(), secrets)
            db.execute(_INSERT_RUN, [values[c] for c in RUN_START_COLUMNS])

        self.writer.submit(write)

    def insert_steps(self, run_id: str, make: Callable[[], Sequence[StepRecord]]) -> None:
        secrets = self.secrets

        def write(db: sqlite3.Connection) -> None:
            rows = [step_values(run_id, record, secrets) for record in make()]
            db.executemany(_UPSERT_STEP, [[row[c] for c in STEP_COLUMNS] for row in rows])

        self.writer.submit(write)

    def finish_run(self, result: RunResult, finished: float) -> None:
        secrets = self.secrets

        def write(db: sqlite3.Connection) -> None:
            values = run_end_values(result, finished, secrets)
            db.execute(_FINISH_RUN, [*(values[c] for c in RUN_END_COLUMNS), result.run_id])

        self.writer.submit(write)

    def cancel_run(self, run_id: str) -> None:
        self.writer.submit(lambda db: db.execute(_CANCEL_RUN, (run_id,)))

    def put_response(self, response: CachedResponse) -> None:
        values = response_values(response, self.secrets)
        row = [values[c] for c in RESPONSE_COLUMNS]
        self.writer.submit(lambda db: db.execute(_UPSERT_RESPONSE, row))

    def insert_batch(self, batch: BatchRecord) -> None:
        values = batch_values(batch, self.secrets)
        row = [values[c] for c in BATCH_START_COLUMNS]
        self.writer.submit(lambda db: db.execute(_INSERT_BATCH, row))

    def finish_batch(self, batch_id: str, summary: Mapping[str, Any], finished: float) -> None:
        values = batch_end_values(summary, finished, self.secrets)
        row = [*(values[c] for c in BATCH_END_COLUMNS), batch_id]
        self.writer.submit(lambda db: db.execute(_FINISH_BATCH, row))

    # --- reading ---------------------------------------------------------------------------

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        try:
            cursor = self.db.execute(sql, tuple(params))
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()
        except sqlite3.Error as exc:
            raise _corrupt(self.path, exc) from None

    def get_response(self, key: str) -> dict[str, Any] | None:
        rows = self._query("SELECT response FROM responses WHERE key = ?", (key,))
        return json.loads(rows[0]["response"]) if rows else None

    def list_runs(self, *, limit: int | None = 20, workflow: str | None = None,
                  status: str | None = None, before: str | None = None) -> list[dict[str, Any]]:
        """Runs and batches (a batch's rows are in it, not listed), newest first. `before`
        (an id) pages by keyset: as fast on the last page as on the first."""
        where: list[str] = []
        params: list[Any] = []
        if workflow is not None:
            where.append("workflow = ?")
            params.append(workflow)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if before is not None:
            anchor = self._query("SELECT started, run_id FROM runs WHERE run_id = ? UNION ALL "
                                 "SELECT started, batch_id FROM batches WHERE batch_id = ?",
                                 (before, before))
            if anchor:
                where.append("(started, {id}) < (?, ?)")
                params += [anchor[0]["started"], anchor[0]["run_id"]]
        limited = f" LIMIT {int(limit)}" if limit else ""

        def newest(select: str, id_column: str, *also: str) -> list[Any]:
            clauses = [*also, *where]
            sql = select + (" WHERE " + " AND ".join(clauses) if clauses else "")
            sql += f" ORDER BY started DESC, {id_column} DESC{limited}"
            return self._query(sql.replace("{id}", id_column), params)

        runs = newest(_LIST_RUNS, "run_id", "batch_id IS NULL")
        batches = newest("SELECT * FROM batches", "batch_id")
        listed = sorted([(row["started"], row["run_id"], run_summary(row)) for row in runs]
                        + [(row["started"], row["batch_id"], batch_summary(row))
                           for row in batches], key=lambda entry: entry[:2], reverse=True)
        return [entry for _, _, entry in listed[:limit or None]]

    def resolve(self, prefix: str) -> str:
        columns = ("SELECT run_id, workflow, started_at, status, started FROM runs UNION ALL "
                   "SELECT batch_id, workflow, started_at, status, started FROM batches")
        matches = self._query(
            f"SELECT * FROM ({columns}) WHERE substr(run_id, 1, ?) = ? "
            "ORDER BY started DESC LIMIT 11", (len(prefix), prefix)) if prefix else []
        return resolved(prefix, matches,
                        lambda: self._query(f"{columns} ORDER BY started DESC LIMIT 5"),
                        self.location)

    def run_row(self, run_id: str) -> dict[str, Any]:
        rows = self._query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise UsageError(f"no run with id {run_id!r} in {self.location}")
        return dict(rows[0])

    def _step_rows(self, run_id: str) -> list[sqlite3.Row]:
        return self._query("SELECT * FROM steps WHERE run_id = ? ORDER BY position", (run_id,))

    def document(self, run_id: str) -> dict[str, Any]:
        return run_document(self.run_row(run_id), self._step_rows(run_id))

    def stored_steps(self, run_id: str) -> list[StoredStep]:
        return [StoredStep(result=step_result(row), definition=row["definition"])
                for row in self._step_rows(run_id)]

    def latest_run(self, file_path: str, modes: Iterable[str] | None = None) -> str | None:
        sql, params = "SELECT run_id FROM runs WHERE file_path = ?", [file_path]
        if modes is not None:
            modes = list(modes)
            sql += f" AND mode IN ({', '.join('?' * len(modes))})"
            params += modes
        rows = self._query(sql + " ORDER BY started DESC, run_id DESC LIMIT 1", params)
        return str(rows[0]["run_id"]) if rows else None

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM batches WHERE batch_id = ?", (batch_id,))
        return dict(rows[0]) if rows else None

    def _batch_chain(self, batch_id: str) -> list[str]:
        """The batch, the batch it resumed, and so on back."""
        chain = [batch_id]
        while True:
            rows = self._query("SELECT resumed_from FROM batches WHERE batch_id = ?",
                               (chain[-1],))
            earlier = rows[0]["resumed_from"] if rows else None
            if earlier is None or earlier in chain:
                return chain
            chain.append(earlier)

    def batch_rows(self, batch_id: str, *, failed_only: bool = False,
                   limit: int | None = None) -> Iterator[BatchRow]:
        chain = self._batch_chain(batch_id)
        rank = " ".join(f"WHEN ? THEN {index}" for index in range(len(chain)))
        sql = ("SELECT batch_row, batch_line, run_id, status, error_type, error_message, checks, "
               f"CASE batch_id {rank} END AS rank FROM runs "
               f"WHERE batch_id IN ({', '.join('?' * len(chain))}) "
               "ORDER BY batch_row, rank, started DESC")
        try:
            cursor = self.db.execute(sql, (*chain, *chain))
        except sqlite3.Error as exc:
            raise _corrupt(self.path, exc) from None
        cursor.row_factory = sqlite3.Row
        last, given = None, 0
        for row in cursor:
            if row["batch_row"] == last:
                continue  # an earlier batch's run of a row run again since
            last = row["batch_row"]
            if failed_only and row["status"] == "succeeded":
                continue
            if limit is not None and given >= limit:
                break
            given += 1
            yield BatchRow(row=row["batch_row"], line=row["batch_line"], run_id=row["run_id"],
                           status=row["status"], error_type=row["error_type"],
                           error_message=row["error_message"],
                           checks=json.loads(row["checks"]) if row["checks"] else [])
        cursor.close()

    # --- deleting --------------------------------------------------------------------------

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
        counts = []
        try:
            self.db.execute("BEGIN IMMEDIATE")
            for sql, params in statements:
                counts.append(self.db.execute(sql, params).rowcount)
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise _corrupt(self.path, exc) from None
        return counts

    def delete(self, run_ids: list[str]) -> int:
        statements: list[tuple[str, tuple[str, ...]]] = []
        for run_id in run_ids:
            statements.append(("DELETE FROM steps WHERE run_id IN (SELECT run_id FROM runs "
                               "WHERE run_id = ? OR batch_id = ?)", (run_id, run_id)))
            statements.append(("DELETE FROM runs WHERE run_id = ?",
                               (run_id,)))
            statements.append(("DELETE FROM runs WHERE batch_id = ?", (run_id,)))
            statements.append(("DELETE FROM batches WHERE batch_id = ?", (run_id,)))
        counts = self._write(statements)
        return sum(counts[1::4]) + sum(counts[3::4])

    def prune(self, before: float) -> tuple[int, int]:
        # A run still going is never pruned, however long ago it started (see delete_runs).
        old_runs = "started < ? AND status != 'running'"
        counts = self._write([
            (f"DELETE FROM steps WHERE run_id IN (SELECT run_id FROM runs WHERE {old_runs})",
             (before,)),
            (f"DELETE FROM runs WHERE {old_runs}", (before,)),
            ("DELETE FROM responses WHERE created < ?", (before,)),
            ("DELETE FROM batches WHERE started < ?", (before,)),
        ])
        return counts[1], counts[2]


# --- the writer ------------------------------------------------------------------------------

Write = Callable[[sqlite3.Connection], object]  # what it returns is not used
_STOP = object()


class Writer:
    """A thread that owns a connection and commits queued writes in batches.

    `submit` only puts a function on a queue: the caller (the event loop) never waits for
    SQLite. Every batch is committed as soon as it is taken, so a crash loses at most the
    writes still queued. :meth:`close` waits for the queue to drain.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="orchestrate-history",
                                       daemon=True)
        self.thread.start()

    def submit(self, write: Write) -> None:
        self.queue.put(write)

    def close(self) -> None:
        self.queue.put(_STOP)
        self.thread.join()
        if self.error is not None:
            raise StoreError(f"could not record the run in {self.path}: {self.error}",
                             hint=NO_HISTORY_HINT)

    def _loop(self) -> None:
        try:
            db = _connect(self.path)
        except sqlite3.Error as exc:
            self.error = exc
            self._drain()
            return
        try:
            stop = False
            while not stop:
                batch = [self.queue.get()]
                while True:
                    try:
                        batch.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                if _STOP in batch:
                    stop = True
                    batch = [w for w in batch if w is not _STOP]
                if batch and self.error is None:
                    self._commit(db, batch)
        finally:
            db.close()

    def _commit(self, db: sqlite3.Connection, batch: list[Write]) -> None:
        try:
            db.execute("BEGIN IMMEDIATE")
            for write in batch:
                write(db)
            db.execute("COMMIT")
        except Exception as exc:  # reported by close(); the run itself goes on
            self.error = exc
            if db.in_transaction:
                db.execute("ROLLBACK")

    def _drain(self) -> None:
        while self.queue.get() is not _STOP:
            pass
