"""The result of a run: the one document that `run --json` and `runs show --json` print."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import attrs

if TYPE_CHECKING:
    from orchestrate._spec import Price

StepStatus: TypeAlias = Literal["succeeded", "failed", "skipped", "cancelled"]
RunStatus: TypeAlias = Literal["succeeded", "failed", "cancelled"]


def iso_time(timestamp: float) -> str:
    """A Unix time as the result document writes it: UTC, milliseconds, `Z`."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@attrs.frozen
class Usage:
    """Tokens of one or more calls. `input_tokens` counts every prompt token, those read
    from or written to the provider's prompt cache included (which are also counted in
    `cached_input_tokens` and `cache_write_tokens`, and priced apart)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        # field by field: attrs.astuple made this a hot spot of batches (4 sums a row)
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        """Input and output tokens; the cache counts only when there are some."""
        doc = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
        if self.cached_input_tokens:
            doc["cached_input_tokens"] = self.cached_input_tokens
        if self.cache_write_tokens:
            doc["cache_write_tokens"] = self.cache_write_tokens
        return doc

    @classmethod
    def total(cls, usages: Iterable[Usage | None]) -> Usage:
        total = cls()
        for usage in usages:
            if usage is not None:
                total = total + usage
        return total


def total_cost(costs: Iterable[float | None]) -> float | None:
    """The sum of costs, None (unknown) when any of them is; never rounded to 0."""
    total = 0.0
    for cost in costs:
        if cost is None:
            return None
        total += cost
    return tidy_usd(total)


def tidy_usd(amount: float) -> float:
    """`amount` to 12 significant digits, so that `cost_usd` reads 1.665e-05 and not the
    float noise 1.6649999999999998e-05; prices have far fewer digits, and a small
    amount is never rounded to 0."""
    return float(f"{amount:.12g}")


@attrs.frozen
class ErrorInfo:
    """`error` in the result document: which step failed, how, and why."""

    type: str
    message: str
    step: str | None = None
    details: str | None = None  # e.g. a function's traceback; not in the result document
    hint: str | None = None  # how to fix it, shown on stderr; not in the result document

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "type": self.type, "message": self.message}


@attrs.frozen(kw_only=True)
class ItemResult:
    """An item of a `for_each` step that succeeded; kept in the history (not in the result
    document) so that `--resume` can take it instead of running it again."""

    index: int
    output: Any
    fingerprint: str  # sha256 of the item's rendered request
    attempts: int = 0
    usage: Usage | None = None
    model: str | None = None
    reused: bool = False  # taken from an earlier run


@attrs.frozen(kw_only=True)
class StepResult:
    id: str
    status: StepStatus
    output: Any = None
    error: ErrorInfo | None = None
    provider: str | None = None
    model: str | None = None
    attempts: int = 0
    duration_ms: int = 0
    usage: Usage | None = None
    cost_usd: float | None = None  # what this run paid for the step; None: unknown price
    # Beyond the SPEC's fields: how the step got its output and what it sent.
    cached: bool = False
    reused: bool = False
    warnings: tuple[str, ...] = ()
    request: dict[str, Any] | None = None
    fingerprint: str | None = None
    response_id: str | None = None
    price: Price | None = None  # the price `cost_usd` was computed with (kept in the history)
    items: tuple[ItemResult, ...] = ()  # a for_each's items that succeeded, also when it failed

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "output": self.output,
            "error": self.error.to_dict() if self.error else None,
            "provider": self.provider,
            "model": self.model,
            "attempts": self.attempts,
            "duration_ms": self.duration_ms,
            "usage": self.usage.to_dict() if self.usage else None,
            "cost_usd": self.cost_usd,
            "cached": self.cached,
            "reused": self.reused,
        }
        if self.warnings:
            doc["warnings"] = list(self.warnings)
        return doc


@attrs.frozen(kw_only=True)
class CheckResult:
    """A check's verdict on a run (SPEC 9). A judge's call has usage and cost too."""

    id: str
    passed: bool
    score: float | None = None
    message: str | None = None
    usage: Usage | None = None  # a judge's model call
    cost_usd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "passed": self.passed,
            "score": self.score,
            "message": self.message,
        }
        if self.usage is not None:
            doc["usage"] = self.usage.to_dict()
            doc["cost_usd"] = self.cost_usd
        return doc


@attrs.frozen(kw_only=True)
class RunResult:
    run_id: str
    workflow: str
    file: str | None
    status: RunStatus
    started_at: str
    duration_ms: int
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    steps: tuple[StepResult, ...]
    error: ErrorInfo | None = None
    resumed_from: str | None = None
    checks: tuple[CheckResult, ...] = ()  # SPEC 9: evaluated once the run succeeded

    @property
    def usage(self) -> Usage:
        """The tokens of every model call: the steps', and the judges' of the checks."""
        return Usage.total([*(s.usage for s in self.steps), *(c.usage for c in self.checks)])

    @property
    def cost_usd(self) -> float | None:
        """What the run paid: the sum of its steps and judges that called a model (None if
        one of them has no known price)."""
        steps = [s.cost_usd for s in self.steps if s.usage is not None]
        judges = [c.cost_usd for c in self.checks if c.usage is not None]
        return total_cost([*steps, *judges])

    @property
    def checks_passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def exit_code(self) -> int:
        """0 succeeded, 1 failed (or a check failed: the status stays `succeeded`), 130
        cancelled."""
        if self.status == "succeeded" and not self.checks_passed:
            return 1
        return {"succeeded": 0, "failed": 1, "cancelled": 130}[self.status]

    @classmethod
    def not_started(
        cls, file: str, error: ErrorInfo, run_id: str, started_at: str, inputs: dict[str, Any]
    ) -> RunResult:
        """The document of a run stopped before its first step (bad workflow, inputs, key)."""
        from pathlib import Path

        return cls(
            run_id=run_id,
            workflow=Path(file).stem,
            file=file,
            status="failed",
            started_at=started_at,
            duration_ms=0,
            inputs=inputs,
            outputs={},
            steps=(),
            error=error,
        )

    def step(self, step_id: str) -> StepResult:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "file": self.file,
            "status": self.status,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "steps": [s.to_dict() for s in self.steps],
            "usage": self.usage.to_dict(),
            "cost_usd": self.cost_usd,
            "error": self.error.to_dict() if self.error else None,
            "checks": [c.to_dict() for c in self.checks],
        }
        if self.resumed_from:
            doc["resumed_from"] = self.resumed_from
        return doc
