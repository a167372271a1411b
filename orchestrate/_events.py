"""What the engine tells its observers while a run goes on.

The engine emits these and knows nothing of who listens: the live view, the plain
progress log, the `--events` JSON Lines writer and the history store all subscribe.
An observer is any callable taking an :data:`Event`; it must be quick and must not raise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import IO, Any, ClassVar, TypeAlias

import attrs

from orchestrate._result import RunResult, StepResult


@attrs.frozen(kw_only=True)
class _Event:
    name: ClassVar[str] = "event"
    time: float = attrs.field(factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        fields = attrs.asdict(self, recurse=False)
        return {"event": self.name, **fields}


@attrs.frozen(kw_only=True)
class RunStarted(_Event):
    name = "run_started"
    run_id: str
    workflow: str
    file: str | None
    started_at: str
    inputs: dict[str, Any]
    steps: tuple[tuple[str, str], ...]  # (id, kind) in file order
    resumed_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        doc = super().to_dict()
        doc["steps"] = [{"step_id": i, "kind": k} for i, k in self.steps]
        return doc


@attrs.frozen(kw_only=True)
class StepQueued(_Event):
    """A step is ready but every concurrency slot is taken; StepStarted follows when its
    first call gets one. Sent only when the step has to wait."""

    name = "step_queued"
    step_id: str
    kind: str


@attrs.frozen(kw_only=True)
class StepStarted(_Event):
    """A step's first call got a concurrency slot: its `duration_ms` counts from here."""

    name = "step_started"
    step_id: str
    kind: str
    provider: str | None = None
    model: str | None = None
    items: int | None = None  # the number of items of a for_each step


@attrs.frozen(kw_only=True)
class StepRetrying(_Event):
    name = "step_retrying"
    step_id: str
    attempt: int  # the attempt that is about to start, 2 for the first retry
    delay: float
    reason: str
    item: int | None = None  # the for_each item that is retried


@attrs.frozen(kw_only=True)
class TokenReceived(_Event):
    name = "token"
    step_id: str
    text: str
    item: int | None = None


@attrs.frozen(kw_only=True)
class ItemFinished(_Event):
    name = "item_finished"
    step_id: str
    index: int
    status: str
    done: int
    total: int


@attrs.frozen(kw_only=True)
class StepFinished(_Event):
    """A step reached its final status: succeeded, failed, skipped or cancelled."""

    name = "step_finished"
    result: StepResult

    def to_dict(self) -> dict[str, Any]:
        step = self.result.to_dict()
        # Every event names its step `step_id`; the result document's entry says `id`.
        return {"event": self.name, "time": self.time, "step_id": step.pop("id"), **step}


@attrs.frozen(kw_only=True)
class RunFinished(_Event):
    name = "run_finished"
    result: RunResult

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.name, "time": self.time, **self.result.to_dict()}


Event: TypeAlias = (
    RunStarted
    | StepQueued
    | StepStarted
    | StepRetrying
    | TokenReceived
    | ItemFinished
    | StepFinished
    | RunFinished
)
Observer: TypeAlias = Callable[[Event], None]


class JsonLinesWriter:
    """The `--events` observer: one JSON object per event, flushed as it happens.

    Token events carry text, so they are written only when `tokens` is set.
    """

    def __init__(self, out: IO[str], *, tokens: bool = False) -> None:
        self.out = out
        self.tokens = tokens
        self.closed = False

    def __call__(self, event: Event) -> None:
        if self.closed or (isinstance(event, TokenReceived) and not self.tokens):
            return
        try:
            self.out.write(json.dumps(event.to_dict(), ensure_ascii=False, default=str) + "\n")
            self.out.flush()
        except BrokenPipeError:  # the reader went away (`| head`): the run goes on
            self.closed = True
