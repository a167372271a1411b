"""The Python API: everything the CLI does, callable without it."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import stat
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import orchestrate
from orchestrate._api import RunRequest, run_request
from orchestrate._errors import InputError, UsageError, WorkflowInvalid
from orchestrate._spec import LLMStep, Workflow, WorkflowStep
from orchestrate.history import database_location, open_store


def test_all_is_complete_and_importable() -> None:
    """Every public name resolves, and __all__ lists each lazily exported name."""
    for name in orchestrate.__all__:
        assert getattr(orchestrate, name) is not None
    assert sorted(orchestrate.__all__) == orchestrate.__all__
    assert set(orchestrate._MODULE_OF) | {"__version__"} == set(orchestrate.__all__)


def test_dir_lists_only_the_public_names() -> None:
    """dir(orchestrate) shows __all__, not submodules like _api nor helpers."""
    import orchestrate._engine  # a loaded submodule is an attribute too

    assert dir(orchestrate) == orchestrate.__all__


def test_run_workflow_returns_the_result(write_flow: Callable) -> None:
    """run_workflow validates, runs and returns the RunResult."""
    flow = write_flow("""
        inputs:
          name: {}
        steps:
          - id: greet
            prompt: "Greet {{ inputs.name }}"
            mock: "Hello, {{ inputs.name }}!"
        """)
    result = orchestrate.run_workflow(flow, {"name": "Ada"}, mock=True)
    assert result.status == "succeeded"
    assert result.outputs == {"greet": "Hello, Ada!"}
    assert result.to_dict()["inputs"] == {"name": "Ada"}


@pytest.mark.parametrize("how", ["run_workflow", "run_request"])
def test_a_run_never_builds_the_repr_of_its_result(
    how: str, write_flow: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio.run's end reads its Ctrl-C handler, whose repr holds the finished task's:
    the result must not be what the task returns, or every run reprs it whole for nothing."""
    flow = write_flow(GREETING)
    reprs: list[str] = []
    monkeypatch.setattr(orchestrate.RunResult, "__repr__", lambda self: reprs.append("") or "")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # as asyncio.run wants
    if how == "run_workflow":
        result = orchestrate.run_workflow(flow, {"name": "Ada"}, mock=True)
    else:
        request = RunRequest(flow=str(flow), assignments=("name=Ada",), mock=True)
        result = run_request(request, stdout=io.StringIO()).result
    assert result.status == "succeeded"
    assert reprs == []


def test_a_run_time_template_error_names_its_line_and_column(write_flow: Callable) -> None:
    """A file read without positions (the fast path) still places a render error exactly."""
    flow = write_flow("""
        steps:
          - id: a
            prompt: Hi
            mock: '{"n": 1}'
          - id: b
            prompt:   "{{ steps.a.output.missing.deeper }}"
        """)
    result = orchestrate.run_workflow(flow, mock=True)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.message.startswith(f"{flow}:6:15: ")


def test_run_workflow_observers_see_events(write_flow: Callable) -> None:
    """Observers passed to run_workflow receive the engine's events in order."""
    flow = write_flow("""
        steps:
          - id: a
            prompt: x
        """)
    seen: list[str] = []
    orchestrate.run_workflow(flow, mock=True, observers=[lambda e: seen.append(e.name)])
    assert seen == ["run_started", "step_started", "step_finished", "run_finished"]


def test_run_workflow_raises_for_invalid_files_and_inputs(write_flow: Callable) -> None:
    """Problems found before running are exceptions carrying the diagnostics."""
    broken = write_flow("steps: [{id: a, promt: x}]", "broken.yaml")
    with pytest.raises(WorkflowInvalid) as caught:
        orchestrate.run_workflow(broken, mock=True)
    assert caught.value.diagnostics[0].message == "unknown key 'promt' in a step"
    needs_input = write_flow("inputs: {x: {}}\nsteps: [{id: a, prompt: '{{ inputs.x }}'}]")
    with pytest.raises(InputError):
        orchestrate.run_workflow(needs_input, mock=True)


def test_mock_follows_the_environment(
    write_flow: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mock=None reads ORCHESTRATE_MOCK."""
    monkeypatch.setenv("ORCHESTRATE_MOCK", "1")
    flow = write_flow("steps: [{id: a, prompt: x, mock: offline}]")
    assert orchestrate.run_workflow(flow).outputs == {"a": "offline"}


@pytest.mark.parametrize(
    ("mock", "options"),
    [
        (True, None),
        (False, orchestrate.RunOptions(mock=True)),
    ],
)
def test_mock_as_an_argument_or_a_run_option(
    write_flow: Callable, mock: bool, options: orchestrate.RunOptions | None
) -> None:
    """run_prepared(mock=True) and RunOptions(mock=True) both answer with the `mock:` text."""
    prepared = orchestrate.prepare(write_flow("steps: [{id: a, prompt: x, mock: offline}]"))
    result = asyncio.run(orchestrate.run_prepared(prepared, mock=mock, options=options))
    assert result.outputs == {"a": "offline"}


def test_a_failing_observer_does_not_break_the_run(
    write_flow: Callable, capsys: pytest.CaptureFixture
) -> None:
    """An observer that raises is dropped with a warning; the run itself succeeds."""
    flow = write_flow("steps: [{id: a, prompt: x, mock: fine}, {id: b, prompt: y}]")
    seen: list[str] = []

    def broken(event: object) -> None:
        raise RuntimeError("display gone")

    result = orchestrate.run_workflow(
        flow, mock=True, observers=[broken, lambda e: seen.append(e.name)]
    )
    assert result.status == "succeeded"
    assert seen[-1] == "run_finished"
    assert "stopped reporting to function: RuntimeError('display gone')" in capsys.readouterr().err


def test_events_writer_stops_quietly_when_the_reader_leaves() -> None:
    """`--events - | head -1`: a closed pipe ends the event stream, not the run."""
    from orchestrate._events import JsonLinesWriter, StepStarted

    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError

        def flush(self) -> None:
            return None

    writer = JsonLinesWriter(ClosedPipe())  # type: ignore[arg-type]
    writer(StepStarted(step_id="a", kind="llm"))
    writer(StepStarted(step_id="b", kind="llm"))
    assert writer.closed


def test_run_workflow_can_record_history(write_flow: Callable) -> None:
    """With history=HistoryOptions(), a run from Python is recorded like a CLI run."""
    from orchestrate.history import open_store

    flow = write_flow("steps: [{id: a, prompt: x, mock: kept}]")
    result = orchestrate.run_workflow(flow, mock=True, history=orchestrate.HistoryOptions())
    with open_store() as store:
        assert store.document(result.run_id) == result.to_dict()


def test_a_failed_step_keeps_what_it_sent(write_flow: Callable) -> None:
    """The rendered arguments of a failed function step stay in its result (and history)."""
    write_flow("def fail(x):\n    raise ValueError(x)\n", "failing.py")
    flow = write_flow("steps: [{id: f, function: failing:fail, with: {x: '{{ 1 + 1 }}'}}]")
    result = orchestrate.run_workflow(flow, mock=True)
    assert result.steps[0].status == "failed"
    assert result.steps[0].request == {"function": "failing:fail", "with": {"x": 2}}


def _sigterm_seen_by_the_test(signum: int, frame: object) -> None:
    """Stands for the handler a program had before it ran a workflow."""


@pytest.fixture
def own_sigterm_handler() -> Iterator[None]:
    """SIGTERM goes to a harmless handler of the test's, restored after."""
    previous = signal.signal(signal.SIGTERM, _sigterm_seen_by_the_test)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM kills at once on Windows")
@pytest.mark.usefixtures("own_sigterm_handler")
def test_sigterm_stops_a_run_from_python(write_flow: Callable) -> None:
    """SIGTERM during run_workflow cancels the run and raises Terminated with its result;
    the program's own SIGTERM handler is back afterwards."""
    write_flow(
        """
        import asyncio
        import os
        import signal

        async def terminate_me():
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(10)
        """,
        "killer.py",
    )
    flow = write_flow("""
        steps:
          - id: first
            prompt: x
          - id: term
            function: killer:terminate_me
            needs: [first]
        """)
    with pytest.raises(orchestrate.Terminated) as caught:
        orchestrate.run_workflow(flow, mock=True)
    result = caught.value.result
    assert result is not None
    assert (result.status, result.error.type) == ("cancelled", "cancelled")
    assert [s.status for s in result.steps] == ["succeeded", "cancelled"]
    assert signal.getsignal(signal.SIGTERM) is _sigterm_seen_by_the_test


@pytest.mark.usefixtures("own_sigterm_handler")
def test_a_run_in_a_thread_leaves_sigterm_alone(write_flow: Callable) -> None:
    """Outside the main thread signals are not a run's to take: it runs, nothing changes."""
    flow = write_flow("steps: [{id: a, prompt: x, mock: done}]")
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(orchestrate.run_workflow, flow, mock=True).result()
    assert result.outputs == {"a": "done"}
    assert signal.getsignal(signal.SIGTERM) is _sigterm_seen_by_the_test


# Workflows built in Python, each with one problem the validator reports for a file too.
BROKEN_OBJECTS = [
    pytest.param(
        (LLMStep(id="a", prompt="x", needs=("b",)), LLMStep(id="b", prompt="y", needs=("a",))),
        "dependency cycle: a -> b -> a",
        id="needs-cycle",
    ),
    pytest.param(
        (LLMStep(id="a", prompt="x"), LLMStep(id="a", prompt="y")),
        "duplicate step id 'a'",
        id="duplicate-id",
    ),
    pytest.param(
        (LLMStep(id="a", prompt="{{ steps.b.output }}"),), "unknown step 'b'", id="unknown-step"
    ),
    pytest.param(
        (LLMStep(id="a", prompt="{{ nope"),), "unexpected end of template", id="template-syntax"
    ),
]


@pytest.mark.parametrize(("steps", "message"), BROKEN_OBJECTS)
def test_a_workflow_object_is_validated_before_it_runs(steps: tuple, message: str) -> None:
    """A broken Workflow built in Python raises WorkflowInvalid, never a bare error."""
    with pytest.raises(WorkflowInvalid) as caught:
        orchestrate.run_workflow(Workflow(name="broken", steps=steps), mock=True)
    (problem,) = caught.value.diagnostics
    assert (problem.file, message) == ("<workflow>", problem.message[: len(message)])


def test_a_workflow_object_runs_its_sub_workflows(write_flow: Callable) -> None:
    """A Workflow object's sub-workflow files are validated and loaded with it."""
    write_flow("steps: [{id: inner, prompt: x, mock: from the child}]", "child.yaml")
    parent = Workflow(
        name="parent",
        path=write_flow("steps: []", "parent.yaml"),
        steps=(WorkflowStep(id="call", workflow="child.yaml"),),
    )
    result = orchestrate.run_workflow(parent, mock=True)
    assert result.outputs == {"call": {"inner": "from the child"}}


# --- RunRequest: what `orchestrate run` calls -----------------------------------------------

GREETING = """
    inputs:
      name: {}
      greeting: {default: Hello}
    steps:
      - id: greet
        prompt: "{{ inputs.greeting }}, {{ inputs.name }}"
        mock: "{{ inputs.greeting }}, {{ inputs.name }}!"
    """


def test_a_run_request_runs_as_the_cli_does(write_flow: Callable, tmp_path: Path) -> None:
    """Inputs from a file with `-i` over them, events to a private file, the history: the
    outcome says the run was recorded, and `on_prepared` saw the inputs before it ran."""
    flow = write_flow(GREETING)
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("name: Ada\ngreeting: Hi\n")
    events = tmp_path / "events.jsonl"
    request = RunRequest(
        flow=str(flow),
        inputs_file=str(inputs),
        assignments=("name=Grace",),
        mock=True,
        events=str(events),
        history=orchestrate.HistoryOptions(),
    )
    prepared: list[dict] = []
    seen: list[str] = []
    outcome = run_request(
        request,
        stdout=io.StringIO(),
        observers=[lambda event: seen.append(event.name)],
        on_prepared=lambda run: prepared.append(dict(run.inputs)),
    )
    assert outcome.result.outputs == {"greet": "Hi, Grace!"}
    assert (outcome.recorded, outcome.recording_failed, outcome.terminated) == (True, None, None)
    assert prepared == [{"name": "Grace", "greeting": "Hi"}]
    written = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert written == seen  # the events file gets every event the observers get
    assert stat.S_IMODE(events.stat().st_mode) == 0o600
    with open_store() as store:
        assert store.document(outcome.result.run_id) == outcome.result.to_dict()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency must be between 1 and 1024, got 0"),
        ({"model": ""}, "model must not be empty"),
        ({"events": " "}, "events must not be empty"),
        ({"flow": ""}, "flow must not be empty"),
    ],
)
def test_a_run_request_checks_its_settings(settings: dict, message: str) -> None:
    """RunRequest applies the same checks from Python as the options on the CLI."""
    with pytest.raises(UsageError) as caught:
        RunRequest(**{"flow": "flow.yaml", **settings})
    assert caught.value.message == message


def test_a_resumed_run_request_takes_the_earlier_inputs(write_flow: Callable) -> None:
    """With `history.resume`, the resumed run's inputs fill those not given, and its
    unchanged steps are reused."""
    flow = write_flow(GREETING)
    first = run_request(
        RunRequest(
            flow=str(flow),
            assignments=("name=Ada",),
            mock=True,
            history=orchestrate.HistoryOptions(),
        ),
        stdout=io.StringIO(),
    ).result
    resumed = run_request(
        RunRequest(
            flow=str(flow), mock=True, history=orchestrate.HistoryOptions(resume=first.run_id)
        ),
        stdout=io.StringIO(),
    ).result
    assert resumed.resumed_from == first.run_id
    assert resumed.to_dict()["inputs"] == {"name": "Ada", "greeting": "Hello"}
    assert [(s.id, s.reused) for s in resumed.steps] == [("greet", True)]


def test_a_run_request_without_history_records_nothing(write_flow: Callable) -> None:
    """history=None (the default): the run is not recorded and no database is made;
    events `-` go to the stdout given."""
    flow = write_flow("steps: [{id: a, prompt: x, mock: done}]")
    stdout = io.StringIO()
    outcome = run_request(RunRequest(flow=str(flow), mock=True, events="-"), stdout=stdout)
    assert (outcome.result.outputs, outcome.recorded) == ({"a": "done"}, False)
    assert json.loads(stdout.getvalue().splitlines()[-1])["event"] == "run_finished"
    assert not Path(database_location()).exists()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM kills at once on Windows")
@pytest.mark.usefixtures("own_sigterm_handler")
def test_a_run_request_stopped_by_sigterm_returns_what_it_did(write_flow: Callable) -> None:
    """SIGTERM: the outcome holds the cancelled result and the Terminated to raise after
    showing it (the CLI's exit 143)."""
    write_flow(
        """
        import asyncio
        import os
        import signal

        async def terminate_me():
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(10)
        """,
        "killer.py",
    )
    flow = write_flow("steps: [{id: term, function: killer:terminate_me}]")
    outcome = run_request(RunRequest(flow=str(flow), mock=True), stdout=io.StringIO())
    assert outcome.result.status == "cancelled"
    assert isinstance(outcome.terminated, orchestrate.Terminated)
    assert outcome.terminated.result is outcome.result
