"""The history's SQL, written once: a HistoryStore on any database a backend connects to.

    SQLStore        every query and write of the history, and export/import of runs;
    │               a backend (`_sqlite`, `_postgres`) says how to connect, migrate and
    │               describe an error, and nothing else
    ├── Connection  a DB-API connection with `?` placeholders and explicit transactions
    └── Writer      a thread with its own connection; writes arrive through a queue and are
                    committed in batches, so a run never waits for the database

The statements are plain SQL both SQLite and PostgreSQL accept (an upsert is `ON CONFLICT
... DO UPDATE`); parameters are always bound. Records become rows, and rows results, only
in :mod:`._store`.
"""

from __future__ import annotations

import functools
import json
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import attrs

from orchestrate._errors import StoreError, UsageError
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
    Deleted,
    Row,
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

EXPORT_PAGE = 200  # runs read at once by export_runs

# What prune takes: finished batches started before `?` (with no row's run still marked
# running), and runs on their own started before it that are not running. A row's run
# whose batch is gone (an older prune left it) counts as a run on its own.
_OLD_BATCHES = (
    "SELECT batch_id FROM batches WHERE started < ? AND status != 'running' AND NOT "
    "EXISTS (SELECT 1 FROM runs WHERE runs.batch_id = batches.batch_id AND "
    "runs.status = 'running')"
)
_OLD_RUNS = (
    "started < ? AND status != 'running' AND (batch_id IS NULL OR NOT EXISTS "
    "(SELECT 1 FROM batches WHERE batches.batch_id = runs.batch_id))"
)


def _delete(db: Connection, run_ids: Sequence[str]) -> Deleted:
    """Delete runs, or batches with their rows' runs, with their steps, in `db`'s
    transaction; what was deleted."""
    runs = rows = 0
    batches = []
    for run_id in run_ids:
        db.execute(
            "DELETE FROM steps WHERE run_id IN (SELECT run_id FROM runs "
            "WHERE run_id = ? OR batch_id = ?)",
            (run_id, run_id),
        )
        runs += db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,)).rowcount
        rows += db.execute("DELETE FROM runs WHERE batch_id = ?", (run_id,)).rowcount
        if db.execute("DELETE FROM batches WHERE batch_id = ?", (run_id,)).rowcount:
            batches.append(run_id)
    return Deleted(runs=runs, batches=tuple(batches), rows=rows)


class Connection:
    """A DB-API connection in autocommit mode, spoken to with `?` placeholders.

    `paramstyle` is the driver's: "qmark" (sqlite3) or "format" (psycopg, `%s`);
    `begin` the statement that opens a write transaction.
    """

    def __init__(self, raw: Any, *, paramstyle: str = "qmark", begin: str = "BEGIN") -> None:
        self.raw = raw
        self.begin = begin
        self.format = paramstyle == "format"
        # Bound values one statement may hold: PostgreSQL's limit, or SQLite's oldest.
        self.most_values = 65_535 if self.format else 999

    def _sql(self, sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s") if self.format else sql

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return self.raw.execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        cursor = self.raw.cursor()
        try:
            cursor.executemany(self._sql(sql), list(rows))
        finally:
            cursor.close()

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        return list(self.execute(sql, params).fetchall())

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: committed at the end, rolled back when anything raises."""
        self.raw.execute(self.begin)
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.raw.execute("COMMIT")

    def rollback(self) -> None:
        with suppress(Exception):  # the connection is gone: the first error is the news
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()


def _insert(
    table: str,
    columns: Sequence[str],
    *,
    key: Sequence[str] | None = None,
    keep: bool = False,
    rows: int = 1,
) -> str:
    """An INSERT of `columns`, `rows` rows at once; with `key`, an upsert: a later row
    replaces the earlier (or, with `keep`, is dropped)."""
    row = f"({', '.join('?' * len(columns))})"
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * rows)}"
    if key is not None and keep:
        sql += f" ON CONFLICT ({', '.join(key)}) DO NOTHING"
    elif key is not None:
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        sql += f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    return sql


_INSERT_RUN = _insert("runs", RUN_START_COLUMNS)
_FINISH_RUN = f"UPDATE runs SET {', '.join(f'{c} = ?' for c in RUN_END_COLUMNS)} WHERE run_id = ?"
_CANCEL_RUN = (
    "UPDATE runs SET status = 'cancelled', error_type = 'cancelled', "
    "error_message = 'the run was interrupted' "
    "WHERE run_id = ? AND status = 'running'"
)
_UPSERT_RESPONSE = _insert("responses", RESPONSE_COLUMNS, key=("key",))
_INSERT_BATCH = _insert("batches", BATCH_START_COLUMNS)
_FINISH_BATCH = (
    f"UPDATE batches SET {', '.join(f'{c} = ?' for c in BATCH_END_COLUMNS)} WHERE batch_id = ?"
)
# A batch of steps is upserted in statements of many rows each, not by executemany():
# sqlite3's hands the GIL back and forth for each row while the run's thread wants it,
# some 3 ms of CPU in a 100-step run.


@functools.cache
def _upsert_steps(rows: int) -> str:
    return _insert("steps", STEP_COLUMNS, key=("run_id", "step_id"), rows=rows)


# A run still going (or whose process died) has its tokens and cost in its finished steps;
# its cost is unknown (NULL) while a step that used a model has none.
_LIST_RUNS = (
    "SELECT *, CASE WHEN status = 'running' THEN"
    " (SELECT coalesce(sum(s.input_tokens), 0)"
    " FROM steps s WHERE s.run_id = runs.run_id) ELSE input_tokens END AS tokens_in,"
    " CASE WHEN status = 'running' THEN (SELECT coalesce(sum(s.output_tokens), 0)"
    " FROM steps s WHERE s.run_id = runs.run_id) ELSE output_tokens END AS tokens_out,"
    " CASE WHEN status = 'running' THEN (SELECT CASE WHEN count(CASE WHEN"
    " s.input_tokens IS NOT NULL AND s.cost_usd IS NULL THEN 1 END) > 0 THEN NULL"
    " ELSE coalesce(sum(s.cost_usd), 0) END"
    " FROM steps s WHERE s.run_id = runs.run_id) ELSE cost_usd END AS cost"
    " FROM runs"
)
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


class SQLStore:
    """The history on a database; a backend subclass opens it (see :meth:`connect`)."""

    errors: tuple[type[BaseException], ...] = ()  # the driver's errors
    hint = NO_HISTORY_HINT  # the way out when the database cannot be used

    def __init__(self, db: Connection, location: str, secrets: Sequence[str] = ()) -> None:
        self.db = db
        self.location = location
        self.secrets = tuple(secrets)
        self._writer: Writer | None = None
        self._read_error: StoreError | None = None

    # --- what a backend says ---------------------------------------------------------------

    def connect(self) -> Connection:
        """A new connection to the same database (the writer thread's own)."""
        raise NotImplementedError

    def describe(self, exc: BaseException) -> str:
        """The driver's error as a message (without secrets)."""
        return str(exc)

    # --- opening and closing ---------------------------------------------------------------

    def close(self) -> None:
        """Write what is queued, then close; StoreError when a write (or a cache read
        during the run) failed."""
        try:
            if self._writer is not None:
                self._writer.close()
            if self._read_error is not None:
                raise self._read_error
        finally:
            self._writer = None
            self.db.close()

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def writer(self) -> Writer:
        """The background writer, started on first use."""
        if self._writer is None:
            self._writer = Writer(self)
        return self._writer

    def failure(self, exc: BaseException, doing: str = "cannot use the run history") -> StoreError:
        return StoreError(f"{doing} {self.location}: {self.describe(exc)}", hint=self.hint)

    # --- writing (on the writer thread) ----------------------------------------------------

    def insert_run(self, make: Callable[[], RunRecord]) -> None:
        secrets = self.secrets

        def write(db: Connection) -> None:
            values = run_values(make(), secrets)
            db.execute(_INSERT_RUN, [values[c] for c in RUN_START_COLUMNS])

        self.writer.submit(write)

    def insert_steps(self, run_id: str, make: Callable[[], Sequence[StepRecord]]) -> None:
        secrets = self.secrets

        def write(db: Connection) -> None:
            # A step that came twice keeps its last row: one statement may not upsert a
            # row twice (PostgreSQL refuses it).
            rows = {}
            for record in make():
                values = step_values(run_id, record, secrets)
                rows[values["step_id"]] = [values[c] for c in STEP_COLUMNS]
            ordered = list(rows.values())
            per_statement = db.most_values // len(STEP_COLUMNS)
            for start in range(0, len(ordered), per_statement):
                chunk = ordered[start : start + per_statement]
                db.execute(_upsert_steps(len(chunk)), [value for row in chunk for value in row])

        self.writer.submit(write)

    def finish_run(self, result: RunResult, finished: float) -> None:
        secrets = self.secrets

        def write(db: Connection) -> None:
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

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        try:
            return self.db.query(sql, params)
        except self.errors as exc:
            raise self.failure(exc) from None

    def get_response(self, key: str) -> dict[str, Any] | None:
        # Asked during a run: a database gone away is a miss, reported when the run ends.
        try:
            rows = self._query("SELECT response FROM responses WHERE key = ?", (key,))
        except StoreError as exc:
            self._read_error = self._read_error or exc
            return None
        return json.loads(rows[0]["response"]) if rows else None

    def list_runs(
        self,
        *,
        limit: int | None = 20,
        workflow: str | None = None,
        status: str | None = None,
        user: str | None = None,
        before: str | None = None,
        kind: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs and batches (a batch's rows are in it, not listed), newest first. `before`
        (an id) pages by keyset: as fast on the last page as on the first. `kind` (run or
        batch) lists only those."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("workflow", workflow), ("status", status), ("user_name", user)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            anchor = self._query(
                "SELECT started, run_id FROM runs WHERE run_id = ? UNION ALL "
                "SELECT started, batch_id FROM batches WHERE batch_id = ?",
                (before, before),
            )
            if anchor:
                where.append("(started, {id}) < (?, ?)")
                params += [anchor[0]["started"], anchor[0]["run_id"]]
        limited = f" LIMIT {int(limit)}" if limit else ""

        def newest(select: str, id_column: str, *also: str) -> list[Row]:
            clauses = [*also, *where]
            sql = select + (" WHERE " + " AND ".join(clauses) if clauses else "")
            sql += f" ORDER BY started DESC, {id_column} DESC{limited}"
            return self._query(sql.replace("{id}", id_column), params)

        runs = newest(_LIST_RUNS, "run_id", "batch_id IS NULL") if kind != "batch" else []
        batches = newest("SELECT * FROM batches", "batch_id") if kind != "run" else []
        listed = sorted(
            [(row["started"], row["run_id"], run_summary(row)) for row in runs]
            + [(row["started"], row["batch_id"], batch_summary(row)) for row in batches],
            key=lambda entry: entry[:2],
            reverse=True,
        )
        return [entry for _, _, entry in listed[: limit or None]]

    def resolve(self, prefix: str) -> str:
        # Run and batch ids alike; PostgreSQL wants the subquery named.
        columns = (
            "SELECT run_id, workflow, started_at, status, started FROM runs UNION ALL "
            "SELECT batch_id, workflow, started_at, status, started FROM batches"
        )
        matches = (
            self._query(
                f"SELECT * FROM ({columns}) AS ids WHERE substr(run_id, 1, CAST(? AS INTEGER)) = ?"
                " ORDER BY started DESC LIMIT 11",
                (len(prefix), prefix),
            )
            if prefix
            else []
        )
        return resolved(
            prefix,
            matches,
            lambda: self._query(f"{columns} ORDER BY started DESC LIMIT 5"),
            self.location,
        )

    def run_row(self, run_id: str) -> dict[str, Any]:
        rows = self._query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise UsageError(f"no run with id {run_id!r} in {self.location}")
        return dict(rows[0])

    def _step_rows(self, run_id: str) -> list[Row]:
        return self._query("SELECT * FROM steps WHERE run_id = ? ORDER BY position", (run_id,))

    def document(self, run_id: str) -> dict[str, Any]:
        return run_document(self.run_row(run_id), self._step_rows(run_id))

    def stored_steps(self, run_id: str) -> list[StoredStep]:
        return [
            StoredStep(result=step_result(row), definition=row["definition"])
            for row in self._step_rows(run_id)
        ]

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
            rows = self._query("SELECT resumed_from FROM batches WHERE batch_id = ?", (chain[-1],))
            earlier = rows[0]["resumed_from"] if rows else None
            if earlier is None or earlier in chain:
                return chain
            chain.append(earlier)

    def batch_rows(
        self, batch_id: str, *, failed_only: bool = False, limit: int | None = None
    ) -> Iterator[BatchRow]:
        chain = self._batch_chain(batch_id)
        generation = " ".join(f"WHEN ? THEN {index}" for index in range(len(chain)))
        sql = (
            "SELECT batch_row, batch_line, run_id, status, error_type, error_message, "
            f"checks, CASE batch_id {generation} END AS generation FROM runs "
            f"WHERE batch_id IN ({', '.join('?' * len(chain))}) "
            "ORDER BY batch_row, generation, started DESC"
        )
        try:
            cursor = self.db.execute(sql, (*chain, *chain))
        except self.errors as exc:
            raise self.failure(exc) from None
        last, given = None, 0
        try:
            for row in cursor:
                if row["batch_row"] == last:
                    continue  # an earlier batch's run of a row run again since
                last = row["batch_row"]
                if failed_only and row["status"] == "succeeded":
                    continue
                if limit is not None and given >= limit:
                    break
                given += 1
                yield BatchRow(
                    row=row["batch_row"],
                    line=row["batch_line"],
                    run_id=row["run_id"],
                    status=row["status"],
                    error_type=row["error_type"],
                    error_message=row["error_message"],
                    checks=json.loads(row["checks"]) if row["checks"] else [],
                )
        finally:
            cursor.close()

    # --- deleting --------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """One write transaction; a database error is a StoreError."""
        try:
            with self.db.transaction() as db:
                yield db
        except self.errors as exc:
            raise self.failure(exc) from None

    def delete(self, run_ids: list[str]) -> Deleted:
        with self._writing() as db:
            return _delete(db, run_ids)

    def prune(self, before: float) -> Deleted:
        # A batch goes with all its rows' runs, decided by the batch's start, so no row's
        # run is left without its batch nor a batch without its rows. A run or batch still
        # going is never pruned, however long ago it started (see delete_runs).
        with self._writing() as db:
            batch_ids = [row["batch_id"] for row in db.query(_OLD_BATCHES, (before,))]
            deleted = _delete(db, batch_ids)
            _, runs, responses = (
                db.execute(sql, (before,)).rowcount
                for sql in (
                    f"DELETE FROM steps WHERE run_id IN "
                    f"(SELECT run_id FROM runs WHERE {_OLD_RUNS})",
                    f"DELETE FROM runs WHERE {_OLD_RUNS}",
                    "DELETE FROM responses WHERE created < ?",
                )
            )
        return attrs.evolve(deleted, runs=runs, responses=responses)

    # --- moving runs between histories (see _transfer) --------------------------------------

    def applied_migrations(self) -> list[str]:
        return [row["name"] for row in self._query("SELECT name FROM _migrations")]

    def export_runs(self) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Every run with its steps, as their rows, a page at a time (by run id)."""
        after = ""
        while True:
            runs = self._query(
                f"SELECT * FROM runs WHERE run_id > ? ORDER BY run_id LIMIT {EXPORT_PAGE}", (after,)
            )
            if not runs:
                return
            ids = [run["run_id"] for run in runs]
            steps: dict[str, list[dict[str, Any]]] = {run_id: [] for run_id in ids}
            for step in self._query(
                f"SELECT * FROM steps WHERE run_id IN "
                f"({', '.join('?' * len(ids))}) ORDER BY position",
                ids,
            ):
                steps[step["run_id"]].append(dict(step))
            for run in runs:
                yield dict(run), steps[run["run_id"]]
            after = ids[-1]

    def export_batches(self) -> Iterator[dict[str, Any]]:
        """Every batch's row, a page at a time (by batch id); its rows are runs."""
        after = ""
        while True:
            batches = self._query(
                f"SELECT * FROM batches WHERE batch_id > ? ORDER BY batch_id LIMIT {EXPORT_PAGE}",
                (after,),
            )
            if not batches:
                return
            yield from (dict(batch) for batch in batches)
            after = batches[-1]["batch_id"]

    def columns(self, table: str) -> list[str]:
        cursor = self.db.execute(f"SELECT * FROM {table} WHERE 1 = 0")
        names = [column[0] for column in cursor.description]
        cursor.close()
        return names

    def import_run(self, run: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> bool:
        """Add a run exported from a history, with its steps, unless a run with its id is
        already here; whether it was added. One transaction."""
        run_columns, step_columns = self._known(run, "runs"), self._known(steps, "steps")
        try:
            with self.db.transaction() as db:
                added = (
                    db.execute(
                        _insert("runs", run_columns, key=("run_id",), keep=True),
                        [run[c] for c in run_columns],
                    ).rowcount
                    == 1
                )
                if added and steps:
                    db.executemany(
                        _insert("steps", step_columns),
                        [[step.get(c) for c in step_columns] for step in steps],
                    )
        except self.errors as exc:
            raise self.failure(exc, "could not import into") from None
        return added

    def import_batch(self, batch: Mapping[str, Any]) -> bool:
        """Add a batch exported from a history unless its id is here; whether it was."""
        columns = self._known(batch, "batches")
        try:
            with self.db.transaction() as db:
                return bool(
                    db.execute(
                        _insert("batches", columns, key=("batch_id",), keep=True),
                        [batch[c] for c in columns],
                    ).rowcount
                    == 1
                )
        except self.errors as exc:
            raise self.failure(exc, "could not import into") from None

    def _known(
        self, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]], table: str
    ) -> list[str]:
        """The columns of `rows` (one or several), checked against the table's own."""
        names = sorted(
            {key for row in ([rows] if isinstance(rows, Mapping) else rows) for key in row}
        )
        known = set(self.columns(table))
        unknown = [name for name in names if name not in known or not _IDENTIFIER.fullmatch(name)]
        if unknown:
            raise StoreError(
                f"the {table} of this file have columns {self.location} does not: "
                f"{', '.join(unknown)}",
                hint="a newer orchestrate exported it: upgrade orchestrate",
            )
        return names


# --- the writer ------------------------------------------------------------------------------

Write = Callable[[Connection], object]  # what it returns is not used
_STOP = object()


class Writer:
    """A thread that owns a connection and commits queued writes in batches.

    `submit` only puts a function on a queue: the caller (the event loop) does not wait
    for the database while the writer keeps up. When it does not (a batch's rows finish
    faster than they are committed), the queue fills up to QUEUE_LIMIT writes and `submit`
    waits for room: the rows slow down to the writer's pace instead of piling up in
    memory. Every batch is committed as soon as it is taken, so a crash loses at most the
    writes still queued. :meth:`close` waits for the queue to drain. After a failed write
    nothing more is written (a run's later rows would miss their parents).
    """

    QUEUE_LIMIT = 2000  # writes waiting: with their results, a few MB at most

    def __init__(self, store: SQLStore, *, limit: int | None = None) -> None:
        self.store = store
        self.queue: queue.Queue[Any] = queue.Queue(limit or self.QUEUE_LIMIT)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="orchestrate-history", daemon=True)
        self.thread.start()

    def submit(self, write: Write) -> None:
        self._put(write)

    def close(self) -> None:
        self._put(_STOP)
        self.thread.join()
        if self.error is not None:
            raise self.store.failure(self.error, "could not record the run in")

    def _put(self, item: object) -> None:
        """Queue `item`, waiting for room while the thread lives (one that died can no
        longer take it: its error is reported by close)."""
        while True:
            try:
                self.queue.put(item, timeout=0.5)
                return
            except queue.Full:
                if not self.thread.is_alive():
                    self.error = self.error or RuntimeError("the history writer stopped")
                    return

    def _loop(self) -> None:
        try:
            db = self.store.connect()
        except Exception as exc:  # reported by close()
            self.error = exc
            self._drain()
            return
        try:
            stop = False
            while not stop:
                batch = [self.queue.get()]
                while len(batch) < self.queue.maxsize:  # one commit holds a bounded batch
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
            with suppress(Exception):  # a connection that is already gone
                db.close()

    def _commit(self, db: Connection, batch: list[Write]) -> None:
        try:
            with db.transaction():
                for write in batch:
                    write(db)
        except Exception as exc:  # reported by close(); the run itself goes on
            self.error = exc

    def _drain(self) -> None:
        while self.queue.get() is not _STOP:
            pass
