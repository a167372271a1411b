"""The engine observer that writes a run to the history as it goes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from orchestrate._events import Event, RunFinished, RunStarted, StepFinished
from orchestrate.history._provenance import definition_hash, run_record
from orchestrate.history._store import StepRecord

if TYPE_CHECKING:
    from orchestrate._prepared import PreparedRun
    from orchestrate._result import StepResult
    from orchestrate.history._store import HistoryStore, RunRecord


class Recorder:
    """Observes a run and writes it to the history as it goes.

    The observer only collects finished steps and hands them to the store in batches (at
    most FLUSH_AFTER seconds after a step finishes, and when the run ends); the store's
    writes are queued, and the records (file hashes, definitions), the JSON encoding and
    the SQL are made off the event loop. So the loop never waits for the disk or for
    another process holding the database, and a crash loses at most the last fraction of
    a second, Ctrl-C nothing.
    """

    FLUSH_AFTER = 0.05

    def __init__(self, store: HistoryStore, prepared: PreparedRun, *, mode: str,
                 env: Mapping[str, str],
                 record: Callable[[RunStarted], RunRecord] | None = None) -> None:
        self.store = store
        self.mode = mode
        self.env = env
        # How the run's record is made: a batch makes its rows' from one it made once.
        self.record = record
        workflow = prepared.workflow
        self.positions = {s.id: i for i, s in enumerate(workflow.steps)}
        self.steps = {s.id: s for s in workflow.steps}
        self.prepared = prepared
        self.run_id: str | None = None
        self.finished = False
        self.pending: list[tuple[StepResult, float]] = []
        self.timer: asyncio.TimerHandle | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepFinished):
            if self.run_id is not None:
                self.pending.append((event.result, event.time))
                self._flush_soon()
        elif isinstance(event, RunStarted):
            if self.run_id is None:  # sub-workflows run without observers, but be sure
                self.run_id = event.run_id
                prepared, mode, env, record = self.prepared, self.mode, self.env, self.record
                if record is not None:
                    self.store.insert_run(lambda: record(event))
                else:
                    self.store.insert_run(lambda: run_record(event, prepared, mode, env))
        elif isinstance(event, RunFinished) and event.result.run_id == self.run_id:
            self.flush()
            self.finished = True
            self.store.finish_run(event.result, event.time)

    def _flush_soon(self) -> None:
        if self.timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self.timer = loop.call_later(self.FLUSH_AFTER, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.pending and self.run_id is not None:
            batch, self.pending = self.pending, []
            self.store.insert_steps(self.run_id, lambda: self._records(batch))

    def _records(self, batch: list[tuple[StepResult, float]]) -> list[StepRecord]:
        records = []
        for step, when in batch:
            spec = self.steps.get(step.id)
            records.append(StepRecord(
                result=step, position=self.positions.get(step.id, -1),
                kind=spec.kind if spec else "",
                definition=definition_hash(spec) if spec else None, finished=when))
        return records

    def close(self) -> None:
        """Write what is pending; a run that never finished is recorded as cancelled."""
        self.flush()
        if self.run_id is not None and not self.finished:
            self.store.cancel_run(self.run_id)
