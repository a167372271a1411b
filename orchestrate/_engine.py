"""The run engine: one coordinator schedules steps as their dependencies finish.

The coordinator owns all scheduling state. Workers run one step each and always return
a StepResult (a failure is a result, never an exception escaping a task), so nothing is
lost when another step fails. Observers get events and do all the formatting; the engine
prints one thing itself, a warning on stderr when it drops an observer that raised.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import hashlib
import json
import os
import random
import reprlib
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import attrs

from orchestrate._errors import (
    FunctionError,
    InvalidOutput,
    ProviderError,
    StepError,
    StepTimeout,
    TemplateError,
)
from orchestrate._events import (
    Event,
    ItemFinished,
    Observer,
    RunFinished,
    RunStarted,
    StepFinished,
    StepQueued,
    StepRetrying,
    StepStarted,
    TokenReceived,
)
from orchestrate._functions import FunctionCall, FunctionKey, call_function, function_key
from orchestrate._loader import file_sha256
from orchestrate._output import parse_json_reply
from orchestrate._plan import Plan, build_plan
from orchestrate._result import (
    ErrorInfo,
    ItemResult,
    RunResult,
    RunStatus,
    StepResult,
    Usage,
    iso_time,
    total_cost,
)
from orchestrate._secrets import StreamRedactor, redact
from orchestrate._settings import MAX_CONCURRENCY, validate_not_empty
from orchestrate._spec import AnyStep, FunctionStep, LLMStep, Price, Workflow, WorkflowStep
from orchestrate._templating import (
    Expression,
    Problem,
    Template,
    is_truthy,
    parse_expression,
    parse_template,
    run_templates,
)
from orchestrate.providers import (
    MOCK,
    LLMRequest,
    ProviderPool,
    resolve_model,
    resolve_provider_name,
)

DEFAULT_TIMEOUT = 600.0
DEFAULT_RETRIES = 2
CANCELLED_OUTPUTS_SECONDS = 0.2  # what a cancelled run's outputs may take to render


class Reuse(Protocol):
    """Finished work of an earlier run that a step may take instead of running again."""

    def __call__(self, step: AnyStep, fingerprint: str) -> StepResult | None:
        """The step's earlier result, given the fingerprint of what it would do now."""

    def items(self, step: AnyStep) -> Mapping[str, ItemResult]:
        """A for_each step's earlier items that may be taken, by their fingerprint."""


# Given a step id and a field (`prompt`, `when`...), a "file:line:col" to put in errors.
Locate = Callable[[str, str], str | None]


@attrs.frozen(kw_only=True)
class RunOptions:
    # --model: overrides every LLM step
    model: str | None = attrs.field(default=None, validator=validate_not_empty)
    max_concurrency: int = attrs.field(default=8, validator=MAX_CONCURRENCY.validate)
    stream: bool = False  # ask providers for tokens (something shows them)
    mock: bool = False  # --mock: the mock answers every LLM step
    checks: bool = True  # evaluate the workflow's checks after the run (--no-checks: False)


@attrs.frozen
class SubWorkflowCall:
    workflow: Workflow
    inputs: dict[str, Any]

    def fingerprint_data(self) -> dict[str, Any]:
        path = self.workflow.path
        return {"workflow": str(path), "file_sha256": file_sha256(path), "inputs": self.inputs}


Unit = LLMRequest | FunctionCall | SubWorkflowCall


@attrs.frozen
class _Outcome:
    output: Any
    attempts: int = 0
    usage: Usage | None = None
    model: str | None = None
    response_id: str | None = None
    warnings: tuple[str, ...] = ()
    cached: bool = False
    cost_usd: float | None = None
    price: Price | None = None
    reused: bool = False


@attrs.define
class _Items:
    """A for_each step's items as they finish. A step that fails or is cancelled still
    reports what its finished items cost, and keeps those that succeeded for --resume."""

    earlier: dict[int, ItemResult] = attrs.Factory(dict)  # to take instead of running
    succeeded: dict[int, _Outcome] = attrs.Factory(dict)
    spent: list[_Outcome] = attrs.Factory(list)  # what the failed items cost
    # Each rendered unit's JSON, encoded once: the step's fingerprint, each item's, and
    # the items to take from an earlier run all hash it.
    encoded: dict[int, str] = attrs.Factory(dict)

    def unit_json(self, units: Sequence[Unit | None], index: int) -> str:
        found = self.encoded.get(index)
        if found is None:
            found = self.encoded[index] = _encode(_unit_data(units[index]))
        return found

    def fingerprint(self, step: AnyStep, units: Sequence[Unit | None]) -> str:
        """What a step would do, as a hash (called once every unit is rendered): the
        digest of ``[kind, [unit data, ...]]``, joined from each unit's JSON."""
        each = ", ".join(self.unit_json(units, i) for i in range(len(units)))
        return _sha256(f"[{_encode(step.kind)}, [{each}]]")

    def take_earlier(
        self, reusable: Mapping[str, ItemResult], units: Sequence[Unit | None]
    ) -> None:
        for index in range(len(units)):
            earlier = reusable.get(_sha256(self.unit_json(units, index)))
            if earlier is not None:
                self.earlier[index] = earlier

    def results(self, units: Sequence[Unit | None]) -> tuple[ItemResult, ...]:
        return tuple(
            ItemResult(
                index=i,
                output=o.output,
                fingerprint=_sha256(self.unit_json(units, i)),
                attempts=o.attempts,
                usage=o.usage,
                model=o.model,
                reused=o.reused,
            )
            for i, o in sorted(self.succeeded.items())
        )

    def settle(self, result: StepResult, units: Sequence[Unit | None]) -> StepResult:
        """A failed or cancelled step's result, with what its items cost and gave."""
        finished = [*self.succeeded.values(), *self.spent]
        if not finished:
            return result
        usage = _usage(finished)
        return attrs.evolve(
            result,
            attempts=sum(o.attempts for o in finished),
            usage=usage,
            cost_usd=None if usage is None else total_cost(o.cost_usd for o in finished),
            items=self.results(units),
        )


def choose_model(
    workflow: Workflow,
    step: LLMStep,
    model_override: str | None,
    env: Mapping[str, str],
    *,
    mock: bool = False,
) -> tuple[str, str]:
    """(provider, model) for an LLM step.

    `--model` picks the provider again from the model's name (claude-* -> anthropic),
    unless the step talks to a custom endpoint from `providers:`, which serves any model.
    Under `--mock` (`mock`) the provider is the mock, so that no result or history row
    passes mock answers off as a real provider's; the model is still the one it would ask.
    """
    settings = workflow.defaults.merged(step.settings)
    model = model_override or resolve_model(settings, env)
    if mock:
        return MOCK, model
    if model_override and settings.provider not in workflow.providers:
        settings = attrs.evolve(settings, provider=None)
    return resolve_provider_name(settings, model), model


def new_run_id() -> str:
    """Sortable by time, unique without coordination: 12 hex of time, 8 random.

    `random` (seeded from the OS once) rather than uuid4: reading os.urandom for each id
    cost 0.1 ms on some machines, a tenth of a batch row's time."""
    return f"{int(time.time() * 1000):012x}{random.getrandbits(32):08x}"


def iso_now() -> str:
    return iso_time(time.time())


class Engine:
    """Runs one workflow. Create one per run (sub-workflows get their own)."""

    def __init__(
        self,
        workflow: Workflow,
        *,
        pool: ProviderPool,
        options: RunOptions | None = None,
        observers: Iterable[Observer] = (),
        reuse: Reuse | None = None,
        locate: Locate | None = None,
        functions: Mapping[FunctionKey, Callable[..., Any]] | None = None,
        subworkflows: Callable[[WorkflowStep, Workflow], Workflow] | None = None,
        semaphore: asyncio.Semaphore | None = None,
        env: Mapping[str, str] | None = None,
        plan: Plan | None = None,
        after_run: Callable[[RunResult], Awaitable[RunResult]] | None = None,
    ) -> None:
        self.workflow = workflow
        # What a finished run goes through before RunFinished: its checks (SPEC 9).
        self.after_run = after_run
        self.plan: Plan = plan or build_plan(workflow)  # a batch builds it once for all rows
        self.pool = pool
        self.options = options or RunOptions()
        self.observers = list(observers)
        self.reuse = reuse
        self.locate = locate
        self.functions = dict(functions or {})
        self.folder = workflow.path.parent if workflow.path else None
        self.subworkflows = subworkflows
        self.semaphore = semaphore or asyncio.Semaphore(self.options.max_concurrency)
        self.env = os.environ if env is None else env
        self.results: dict[str, StepResult] = {}
        self.context_steps: dict[str, dict[str, Any]] = {}
        self.inputs: dict[str, Any] = {}
        # When a step's first call got a concurrency slot: its duration counts from there.
        self.step_started: dict[str, float] = {}
        # The StepStarted event of each step that is ready but has no slot yet.
        self.unstarted: dict[str, Callable[[], StepStarted]] = {}
        self.queued: set[str] = set()
        self.targets: dict[str, tuple[str, str]] = {}  # (provider, model) of each LLM step
        # The scheduler's bookkeeping, so that a finished step looks only at the steps that
        # wait for it (a scan of every pending step each time is quadratic in a long chain):
        # how many needs of each step have not finished, who needs each step, and the steps
        # whose needs have all finished but that have not started yet.
        self.position = {step_id: i for i, step_id in enumerate(self.workflow.step_ids)}
        self.unmet = {step_id: len(needs) for step_id, needs in self.plan.needs.items()}
        self.needed_by: dict[str, list[str]] = {step_id: [] for step_id in self.plan.needs}
        for step_id, needs in self.plan.needs.items():
            for need in needs:
                self.needed_by[need].append(step_id)
        self.ready = [step_id for step_id, count in self.unmet.items() if not count]

    # --- the coordinator ------------------------------------------------------------------

    async def run(
        self,
        inputs: Mapping[str, Any],
        *,
        run_id: str | None = None,
        file: str | None = None,
        resumed_from: str | None = None,
    ) -> RunResult:
        """Run every step; returns the result whatever happens, also when cancelled."""
        self.inputs = dict(inputs)
        run_id = run_id or new_run_id()
        wall, clock = time.time(), time.perf_counter()
        steps = tuple((s.id, s.kind) for s in self.workflow.steps)
        self.emit(
            RunStarted(
                run_id=run_id,
                workflow=self.workflow.name,
                file=file,
                started_at=iso_time(wall),
                inputs=self.inputs,
                steps=steps,
                resumed_from=resumed_from,
            )
        )
        failure, cancelled = await self._schedule()
        outputs, output_failure = await self._final_outputs(cancelled)
        if failure is None and not cancelled:
            failure = output_failure
        status: RunStatus = "cancelled" if cancelled else "failed" if failure else "succeeded"
        if cancelled and failure is None:
            failure = ErrorInfo("cancelled", "the run was interrupted")
        result = RunResult(
            run_id=run_id,
            workflow=self.workflow.name,
            file=file,
            status=status,
            started_at=iso_time(wall),
            duration_ms=_ms_since(clock),
            inputs=self.inputs,
            outputs=outputs,
            error=failure,
            resumed_from=resumed_from,
            steps=tuple(self.results[s] for s in self.workflow.step_ids),
        )
        if self.after_run is not None:
            try:
                result = await self.after_run(result)
            except asyncio.CancelledError:  # Ctrl-C while checking: the run is cancelled
                result = attrs.evolve(
                    result,
                    status="cancelled",
                    duration_ms=_ms_since(clock),
                    error=ErrorInfo("cancelled", "the run was interrupted"),
                )
        self.emit(RunFinished(result=result))
        return result

    async def _schedule(self) -> tuple[ErrorInfo | None, bool]:
        pending = dict.fromkeys(self.workflow.step_ids)  # not started yet, in file order
        running: dict[asyncio.Task[StepResult], str] = {}
        failure: ErrorInfo | None = None
        try:
            while True:
                if failure is None:
                    failure = self._start_ready(pending, running)
                if not running or failure is not None:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    del running[task]
                    ended = self._record(task.result())  # every result, also after a failure
                    failure = failure or ended
        except asyncio.CancelledError:
            await self._stop(running, pending)
            return failure, True
        await self._stop(running, pending)
        return failure, False

    def _start_ready(
        self, pending: dict[str, None], running: dict[asyncio.Task[StepResult], str]
    ) -> ErrorInfo | None:
        """Start (or settle at once: skip, `when` error) every step whose needs are done.

        In passes over the ready steps in file order, as a scan of every pending step would
        go: a step settled at once readies the steps after it in the same pass, and those
        before it in the next."""
        position = self.position.__getitem__
        while self.ready:
            batch, self.ready = sorted(self.ready, key=position), []
            for step_id in batch:  # grows while it is walked (insort after the current)
                del pending[step_id]
                step = self.workflow.step(step_id)
                settled = self._settle_without_running(step)
                if settled is None:
                    running[asyncio.create_task(self._execute(step))] = step_id
                    continue
                failure = self._record(settled)
                if failure:
                    return failure
                here = position(step_id)
                for later in [s for s in self.ready if position(s) > here]:
                    self.ready.remove(later)
                    bisect.insort(batch, later, key=position)
        return None

    def _settle_without_running(self, step: AnyStep) -> StepResult | None:
        """Skipped or failed without running, or None when the step should run."""
        upstream_ok = all(self.results[d].status == "succeeded" for d in self.plan.needs[step.id])
        if step.when is None:
            return None if upstream_ok else _skipped(step)
        try:
            go = is_truthy(self._evaluate(step, "when", step.when, self.context()))
        except StepError as exc:
            return _failed(step, exc, 0)
        return None if go else _skipped(step)

    def _record(self, result: StepResult) -> ErrorInfo | None:
        """Keep a finished step's result; the run's failure if it ends the run."""
        if result.error is not None:  # every observer, and the run's error, see it redacted
            result = attrs.evolve(result, error=self._redacted(result.error))
        if result.id not in self.results:
            for waiting in self.needed_by.get(result.id, ()):
                self.unmet[waiting] -= 1
                if not self.unmet[waiting]:
                    self.ready.append(waiting)
        self.results[result.id] = result
        self.context_steps[result.id] = {"output": result.output, "status": result.status}
        self.emit(StepFinished(result=result))
        step = self.workflow.step(result.id)
        # A budget stops the run whatever `on_error` says: no call may pass it.
        if result.status == "failed" and (step.on_error == "fail" or _over_budget(result)):
            assert result.error is not None
            return attrs.evolve(result.error, step=result.id)
        return None

    async def _stop(
        self, running: dict[asyncio.Task[StepResult], str], pending: dict[str, None]
    ) -> None:
        """Cancel what runs, and mark it and every step never started as cancelled."""
        for task in running:
            task.cancel()
        outcomes = await asyncio.gather(*running, return_exceptions=True)
        for (task, step_id), outcome in zip(running.items(), outcomes, strict=True):
            if isinstance(outcome, StepResult) and not task.cancelled():
                self._record(outcome)
            else:
                self._record(_cancelled(step_id, self._running_ms(step_id)))
        for step_id in pending:
            self._record(_cancelled(step_id, 0))

    def emit(self, event: Event) -> None:
        for observer in list(self.observers):
            try:
                observer(event)
            except Exception as exc:  # a broken display or pipe must not break the run
                self.observers.remove(observer)
                print(
                    f"warning: stopped reporting to {type(observer).__name__}: {exc!r}",
                    file=sys.stderr,
                )

    def context(self, **extra: Any) -> dict[str, Any]:
        # A snapshot: a slow render reads it in a thread while other steps finish.
        return {"inputs": self.inputs, "steps": dict(self.context_steps), **extra}

    async def _final_outputs(self, cancelled: bool) -> tuple[dict[str, Any], ErrorInfo | None]:
        """The outputs, rendered off the event loop if slow; after Ctrl-C, only what is
        quick to compute, so that the run still stops at once."""
        try:
            return await run_templates(
                self._outputs, CANCELLED_OUTPUTS_SECONDS if cancelled else None
            )
        except TimeoutError:
            return {}, None

    def _outputs(self) -> tuple[dict[str, Any], ErrorInfo | None]:
        """The run's outputs; on a failed run, those that can still be computed."""
        if self.workflow.outputs is None:
            steps = self.workflow.step_ids
            return {s: self.results[s].output for s in steps if s in self.results}, None
        outputs: dict[str, Any] = {}
        failure = None
        for name, template in self.workflow.outputs.items():
            try:
                outputs[name] = render_data(template, self.context(), f"outputs.{name}")
            except TemplateError as exc:  # its message names the output already
                failure = failure or self._redacted(
                    ErrorInfo("template", exc.message, hint=exc.hint)
                )
        return outputs, failure

    def _redacted(self, error: ErrorInfo) -> ErrorInfo:
        """An error as anyone may see it: a function's exception or a template's message can
        quote a key as much as a provider's reply can (docs/security.md)."""
        secrets = self.pool.secrets
        details = None if error.details is None else redact(error.details, secrets)
        hint = None if error.hint is None else redact(error.hint, secrets)
        return attrs.evolve(
            error, message=redact(error.message, secrets), details=details, hint=hint
        )

    # --- one step ---------------------------------------------------------------------------

    async def _execute(self, step: AnyStep) -> StepResult:
        provider, model = self._target(step)
        units: list[Unit | None] = []
        is_list = step.for_each is not None
        fingerprint: str | None = None  # once every unit is rendered
        done = _Items()
        try:
            context = self.context()
            items = await self._rendered(step, lambda: self._items(step, context))
            contexts = _item_contexts(context, items)
            units = [None] * len(contexts)
            if self.reuse is not None:
                # Whether a step can be reused depends on what all its items would send.
                units = await self._rendered(step, lambda: [self._unit(step, c) for c in contexts])
                fingerprint = done.fingerprint(step, units)
                reused = self.reuse(step, fingerprint)
                if reused is not None:  # paid for by the earlier run: free in this one
                    return attrs.evolve(
                        reused,
                        reused=True,
                        duration_ms=0,
                        fingerprint=fingerprint,
                        cost_usd=None if reused.usage is None else 0.0,
                    )
                if is_list:  # then the items it can take, each by what it would send
                    done.take_earlier(self.reuse.items(step), units)
            self.unstarted[step.id] = functools.partial(
                StepStarted,
                step_id=step.id,
                kind=step.kind,
                provider=provider,
                model=model,
                items=None if items is None else len(items),
            )
            outcomes = await self._run_units(step, contexts, units, items, done)
        except StepError as exc:
            failed = _failed(step, exc, self._running_ms(step.id), provider, model)
            return done.settle(attrs.evolve(failed, request=_request_record(units, is_list)), units)
        except asyncio.CancelledError:
            if not is_list:
                raise
            # Its finished items were paid for: the step says so (the coordinator, which
            # cancelled it, takes this result).
            cancelled = attrs.evolve(
                _cancelled(step.id, self._running_ms(step.id)), provider=provider, model=model
            )
            return done.settle(cancelled, units)
        except Exception as exc:  # a bug below us must not take the run's results with it
            error_class = FunctionError if isinstance(step, FunctionStep) else ProviderError
            error = error_class(f"internal error: {exc!r}")
            error.details = "".join(traceback.format_exception(exc))
            return _failed(step, error, self._running_ms(step.id), provider, model)
        output = [o.output for o in outcomes] if items is not None else outcomes[0].output
        usage = _usage(outcomes)
        return StepResult(
            id=step.id,
            status="succeeded",
            output=output,
            provider=provider,
            model=outcomes[0].model if outcomes else model,
            attempts=sum(o.attempts for o in outcomes),
            duration_ms=self._running_ms(step.id),
            usage=usage,
            cached=any(o.cached for o in outcomes),
            cost_usd=None if usage is None else total_cost(o.cost_usd for o in outcomes),
            price=next((o.price for o in outcomes if o.price is not None), None),
            warnings=tuple(dict.fromkeys(w for o in outcomes for w in o.warnings)),
            request=_request_record(units, items is not None),
            fingerprint=fingerprint or done.fingerprint(step, units),
            response_id=outcomes[0].response_id if len(outcomes) == 1 else None,
            items=done.results(units) if is_list else (),
        )

    def _target(self, step: AnyStep) -> tuple[str | None, str | None]:
        """(provider, model) of an LLM step; (None, None) for a step that calls no model."""
        if not isinstance(step, LLMStep):
            return None, None
        return self._llm_target(step)

    def _llm_target(self, step: LLMStep) -> tuple[str, str]:
        """(provider, model) of an LLM step, chosen once and not again for each item."""
        target = self.targets.get(step.id)
        if target is None:
            target = choose_model(
                self.workflow, step, self.options.model, self.env, mock=self.options.mock
            )
            self.targets[step.id] = target
        return target

    def _items(self, step: AnyStep, context: dict[str, Any]) -> list[Any] | None:
        if step.for_each is None:
            return None
        items = self._evaluate(step, "for_each", step.for_each, context)
        if not isinstance(items, list | tuple):
            kind = "null" if items is None else type(items).__name__
            raise TemplateError(self._where(step, "for_each", f"for_each gave {kind}, not a list"))
        return list(items)

    async def _run_units(
        self,
        step: AnyStep,
        contexts: list[dict[str, Any]],
        units: list[Unit | None],
        items: list[Any] | None,
        progress: _Items,
    ) -> list[_Outcome]:
        total = len(contexts)
        is_list = items is not None
        done = 0

        async def run_one(index: int) -> _Outcome:
            nonlocal done
            status = "failed"
            try:
                earlier = progress.earlier.get(index)
                if earlier is not None:
                    self._begin(step.id)
                    outcome = _Outcome(
                        earlier.output,
                        earlier.attempts,
                        earlier.usage,
                        earlier.model,
                        reused=True,
                        cost_usd=0.0,
                    )
                else:
                    outcome = await self._run_unit(step, contexts[index], units, index, is_list)
                progress.succeeded[index] = outcome
                status = "succeeded"
                return outcome
            except StepError as exc:
                if is_list:
                    assert items is not None
                    progress.spent.append(
                        _Outcome(None, exc.attempts, exc.usage, cost_usd=exc.cost_usd)
                    )
                    exc.message = f"item {index} ({reprlib.repr(items[index])}): {exc.message}"
                raise
            except asyncio.CancelledError:
                status = "cancelled"
                raise
            finally:
                if is_list and status != "cancelled":
                    done += 1
                    self.emit(
                        ItemFinished(
                            step_id=step.id, index=index, status=status, done=done, total=total
                        )
                    )

        if not is_list:
            return [await run_one(0)]
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(run_one(i)) for i in range(total)]
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
        return [t.result() for t in tasks]

    async def _run_unit(
        self,
        step: AnyStep,
        context: dict[str, Any],
        units: list[Unit | None],
        index: int,
        is_list: bool,
    ) -> _Outcome:
        if isinstance(step, WorkflowStep):  # its own steps take the concurrency slots
            self._begin(step.id)
            call = await self._unit_at(step, context, units, index)
            assert isinstance(call, SubWorkflowCall)
            try:
                async with asyncio.timeout(step.timeout):
                    return await self._run_subworkflow(call)
            except TimeoutError:
                raise StepTimeout(f"the sub-workflow took longer than {step.timeout:g} s") from None
        async with self._slot(step):
            # Rendered inside the slot, so a large for_each starts calling at once instead
            # of rendering every item first.
            unit = await self._unit_at(step, context, units, index)
            if isinstance(unit, FunctionCall):
                function = self.functions[function_key(self.folder, unit.function)]
                return _Outcome(await call_function(unit, function, step.timeout))
            assert isinstance(unit, LLMRequest) and isinstance(step, LLMStep)
            return await self._ask(step, unit, index if is_list else None)

    @contextlib.asynccontextmanager
    async def _slot(self, step: AnyStep) -> AsyncIterator[None]:
        """Hold a concurrency slot; a step starts when its first call gets one, and is
        queued (said once) while none is free."""
        if step.id in self.unstarted and step.id not in self.queued and self.semaphore.locked():
            self.queued.add(step.id)
            self.emit(StepQueued(step_id=step.id, kind=step.kind))
        async with self.semaphore:
            self._begin(step.id)
            yield

    def _begin(self, step_id: str) -> None:
        """Start the step's clock and say it started, once."""
        started = self.unstarted.pop(step_id, None)
        if started is not None:
            self.step_started[step_id] = time.perf_counter()
            self.emit(started())

    def _running_ms(self, step_id: str) -> int:
        """How long the step has run: 0 for one that never got a slot."""
        started = self.step_started.get(step_id)
        return 0 if started is None else _ms_since(started)

    async def _unit_at(
        self, step: AnyStep, context: dict[str, Any], units: list[Unit | None], index: int
    ) -> Unit:
        """Item `index`'s unit: rendered already for the reuse check, or rendered now."""
        unit = units[index]
        if unit is None:
            unit = await self._rendered(step, lambda: self._unit(step, context))
            units[index] = unit
        return unit

    async def _rendered(self, step: AnyStep, work: Callable[[], _Rendered]) -> _Rendered:
        """What `work` renders for a step, off the event loop if slow, within the step's
        time limit (a sub-workflow step has none of its own)."""
        timeout = None if isinstance(step, WorkflowStep) else self._attempt_timeout(step)
        try:
            return await run_templates(work, timeout)
        except TimeoutError:
            message = f"the step's templates took longer than {timeout:g} s to render"
            raise StepTimeout(message) from None

    def _attempt_timeout(self, step: AnyStep) -> float | None:
        """An LLM step's time limit for one attempt; a function step's for the whole call."""
        if isinstance(step, LLMStep):
            return self._llm_timeout(step)
        return step.timeout

    def _llm_timeout(self, step: LLMStep) -> float:
        return step.timeout or self.workflow.defaults.timeout or DEFAULT_TIMEOUT

    # --- building a step's units -------------------------------------------------------------

    def _unit(self, step: AnyStep, context: dict[str, Any]) -> Unit:
        if isinstance(step, LLMStep):
            return self._llm_request(step, context)
        rendered = render_data(step.with_, context, f"{step.id}.with")
        if isinstance(step, FunctionStep):
            return FunctionCall(step.function, rendered)
        assert self.subworkflows is not None
        child = self.subworkflows(step, self.workflow)
        from orchestrate._inputs import resolve_inputs

        try:
            inputs = resolve_inputs(child.inputs, rendered)
        except Exception as exc:  # an InputError of the child's inputs
            raise InvalidStepInput(f"sub-workflow {step.workflow}: {exc}") from None
        return SubWorkflowCall(child, inputs)

    def _llm_request(self, step: LLMStep, context: dict[str, Any]) -> LLMRequest:
        settings = self.workflow.defaults.merged(step.settings)
        provider, model = self._llm_target(step)
        messages = []
        if step.system is not None:
            messages.append(
                {"role": "system", "content": self._render(step, "system", step.system, context)}
            )
        if step.prompt is not None:
            messages.append(
                {"role": "user", "content": self._render(step, "prompt", step.prompt, context)}
            )
        for index, message in enumerate(step.messages or ()):
            content = self._render(step, f"messages[{index}]", message.content, context)
            messages.append({"role": message.role, "content": content})
        mock_text = None
        if provider == MOCK and step.mock is not None:  # --mock, or `provider: mock`
            mock_text = self._render(step, "mock", step.mock, context)
        timeout = self._llm_timeout(step)
        return LLMRequest(
            model=model,
            messages=tuple(messages),
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            timeout=timeout,
            retries=DEFAULT_RETRIES if settings.retries is None else settings.retries,
            schema=step.schema,
            json_mode=step.output == "json" or step.schema is not None,
            stream=self.options.stream,
            step_id=step.id,
            mock_text=mock_text,
            provider=provider,
            cache=settings.cache,
        )

    # --- calling ------------------------------------------------------------------------------

    async def _ask(self, step: LLMStep, request: LLMRequest, item: int | None) -> _Outcome:
        """Call the model; re-ask (within `retries`) when the JSON reply is invalid."""
        assert request.provider is not None, "the engine names every request's provider"
        provider = self.pool.get(request.provider)
        attempts, usage, reasks = 0, Usage(), 0
        cost: float | None = 0.0  # None once a reply has no known price
        on_token = None
        streamed = StreamRedactor(self.pool.secrets)  # a key the model echoes, in chunks

        def tokens(text: str) -> None:
            if text:
                self.emit(TokenReceived(step_id=step.id, text=text, item=item))

        if request.stream:

            def on_token(text: str) -> None:
                tokens(streamed.feed(text))

        def on_retry(attempt: int, delay: float, reason: str) -> None:
            tokens(streamed.flush())
            self.emit(
                StepRetrying(
                    step_id=step.id,
                    attempt=attempts + attempt,
                    delay=delay,
                    reason=redact(reason, self.pool.secrets),
                    item=item,
                )
            )

        while True:
            try:
                response = await provider.complete(request, on_token=on_token, on_retry=on_retry)
            except StepError as exc:
                exc.attempts += attempts
                exc.usage, exc.cost_usd = usage, cost
                raise
            finally:
                tokens(streamed.flush())
            attempts += response.attempts
            usage = usage + (response.usage or Usage())
            cost = total_cost([cost, response.cost_usd])
            outcome = _Outcome(
                response.text,
                attempts,
                usage,
                response.model or request.model,
                response.response_id,
                response.warnings,
                response.cached,
                cost,
                response.price,
            )
            if not request.json_mode:
                return outcome
            try:
                return attrs.evolve(outcome, output=parse_json_reply(response.text, request.schema))
            except InvalidOutput as exc:
                # A cut-off reply is not re-asked: the same request would be cut off again.
                problem = _cut_off(request.max_tokens) if response.truncated else exc.message
                if response.truncated or reasks >= request.retries:
                    failure = InvalidOutput(f"{problem}; the reply was: {response.text}")
                    failure.attempts, failure.usage, failure.cost_usd = attempts, usage, cost
                    raise failure from None
                reasks += 1
                on_retry(1, 0.0, exc.message)
                request = attrs.evolve(
                    request,
                    messages=(
                        *request.messages,
                        {"role": "assistant", "content": response.text},
                        {"role": "user", "content": _reask_message(exc.message)},
                    ),
                )

    async def _run_subworkflow(self, call: SubWorkflowCall) -> _Outcome:
        child = Engine(
            call.workflow,
            pool=self.pool,
            options=self.options,
            functions=self.functions,
            subworkflows=self.subworkflows,
            semaphore=self.semaphore,
            env=self.env,
        )
        result = await child.run(call.inputs)
        if result.status == "cancelled":  # this step is being cancelled, not failing
            raise asyncio.CancelledError
        if result.status != "succeeded":
            error = result.error or ErrorInfo("cancelled", "cancelled")
            where = f" at step {error.step}" if error.step else ""
            failure = SubWorkflowFailed(
                f"sub-workflow {call.workflow.name} failed{where}: {error.message}"
            )
            failure.error_type = error.type
            raise failure
        return _Outcome(
            result.outputs,
            sum(s.attempts for s in result.steps),
            result.usage,
            cost_usd=result.cost_usd,
        )

    # --- templates ------------------------------------------------------------------------------

    def _where(self, step: AnyStep, field: str, message: str) -> str:
        where = self.locate(step.id, field) if self.locate else None
        prefix = f"{where}: " if where else ""
        return f"{prefix}{step.id}.{field}: {message}"

    def _render(self, step: AnyStep, field: str, source: str, context: dict[str, Any]) -> str:
        try:
            return _compiled(parse_template(source)).render(context)
        except TemplateError as exc:
            raise TemplateError(self._where(step, field, exc.message), hint=exc.hint) from None

    def _evaluate(self, step: AnyStep, field: str, source: str, context: dict[str, Any]) -> Any:
        try:
            return _compiled(parse_expression(source)).evaluate(context)
        except TemplateError as exc:
            raise TemplateError(self._where(step, field, exc.message), hint=exc.hint) from None


class InvalidStepInput(StepError):
    error_type = "invalid_input"


class SubWorkflowFailed(StepError):
    """A child run failed; `error_type` is set to the child's error type."""


def render_data(value: Any, context: dict[str, Any], where: str) -> Any:
    """`with`, `outputs` and checks' values: every string is a template, typed when it is
    one expression; `where` names the value in errors."""
    if isinstance(value, str):
        try:
            return _compiled(parse_template(value)).evaluate(context)
        except TemplateError as exc:
            raise TemplateError(f"{where}: {exc.message}", hint=exc.hint) from None
    if isinstance(value, dict):
        return {k: render_data(v, context, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render_data(v, context, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


_Parsed = TypeVar("_Parsed", Template, Expression)
_Rendered = TypeVar("_Rendered")


def _compiled(parsed: _Parsed | Problem) -> _Parsed:
    """A parsed template, or its (statically found) problem as a TemplateError."""
    if isinstance(parsed, Problem):
        raise TemplateError(parsed.message, hint=parsed.hint)
    return parsed


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The error to report when items of a for_each fail: the first step error."""
    errors = group.exceptions
    return next((e for e in errors if isinstance(e, StepError)), errors[0])


def _cut_off(max_tokens: int | None) -> str:
    if max_tokens is None:
        return "the reply was cut off at the provider's default max_tokens; set max_tokens"
    return f"the reply was cut off at max_tokens={max_tokens}; raise max_tokens"


def _reask_message(problem: str) -> str:
    return (
        f"Your reply could not be used: {problem}. "
        "Answer again with only the JSON value, no prose and no code fence."
    )


def _item_contexts(context: dict[str, Any], items: list[Any] | None) -> list[dict[str, Any]]:
    if items is None:
        return [context]
    return [{**context, "item": item, "index": index} for index, item in enumerate(items)]


def _encode(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=str, ensure_ascii=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _unit_data(unit: Unit | None) -> dict[str, Any]:
    assert unit is not None, "every unit is rendered before its data is read"  # fingerprints
    if isinstance(unit, LLMRequest):
        return {**unit.fingerprint_data(), "provider": unit.provider}
    return unit.fingerprint_data()


def _request_record(units: Sequence[Unit | None], is_list: bool) -> dict[str, Any] | None:
    """What a step sent (each item's, for a for_each); None for what was never rendered."""
    records = [_unit_data(u) if u is not None else None for u in units]
    if is_list:
        return {"items": records}
    return records[0] if records else None


def _usage(outcomes: list[_Outcome]) -> Usage | None:
    usages = [o.usage for o in outcomes if o.usage is not None]
    return Usage.total(usages) if usages else None


def _over_budget(result: StepResult) -> bool:
    return result.error is not None and result.error.type == "budget"


def _skipped(step: AnyStep) -> StepResult:
    return StepResult(id=step.id, status="skipped")


def _failed(
    step: AnyStep,
    exc: StepError,
    duration_ms: int,
    provider: str | None = None,
    model: str | None = None,
) -> StepResult:
    """A failed step's result: what it cost, and which model it was talking to."""
    return StepResult(
        id=step.id,
        status="failed",
        duration_ms=duration_ms,
        error=ErrorInfo(exc.error_type, exc.message, step.id, exc.details, exc.hint),
        attempts=exc.attempts,
        usage=exc.usage,
        provider=provider,
        model=model,
        cost_usd=exc.cost_usd if exc.usage is not None else None,
    )


def _cancelled(step_id: str, duration_ms: int) -> StepResult:
    return StepResult(
        id=step_id,
        status="cancelled",
        duration_ms=duration_ms,
        error=ErrorInfo("cancelled", "the run stopped before this step finished", step_id),
    )


def _ms_since(start: float) -> int:
    return round((time.perf_counter() - start) * 1000)
