"""What one `orchestrate batch` gets from the history.

    BatchSession        opened before the first row, closed after the last
    ├── HistorySession  the store, and cache / record / replay for the provider pool
    ├── observers()     a Recorder per row: the row's run, marked with the batch and row
    ├── prior()         --resume BATCH_ID: a row that succeeded is taken as it was; one
    │                   that did not runs again, reusing the steps that succeeded
    └── started() / finished()   the `batches` row, as the batch starts and ends

A row's record is made from one made once for the batch (file hash, git commit,
versions), so that 100,000 rows do not read the workflow file 100,000 times.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from orchestrate._errors import UsageError
from orchestrate._events import Event, RunStarted
from orchestrate._loader import file_sha256
from orchestrate._rows import PriorRow
from orchestrate.history._provenance import run_record
from orchestrate.history._recorder import Recorder, StepLayout
from orchestrate.history._reuse import ReusePlan, check_same_workflow, mode_family, prior_results
from orchestrate.history._session import HistoryOptions, HistorySession
from orchestrate.history._store import BatchRecord, BatchRow, RunRecord

if TYPE_CHECKING:
    from orchestrate._batch import BatchSummary, Dataset, RowResult
    from orchestrate._engine import RunOptions
    from orchestrate._prepared import PreparedRun
    from orchestrate._rows import RawRow
    from orchestrate.history._store import HistoryStore
    from orchestrate.providers import Provider


class BatchSession:
    """The history of one batch: use :meth:`start`, then :meth:`close` at the end."""

    def __init__(
        self,
        session: HistorySession,
        *,
        summary: BatchSummary,
        dataset: Dataset,
        options: RunOptions,
    ) -> None:
        self.session = session
        self.summary = summary
        self.dataset = dataset
        self.options = options
        self.mock = session.mock
        self.mode = session.mode
        self.store: HistoryStore | None = session.store
        self.base: RunRecord | None = None
        self.earlier: Iterator[BatchRow] | None = None  # the resumed batch's rows, in order
        self.next_earlier: BatchRow | None = None
        self.same_mode = True
        self.layout = StepLayout.of(session.prepared)  # shared by every row's recorder

    @classmethod
    def start(
        cls,
        prepared: PreparedRun,
        options: HistoryOptions,
        *,
        summary: BatchSummary,
        dataset: Dataset,
        run_options: RunOptions,
        resume: str | None,
        env: Mapping[str, str],
    ) -> BatchSession:
        """Open the history (and fixtures), and find the batch to resume; errors before
        any request."""
        if resume and not options.record_history:
            raise UsageError("--resume needs the run history, and --no-history turns it off")
        session = HistorySession.start(
            prepared, attrs.evolve(options, resume=None), mock=run_options.mock, env=env
        )
        batch = cls(session, summary=summary, dataset=dataset, options=run_options)
        try:
            batch._open(prepared, resume)
        except BaseException:
            session.close(ran=False)
            raise
        return batch

    def _open(self, prepared: PreparedRun, resume: str | None) -> None:
        store = self.store
        if store is None:
            return
        if resume:
            resumed = store.resolve(resume)
            row = store.batch(resumed)
            if row is None:
                raise _not_a_batch(resumed)
            check_same_workflow(prepared, {**row, "run_id": resumed})
            self.summary.resumed_from = resumed
            self.same_mode = mode_family(row["mode"]) == mode_family(self.mode)
            self.earlier = store.batch_rows(resumed)
            self.next_earlier = next(self.earlier, None)
        started = RunStarted(
            run_id="",
            workflow=prepared.workflow.name,
            file=prepared.file,
            started_at=self.summary.started_at,
            inputs={},
            steps=(),
        )
        self.base = run_record(started, prepared, self.mode, self.session.env)

    # --- the batch's own row ---------------------------------------------------------------

    def started(self, summary: BatchSummary) -> None:
        if self.store is None or self.base is None:
            return
        dataset, options = self.dataset, self.options
        data_path = None
        if dataset.data not in (None, "-"):
            data_path = str(_absolute(dataset.data))
        self.store.insert_batch(
            BatchRecord(
                batch_id=summary.batch_id,
                workflow=summary.workflow,
                file=summary.file,
                file_path=self.base.file_path,
                file_sha256=self.base.file_sha256,
                data=dataset.data,
                data_path=data_path,
                mode=self.mode,
                started_at=summary.started_at,
                started=time.time(),
                rows=summary.rows,
                settings={
                    "map": dict(dataset.how.mapping),
                    "inputs": dict(dataset.how.shared),
                    "model": options.model,
                    "concurrency": options.max_concurrency,
                    "limit": dataset.limit,
                    "format": dataset.fmt,
                    "data_sha256": file_sha256(_absolute(data_path)) if data_path else None,
                },
                resumed_from=summary.resumed_from,
                user_name=self.base.user_name,
                host_name=self.base.host_name,
            )
        )

    def row_finished(self, result: RowResult) -> None:
        """Rows are recorded by their own recorders."""

    def finished(self, summary: BatchSummary) -> None:
        if self.store is not None and self.base is not None:
            self.store.finish_batch(summary.batch_id, summary.to_dict(), time.time())

    # --- each row --------------------------------------------------------------------------

    def observers(self, index: int, row: RawRow) -> list[Callable[[Event], None]]:
        if self.store is None or self.base is None:
            return []
        base, batch_id = self.base, self.summary.batch_id

        def record(event: RunStarted) -> RunRecord:
            return attrs.evolve(
                base,
                run_id=event.run_id,
                started_at=event.started_at,
                started=event.time,
                inputs=event.inputs,
                resumed_from=event.resumed_from,
                batch_id=batch_id,
                batch_row=index,
                batch_line=row.line,
            )

        recorder = Recorder(
            self.store,
            self.session.prepared,
            mode=self.mode,
            env=self.session.env,
            record=record,
            layout=self.layout,
        )
        return [recorder]

    def prior(self, index: int, row: RawRow) -> PriorRow | None:
        """What the resumed batch left for row `index` (asked in row order)."""
        earlier = self._earlier_row(index)
        if earlier is None or self.store is None:
            return None
        if earlier.status == "succeeded":
            return PriorRow(document=self.store.document(earlier.run_id))
        steps, definitions = prior_results(self.store, earlier.run_id)
        plan = ReusePlan(earlier.run_id, steps, definitions, same_mode=self.same_mode)
        return PriorRow(reuse=plan, run_id=earlier.run_id)

    def _earlier_row(self, index: int) -> BatchRow | None:
        while self.next_earlier is not None and self.next_earlier.row < index:
            self.next_earlier = next(self.earlier, None) if self.earlier else None
        found = self.next_earlier
        return found if found is not None and found.row == index else None

    # --- providers, and the end ------------------------------------------------------------

    def wrap(self, name: str, create: Callable[[], Provider]) -> Provider:
        return self.session.wrap(name, create)

    def close(self, *, ran: bool = True) -> None:
        """Finish writing the history (and the --record fixture); StoreError if a write
        failed."""
        if self.earlier is not None:
            close = getattr(self.earlier, "close", None)
            if close is not None:
                close()
        self.session.close(ran=ran)


def _not_a_batch(run_id: str) -> UsageError:
    return UsageError(
        f"{run_id} is a run, not a batch: batch --resume takes a batch id",
        hint="`orchestrate runs list` marks batches; resume a single run with "
        "`orchestrate run --resume`",
    )


def resumed_batch(
    resume: str, env: Mapping[str, str] = os.environ, database: str | Path | None = None
) -> dict[str, Any]:
    """The settings of the batch `--resume` names, so the data file, `--map` and the
    shared inputs need not be given again: `data` (absolute, or `-`) and `settings`."""
    import json

    from orchestrate.history._open import open_store

    with open_store(env, database) as store:
        batch_id = store.resolve(resume)
        row = store.batch(batch_id)
        if row is None:
            raise _not_a_batch(batch_id)
        return {"data": row["data_path"] or row["data"], "settings": json.loads(row["settings"])}


def batch_details(
    store: HistoryStore, batch_id: str, *, limit: int | None = None
) -> dict[str, Any] | None:
    """`runs show BATCH_ID`: the summary document with `failed_rows` (the rows that did
    not succeed, with their errors; the first `limit`), or None for a run id."""
    import json

    row = store.batch(batch_id)
    if row is None:
        return None
    if row["summary"]:
        document = json.loads(row["summary"])
    else:  # still running, or its process died: what the columns know
        document = {
            key: row[key]
            for key in (
                "batch_id",
                "workflow",
                "file",
                "data",
                "status",
                "started_at",
                "rows",
                "succeeded",
                "failed",
                "cancelled",
                "duration_ms",
                "resumed_from",
            )
        }
        document["usage"] = {
            "input_tokens": row["input_tokens"],
            "output_tokens": row["output_tokens"],
        }
        document["cost_usd"] = None  # summed when the batch ends
    document["failed_rows"] = [
        row_entry(r) for r in store.batch_rows(batch_id, failed_only=True, limit=limit)
    ]
    document["failed_checks"] = _failed_checks(store, batch_id, limit)
    return document


def row_entry(row: BatchRow) -> dict[str, Any]:
    """A batch's row as `runs show BATCH_ID --json` lists it."""
    error = {"type": row.error_type, "message": row.error_message} if row.error_type else None
    return {
        "row": row.row,
        "line": row.line,
        "status": row.status,
        "run_id": row.run_id,
        "error": error,
        "checks": row.checks,
    }


def _failed_checks(store: HistoryStore, batch_id: str, limit: int | None) -> list[dict[str, Any]]:
    """The rows that succeeded with a failing check, and those checks (the first `limit`)."""
    found: list[dict[str, Any]] = []
    for row in store.batch_rows(batch_id):
        failed = [check for check in row.checks if not check["passed"]]
        if row.status != "succeeded" or not failed:
            continue
        if limit is not None and len(found) >= limit:
            break
        found.append({"row": row.row, "line": row.line, "run_id": row.run_id, "checks": failed})
    return found


def _absolute(path: str) -> Path:
    return Path(path).resolve()
