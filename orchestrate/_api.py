"""Running a workflow from Python: everything `orchestrate run` does, without the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import attrs

from orchestrate._engine import Engine, Reuse, RunOptions, choose_model
from orchestrate._errors import Diagnostic, Terminated, WorkflowInvalid
from orchestrate._events import Observer
from orchestrate._files import open_output
from orchestrate._functions import FunctionKey, FunctionNotFound, function_key, import_function
from orchestrate._inputs import parse_assignments, resolve_inputs
from orchestrate._interrupt import interrupt_watchdog, sigterm_cancels_the_run
from orchestrate._loader import SourceMap, load_file
from orchestrate._prepared import PreparedRun, endpoints_of
from orchestrate._result import RunResult
from orchestrate._settings import MAX_CONCURRENCY, env_switch, validate_not_empty
from orchestrate._spec import FunctionCheck, FunctionStep, LLMStep, Workflow
from orchestrate._validate import validate_file, validate_workflow
from orchestrate.providers import ProviderPool

if TYPE_CHECKING:
    from orchestrate._checks import CheckRunner
    from orchestrate._cost import Budget
    from orchestrate.history import HistoryOptions, HistorySession, RecordingFailed

MOCK_ENV_VARS = ("ORCHESTRATE_MOCK", "ORCHESTRATE_USE_MOCK")


def mock_from_env(env: Mapping[str, str] = os.environ) -> bool:
    """ORCHESTRATE_MOCK=1 or ORCHESTRATE_USE_MOCK=true mean the same as --mock.

    Both are read, so a misspelled value is reported even when the other is on.
    """
    return any([env_switch(name, env) for name in MOCK_ENV_VARS])


def prepare(
    workflow: str | Path | Workflow,
    inputs: Mapping[str, Any] | None = None,
    *,
    assignments: list[str] | None = None,
    partial: bool = False,
    earlier: Mapping[str, Any] | None = None,
) -> PreparedRun:
    """Validate, load sub-workflows, import functions and resolve inputs, or raise.

    `assignments` are `-i NAME=VALUE` strings; they override `inputs`. `partial`: the
    inputs are shared by a batch's rows, which give the rest (no defaults filled in yet).
    `earlier`: the inputs of the run `--resume` names, for those the workflow still
    declares and neither `inputs` nor `assignments` give.
    """
    if isinstance(workflow, Workflow):
        file = str(workflow.path) if workflow.path else None
        report = validate_workflow(workflow)
    else:
        file = str(workflow)
        report = validate_file(workflow)
    if not report.valid or report.workflow is None:
        raise WorkflowInvalid(report.diagnostics)
    loaded, source, children = report.workflow, report.source, report.children
    kept = {name: value for name, value in (earlier or {}).items() if name in loaded.inputs}
    given = {**kept, **(inputs or {}), **parse_assignments(assignments or [], loaded.inputs)}
    resolved = resolve_inputs(loaded.inputs, given, partial=partial)
    functions = _import_functions([loaded, *children.values()], source)
    return PreparedRun(loaded, resolved, file, source, functions, children)


def _import_functions(
    workflows: list[Workflow], source: SourceMap | None
) -> dict[FunctionKey, Callable[..., Any]]:
    """Every function step's callable, each looked up from its own workflow's folder.

    `source` locates problems in the first workflow; a sub-workflow's file is read again
    only to locate a problem in it.
    """
    functions: dict[FunctionKey, Callable[..., Any]] = {}
    problems: list[Diagnostic] = []
    for workflow in workflows:
        folder = workflow.path.parent if workflow.path else None
        for path, spec in _function_names(workflow, checks=workflow is workflows[0]):
            key = function_key(folder, spec)
            if key in functions:
                continue
            try:
                functions[key] = import_function(spec, folder)
            except FunctionNotFound as exc:
                where = source if workflow is workflows[0] else None
                problems.append(_function_problem(workflow, path, exc, where))
    if problems:
        raise WorkflowInvalid(problems)
    return functions


def _function_names(workflow: Workflow, *, checks: bool) -> Iterator[tuple[tuple, str]]:
    """(where, `module:callable`) of each function step, and of each function check when
    `checks` (a sub-workflow's checks never run)."""
    for index, step in enumerate(workflow.steps):
        if isinstance(step, FunctionStep):
            yield ("steps", index, "function"), step.function
    for index, check in enumerate(workflow.checks if checks else ()):
        if isinstance(check, FunctionCheck):
            yield ("checks", index, "function"), check.function


def _function_problem(
    workflow: Workflow, path: tuple, problem: FunctionNotFound, source: SourceMap | None
) -> Diagnostic:
    if source is None and workflow.path is not None:
        source = load_file(workflow.path).source
    message = str(problem)
    hint = problem.hint or "the module is looked up in the workflow's folder, then on PYTHONPATH"
    if source is None or source.root is None:
        return Diagnostic(str(workflow.path or "<workflow>"), 1, 1, message, hint)
    return source.diagnostic(path, message, hint=hint)


def models_in_use(
    prepared: PreparedRun, options: RunOptions, env: Mapping[str, str]
) -> set[tuple[str, str]]:
    """The (provider, model) pairs the run's LLM steps (and its checks' judges) will call."""
    models = {
        choose_model(workflow, step, options.model, env, mock=options.mock)
        for workflow in prepared.all_workflows()
        for step in workflow.steps
        if isinstance(step, LLMStep)
    }
    if options.checks:
        from orchestrate._checks import judge_models

        models |= judge_models(prepared.workflow, env, mock=options.mock)
    return models


def providers_in_use(
    prepared: PreparedRun, options: RunOptions, env: Mapping[str, str]
) -> set[str]:
    """The provider names the run's LLM steps will call."""
    return {provider for provider, _ in models_in_use(prepared, options, env)}


def check_runner(
    prepared: PreparedRun,
    options: RunOptions,
    pool: ProviderPool,
    env: Mapping[str, str],
    semaphore: asyncio.Semaphore,
) -> CheckRunner | None:
    """What adds the checks' verdicts to a run's result (None: no checks to run)."""
    if not options.checks or not prepared.workflow.checks:
        return None
    from orchestrate._checks import CheckRunner

    return CheckRunner(
        prepared.workflow,
        pool=pool,
        functions=prepared.functions,
        env=env,
        mock=options.mock,
        semaphore=semaphore,
    )


def run_budget(prepared: PreparedRun, max_cost: float | None) -> Budget | None:
    """The budget of `--max-cost`, else of the workflow's `defaults.max_cost`, else none."""
    from orchestrate._cost import Budget

    limit = prepared.workflow.defaults.max_cost if max_cost is None else max_cost
    return None if limit is None else Budget(limit)


async def run_prepared(
    prepared: PreparedRun,
    *,
    mock: bool = False,
    options: RunOptions | None = None,
    observers: Iterable[Observer] = (),
    reuse: Reuse | None = None,
    run_id: str | None = None,
    resumed_from: str | None = None,
    env: Mapping[str, str] | None = None,
    mock_latency: float = 0.0,
    history: HistoryOptions | None = None,
    budget: Budget | None = None,
) -> RunResult:
    """Run a prepared workflow; raises ConfigError (e.g. a missing key) before any request.

    `mock` (or `options.mock`) has the offline mock answer every LLM step.
    `budget` (default: one of the workflow's `defaults.max_cost`) limits what the run's
    model calls cost; a batch passes one Budget to every row so they share it.
    `history` records the run in the history database and brings `--resume`, `--from`,
    `--only`, `--cache`, `--record` and `--replay`; None (the default) touches no file.
    A run that finished but could not be recorded raises RecordingFailed with its result.

    SIGTERM (in the main thread) cancels the run as Ctrl-C does, then raises
    :class:`~orchestrate.Terminated` with the result; the handler in place before
    is restored when the run ends, and at the first SIGTERM, to get the second.
    """
    env = os.environ if env is None else env
    options = options or RunOptions()
    with sigterm_cancels_the_run() as terminated:
        mock = mock or options.mock
        session = None
        if history is not None:
            from orchestrate.history import HistorySession

            session = HistorySession.start(prepared, history, mock=mock, env=env)
            mock = session.mock
            reuse = reuse or session.reuse
            resumed_from = resumed_from or session.resumed_from
            if session.recorder is not None:
                observers = [*observers, session.recorder]
        options = attrs.evolve(options, mock=mock)
        result = None
        try:
            from orchestrate._cost import check_prices, metered
            from orchestrate._pricing import Pricing

            endpoints = endpoints_of(prepared)
            pricing = Pricing(endpoints)
            budget = budget or run_budget(prepared, None)
            replaying = session is not None and session.replay_fixture is not None
            if budget is not None and not replaying:  # a replay costs nothing
                check_prices(models_in_use(prepared, options, env), pricing)
            pool = ProviderPool(
                endpoints,
                mock=mock,
                mock_latency=mock_latency,
                env=env,
                concurrency=options.max_concurrency,
                wrap=metered(pricing, budget, session.wrap if session else None),
            )
            try:
                pool.check(providers_in_use(prepared, options, env))
                semaphore = asyncio.Semaphore(options.max_concurrency)
                checks = check_runner(prepared, options, pool, env, semaphore)
                engine = Engine(
                    prepared.workflow,
                    pool=pool,
                    options=options,
                    observers=observers,
                    reuse=reuse,
                    locate=prepared.locate,
                    functions=prepared.functions,
                    subworkflows=prepared.subworkflow,
                    env=env,
                    semaphore=semaphore,
                    after_run=checks.with_checks if checks else None,
                )
                # Ctrl-C or SIGTERM ends the run even if a step blocks the loop
                with interrupt_watchdog():
                    result = await engine.run(
                        prepared.inputs,
                        run_id=run_id,
                        file=prepared.file,
                        resumed_from=resumed_from,
                    )
            finally:
                await pool.aclose()
        except asyncio.CancelledError:
            if not terminated:  # cancelled by someone else: theirs to handle
                raise
            raise Terminated(result) from None
        finally:
            if session is not None:
                _close_session(session, result)
    if terminated:
        raise Terminated(result)
    return result


def _close_session(session: HistorySession, result: RunResult | None) -> None:
    from orchestrate._errors import StoreError
    from orchestrate.history import RecordingFailed

    try:
        session.close(ran=result is not None)
    except StoreError as exc:
        if result is None:
            raise
        raise RecordingFailed(exc, result) from None


def run_workflow(
    workflow: str | Path | Workflow,
    inputs: Mapping[str, Any] | None = None,
    *,
    mock: bool | None = None,
    model: str | None = None,
    max_concurrency: int = 8,
    observers: Iterable[Observer] = (),
    env: Mapping[str, str] | None = None,
    history: HistoryOptions | None = None,
) -> RunResult:
    """Validate and run a workflow file (or a loaded :class:`Workflow`) and return its result.

    `mock=None` follows ORCHESTRATE_MOCK / ORCHESTRATE_USE_MOCK. `history` records the run
    as `orchestrate run` does (and brings resume, cache, record and replay); by default a
    run from Python writes nothing. Raises :class:`~orchestrate.OrchestrateError`
    subclasses for an invalid workflow, bad inputs or a missing API key; a step that fails
    is reported in the result, not raised.
    """
    env = os.environ if env is None else env
    prepared = _prepare_resumed(workflow, inputs, [], history, env)
    options = RunOptions(model=model, max_concurrency=max_concurrency)
    use_mock = mock_from_env(env) if mock is None else mock
    return _run_to_the_end(
        run_prepared(
            prepared, mock=use_mock, options=options, observers=observers, env=env, history=history
        )
    )


def _run_to_the_end(main: Coroutine[Any, Any, RunResult]) -> RunResult:
    """asyncio.run(main), the result handed back beside the task: asyncio.run ends by
    reading its Ctrl-C handler, and the repr of that handler holds the finished task's, so
    a result the task returned would be repr'd whole, for nothing (1 ms for 100 steps,
    4.6 ms for 1,000 items, more for long outputs)."""
    kept: list[RunResult] = []

    async def keep() -> None:
        kept.append(await main)

    asyncio.run(keep())
    return kept[0]


def _prepare_resumed(
    workflow: str | Path | Workflow,
    inputs: Mapping[str, Any] | None,
    assignments: list[str],
    history: HistoryOptions | None,
    env: Mapping[str, str],
) -> PreparedRun:
    """:func:`prepare`, with the inputs of the run `history.resume` names for those not
    given: a resumed run needs no `-i` again."""
    earlier = None
    if history is not None and history.resume and history.record_history:
        from orchestrate.history import resumed_inputs

        earlier = resumed_inputs(history.resume, env, history.database)
    return prepare(workflow, inputs, assignments=assignments, earlier=earlier)


# --- what `orchestrate run` calls ---------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RunRequest:
    """What `orchestrate run` is asked, checked as it is made (a UsageError naming the
    option): the workflow file, its inputs, how to run it and where its events go."""

    flow: str = attrs.field(validator=validate_not_empty)
    assignments: tuple[str, ...] = ()  # `-i NAME=VALUE`, over the inputs file's
    inputs_file: str | None = attrs.field(default=None, validator=validate_not_empty)
    mock: bool = False  # ORCHESTRATE_MOCK=1 mocks too, and is checked either way
    model: str | None = attrs.field(default=None, validator=validate_not_empty)
    max_concurrency: int = attrs.field(default=8, validator=MAX_CONCURRENCY.validate)
    max_cost: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    checks: bool = True
    events: str | None = attrs.field(default=None, validator=validate_not_empty)  # `-`: stdout
    events_tokens: bool = False  # the streamed text in `events` too
    stream: bool = False  # ask providers for tokens as they come: an observer shows them
    history: HistoryOptions | None = None  # None: nothing recorded, nothing resumed


@attrs.frozen(kw_only=True)
class RunOutcome:
    """What :func:`run_request` returns: the run's result and what became of the run."""

    result: RunResult
    recorded: bool  # in the history, so `--resume` can name it
    recording_failed: RecordingFailed | None = None  # it finished, the history did not keep it
    terminated: Terminated | None = None  # SIGTERM stopped it: show the result, then raise this


def run_request(
    request: RunRequest,
    *,
    stdout: IO[str],
    observers: Iterable[Observer] = (),
    env: Mapping[str, str] | None = None,
    on_prepared: Callable[[PreparedRun], None] | None = None,
) -> RunOutcome:
    """Run a RunRequest and say what became of it. Inputs: its file's, its assignments
    over them, and (with `history.resume`) the resumed run's for those neither gives.
    Events go to `events`: `stdout` for `-`, else a file only its owner may read.

    `on_prepared` is called with the prepared run before it starts (the CLI ends its
    start-up there). An error that stops the run before it starts is raised; a run that
    could not be recorded, or that SIGTERM stopped once it had a result, is returned.
    """
    from orchestrate._events import JsonLinesWriter
    from orchestrate._inputs import read_inputs_file
    from orchestrate.history import RecordingFailed

    env = os.environ if env is None else env
    history = request.history
    with _events_file(request.events, stdout) as events:
        given = read_inputs_file(request.inputs_file) if request.inputs_file else {}
        prepared = _prepare_resumed(request.flow, given, list(request.assignments), history, env)
        if on_prepared is not None:
            on_prepared(prepared)
        if events is not None:
            observers = [JsonLinesWriter(events, tokens=request.events_tokens), *observers]
        options = RunOptions(
            model=request.model,
            max_concurrency=request.max_concurrency,
            stream=request.stream or (events is not None and request.events_tokens),
            checks=request.checks,
        )
        recorded = history is not None and history.record_history
        try:
            result = _run_to_the_end(
                run_prepared(
                    prepared,
                    mock=mock_from_env(env) or request.mock,  # the variables are checked anyway
                    options=options,
                    observers=observers,
                    env=env,
                    history=history,
                    budget=run_budget(prepared, request.max_cost),
                )
            )
        except RecordingFailed as exc:
            return RunOutcome(result=exc.result, recorded=False, recording_failed=exc)
        except Terminated as exc:
            if exc.result is None:  # stopped before it started: nothing to show
                raise
            result = cast("RunResult", exc.result)
            return RunOutcome(result=result, recorded=recorded, terminated=exc)
    return RunOutcome(result=result, recorded=recorded)


def _events_file(
    target: str | None, stdout: IO[str]
) -> contextlib.AbstractContextManager[IO[str] | None]:
    """Where `--events` go: nowhere (None), stdout (`-`), or a file only its owner may
    read (it holds the prompts and answers)."""
    if target is None:
        return contextlib.nullcontext()
    return open_output(target, stdout=stdout, private=True, what=f"events to {target}")
