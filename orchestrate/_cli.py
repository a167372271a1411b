"""The `orchestrate` command: parse arguments, call the library, render, exit.

No logic lives here. Errors become exit codes in one place, :func:`_reporting_errors`.
"""

# No `from __future__ import annotations` here: typer reads every command's parameters,
# whichever command runs, and string annotations would make it compile and evaluate each
# one (some 14 ms of every start-up); as objects they are built once, at import.

import functools
import gc
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Literal, NoReturn, ParamSpec, TypeVar, cast

import typer

from orchestrate._deferred import stop_deferring
from orchestrate._errors import OrchestrateError, Terminated, WorkflowInvalid
from orchestrate._settings import MAX_CONCURRENCY, RUNS_LIMIT, not_empty
from orchestrate._version import __version__

if TYPE_CHECKING:
    from orchestrate._batch import BatchSummary
    from orchestrate._prepared import PreparedRun
    from orchestrate.history import Deleted

app = typer.Typer(
    name="orchestrate",
    help="Define AI workflows in YAML and run them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

P = ParamSpec("P")
R = TypeVar("R")


def _print_error(text: str) -> None:
    """A message on stderr with its control characters escaped: it may quote a server, a
    function or a file (docs/security.md)."""
    from orchestrate._render import escape_controls

    print(escape_controls(text), file=sys.stderr)


def _reporting_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn every OrchestrateError into its message on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        stop_deferring()  # what the command runs gets the real Rich modules
        if command.__name__ not in _ENDS_OWN_START_UP:
            _collect_garbage_again()
        try:
            return command(*args, **kwargs)
        except OrchestrateError as exc:
            _fail(exc)
        except Terminated:
            print("orchestrate: terminated", file=sys.stderr)
            raise typer.Exit(Terminated.exit_code) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper


def _fail(error: OrchestrateError) -> NoReturn:
    _print_error(error.format())
    raise typer.Exit(error.exit_code) from None


def _checked(check: Callable[[str, Any], Any]) -> Callable[..., Any]:
    """A Typer callback that runs one of the library's checks on a parameter's value,
    named as the user wrote it; a bad value is reported like every other usage error."""

    def callback(param: typer.CallbackParam, value: Any) -> Any:
        # An argument is named by its metavar, as the usage line shows it: FLOW, not [PATH].
        name = (
            param.opts[0]
            if param.param_type_name == "option"
            else param.human_readable_name.strip("[].").upper()
        )
        if value is None:  # not given
            return None
        try:
            if isinstance(value, list):  # a repeated parameter: each value
                return [check(name, item) for item in value]
            return check(name, value)
        except OrchestrateError as exc:
            _fail(exc)

    return callback


_GIVEN = _checked(not_empty)  # an empty value is a mistake, not "not given"

# --db on every command that reads or writes the history.
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="The history: a file path, sqlite:///PATH or postgresql://... "
        "(default: $ORCHESTRATE_DATABASE_URL, else history.db in $ORCHESTRATE_HOME).",
        rich_help_panel="Run history",
        show_default=False,
        callback=_GIVEN,
    ),
]

# Options that `run` and `batch` (and `estimate`) share, spelt once.
FlowArgument = Annotated[
    str, typer.Argument(help="The workflow file.", metavar="FLOW", callback=_GIVEN)
]
MockOption = Annotated[bool, typer.Option("--mock", help="Offline answers, no key needed.")]
ModelOption = Annotated[
    str | None,
    typer.Option("--model", metavar="MODEL", help="Use this model everywhere.", callback=_GIVEN),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")]
CacheOption = Annotated[
    bool,
    typer.Option(
        "--cache",
        help="Answer identical LLM requests from earlier answers.",
        rich_help_panel="Run history",
    ),
]
RecordOption = Annotated[
    str | None,
    typer.Option(
        "--record",
        metavar="FILE",
        help="Write every provider response to a fixture file.",
        rich_help_panel="Run history",
        callback=_GIVEN,
    ),
]
NoHistoryOption = Annotated[
    bool,
    typer.Option(
        "--no-history", help="Record nothing in the run history.", rich_help_panel="Run history"
    ),
]


def _version(value: bool) -> None:
    if value:
        print(f"orchestrate {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Define AI workflows in YAML and run them."""


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# --- validate, graph, schema, init -----------------------------------------------------------


@app.command()
@_reporting_errors
def validate(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Workflow files, or folders to search for them.",
            metavar="FLOW...",
            callback=_GIVEN,
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Check workflow files like a compiler: every problem, with line and column."""
    from orchestrate._validate import validate_file, workflow_files

    files: list[Path] = []
    for path in paths:
        found = workflow_files(Path(path))
        if not found:
            print(
                f"warning: no workflow files (*.yaml, *.yml with `steps:`) in {path}",
                file=sys.stderr,
            )
        files += found
    reports = [validate_file(f) for f in files]
    valid = all(r.valid for r in reports)
    if as_json:
        _print_json({"valid": valid, "files": [r.to_dict() for r in reports]})
    for report in reports:
        for diagnostic in report.diagnostics:
            if not as_json:
                _print_error(diagnostic.format())
        if not as_json and report.valid:
            print(f"{report.file}: ok", file=sys.stderr)
    if not valid:
        raise typer.Exit(2)


class GraphFormat(StrEnum):
    tree = "tree"
    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"


class GraphDirection(StrEnum):
    LR = "LR"
    TB = "TB"


@app.command()
@_reporting_errors
def graph(
    file: Annotated[
        str, typer.Argument(help="The workflow file.", metavar="FLOW", callback=_GIVEN)
    ],
    format: Annotated[GraphFormat, typer.Option("--format", "-f", help="Output format.")] = (
        GraphFormat.tree
    ),
    direction: Annotated[
        GraphDirection | None,
        typer.Option(
            "--direction",
            case_sensitive=False,
            metavar="LR|TB",
            help="For --format svg: LR (left to right, the default) or TB (top to bottom).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Nodes and edges as JSON.")] = False,
) -> None:
    """Show the steps and their dependencies (an edge a -> b: b depends on a).

    Formats: tree (default), mermaid, dot, svg (a standalone picture, as in the web view).
    """
    from orchestrate._graphs import graph_dict, to_dot, to_mermaid
    from orchestrate._plan import build_plan
    from orchestrate._validate import load_workflow

    if direction is not None and format is not GraphFormat.svg:
        raise typer.BadParameter("only --format svg has a direction", param_hint="--direction")
    try:
        workflow = load_workflow(file)
    except WorkflowInvalid as exc:
        if as_json:  # a script piping to jq still gets a document
            diagnostics = [d.to_dict() for d in exc.diagnostics]
            _print_json({"nodes": [], "edges": [], "diagnostics": diagnostics})
        raise
    plan = build_plan(workflow)
    if as_json:
        _print_json(graph_dict(workflow, plan))
    elif format is GraphFormat.mermaid:
        sys.stdout.write(to_mermaid(workflow, plan))
    elif format is GraphFormat.dot:
        sys.stdout.write(to_dot(workflow, plan))
    elif format is GraphFormat.svg:
        from orchestrate._svg import graph_svg

        layout: Literal["LR", "TB"] = "TB" if direction is GraphDirection.TB else "LR"
        sys.stdout.write(graph_svg(workflow, plan, direction=layout))
    else:
        from orchestrate._render import print_graph_tree

        print_graph_tree(workflow, plan, sys.stdout)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the workflow format (for editors)."""
    from orchestrate._schema import workflow_schema

    _print_json(workflow_schema())


@app.command()
@_reporting_errors
def init(
    path: Annotated[
        str,
        typer.Argument(
            help="Where to write it (a folder: inside it).", metavar="[PATH]", callback=_GIVEN
        ),
    ] = ("workflow.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter workflow."""
    from orchestrate._starter import write_starter

    written = write_starter(path, force=force)
    print(f"wrote {written}; try: orchestrate run {written} --mock", file=sys.stderr)


# --- run ----------------------------------------------------------------------------------------


@app.command()
@_reporting_errors
def run(
    flow: FlowArgument,
    input: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            "-i",
            metavar="NAME=VALUE",
            help="NAME=VALUE; @file reads a file, @- stdin, @@x is a literal @x.",
        ),
    ] = None,
    inputs_file: Annotated[
        str | None,
        typer.Option(
            "--inputs", metavar="FILE", help="A JSON or YAML file of inputs.", callback=_GIVEN
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    mock: MockOption = False,
    model: ModelOption = None,
    max_concurrency: Annotated[
        int,
        typer.Option(
            "--max-concurrency",
            metavar="N",
            help="Steps and items at once (1 to 1024).",
            callback=_checked(MAX_CONCURRENCY.check),
        ),
    ] = 8,
    events: Annotated[
        str | None,
        typer.Option(
            "--events",
            metavar="FILE",
            help="Write events as JSON Lines (- for stdout).",
            callback=_GIVEN,
        ),
    ] = None,
    events_tokens: Annotated[
        bool, typer.Option("--events-tokens", help="Include streamed text in --events.")
    ] = False,
    quiet: QuietOption = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show tracebacks of failed function steps.")
    ] = False,
    max_cost: Annotated[
        float | None,
        typer.Option(
            "--max-cost",
            metavar="USD",
            min=0,
            help="Budget: a model call that could pass it is not made (wins over "
            "defaults.max_cost).",
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="RUN_ID",
            help="Reuse the unchanged steps that succeeded in RUN_ID.",
            rich_help_panel="Run history",
            callback=_GIVEN,
        ),
    ] = None,
    from_step: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="STEP",
            help="Rerun STEP and what depends on it; take the "
            "unchanged rest from the latest run (or --resume).",
            rich_help_panel="Run history",
            callback=_GIVEN,
        ),
    ] = None,
    only: Annotated[
        str | None,
        typer.Option(
            "--only",
            metavar="STEP",
            help="Rerun STEP; take the unchanged rest from the latest run (or --resume).",
            rich_help_panel="Run history",
            callback=_GIVEN,
        ),
    ] = None,
    cache: CacheOption = False,
    record: RecordOption = None,
    replay: Annotated[
        str | None,
        typer.Option(
            "--replay",
            metavar="FILE",
            help="Answer from a fixture file, offline (wins over --mock).",
            rich_help_panel="Run history",
            callback=_GIVEN,
        ),
    ] = None,
    no_history: NoHistoryOption = False,
    db: DatabaseOption = None,
    no_checks: Annotated[
        bool, typer.Option("--no-checks", help="Skip the workflow's checks.")
    ] = False,
) -> None:
    """Validate, then run a workflow (and its checks: a failing check is exit 1)."""
    from orchestrate._api import RunRequest, run_request
    from orchestrate._render import function_output, report_run
    from orchestrate.history import HistoryOptions

    if events == "-" and as_json:
        raise OrchestrateError("--events - and --json both want stdout; pick one")
    terminal = sys.stderr.isatty() and not quiet
    request = RunRequest(
        flow=flow,
        assignments=tuple(input or ()),
        inputs_file=inputs_file,
        mock=mock,
        model=model,
        max_concurrency=max_concurrency,
        max_cost=max_cost,
        checks=not no_checks,
        events=events,
        events_tokens=events_tokens,
        stream=terminal,  # the live view shows the text as it comes
        history=HistoryOptions(
            record_history=not no_history,
            resume=resume,
            rerun_from=from_step,
            only=only,
            cache=cache,
            record=_path(record),
            replay=_path(replay),
            database=db,
        ),
    )
    started: dict[str, Any] = {}

    def prepared(run: "PreparedRun") -> None:
        """Start-up ends here (see main()); --json's document of a run that then fails to
        start shows its inputs."""
        _collect_garbage_again()
        started["inputs"] = run.inputs

    stdout = sys.stdout
    # stdout is for results: what functions print goes to stderr meanwhile.
    with (
        _json_even_if_not_started(flow, as_json, started),
        redirect_stdout(function_output(sys.stderr)),
    ):
        outcome = run_request(
            request,
            stdout=stdout,
            observers=_progress_observers(quiet, terminal),
            on_prepared=prepared,
        )
    if outcome.recording_failed is not None:  # the run is done: show it, and say it was not kept
        _print_error(outcome.recording_failed.format())
    result = outcome.result
    if as_json:
        _print_json(result.to_dict())
    report_run(
        result,
        sys.stdout,
        sys.stderr,
        with_outputs=not as_json and events != "-",
        show_error=quiet or terminal,
        verbose=verbose,
        resume_from=str(flow) if outcome.recorded and not quiet else None,
        quiet=quiet,
    )
    if outcome.terminated is not None:  # the result is shown: now say why it stopped
        raise outcome.terminated
    raise typer.Exit(result.exit_code)


@app.command()
@_reporting_errors
def estimate(
    flow: FlowArgument,
    input: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", metavar="NAME=VALUE", help="NAME=VALUE, as for `run`."),
    ] = None,
    inputs_file: Annotated[
        str | None,
        typer.Option(
            "--inputs", metavar="FILE", help="A JSON or YAML file of inputs.", callback=_GIVEN
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            metavar="FILE",
            help="A dataset (.jsonl, .json, .csv): times its rows.",
            callback=_GIVEN,
        ),
    ] = None,
    items: Annotated[
        int | None,
        typer.Option(
            "--items",
            metavar="N",
            min=0,
            help="Items of a for_each whose list is not known before the run (default 10).",
        ),
    ] = None,
    model: ModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON.")] = False,
) -> None:
    """What a run would cost, without calling a model: tokens and a low/high cost per step."""
    from orchestrate._estimate import estimate as estimate_run
    from orchestrate._inputs import parse_assignments, read_inputs_file
    from orchestrate._rows import count_rows
    from orchestrate._validate import load_with_children

    workflow, children = load_with_children(flow)
    given = read_inputs_file(inputs_file) if inputs_file else {}
    given |= parse_assignments(input or [], workflow.inputs)
    result = estimate_run(
        workflow,
        given,
        children=children,
        items=items,
        model=model,
        rows=count_rows(data) if data else 1,
    )
    if as_json:
        _print_json(result.to_dict())
        return
    from orchestrate._render import print_estimate

    print_estimate(result, sys.stdout)


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


@contextmanager
def _json_even_if_not_started(flow: str, as_json: bool, started: dict[str, Any]) -> Iterator[None]:
    """With --json, a run stopped before its first step still prints its document
    (with the inputs, once they are resolved)."""
    try:
        yield
    except OrchestrateError as exc:
        if as_json:
            from orchestrate._engine import iso_now, new_run_id
            from orchestrate._result import ErrorInfo, RunResult

            error = ErrorInfo(exc.error_type, exc.message)
            result = RunResult.not_started(
                flow, error, new_run_id(), iso_now(), started.get("inputs", {})
            )
            _print_json(result.to_dict())
        raise


def _progress_observers(quiet: bool, terminal: bool) -> list[Any]:
    if quiet:
        return []
    from orchestrate._render import LiveView, PlainProgress, stderr_console

    if terminal:
        return [LiveView(stderr_console())]
    return [PlainProgress(sys.stderr)]


# --- batch -------------------------------------------------------------------------------------


def _batch_observers(quiet: bool) -> list[Any]:
    if quiet:
        return []
    from orchestrate._render_batch import BatchLiveView, BatchPlainProgress

    if sys.stderr.isatty():
        from orchestrate._render import stderr_console

        return [BatchLiveView(stderr_console())]
    return [BatchPlainProgress(sys.stderr)]


@app.command()
@_reporting_errors
def batch(
    flow: FlowArgument,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            metavar="FILE",
            help="Rows: .jsonl, .json, .csv, or - (JSON Lines on "
            "stdin). With --resume, the resumed batch's file by default.",
            callback=_GIVEN,
        ),
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", metavar="INPUT=COLUMN", help="Feed INPUT from COLUMN (repeatable)."),
    ] = None,
    input: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            "-i",
            metavar="NAME=VALUE",
            help="NAME=VALUE shared by every row (a row's own value wins).",
        ),
    ] = None,
    inputs_file: Annotated[
        str | None,
        typer.Option(
            "--inputs",
            metavar="FILE",
            help="A JSON or YAML file of inputs shared by every row.",
            callback=_GIVEN,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write the rows to FILE (.jsonl or .csv) instead of stdout.",
            callback=_GIVEN,
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-c",
            metavar="N",
            help="Model calls in flight across all rows (1 to 1024).",
            callback=_checked(MAX_CONCURRENCY.check),
        ),
    ] = 16,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            metavar="N",
            help="Only the first N rows (at most 1000000).",
            callback=_checked(RUNS_LIMIT.check),
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the summary as JSON on stdout (the rows need --output)."
        ),
    ] = False,
    mock: MockOption = False,
    model: ModelOption = None,
    max_cost: Annotated[
        float | None,
        typer.Option(
            "--max-cost",
            metavar="USD",
            min=0,
            help="Budget shared by every row: a model call that could pass it is not made, and "
            "no new row starts (wins over defaults.max_cost).",
        ),
    ] = None,
    quiet: QuietOption = False,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="BATCH_ID",
            help="Run the rows of BATCH_ID that did not succeed; write the whole output again.",
            rich_help_panel="Run history",
            callback=_GIVEN,
        ),
    ] = None,
    cache: CacheOption = False,
    record: RecordOption = None,
    replay: Annotated[
        str | None,
        typer.Option(
            "--replay",
            metavar="FILE",
            help="Answer from a fixture file, offline.",
            rich_help_panel="Run history",
            callback=_GIVEN,
        ),
    ] = None,
    no_history: NoHistoryOption = False,
    db: DatabaseOption = None,
    matrix: Annotated[
        list[str] | None,
        typer.Option(
            "--matrix",
            metavar="KEY=V1,V2",
            help="Run the rows once per combination (KEY: "
            "model, provider, temperature, max_tokens, inputs.NAME; repeatable).",
            rich_help_panel="Evaluation",
        ),
    ] = None,
    fail_under: Annotated[
        float,
        typer.Option(
            "--fail-under",
            metavar="RATE",
            min=0.0,
            max=1.0,
            help="Exit 0 only if this share of row-checks pass (0 to 1).",
            rich_help_panel="Evaluation",
        ),
    ] = 1.0,
    junit: Annotated[
        str | None,
        typer.Option(
            "--junit",
            metavar="FILE",
            help="Write JUnit XML: a testcase per row and check.",
            rich_help_panel="Evaluation",
            callback=_GIVEN,
        ),
    ] = None,
    no_checks: Annotated[
        bool,
        typer.Option(
            "--no-checks", help="Skip the workflow's checks.", rich_help_panel="Evaluation"
        ),
    ] = False,
) -> None:
    """Run a workflow once per row of a dataset, concurrently; rows out in order (and
    their checks, graded: an evaluation)."""
    from orchestrate._batch import BatchRequest, run_request
    from orchestrate._errors import UsageError
    from orchestrate._render import function_output
    from orchestrate.history import HistoryOptions

    if as_json and output is None:
        raise UsageError("--json prints the summary on stdout, so the rows need --output FILE")
    request = BatchRequest(
        flow=flow,
        data=data,
        mapping=tuple(map_ or ()),
        assignments=tuple(input or ()),
        inputs_file=inputs_file,
        output=output,
        concurrency=concurrency,
        limit=limit,
        mock=mock,
        model=model,
        max_cost=max_cost,
        resume=resume,
        history=HistoryOptions(
            record_history=not no_history,
            cache=cache,
            record=_path(record),
            replay=_path(replay),
            database=db,
        ),
        checks=not no_checks,
        fail_under=fail_under,
        junit=junit,
        matrix=tuple(matrix or ()),
    )
    stdout = sys.stdout
    terminated = None
    try:
        # stdout is for the rows: what functions print goes to stderr meanwhile.
        with redirect_stdout(function_output(sys.stderr)):
            summary = run_request(request, stdout=stdout, observers=_batch_observers(quiet))
    except Terminated as exc:  # show what the batch did, then say why it stopped
        terminated, summary = exc, cast("BatchSummary", exc.result)
    document = summary.to_dict()
    if as_json:
        _print_json(document)
    elif not quiet:
        from orchestrate._render_batch import summary_text

        print(summary_text(document), file=sys.stderr)
    if terminated is not None:
        raise terminated
    raise typer.Exit(summary.exit_code)


# --- ui -------------------------------------------------------------------------------------------


@app.command()
@_reporting_errors
def ui(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Workflow files, or folders to search for them (default: this folder).",
            metavar="[PATH]...",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="The address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            "--port",
            metavar="PORT",
            min=0,
            max=65535,
            help="The port to listen on (0: any free one).",
        ),
    ] = 8765,
    no_open: Annotated[bool, typer.Option("--no-open", help="Do not open a browser.")] = False,
    db: DatabaseOption = None,
) -> None:
    """Serve the workflows and the run history in a browser: run, watch, compare."""
    from orchestrate.ui import serve

    # The history it shows, and the runs it starts record into, alike.
    env = {**os.environ, "ORCHESTRATE_DATABASE_URL": db} if db else os.environ
    serve(paths or [Path(".")], host=host, port=port, open_browser=not no_open, env=env)


# --- runs: the history ------------------------------------------------------------------------

runs_app = typer.Typer(
    name="runs",
    help="The run history: list, show, diff, delete and prune recorded runs.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(runs_app)


class RunStatusChoice(StrEnum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


@runs_app.command("list")
@_reporting_errors
def runs_list(
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            "-n",
            metavar="N",
            help="At most this many runs (0: all; at most 1000000).",
            callback=_checked(RUNS_LIMIT.check),
        ),
    ] = 20,
    workflow: Annotated[
        str | None,
        typer.Option(
            "--workflow", "-w", metavar="NAME", help="Only runs of this workflow.", callback=_GIVEN
        ),
    ] = None,
    status: Annotated[
        RunStatusChoice | None, typer.Option("--status", help="Only runs with this status.")
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user", "-u", metavar="NAME", help="Only runs made by NAME.", callback=_GIVEN
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    db: DatabaseOption = None,
) -> None:
    """Recorded runs, newest first."""
    from orchestrate.history import open_store

    with open_store(location=db) as store:
        runs = store.list_runs(
            limit=limit or None,
            workflow=workflow,
            status=status.value if status else None,
            user=user,
        )
        location = store.location
    if as_json:
        _print_json(runs)
    elif not runs:
        what = "match" if workflow or status or user else "are recorded"
        print(f"no runs {what} in {location}", file=sys.stderr)
    else:
        from orchestrate._render import print_runs_table

        print_runs_table(runs, sys.stdout)


SHOWN_FAILED_ROWS = 50


@runs_app.command("show")
@_reporting_errors
def runs_show(
    run_id: Annotated[
        str, typer.Argument(metavar="RUN_ID", help="A run id, or a unique prefix of one.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result document.")] = False,
    db: DatabaseOption = None,
) -> None:
    """A recorded run: its outputs and each step. A batch: its summary and failed rows."""
    from orchestrate.history import batch_details, open_store, run_details

    with open_store(location=db) as store:
        found = store.resolve(run_id)
        batch = batch_details(store, found, limit=None if as_json else SHOWN_FAILED_ROWS)
        if batch is None:
            document, details = run_details(store, found)
    if batch is not None:
        if as_json:
            _print_json(batch)
        else:
            from orchestrate._render_batch import print_batch

            print_batch(batch, batch["failed_rows"], sys.stdout)
        return
    if as_json:
        _print_json(document)
    else:
        from orchestrate._render import print_run

        print_run(document, details, sys.stdout)


@runs_app.command("diff")
@_reporting_errors
def runs_diff(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="The earlier run (id or prefix).")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B", help="The later run (id or prefix).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    db: DatabaseOption = None,
) -> None:
    """Per step, what changed between two runs: request, output, status, tokens, time.
    Two batches: each check's pass rate, and the rows whose verdict changed."""
    from orchestrate._errors import UsageError
    from orchestrate.history import diff_batches, diff_runs, open_store

    with open_store(location=db) as store:
        found = store.resolve(run_a), store.resolve(run_b)
        batches = [store.batch(run_id) is not None for run_id in found]
        if batches[0] != batches[1]:
            batch_id = found[batches.index(True)]
            raise UsageError(
                f"{batch_id} is a batch, not a run",
                hint="runs diff compares two runs or two batches, not one of each",
            )
        diff = diff_batches(store, *found) if batches[0] else diff_runs(store, *found)
    if as_json:
        _print_json(diff)
    elif batches[0]:
        from orchestrate._render_batch import print_batch_diff

        print_batch_diff(diff, sys.stdout)
    else:
        from orchestrate._render import print_diff

        print_diff(diff, sys.stdout)


@runs_app.command("delete")
@_reporting_errors
def runs_delete(
    run_ids: Annotated[
        list[str], typer.Argument(metavar="RUN_ID...", help="Run ids or unique prefixes.")
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Delete runs recorded as running too (their process is gone)."
        ),
    ] = False,
    db: DatabaseOption = None,
) -> None:
    """Delete runs from the history (a run still running only with --force)."""
    from orchestrate.history import delete_runs, open_store

    with open_store(location=db) as store:
        deleted = delete_runs(store, run_ids, force=force)
    print(f"deleted {_deleted_text(deleted)}", file=sys.stderr)


@runs_app.command("prune")
@_reporting_errors
def runs_prune(
    older_than: Annotated[
        str, typer.Option("--older-than", metavar="AGE", help="90s, 45m, 12h, 30d or 2w.")
    ],
    db: DatabaseOption = None,
) -> None:
    """Delete runs (and cached responses) older than AGE; runs still running are kept."""
    import time

    from orchestrate.history import open_store, parse_age

    age = parse_age(older_than)
    with open_store(location=db) as store:
        deleted = store.prune(time.time() - age)
    from orchestrate._hints import plural

    print(
        f"deleted {_deleted_text(deleted)} and {plural(deleted.responses, 'cached response')}"
        f" older than {older_than.strip()}",
        file=sys.stderr,
    )


def _deleted_text(deleted: "Deleted") -> str:
    """`2 runs`, `batch ID (9 rows)`, `1 run and 2 batches (18 rows)`."""
    from orchestrate._hints import plural

    parts = [plural(deleted.runs, "run")] if deleted.runs or not deleted.batches else []
    if deleted.batches:
        batches = (
            f"batch {deleted.batches[0]}"
            if len(deleted.batches) == 1
            else plural(len(deleted.batches), "batch", "batches")
        )
        parts.append(f"{batches} ({plural(deleted.rows, 'row')})")
    return " and ".join(parts)


# --- history: moving runs between histories ----------------------------------------------------

history_app = typer.Typer(
    name="history",
    help="Move runs between histories: export to, and import from, a file.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(history_app)


@history_app.command("export")
@_reporting_errors
def history_export(
    file: Annotated[
        str,
        typer.Argument(metavar="FILE", help="JSON Lines to write (- for stdout).", callback=_GIVEN),
    ],
    db: DatabaseOption = None,
) -> None:
    """Write every run, with its steps, to FILE (JSON Lines)."""
    from orchestrate._files import open_output
    from orchestrate._hints import plural
    from orchestrate.history import export_history, open_store

    # private: the file holds the same prompts and answers as the history
    with (
        open_store(location=db) as store,
        open_output(file, stdout=sys.stdout, private=True) as out,
    ):
        done = export_history(store, out)
        location = store.location
    print(
        f"exported {plural(done.runs, 'run')}"
        + (f" and {plural(done.batches, 'batch', 'batches')}" if done.batches else "")
        + f" from {location} to {file}",
        file=sys.stderr,
    )


@history_app.command("import")
@_reporting_errors
def history_import(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE", help="JSON Lines from `history export` (- for stdin).", callback=_GIVEN
        ),
    ],
    db: DatabaseOption = None,
) -> None:
    """Add the runs of FILE to the history; runs it has already are left as they are."""
    from orchestrate._hints import plural
    from orchestrate.history import import_history, open_store

    with _input_file(file) as lines, open_store(location=db) as store:
        done = import_history(store, lines, file)
        location = store.location
    print(
        f"imported {plural(done.added, 'run')}"
        + (f" and {plural(done.batches, 'batch', 'batches')}" if done.batches else "")
        + f" into {location}"
        + (f" ({done.present} already there)" if done.present else ""),
        file=sys.stderr,
    )


@contextmanager
def _input_file(name: str) -> Iterator[IO[str]]:
    if name == "-":
        yield sys.stdin
        return
    try:
        with open(name, encoding="utf-8") as lines:
            yield lines
    except OSError as exc:
        raise OrchestrateError(f"cannot read {name}: {exc.strerror}") from None


# Commands that call _collect_garbage_again() themselves, at the end of their start-up.
_ENDS_OWN_START_UP = frozenset({"run"})


def _collect_garbage_again() -> None:
    """Garbage collection on again after the process's start-up (orchestrate.__main__)
    turned it off, leaving out for good what
    start-up created: later collections need not look at it again. The garbage frozen
    with it is the imports' (some 2,800 objects, whatever the size of the workflow)."""
    if not gc.isenabled():  # not when called from Python (tests, an embedding program)
        gc.freeze()
        gc.enable()
