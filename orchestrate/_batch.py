"""`orchestrate batch`: one workflow over every row of a dataset, in one process.

    run_batch()         the Python API: rows from any iterable of mappings
    run_request()       what the CLI calls: a BatchRequest (a data file, --resume ...)
    run_dataset()       what both call: check every row, open the history, run
    └── BatchRunner     rows start as a window frees up; every row's engine shares one
        │               concurrency limit and one provider pool; results leave in row order
        └── RowResult   a row's line of output; BatchSummary the batch's document

The workflow is prepared (validated, compiled, functions imported) once; each row gets a
light Engine over the same plan. A row never holds up the others: a row that fails is a
result, and the batch goes on, except for a row stopped by the budget (`--max-cost`,
shared by every row): then no new row starts. A slow row holds back the writing of later rows, never
their running, up to `window` rows ahead; so memory is bounded however many rows.
"""

from __future__ import annotations

import array
import asyncio
import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import attrs

from orchestrate._cost import UNKNOWN_PRICE, check_prices, metered
from orchestrate._engine import Engine, RunOptions, iso_now, new_run_id
from orchestrate._errors import Terminated, UsageError
from orchestrate._events import Event, StepRetrying
from orchestrate._files import open_output
from orchestrate._interrupt import sigterm_cancels_the_run
from orchestrate._plan import build_plan
from orchestrate._prepared import PreparedRun, endpoints_of
from orchestrate._result import RunResult, Usage, total_cost
from orchestrate._rows import (
    PriorRow,
    RawRow,
    RowInputs,
    check_rows,
    data_file,
    data_format,
    data_label,
    header_of,
    parse_mapping,
    read_rows,
    rows_from_mappings,
)
from orchestrate._settings import MAX_CONCURRENCY, RUNS_LIMIT, validate_not_empty
from orchestrate._spec import LLMStep, Workflow
from orchestrate.providers import ProviderPool

if TYPE_CHECKING:
    from orchestrate._cost import Budget
    from orchestrate.history import HistoryOptions
    from orchestrate.history._batches import BatchSession

DEFAULT_CONCURRENCY = 16
WINDOW_PER_SLOT = 4  # rows that may run (or wait to be written) per concurrency slot


# --- results ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RowResult:
    """One row's outcome: its line of the batch's output (SPEC 8)."""

    row: int  # 0-based
    line: int  # in the data file, 1-based
    status: str  # succeeded | failed | cancelled
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    error: dict[str, Any] | None
    usage: Usage
    duration_ms: int
    run_id: str | None
    values: dict[str, Any] = attrs.field(factory=dict, repr=False)  # the row as read: `row.X`
    checks: tuple[dict[str, Any], ...] = ()  # SPEC 9: filled by the checks, after the run
    cost_usd: float | None = None  # SPEC 10: what the row's run paid; None: a price unknown
    # the notes naming each model nobody knows the price of, for the summary
    price_notes: frozenset[str] = attrs.field(default=frozenset(), repr=False)
    reused: bool = False  # taken as it was from the batch this one resumes
    variant: dict[str, str] | None = None  # --matrix: the combination this row ran with
    variant_index: int = attrs.field(default=0, repr=False)

    @classmethod
    def of_run(cls, index: int, row: RawRow, result: RunResult) -> RowResult:
        price_notes = frozenset(
            note
            for step in result.steps
            if step.cost_usd is None
            for note in step.warnings
            if note.startswith(UNKNOWN_PRICE)
        )
        return cls(
            row=index,
            line=row.line,
            status=result.status,
            inputs=result.inputs,
            outputs=result.outputs,
            error=result.error.to_dict() if result.error else None,
            usage=result.usage,
            duration_ms=result.duration_ms,
            run_id=result.run_id,
            values=row.values,
            checks=tuple(c.to_dict() for c in result.checks),
            cost_usd=result.cost_usd,
            price_notes=price_notes,
        )

    @classmethod
    def of_document(cls, index: int, row: RawRow, doc: Mapping[str, Any]) -> RowResult:
        """A row that succeeded in an earlier batch, from its recorded result document: this
        batch paid nothing for it (as for a step reused by `run --resume`)."""
        usage = doc.get("usage") or {}
        return cls(
            row=index,
            line=row.line,
            status=doc["status"],
            inputs=doc["inputs"],
            outputs=doc.get("outputs") or {},
            error=doc.get("error"),
            usage=Usage(usage.get("input_tokens", 0), usage.get("output_tokens", 0)),
            duration_ms=doc.get("duration_ms") or 0,
            run_id=doc["run_id"],
            values=row.values,
            checks=tuple(doc.get("checks") or ()),
            cost_usd=0.0,
            reused=True,
        )

    @classmethod
    def crashed(
        cls, index: int, row: RawRow, inputs: dict[str, Any], exc: Exception, duration_ms: int
    ) -> RowResult:
        """A row whose run raised instead of returning a result (a bug, or the history):
        what it paid is not known."""
        message = getattr(exc, "message", None) or f"internal error: {exc!r}"
        return cls(
            row=index,
            line=row.line,
            status="failed",
            inputs=inputs,
            outputs={},
            error={
                "step": None,
                "type": getattr(exc, "error_type", "internal"),
                "message": message,
            },
            usage=Usage(),
            duration_ms=duration_ms,
            run_id=None,
            values=row.values,
        )

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "row": self.row,
            "line": self.line,
            "status": self.status,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "error": self.error,
            "checks": list(self.checks),
            "usage": self.usage.to_dict(),
            "cost_usd": self.cost_usd,
            "duration_ms": self.duration_ms,
            "run_id": self.run_id,
        }
        if self.variant is not None:
            doc["variant"] = self.variant
        return doc


def _percentile(sorted_values: array.array[int], share: float) -> int | None:
    """The nearest-rank percentile of sorted values (None for none)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


@attrs.define(kw_only=True)
class BatchSummary:
    """The batch as it goes and as it ended: counters the live display reads, and the
    summary document (SPEC 8) of `--json`, stderr and `runs show BATCH_ID`."""

    batch_id: str
    workflow: str
    file: str | None
    data: str | None
    rows: int
    started_at: str = attrs.field(factory=iso_now)
    status: str = "running"
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    reused: int = 0
    usage: Usage = attrs.field(factory=Usage)
    cost_usd: float | None = 0.0  # None once a row's cost is unknown (SPEC 10: never 0)
    price_notes: set[str] = attrs.field(factory=set)  # why cost_usd is None: the models
    out_of_budget: bool = False  # a row failed with error.type budget: no new row starts
    retries: int = 0  # attempts retried (429s, 5xx, network), over every row
    waiting_until: float = 0.0  # perf_counter time until which a retry is waiting
    last_error: str | None = None  # "row N (line L): message"
    resumed_from: str | None = None
    clock: Callable[[], float] = time.perf_counter
    started: float = attrs.field(factory=time.perf_counter)
    ended: float | None = None
    latencies: array.array[int] = attrs.field(factory=lambda: array.array("l"))
    # (provider, calls waiting, seconds until the next slot) for each rate-limited provider
    rate_waits: Callable[[], list[tuple[str, int, float]]] = list
    # SPEC 9: the workflow's checks (judges apart, for their mean score), the pass rate
    # needed for exit 0, and each check's (passed, failed) row count
    check_ids: tuple[str, ...] = ()
    judge_ids: frozenset[str] = frozenset()
    fail_under: float = 1.0
    check_counts: dict[str, list[int]] = attrs.field(factory=dict)
    judge_scores: list[float] = attrs.field(factory=list)
    variant: dict[str, str] | None = None  # --matrix: this summary's combination
    variants: list[BatchSummary] = attrs.field(factory=list)  # --matrix: one per combination

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.cancelled

    @property
    def elapsed(self) -> float:
        return (self.ended or self.clock()) - self.started

    @property
    def rows_per_second(self) -> float:
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """SPEC 8 and 9: 0 every row succeeded and the pass rate is met, 1 a row failed or
        it is not, 130 interrupted."""
        if self.status == "cancelled":
            return 130
        if self.status != "succeeded":
            return 1
        rate = self.pass_rate
        return 0 if rate is None or rate >= self.fail_under else 1

    @property
    def pass_rate(self) -> float | None:
        """The share of row-checks that passed (None: no checks ran)."""
        passed = sum(counts[0] for counts in self.check_counts.values())
        total = sum(sum(counts) for counts in self.check_counts.values())
        return passed / total if total else None

    def _count_checks(self, result: RowResult) -> None:
        """A row's checks; a row that failed fails every check (it has nothing to grade)."""
        if result.status == "cancelled":
            return
        verdicts = {c["id"]: c for c in result.checks}
        for check_id in self.check_ids:
            counts = self.check_counts.setdefault(check_id, [0, 0])
            verdict = verdicts.get(check_id)
            counts[0 if verdict is not None and verdict["passed"] else 1] += 1
            if check_id in self.judge_ids and verdict and verdict.get("score") is not None:
                self.judge_scores.append(verdict["score"])

    def add(self, result: RowResult) -> None:
        if self.variants:
            self.variants[result.variant_index].add(result)
        if result.status == "succeeded":
            self.succeeded += 1
        elif result.status == "failed":
            self.failed += 1
            error = result.error or {}
            self.last_error = f"row {result.row} (line {result.line}): {error.get('message')}"
            self.out_of_budget |= error.get("type") == "budget"
        else:
            self.cancelled += 1
        self.reused += result.reused
        self.usage = self.usage + result.usage
        self.cost_usd = total_cost([self.cost_usd, result.cost_usd])
        self.price_notes |= result.price_notes
        if not result.reused and result.status != "cancelled":
            self.latencies.append(result.duration_ms)
        self._count_checks(result)

    def note(self, event: Event) -> None:
        """An event of a row's run that the batch counts: retries, and their waits."""
        if isinstance(event, StepRetrying):
            self.retries += 1
            self.waiting_until = max(self.waiting_until, self.clock() + event.delay)

    def finish(self, *, interrupted: bool) -> None:
        """The batch's status: cancelled when interrupted (or rows did not run), failed
        when a row failed, the budget's stop included (its rows not started count as
        cancelled, for `--resume` to run)."""
        for variant in self.variants:
            variant.finish(interrupted=interrupted)
        self.ended = self.clock()
        self.cancelled += self.rows - self.done  # rows never started
        if interrupted or (self.cancelled and not self.out_of_budget):
            self.status = "cancelled"
        else:
            self.status = "failed" if self.failed else "succeeded"

    def checks_dict(self) -> dict[str, dict[str, Any]]:
        """SPEC 9: each check's passed, failed and pass rate."""
        return {
            check_id: {
                "passed": passed,
                "failed": failed,
                "pass_rate": round(passed / (passed + failed), 4) if passed + failed else None,
            }
            for check_id, (passed, failed) in self.check_counts.items()
        }

    @property
    def mean_judge_score(self) -> float | None:
        scores = self.judge_scores
        return round(sum(scores) / len(scores), 4) if scores else None

    def latency_dict(self) -> dict[str, int | None]:
        latencies = array.array("l", sorted(self.latencies))
        return {"p50": _percentile(latencies, 0.5), "p95": _percentile(latencies, 0.95)}

    def variant_dict(self) -> dict[str, Any]:
        """One combination of --matrix: what the comparison table shows."""
        rate = self.pass_rate
        return {
            "variant": self.variant,
            "rows": self.rows,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "checks": self.checks_dict(),
            "pass_rate": None if rate is None else round(rate, 4),
            "mean_judge_score": self.mean_judge_score,
            "usage": self.usage.to_dict(),
            "cost_usd": self.cost_usd,
            "latency_ms": self.latency_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        elapsed = self.elapsed
        rate = self.pass_rate
        return {
            "batch_id": self.batch_id,
            "workflow": self.workflow,
            "file": self.file,
            "data": self.data,
            "status": self.status,
            "started_at": self.started_at,
            "rows": self.rows,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "usage": self.usage.to_dict(),
            "cost_usd": self.cost_usd,
            "notes": sorted(self.price_notes),
            "duration_ms": round(elapsed * 1000),
            "latency_ms": self.latency_dict(),
            "rows_per_second": round(self.done / elapsed, 2) if elapsed > 0 else None,
            "retries": self.retries,
            "reused": self.reused,
            "checks": self.checks_dict(),
            "pass_rate": None if rate is None else round(rate, 4),
            "fail_under": self.fail_under,
            "variants": [variant.variant_dict() for variant in self.variants],
            "resumed_from": self.resumed_from,
        }


class BatchObserver(Protocol):
    """What the progress display gets: the summary to read, and each row as it ends."""

    def started(self, summary: BatchSummary) -> None: ...

    def row_finished(self, result: RowResult) -> None: ...

    def finished(self, summary: BatchSummary) -> None: ...


# --- the runner ------------------------------------------------------------------------------


class RowHooks(Protocol):
    """Where the history (or anything else) joins each row: `--resume`, recording."""

    def prior(self, index: int, row: RawRow) -> PriorRow | None: ...

    def observers(self, index: int, row: RawRow) -> list[Callable[[Event], None]]: ...


@attrs.frozen
class Variant:
    """One combination of `--matrix` (SPEC 9): the settings as given, and the workflow,
    options and inputs they make."""

    settings: dict[str, str] | None  # None: the batch has no --matrix
    prepared: PreparedRun
    options: RunOptions
    inputs: dict[str, Any] = attrs.field(factory=dict)  # over each row's own


class BatchRunner:
    """Runs prepared rows with one shared concurrency limit and one provider pool; under
    --matrix each row once per variant (row by row, so the variants advance together)."""

    def __init__(
        self,
        prepared: PreparedRun,
        *,
        pool: ProviderPool,
        options: RunOptions,
        summary: BatchSummary,
        hooks: RowHooks | None = None,
        observers: Iterable[BatchObserver] = (),
        window: int | None = None,
        env: Mapping[str, str] | None = None,
        variants: Sequence[Variant] = (),
    ) -> None:
        from orchestrate._api import check_runner

        self.prepared = prepared
        self.pool = pool
        self.options = options
        self.summary = summary
        self.hooks = hooks
        self.observers = list(observers)
        self.window = window or WINDOW_PER_SLOT * options.max_concurrency
        self.env = os.environ if env is None else env
        self.plan = build_plan(prepared.workflow)  # settings never change the graph
        self.semaphore = asyncio.Semaphore(options.max_concurrency)
        self.variants = list(variants) or [Variant(None, prepared, options)]
        self.checks = [
            check_runner(v.prepared, v.options, pool, self.env, self.semaphore)
            for v in self.variants
        ]

    async def run(
        self, rows: Iterable[tuple[RawRow, dict[str, Any]]], emit: Callable[[RowResult], None]
    ) -> BatchSummary:
        """Run every row; `emit` gets the results in row order. Cancelled (Ctrl-C): stop
        starting rows, cancel those running, emit what is done, and return."""
        window = asyncio.Semaphore(self.window)
        finished: dict[int, RowResult] = {}
        written = 0
        running: set[asyncio.Task[None]] = set()

        def flush() -> None:
            nonlocal written
            while written in finished:
                emit(finished.pop(written))
                written += 1
                window.release()

        async def one(
            job: int, index: int, variant: int, row: RawRow, inputs: dict[str, Any]
        ) -> None:
            result = await self._row(job, index, variant, row, inputs)
            self.summary.add(result)
            for observer in self.observers:
                observer.row_finished(result)
            finished[job] = result
            flush()

        for observer in self.observers:
            observer.started(self.summary)
        interrupted = False
        try:
            job = 0
            for index, (row, inputs) in enumerate(rows):
                for number, variant in enumerate(self.variants):
                    await window.acquire()
                    if self.summary.out_of_budget:  # the rows under way finish; no new one
                        break
                    task = asyncio.create_task(
                        one(job, index, number, row, {**inputs, **variant.inputs})
                    )
                    running.add(task)
                    task.add_done_callback(running.discard)
                    job += 1
                if self.summary.out_of_budget:
                    break
            while running:
                await asyncio.wait(set(running))
        except asyncio.CancelledError:
            interrupted = True
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        for job in sorted(finished):  # after an interruption, past the rows never done
            emit(finished.pop(job))
        self.summary.finish(interrupted=interrupted)
        for observer in self.observers:
            observer.finished(self.summary)
        return self.summary

    async def _row(
        self, job: int, index: int, number: int, row: RawRow, inputs: dict[str, Any]
    ) -> RowResult:
        """Row `index` under variant `number`; `job` is its place in the output (the row
        itself without --matrix)."""
        started = time.perf_counter()
        variant = self.variants[number]
        try:
            prior = self.hooks.prior(job, row) if self.hooks else None
            if prior is not None and prior.document is not None:
                return RowResult.of_document(index, row, prior.document)
            observers = [*(self.hooks.observers(job, row) if self.hooks else ()), self.summary.note]
            prepared, checks = variant.prepared, self.checks[number]
            engine = Engine(
                prepared.workflow,
                pool=self.pool,
                options=variant.options,
                observers=observers,
                reuse=prior.reuse if prior else None,
                locate=prepared.locate,
                functions=prepared.functions,
                subworkflows=prepared.subworkflow,
                semaphore=self.semaphore,
                env=self.env,
                plan=self.plan,
                after_run=functools.partial(checks.with_checks, row=row.values) if checks else None,
            )
            result = await engine.run(
                inputs, file=prepared.file, resumed_from=prior.run_id if prior else None
            )
            outcome = RowResult.of_run(index, row, result)
        except Exception as exc:  # a row never takes the batch down
            outcome = RowResult.crashed(
                index, row, inputs, exc, round((time.perf_counter() - started) * 1000)
            )
        if variant.settings is not None:
            outcome = attrs.evolve(outcome, variant=variant.settings, variant_index=number)
        return outcome


# --- --matrix ----------------------------------------------------------------------------------

MATRIX_KEYS = ("model", "provider", "temperature", "max_tokens")


def parse_matrix(entries: Sequence[str]) -> list[tuple[str, list[str]]]:
    """`--matrix KEY=V1,V2` entries as (key, values); UsageError for a bad one."""
    axes: list[tuple[str, list[str]]] = []
    for entry in entries:
        key, sep, values = entry.partition("=")
        key = key.strip()
        if not sep or not values.strip():
            raise UsageError(
                f"cannot read --matrix {entry!r}",
                hint="write KEY=V1,V2, e.g. --matrix model=gpt-4o,gpt-4o-mini",
            )
        if key not in MATRIX_KEYS and not (key.startswith("inputs.") and key[7:]):
            from orchestrate._hints import did_you_mean

            raise UsageError(
                f"--matrix cannot vary {key!r}",
                hint=did_you_mean(key, MATRIX_KEYS)
                or "vary model, provider, temperature, max_tokens or inputs.NAME",
            )
        if key in (k for k, _ in axes):
            raise UsageError(
                f"--matrix names {key!r} twice",
                hint=f"list every value in one --matrix {key}=V1,V2",
            )
        axes.append((key, [value.strip() for value in values.split(",")]))
    return axes


def matrix_variants(
    prepared: PreparedRun, options: RunOptions, axes: Sequence[tuple[str, list[str]]]
) -> list[Variant]:
    """Every combination of the axes, in order (the last axis varies fastest)."""
    import itertools

    from orchestrate._inputs import parse_assignments

    variants = []
    for values in itertools.product(*(values for _, values in axes)):
        settings = dict(zip((key for key, _ in axes), values, strict=True))
        changes = {
            key: _setting(key, value)
            for key, value in settings.items()
            if key in ("provider", "temperature", "max_tokens")
        }
        workflow = _with_settings(prepared.workflow, changes)
        given = [
            f"{key[7:]}={value}" for key, value in settings.items() if key.startswith("inputs.")
        ]
        variants.append(
            Variant(
                settings,
                attrs.evolve(prepared, workflow=workflow),
                attrs.evolve(options, model=settings.get("model", options.model)),
                parse_assignments(given, prepared.workflow.inputs),
            )
        )
    return variants


def _setting(key: str, value: str) -> Any:
    convert: Callable[[str], Any] = {"temperature": float, "max_tokens": int}.get(key, str)
    try:
        return convert(value)
    except ValueError:
        raise UsageError(f"--matrix {key}={value}: not a number") from None


def _with_settings(workflow: Workflow, changes: Mapping[str, Any]) -> Workflow:
    """The workflow with `changes` over every LLM step's settings."""
    if not changes:
        return workflow
    steps = tuple(
        attrs.evolve(step, settings=attrs.evolve(step.settings, **changes))
        if isinstance(step, LLMStep)
        else step
        for step in workflow.steps
    )
    return attrs.evolve(workflow, steps=steps)


# --- running a dataset -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Dataset:
    """Rows to run, and how they become inputs: read again for each pass."""

    read: Callable[[], Iterable[RawRow]]
    how: RowInputs
    fmt: str  # jsonl | json | csv (csv: text converted to the inputs' types)
    label: str  # the file as errors name it
    data: str | None = None  # the data file as given (for the history and the summary)
    limit: int | None = None

    def check(self) -> int:
        """The first pass: every row checked; the number of rows, or BadRows."""
        return check_rows(self.read(), self.how, fmt=self.fmt, label=self.label, limit=self.limit)

    def rows(self) -> Iterator[tuple[RawRow, dict[str, Any]]]:
        """The second pass: each row with its inputs."""
        for count, row in enumerate(self.read()):
            if self.limit is not None and count >= self.limit:
                return
            yield row, self.how.inputs(row, from_text=self.fmt == "csv")


async def run_dataset(
    prepared: PreparedRun,
    dataset: Dataset,
    *,
    emit: Callable[[RowResult], None],
    options: RunOptions | None = None,
    history: HistoryOptions | None = None,
    resume: str | None = None,
    observers: Iterable[BatchObserver] = (),
    env: Mapping[str, str] | None = None,
    matrix: Sequence[tuple[str, list[str]]] = (),
    fail_under: float = 1.0,
    budget: Budget | None = None,
) -> BatchSummary:
    """Check every row, then run them all (once per combination of `matrix`, see
    :func:`parse_matrix`); raises BadRows (nothing run) or a UsageError (a missing key, a
    bad --resume or --matrix) or a ConfigError (a budget and a model without a price)
    before the first call. `fail_under` is the share of row-checks that must pass for
    exit 0.

    `budget` (default: one of the workflow's `defaults.max_cost`) is shared by every row:
    the one provider pool meters every call against it. SIGTERM (in the main thread)
    stops the rows as Ctrl-C does, then raises Terminated with the summary.
    """
    from orchestrate._api import models_in_use, providers_in_use, run_budget
    from orchestrate._pricing import Pricing

    env = os.environ if env is None else env
    options = options or RunOptions(max_concurrency=DEFAULT_CONCURRENCY)
    budget = budget or run_budget(prepared, None)
    if matrix and resume:
        raise UsageError(
            "--resume cannot be used with --matrix",
            hint="run the matrix again, or resume one variant's batch",
        )
    variants = matrix_variants(prepared, options, matrix) if matrix else []
    total = dataset.check()
    session: BatchSession | None = None
    checks = prepared.workflow.checks if options.checks else ()
    summary = _summary(prepared, dataset, total, variants, checks, fail_under)
    mock = options.mock
    if history is not None:
        from orchestrate.history._batches import BatchSession

        session = BatchSession.start(
            prepared,
            history,
            summary=summary,
            dataset=dataset,
            run_options=options,
            resume=resume,
            env=env,
        )
        mock = session.mock
        observers = [session, *observers]
    options = attrs.evolve(options, mock=mock)
    variants = [attrs.evolve(v, options=attrs.evolve(v.options, mock=mock)) for v in variants]
    finished = False
    try:
        pricing = Pricing(endpoints_of(prepared))
        replaying = session is not None and session.session.replay_fixture is not None
        every = variants or [Variant(None, prepared, options)]
        if budget is not None and not replaying:  # a replay costs nothing
            check_prices(
                set().union(*(models_in_use(v.prepared, v.options, env) for v in every)), pricing
            )
        pool = ProviderPool(
            endpoints_of(prepared),
            mock=mock,
            env=env,
            concurrency=options.max_concurrency,
            wrap=metered(pricing, budget, session.wrap if session else None),
        )
        try:
            for variant in every:
                pool.check(providers_in_use(variant.prepared, variant.options, env))
            summary.rate_waits = pool.rate_waits
            runner = BatchRunner(
                prepared,
                pool=pool,
                options=options,
                summary=summary,
                hooks=session,
                observers=observers,
                env=env,
                variants=variants,
            )
            with sigterm_cancels_the_run() as terminated:
                await runner.run(dataset.rows(), emit)
            finished = True
        finally:
            await pool.aclose()
    finally:
        if session is not None:
            session.close(ran=finished)
    if terminated:
        raise Terminated(summary)
    return summary


def _summary(
    prepared: PreparedRun,
    dataset: Dataset,
    total: int,
    variants: list[Variant],
    checks: Sequence[Any],
    fail_under: float,
) -> BatchSummary:
    """The batch's summary, with one per variant under --matrix."""
    from orchestrate._spec import JudgeCheck

    common: dict[str, Any] = {
        "workflow": prepared.workflow.name,
        "file": prepared.file,
        "data": dataset.data,
        "check_ids": tuple(c.id for c in checks),
        "fail_under": fail_under,
        "judge_ids": frozenset(c.id for c in checks if isinstance(c, JudgeCheck)),
    }
    batch_id = new_run_id()
    return BatchSummary(
        batch_id=batch_id,
        rows=total * max(1, len(variants)),
        **common,
        variants=[
            BatchSummary(batch_id=batch_id, rows=total, variant=v.settings, **common)
            for v in variants
        ],
    )


@attrs.frozen
class BatchResult:
    """What :func:`run_batch` returns: every row's result in order, and the summary."""

    rows: list[RowResult]
    summary: BatchSummary

    @property
    def exit_code(self) -> int:
        return self.summary.exit_code


def run_batch(
    workflow: str | Path,
    rows: Iterable[Mapping[str, Any]],
    *,
    inputs: Mapping[str, Any] | None = None,
    mapping: Mapping[str, str] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    limit: int | None = None,
    mock: bool | None = None,
    model: str | None = None,
    max_cost: float | None = None,
    history: HistoryOptions | None = None,
    env: Mapping[str, str] | None = None,
    on_row: Callable[[RowResult], None] | None = None,
) -> BatchResult:
    """Run a workflow once per row (each a mapping of input names, or of columns that
    `mapping` maps inputs to) and return every row's result with the summary.

    `inputs` are shared by every row (a row's own value wins). Every row is checked before
    the first call: BadRows lists the bad ones (their 1-based number as `line`). `on_row`
    gets each result in row order as soon as it is ready. `max_cost` is a budget in USD
    shared by every row (default: the workflow's `defaults.max_cost`). `history` records
    the batch as `orchestrate batch` does; by default nothing is written.
    """
    from orchestrate._api import mock_from_env, prepare, run_budget

    env = os.environ if env is None else env
    prepared = prepare(workflow, inputs, partial=True)
    listed = rows if isinstance(rows, list | tuple) else list(rows)  # read twice
    dataset = Dataset(
        read=lambda: rows_from_mappings(listed),
        how=RowInputs(prepared.workflow.inputs, dict(mapping or {}), prepared.inputs),
        fmt="json",
        label="<rows>",
        limit=limit,
    )
    results: list[RowResult] = []

    def keep(result: RowResult) -> None:
        results.append(result)
        if on_row is not None:
            on_row(result)

    use_mock = mock_from_env(env) if mock is None else mock
    options = RunOptions(model=model, max_concurrency=concurrency, mock=use_mock)
    summary = asyncio.run(
        run_dataset(
            prepared,
            dataset,
            emit=keep,
            options=options,
            history=history,
            env=env,
            budget=run_budget(prepared, max_cost),
        )
    )
    return BatchResult(results, summary)


@attrs.frozen(kw_only=True)
class BatchRequest:
    """What `orchestrate batch` is asked, checked as it is made (a UsageError naming the
    option): rows from a data file, or from the batch `resume` names."""

    flow: str = attrs.field(validator=validate_not_empty)
    data: str | None = attrs.field(default=None, validator=validate_not_empty)  # `-`: stdin
    mapping: tuple[str, ...] = ()  # `--map INPUT=COLUMN`
    assignments: tuple[str, ...] = ()  # `-i NAME=VALUE`, shared by every row
    inputs_file: str | None = attrs.field(default=None, validator=validate_not_empty)
    output: str | None = attrs.field(default=None, validator=validate_not_empty)  # None: stdout
    concurrency: int = attrs.field(default=DEFAULT_CONCURRENCY, validator=MAX_CONCURRENCY.validate)
    limit: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(RUNS_LIMIT.validate)
    )
    mock: bool = False
    model: str | None = attrs.field(default=None, validator=validate_not_empty)
    max_cost: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    resume: str | None = attrs.field(default=None, validator=validate_not_empty)
    history: HistoryOptions | None = None  # None: nothing recorded
    # SPEC 9: the checks, the pass rate for exit 0, JUnit XML, and the variants
    checks: bool = True
    fail_under: float = attrs.field(
        default=1.0, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )
    junit: str | None = attrs.field(default=None, validator=validate_not_empty)
    matrix: tuple[str, ...] = ()  # `--matrix KEY=V1,V2`

    def rows_and_inputs(self, env: Mapping[str, str]) -> tuple[str, dict[str, Any], list[str]]:
        """The data file, the shared inputs and the `--map` pairs: those given, else (with
        `resume`) the resumed batch's; UsageError without a data file."""
        from orchestrate._inputs import read_inputs_file

        data, mapping = self.data, list(self.mapping)
        given = read_inputs_file(self.inputs_file) if self.inputs_file else {}
        own_inputs = bool(self.mapping or self.assignments or self.inputs_file)
        if self.resume and (data is None or not own_inputs):
            from orchestrate.history._batches import resumed_batch

            database = self.history.database if self.history else None
            earlier = resumed_batch(self.resume, env, database)
            data = data or earlier["data"]
            if not own_inputs:
                settings = earlier["settings"]
                given = settings.get("inputs") or {}
                mapping = [f"{k}={v}" for k, v in (settings.get("map") or {}).items()]
        if data is None:
            raise UsageError("batch needs the rows: --data FILE (or - for stdin)")
        return data, given, mapping


def run_request(
    request: BatchRequest,
    *,
    stdout: IO[str],
    observers: Iterable[BatchObserver] = (),
    env: Mapping[str, str] | None = None,
) -> BatchSummary:
    """Run a BatchRequest: rows from its data file (stdin for `-`), written to its output
    (else `stdout`) in the format of its extension; the summary. Every error that stops
    the batch (bad options, rows, workflow, a budget without prices) comes before the
    first call."""
    from orchestrate._api import mock_from_env, prepare, run_budget

    env = os.environ if env is None else env
    out_format = output_format(request.output) if request.output else "jsonl"
    data, given, mapping = request.rows_and_inputs(env)
    prepared = prepare(request.flow, given, assignments=list(request.assignments), partial=True)
    specs = prepared.workflow.inputs
    how = RowInputs(specs, parse_mapping(mapping, specs), prepared.inputs)
    fmt = data_format(data)
    label = data_label(data)
    # the mock variables are checked even with --mock
    options = RunOptions(
        model=request.model,
        max_concurrency=request.concurrency,
        mock=mock_from_env(env) or request.mock,
        checks=request.checks,
    )
    matrix = parse_matrix(request.matrix)
    with (
        data_file(data) as path,
        open_output(request.output or "-", stdout=stdout, private=False) as out,
    ):
        if fmt == "csv":
            how.check_header(header_of(path, label), label)
        dataset = Dataset(
            read=lambda: read_rows(path, fmt, label),
            how=how,
            fmt=fmt,
            label=label,
            data=data,
            limit=request.limit,
        )
        write = row_writer(out_format, out, prepared.workflow)
        report = (
            JUnitRows(Path(request.junit), prepared.workflow, request.checks)
            if request.junit
            else None
        )

        def emit(result: RowResult) -> None:
            write(result)
            if report is not None:
                report(result)

        summary = asyncio.run(
            run_dataset(
                prepared,
                dataset,
                emit=emit,
                options=options,
                history=request.history,
                resume=request.resume,
                observers=observers,
                env=env,
                budget=run_budget(prepared, request.max_cost),
                matrix=matrix,
                fail_under=request.fail_under,
            )
        )
    if report is not None:
        try:
            report.close()
        except OSError as exc:
            raise UsageError(f"cannot write --junit {request.junit}: {exc.strerror}") from None
    return summary


# --- writing rows ------------------------------------------------------------------------------


class JsonLinesRows:
    """`--output FILE.jsonl` (and stdout): one JSON object a row (SPEC 8)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def __call__(self, result: RowResult) -> None:
        self.out.write(json.dumps(result.to_dict(), ensure_ascii=False, default=str) + "\n")
        self.out.flush()  # a reader (`| jq`) sees each row as it is written


class CsvRows:
    """`--output FILE.csv`: row, status, each input, output.NAME, error, cost_usd; values
    that are not strings as JSON."""

    def __init__(self, out: IO[str], inputs: Iterable[str], outputs: Iterable[str]) -> None:
        import csv

        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.writer = csv.writer(out, lineterminator="\n")
        self.writer.writerow(
            [
                "row",
                "status",
                *self.inputs,
                *(f"output.{name}" for name in self.outputs),
                "error",
                "cost_usd",
            ]
        )

    def __call__(self, result: RowResult) -> None:
        error = result.error["message"] if result.error else ""
        self.writer.writerow(
            [
                result.row,
                result.status,
                *(_cell(result.inputs.get(n)) for n in self.inputs),
                *(_cell(result.outputs.get(n)) for n in self.outputs),
                error,
                "" if result.cost_usd is None else result.cost_usd,
            ]
        )


class JUnitRows:
    """`--junit FILE`: JUnit XML with one testcase per row and check (SPEC 9), which CI
    systems show as tests. Testcases go to a temporary file as rows come (memory stays
    flat); :meth:`close` writes FILE with the counts the header needs."""

    def __init__(self, path: Path, workflow: Workflow, checks: bool = True) -> None:
        import tempfile

        self.path = path
        self.workflow = workflow.name
        self.check_ids = [c.id for c in workflow.checks] if checks else []
        # closed by close(): it lives as long as the batch
        self.cases = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self.tests = self.failures = self.errors = 0
        self.seconds = 0.0

    def __call__(self, result: RowResult) -> None:
        if result.status == "cancelled":
            return
        label = f"{self.workflow}.row {result.row} (line {result.line})"
        if result.variant:
            label += " [" + ", ".join(f"{k}={v}" for k, v in result.variant.items()) + "]"
        seconds = result.duration_ms / 1000
        self.seconds += seconds
        verdicts = {check["id"]: check for check in result.checks}
        for check_id in self.check_ids or ["run"]:
            self.tests += 1
            body = self._outcome(result, verdicts.get(check_id), check_id)
            self.cases.write(
                f"    <testcase classname={_attr(label)} name={_attr(check_id)} "
                f'time="{seconds:.3f}"{">" + body + "</testcase>" if body else "/>"}'
                "\n"
            )

    def _outcome(self, result: RowResult, verdict: dict[str, Any] | None, check_id: str) -> str:
        """The testcase's body: nothing when it passed."""
        from xml.sax.saxutils import escape

        if result.status != "succeeded":
            self.errors += 1
            message = f"the run failed: {(result.error or {}).get('message')}"
            return (
                f'<error type="run" message={_attr(message)}>{escape(_xml_text(message))}</error>'
            )
        if self.check_ids and (verdict is None or not verdict["passed"]):
            self.failures += 1
            message = (verdict or {}).get("message") or f"check {check_id} failed"
            if verdict and verdict.get("score") is not None:
                message = f"score {verdict['score']:g}: {message}"
            return (
                f'<failure type="check" message={_attr(message)}>'
                f"{escape(_xml_text(message))}</failure>"
            )
        return ""

    def close(self) -> None:
        """Write FILE; OSError if it cannot be written."""
        self.cases.seek(0)
        counts = (
            f'tests="{self.tests}" failures="{self.failures}" errors="{self.errors}" '
            f'time="{self.seconds:.3f}"'
        )
        with open(self.path, "w", encoding="utf-8") as out:
            out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
            out.write(f"<testsuites {counts}>\n")
            out.write(f"  <testsuite name={_attr(self.workflow)} {counts}>\n")
            for line in self.cases:
                out.write(line)
            out.write("  </testsuite>\n</testsuites>\n")
        self.cases.close()


def _xml_text(text: str) -> str:
    """Text without the characters XML 1.0 cannot hold (control characters)."""
    return "".join(c for c in text if c in "\t\n\r" or ord(c) >= 0x20)


def _attr(text: str) -> str:
    from xml.sax.saxutils import quoteattr

    return quoteattr(_xml_text(text))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def row_writer(fmt: str, out: IO[str], workflow: Workflow) -> Callable[[RowResult], None]:
    """The writer of rows in `fmt` (jsonl or csv) on the stream `out`."""
    if fmt == "csv":
        return CsvRows(out, workflow.inputs, workflow.output_names)
    return JsonLinesRows(out)


def output_format(path: str) -> str:
    """`jsonl` or `csv`, from `--output`'s extension; UsageError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise UsageError(
        f"cannot tell the format of --output {path}", hint="name a .jsonl or a .csv file"
    )
