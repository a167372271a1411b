"""Runs started from the browser: ordinary runs (prepare, run_prepared, the history),
watched live.

    RunManager      starts runs as tasks on the server's loop, cancels them, stops them all
    LiveRun         one of them: the engine observer that keeps its state and feeds its events
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from orchestrate._api import run_prepared
from orchestrate._engine import RunOptions, new_run_id
from orchestrate._events import (
    Event,
    ItemFinished,
    RunFinished,
    RunStarted,
    StepFinished,
    StepQueued,
    StepStarted,
)
from orchestrate._prepared import PreparedRun
from orchestrate._result import RunResult, StepResult, Usage, total_cost
from orchestrate.history import HistoryOptions, RecordingFailed
from orchestrate.ui._events import RunFeed


class LiveRun:
    """A run of this server while it goes on: statuses, finished steps, and its feed."""

    def __init__(self, run_id: str, workflow: str) -> None:
        self.run_id = run_id
        self.workflow = workflow  # its URL name
        self.feed = RunFeed()
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.start: RunStarted | None = None
        self.statuses: dict[str, str] = {}
        self.items: dict[str, tuple[int, int]] = {}  # step id -> (done, total)
        self.item_statuses: dict[str, dict[int, str]] = {}  # step id -> {index: status}
        self.results: dict[str, StepResult] = {}
        self.result: RunResult | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            if self.start is not None:
                return
            self.start = event
            self.statuses = {step_id: "waiting" for step_id, _ in event.steps}
            if not self.started.done():
                self.started.set_result(None)
        elif isinstance(event, StepQueued):
            self.statuses[event.step_id] = "queued"
        elif isinstance(event, StepStarted):
            self.statuses[event.step_id] = "running"
            if event.items is not None:
                self.items[event.step_id] = (0, event.items)
        elif isinstance(event, ItemFinished):
            self.items[event.step_id] = (event.done, event.total)
            self.item_statuses.setdefault(event.step_id, {})[event.index] = event.status
        elif isinstance(event, StepFinished):
            self.statuses[event.result.id] = event.result.status
            self.results[event.result.id] = event.result
        elif isinstance(event, RunFinished):
            self.result = event.result
        self.feed.publish(event.to_dict())

    def document(self) -> dict[str, Any]:
        """The result document so far (`status: running` until the end), as the history
        gives it for a run still going."""
        if self.result is not None:
            return self.result.to_dict()
        assert self.start is not None
        results = self.results.values()
        steps = [result.to_dict() for result in results]
        usage = Usage.total([result.usage for result in results])
        cost = total_cost(r.cost_usd for r in results if r.usage is not None)
        return {
            "run_id": self.run_id,
            "workflow": self.start.workflow,
            "file": self.start.file,
            "status": "running",
            "started_at": self.start.started_at,
            "duration_ms": None,
            "inputs": self.start.inputs,
            "outputs": {},
            "steps": steps,
            "usage": usage.to_dict(),
            "cost_usd": cost,
            "error": None,
        }


class RunManager:
    """The runs this server started and that have not ended yet."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.live: dict[str, LiveRun] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(
        self,
        prepared: PreparedRun,
        workflow: str,
        *,
        mock: bool,
        model: str | None = None,
        concurrency: int = 8,
        resume: str | None = None,
    ) -> str:
        """Start the run and return its id once its first event is out; raise what stops
        it before that (a missing API key, a resume that does not match, ...)."""
        run_id = new_run_id()
        live = LiveRun(run_id, workflow)
        self.live[run_id] = live
        options = RunOptions(model=model or None, max_concurrency=concurrency, stream=True)
        task = asyncio.create_task(self._run(live, prepared, mock, options, resume), name=run_id)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        await asyncio.wait([task, live.started], return_when=asyncio.FIRST_COMPLETED)
        if not live.started.done():
            task.result()  # raises why the run did not start
        return run_id

    async def _run(
        self,
        live: LiveRun,
        prepared: PreparedRun,
        mock: bool,
        options: RunOptions,
        resume: str | None,
    ) -> None:
        try:
            await run_prepared(
                prepared,
                mock=mock,
                options=options,
                observers=[live],
                run_id=live.run_id,
                env=self.env,
                history=HistoryOptions(resume=resume),
            )
        except RecordingFailed:
            pass  # the run ended; its page reads what the history has
        except asyncio.CancelledError:
            if live.result is None:  # cancelled before the engine ran: nothing to record
                raise
        finally:
            # From here on the history has the whole run (the session closed the store).
            self.live.pop(live.run_id, None)
            if live.result is None:
                live.feed.publish(
                    {"event": "run_finished", "run_id": live.run_id, "status": "cancelled"}
                )

    def cancel(self, run_id: str) -> bool:
        """Cancel a run of this server; False if it is not one that is running."""
        live = self.live.get(run_id)
        if live is None:
            return False
        for task in self.tasks:
            if task.get_name() == run_id:
                task.cancel()
        return True

    async def stop(self) -> None:
        """Cancel every run and wait until each is recorded as cancelled."""
        for task in self.tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.tasks, return_exceptions=True)
