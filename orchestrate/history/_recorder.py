"""The engine observer that writes a run to the history as it goes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from orchestrate._events import Event, RunFinished, RunStarted, StepFinished
from orchestrate.history._provenance import definition_hash, run_record
from orchestrate.history._store import StepRecord

if TYPE_CHECKING:
    from orchestrate._prepared import PreparedRun
    from orchestrate._result import StepResult
    from orchestrate._spec import AnyStep
    from orchestrate.history._store import HistoryStore, RunRecord


class StepLayout:
    """Where each step of a workflow stands, its kind, and its definition hash (made on
    first use, then kept: a batch's rows share one layout)."""

    def __init__(self, steps: Sequence[AnyStep]) -> None:
        self.steps = {s.id: s for s in steps}
        self.positions = {s.id: i for i, s in enumerate(steps)}
        self.kinds = {s.id: s.kind for s in steps}
        self.definitions: dict[str, str] = {}

    @classmethod
    def of(cls, prepared: PreparedRun) -> StepLayout:
        return cls(prepared.workflow.steps)

    def definition(self, step_id: str) -> str | None:
        """The step's definition_hash; None for a step the file does not name."""
        spec = self.steps.get(step_id)
        if spec is None:
            return None
        found = self.definitions.get(step_id)
        if found is None:
            found = self.definitions[step_id] = definition_hash(spec)
        return found


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

    def __init__(
        self,
        store: HistoryStore,
        prepared: PreparedRun,
        *,
        mode: str,
        env: Mapping[str, str],
        record: Callable[[RunStarted], RunRecord] | None = None,
        layout: StepLayout | None = None,
    ) -> None:
        self.store = store
        self.mode = mode
        self.env = env
        # How the run's record is made: a batch makes its rows' from one it made once,
        # and shares one layout of the steps with every row.
        self.record = record
        self.layout = layout or StepLayout.of(prepared)
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
        layout = self.layout
        return [
            StepRecord(
                result=step,
                position=layout.positions.get(step.id, -1),
                kind=layout.kinds.get(step.id, ""),
                definition=layout.definition(step.id),
                finished=when,
            )
            for step, when in batch
        ]

    def close(self) -> None:
        """Write what is pending; a run that never finished is recorded as cancelled."""
        self.flush()
        if self.run_id is not None and not self.finished:
            self.store.cancel_run(self.run_id)
