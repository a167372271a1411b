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
import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import attrs

from orchestrate._cost import UNKNOWN_PRICE, check_prices, metered
from orchestrate._engine import Engine, RunOptions, iso_now, new_run_id
from orchestrate._errors import OrchestrateError, Terminated, UsageError
from orchestrate._events import Event, StepRetrying
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
from orchestrate._spec import Workflow
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

    @classmethod
    def of_run(cls, index: int, row: RawRow, result: RunResult) -> RowResult:
        price_notes = frozenset(note for step in result.steps if step.cost_usd is None
                                for note in step.warnings if note.startswith(UNKNOWN_PRICE))
        return cls(row=index, line=row.line, status=result.status, inputs=result.inputs,
                   outputs=result.outputs,
                   error=result.error.to_dict() if result.error else None,
                   usage=result.usage, duration_ms=result.duration_ms, run_id=result.run_id,
                   values=row.values, cost_usd=result.cost_usd, price_notes=price_notes)

    @classmethod
    def of_document(cls, index: int, row: RawRow, doc: Mapping[str, Any]) -> RowResult:
        """A row that succeeded in an earlier batch, from its recorded result document: this
        batch paid nothing for it (as for a step reused by `run --resume`)."""
        usage = doc.get("usage") or {}
        return cls(row=index, line=row.line, status=doc["status"], inputs=doc["inputs"],
                   outputs=doc.get("outputs") or {}, error=doc.get("error"),
                   usage=Usage(usage.get("input_tokens", 0), usage.get("output_tokens", 0)),
                   duration_ms=doc.get("duration_ms") or 0, run_id=doc["run_id"],
                   values=row.values, cost_usd=0.0, reused=True)

    @classmethod
    def crashed(cls, index: int, row: RawRow, inputs: dict[str, Any], exc: Exception,
                duration_ms: int) -> RowResult:
        """A row whose run raised instead of returning a result (a bug, or the history):
        what it paid is not known."""
        message = getattr(exc, "message", None) or f"internal error: {exc!r}"
        return cls(row=index, line=row.line, status="failed", inputs=inputs, outputs={},
                   error={"step": None, "type": getattr(exc, "error_type", "internal"),
                          "message": message},
                   usage=Usage(), duration_ms=duration_ms, run_id=None, values=row.values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row, "line": self.line, "status": self.status, "inputs": self.inputs,
            "outputs": self.outputs, "error": self.error, "checks": list(self.checks),
            "usage": self.usage.to_dict(), "cost_usd": self.cost_usd,
            "duration_ms": self.duration_ms, "run_id": self.run_id,
        }


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
        """SPEC 8: 0 every row succeeded, 1 a row failed, 130 interrupted."""
        if self.status == "cancelled":
            return 130
        return 0 if self.status == "succeeded" else 1

    def add(self, result: RowResult) -> None:
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

    def note(self, event: Event) -> None:
        """An event of a row's run that the batch counts: retries, and their waits."""
        if isinstance(event, StepRetrying):
            self.retries += 1
            self.waiting_until = max(self.waiting_until, self.clock() + event.delay)

    def finish(self, *, interrupted: bool) -> None:
        """The batch's status: cancelled when interrupted (or rows did not run), failed
        when a row failed, the budget's stop included (its rows not started count as
        cancelled, for `--resume` to run)."""
        self.ended = self.clock()
        self.cancelled += self.rows - self.done  # rows never started
        if interrupted or (self.cancelled and not self.out_of_budget):
            self.status = "cancelled"
        else:
            self.status = "failed" if self.failed else "succeeded"


    def to_dict(self) -> dict[str, Any]:
        latencies = array.array("l", sorted(self.latencies))
        elapsed = self.elapsed
        return {
            "batch_id": self.batch_id, "workflow": self.workflow, "file": self.file,
            "data": self.data, "status": self.status, "started_at": self.started_at,
            "rows": self.rows, "succeeded": self.succeeded, "failed": self.failed,
            "cancelled": self.cancelled, "usage": self.usage.to_dict(),
            "cost_usd": self.cost_usd, "notes": sorted(self.price_notes),
            "duration_ms": round(elapsed * 1000),
            "latency_ms": {"p50": _percentile(latencies, 0.5),
                           "p95": _percentile(latencies, 0.95)},
            "rows_per_second": round(self.done / elapsed, 2) if elapsed > 0 else None,
            "retries": self.retries, "reused": self.reused,
            "checks": {},  # SPEC 9: each check's pass rate
            "variants": [],  # SPEC 9: --matrix
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


class BatchRunner:
    """Runs prepared rows with one shared concurrency limit and one provider pool."""

    def __init__(self, prepared: PreparedRun, *, pool: ProviderPool, options: RunOptions,
                 summary: BatchSummary, hooks: RowHooks | None = None,
                 observers: Iterable[BatchObserver] = (), window: int | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.prepared = prepared
        self.pool = pool
        self.options = options
        self.summary = summary
        self.hooks = hooks
        self.observers = list(observers)
        self.window = window or WINDOW_PER_SLOT * options.max_concurrency
        self.env = os.environ if env is None else env
        self.plan = build_plan(prepared.workflow)
        self.semaphore = asyncio.Semaphore(options.max_concurrency)

    async def run(self, rows: Iterable[tuple[RawRow, dict[str, Any]]],
                  emit: Callable[[RowResult], None]) -> BatchSummary:
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

        async def one(index: int, row: RawRow, inputs: dict[str, Any]) -> None:
            result = await self._row(index, row, inputs)
            self.summary.add(result)
            for observer in self.observers:
                observer.row_finished(result)
            finished[index] = result
            flush()

        for observer in self.observers:
            observer.started(self.summary)
        interrupted = False
        try:
            for index, (row, inputs) in enumerate(rows):
                await window.acquire()
                if self.summary.out_of_budget:  # the rows under way finish; no new one
                    break
                task = asyncio.create_task(one(index, row, inputs))
                running.add(task)
                task.add_done_callback(running.discard)
            while running:
                await asyncio.wait(set(running))
        except asyncio.CancelledError:
            interrupted = True
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        for index in sorted(finished):  # after an interruption, past the rows never done
            emit(finished.pop(index))
        self.summary.finish(interrupted=interrupted)
        for observer in self.observers:
            observer.finished(self.summary)
        return self.summary

    async def _row(self, index: int, row: RawRow, inputs: dict[str, Any]) -> RowResult:
        started = time.perf_counter()
        try:
            prior = self.hooks.prior(index, row) if self.hooks else None
            if prior is not None and prior.document is not None:
                return RowResult.of_document(index, row, prior.document)
            observers = [*(self.hooks.observers(index, row) if self.hooks else ()),
                         self.summary.note]
            prepared = self.prepared
            engine = Engine(
                prepared.workflow, pool=self.pool, options=self.options, observers=observers,
                reuse=prior.reuse if prior else None, locate=prepared.locate,
                functions=prepared.functions, subworkflows=prepared.subworkflow,
                semaphore=self.semaphore, env=self.env, plan=self.plan,
            )
            result = await engine.run(inputs, file=prepared.file,
                                      resumed_from=prior.run_id if prior else None)
        except Exception as exc:  # a row never takes the batch down
            return RowResult.crashed(index, row, inputs, exc,
                                     round((time.perf_counter() - started) * 1000))
        return self.after_row(RowResult.of_run(index, row, result))

    def after_row(self, result: RowResult) -> RowResult:
        """Where a row's checks (SPEC 9) and cost (SPEC 10) will be added."""
        return result


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
        return check_rows(self.read(), self.how, fmt=self.fmt, label=self.label,
                          limit=self.limit)

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
    budget: Budget | None = None,
) -> BatchSummary:
    """Check every row, then run them all; raises BadRows (nothing run) or a UsageError
    (a missing key, a bad --resume) or a ConfigError (a budget and a model without a
    price) before the first call.

    `budget` (default: one of the workflow's `defaults.max_cost`) is shared by every row:
    the one provider pool meters every call against it. SIGTERM (in the main thread)
    stops the rows as Ctrl-C does, then raises Terminated with the summary.
    """
    from orchestrate._api import models_in_use, providers_in_use, run_budget
    from orchestrate._pricing import Pricing

    env = os.environ if env is None else env
    options = options or RunOptions(max_concurrency=DEFAULT_CONCURRENCY)
    budget = budget or run_budget(prepared, None)
    total = dataset.check()
    session: BatchSession | None = None
    summary = BatchSummary(batch_id=new_run_id(), workflow=prepared.workflow.name,
                           file=prepared.file, data=dataset.data, rows=total)
    mock = options.mock
    if history is not None:
        from orchestrate.history._batches import BatchSession

        session = BatchSession.start(prepared, history, summary=summary, dataset=dataset,
                                     run_options=options, resume=resume, env=env)
        mock = session.mock
        observers = [session, *observers]
    options = attrs.evolve(options, mock=mock)
    finished = False
    try:
        pricing = Pricing(endpoints_of(prepared))
        replaying = session is not None and session.session.replay_fixture is not None
        if budget is not None and not replaying:  # a replay costs nothing
            check_prices(models_in_use(prepared, options, env), pricing)
        pool = ProviderPool(endpoints_of(prepared), mock=mock, env=env,
                            concurrency=options.max_concurrency,
                            wrap=metered(pricing, budget, session.wrap if session else None))
        try:
            pool.check(providers_in_use(prepared, options, env))
            summary.rate_waits = pool.rate_waits
            runner = BatchRunner(prepared, pool=pool, options=options, summary=summary,
                                 hooks=session, observers=observers, env=env)
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
    dataset = Dataset(read=lambda: rows_from_mappings(listed),
                      how=RowInputs(prepared.workflow.inputs, dict(mapping or {}),
                                    prepared.inputs),
                      fmt="json", label="<rows>", limit=limit)
    results: list[RowResult] = []

    def keep(result: RowResult) -> None:
        results.append(result)
        if on_row is not None:
            on_row(result)

    use_mock = mock_from_env(env) if mock is None else mock
    options = RunOptions(model=model, max_concurrency=concurrency, mock=use_mock)
    summary = asyncio.run(run_dataset(prepared, dataset, emit=keep, options=options,
                                      history=history, env=env,
                                      budget=run_budget(prepared, max_cost)))
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
    concurrency: int = attrs.field(default=DEFAULT_CONCURRENCY,
                                   validator=MAX_CONCURRENCY.validate)
    limit: int | None = attrs.field(default=None,
                                    validator=attrs.validators.optional(RUNS_LIMIT.validate))
    mock: bool = False
    model: str | None = attrs.field(default=None, validator=validate_not_empty)
    max_cost: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0)))
    resume: str | None = attrs.field(default=None, validator=validate_not_empty)
    history: HistoryOptions | None = None  # None: nothing recorded

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


def run_request(request: BatchRequest, *, stdout: IO[str],
                observers: Iterable[BatchObserver] = (),
                env: Mapping[str, str] | None = None) -> BatchSummary:
    """Run a BatchRequest: rows from its data file (stdin for `-`), written to its output
    (else `stdout`) in the format of its extension; the summary. Every error that stops
    the batch (bad options, rows, workflow, a budget without prices) comes before the
    first call."""
    from orchestrate._api import mock_from_env, prepare, run_budget

    env = os.environ if env is None else env
    out_format = output_format(request.output) if request.output else "jsonl"
    data, given, mapping = request.rows_and_inputs(env)
    prepared = prepare(request.flow, given, assignments=list(request.assignments),
                       partial=True)
    specs = prepared.workflow.inputs
    how = RowInputs(specs, parse_mapping(mapping, specs), prepared.inputs)
    fmt = data_format(data)
    label = data_label(data)
    # the mock variables are checked even with --mock
    options = RunOptions(model=request.model, max_concurrency=request.concurrency,
                         mock=mock_from_env(env) or request.mock)
    with data_file(data) as path, _output_stream(request.output, stdout) as out:
        if fmt == "csv":
            how.check_header(header_of(path, label), label)
        dataset = Dataset(read=lambda: read_rows(path, fmt, label), how=how, fmt=fmt,
                          label=label, data=data, limit=request.limit)
        return asyncio.run(run_dataset(
            prepared, dataset, emit=row_writer(out_format, out, prepared.workflow),
            options=options, history=request.history, resume=request.resume,
            observers=observers, env=env, budget=run_budget(prepared, request.max_cost)))


@contextlib.contextmanager
def _output_stream(path: str | None, stdout: IO[str]) -> Iterator[IO[str]]:
    if path is None:
        yield stdout
        return
    try:
        stream = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise OrchestrateError(f"cannot write {path}: {exc.strerror}") from None
    with stream:
        yield stream



# --- writing rows ------------------------------------------------------------------------------


def output_names(workflow: Workflow) -> list[str]:
    """The names of a run's outputs: `outputs:`, else every step's id."""
    return list(workflow.outputs) if workflow.outputs is not None else workflow.step_ids


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
        self.writer.writerow(["row", "status", *self.inputs,
                              *(f"output.{name}" for name in self.outputs), "error",
                              "cost_usd"])

    def __call__(self, result: RowResult) -> None:
        error = result.error["message"] if result.error else ""
        self.writer.writerow([
            result.row, result.status, *(_cell(result.inputs.get(n)) for n in self.inputs),
            *(_cell(result.outputs.get(n)) for n in self.outputs), error,
            "" if result.cost_usd is None else result.cost_usd,
        ])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def row_writer(fmt: str, out: IO[str], workflow: Workflow) -> Callable[[RowResult], None]:
    """The writer of rows in `fmt` (jsonl or csv) on the stream `out`."""
    if fmt == "csv":
        return CsvRows(out, workflow.inputs, output_names(workflow))
    return JsonLinesRows(out)


def output_format(path: str) -> str:
    """`jsonl` or `csv`, from `--output`'s extension; UsageError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise UsageError(f"cannot tell the format of --output {path}",
                     hint="name a .jsonl or a .csv file")
