"""Reusing earlier work: --resume, --from, --only, the response cache, --record and --replay."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrate.providers._mock import MockProvider
from tests.conftest import history_bytes, history_connection

pytestmark = pytest.mark.usefixtures("history_backend")

OPENAI_URL = "https://api.openai.com/v1/chat/completions"

TOOLS = '''
from pathlib import Path


def work(name, log, marker=None, previous=None):
    """Append `name` to the log file; fail while the marker file exists."""
    with open(log, "a", encoding="utf-8") as out:
        out.write(name + "\\n")
    if marker and Path(marker).exists():
        raise RuntimeError(f"{name} failed: the marker file is there")
    return f"{name}<{previous}>"
'''


@pytest.fixture
def provider_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The step id of every request that reached the mock provider, in order."""
    calls: list[str] = []
    complete = MockProvider.complete

    async def counting(self: MockProvider, request: Any, **options: Any) -> Any:
        calls.append(request.step_id)
        return await complete(self, request, **options)

    monkeypatch.setattr(MockProvider, "complete", counting)
    return calls


@pytest.fixture
def function_calls(tmp_path: Path) -> Callable[[], list[str]]:
    """The names the function steps logged, read afresh at each call."""
    log = tmp_path / "calls.log"

    def read() -> list[str]:
        calls = log.read_text(encoding="utf-8").split() if log.exists() else []
        log.unlink(missing_ok=True)
        return calls

    return read


def run(cli: Callable, flow: Path, *args: str | Path) -> tuple[int, dict[str, Any]]:
    result = cli("run", flow, "--json", *args)
    assert result.stdout, result.stderr
    return result.exit_code, json.loads(result.stdout)


def reused(doc: dict[str, Any]) -> dict[str, bool]:
    return {s["id"]: bool(s.get("reused")) for s in doc["steps"]}


# --- --resume -----------------------------------------------------------------------------------


@pytest.fixture
def four_steps(tmp_path: Path, write_flow: Callable) -> tuple[Path, Path]:
    """LLM fetch -> function shape -> function check (fails while a marker exists) -> LLM
    report; returns (flow, marker)."""
    write_flow(TOOLS, "resume_tools.py")
    marker = tmp_path / "marker"
    log = tmp_path / "calls.log"
    flow = write_flow(f"""
        name: pipeline
        steps:
          - id: fetch
            prompt: Fetch the data.
            mock: "raw data"
          - id: shape
            function: resume_tools:work
            with: {{name: shape, log: "{log}", previous: "{{{{ steps.fetch.output }}}}"}}
          - id: check
            function: resume_tools:work
            with: {{name: check, log: "{log}", marker: "{marker}",
                    previous: "{{{{ steps.shape.output }}}}"}}
          - id: report
            prompt: "Report on {{{{ steps.check.output }}}}"
        """)
    return flow, marker


def test_resume_runs_only_the_failed_and_later_steps(
    four_steps: tuple[Path, Path],
    cli: Callable,
    provider_calls: list[str],
    function_calls: Callable[[], list[str]],
) -> None:
    """Step 3 of 4 fails; fixed and resumed, steps 1-2 are not called again, 3-4 are."""
    flow, marker = four_steps
    marker.touch()
    code, failed = run(cli, flow, "--mock")
    assert code == 1
    assert [s["status"] for s in failed["steps"]] == [
        "succeeded",
        "succeeded",
        "failed",
        "cancelled",
    ]
    assert provider_calls == ["fetch"]
    assert function_calls() == ["shape", "check"]

    marker.unlink()
    provider_calls.clear()
    code, resumed = run(cli, flow, "--mock", "--resume", failed["run_id"])
    assert code == 0
    assert provider_calls == ["report"]
    assert function_calls() == ["check"]
    assert resumed["resumed_from"] == failed["run_id"]
    assert resumed["run_id"] != failed["run_id"]
    assert reused(resumed) == {"fetch": True, "shape": True, "check": False, "report": False}
    assert resumed["outputs"]["check"] == "check<shape<raw data>>"
    # the reused steps keep what they produced and cost
    for before, after in zip(failed["steps"][:2], resumed["steps"][:2], strict=True):
        assert after["output"] == before["output"]
        assert after["usage"] == before["usage"]
        assert after["model"] == before["model"]
    with history_connection() as db:
        assert db.execute(
            "SELECT resumed_from FROM runs WHERE run_id = ?", (resumed["run_id"],)
        ).fetchone() == (failed["run_id"],)
        assert db.execute(
            "SELECT step_id FROM steps WHERE run_id = ? AND reused = 1 ORDER BY position",
            (resumed["run_id"],),
        ).fetchall() == [("fetch",), ("shape",)]


def test_resume_by_prefix_and_of_a_resumed_run(
    four_steps: tuple[Path, Path],
    cli: Callable,
    provider_calls: list[str],
    function_calls: Callable[[], list[str]],
) -> None:
    """A prefix names the run; resuming a resumed run reuses everything again."""
    flow, _ = four_steps
    _, first = run(cli, flow, "--mock")
    _, second = run(cli, flow, "--mock", "--resume", first["run_id"][:-4])
    _, third = run(cli, flow, "--mock", "--resume", second["run_id"])
    assert reused(third) == dict.fromkeys(("fetch", "shape", "check", "report"), True)
    assert third["outputs"] == first["outputs"]
    assert provider_calls == ["fetch", "report"]
    assert function_calls() == ["shape", "check"]


@pytest.mark.parametrize("run_id", ["nope", "0"])
def test_resume_unknown_or_ambiguous(
    four_steps: tuple[Path, Path], cli: Callable, run_id: str
) -> None:
    """--resume of an unknown or ambiguous id: exit 2 before anything runs."""
    flow, _ = four_steps
    run(cli, flow, "--mock")
    run(cli, flow, "--mock")
    result = cli("run", flow, "--mock", "--resume", run_id)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "no run with id 'nope'" in result.stderr or "is ambiguous" in result.stderr


CHANGING = """
    inputs:
      topic: {default: tides}
      style: {default: plain}
    steps:
      - id: facts
        prompt: "Facts about {{ inputs.topic }}"
      - id: tone
        prompt: "Describe the style {{ inputs.style }}"
      - id: article
        prompt: "Write with {{ steps.facts.output }} in {{ steps.tone.output }}"
      - id: encode
        function: json:dumps
        with: {obj: [1, 2]}
    """


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], {"facts": True, "tone": True, "article": True}),
        (["-i", "style=ornate"], {"facts": True, "tone": False, "article": False}),
        (["-i", "topic=moon"], {"facts": False, "tone": True, "article": False}),
        (
            ["-i", "topic=moon", "-i", "style=ornate"],
            {"facts": False, "tone": False, "article": False},
        ),
    ],
)
def test_resume_with_changed_inputs(
    write_flow: Callable, cli: Callable, args: list[str], expected: dict[str, bool]
) -> None:
    """Changed inputs: only steps whose rendered request is unchanged are reused."""
    flow = write_flow(CHANGING)
    _, first = run(cli, flow, "--mock")
    _, resumed = run(cli, flow, "--mock", "--resume", first["run_id"], *args)
    assert {k: v for k, v in reused(resumed).items() if k != "encode"} == expected
    assert resumed["status"] == "succeeded"


def test_resume_takes_the_resumed_runs_inputs(
    write_flow: Callable, cli: Callable, tmp_path: Path
) -> None:
    """`run FLOW --resume ID`, as the failed run's `resume with:` line says, needs no -i
    again: inputs not given are the resumed run's (a required one included); -i wins."""
    write_flow(TOOLS, "resume_tools.py")
    marker = tmp_path / "marker"
    marker.touch()
    flow = write_flow(f"""
        inputs:
          topic: {{type: string}}
          style: {{default: plain}}
        steps:
          - id: facts
            prompt: "Facts about {{{{ inputs.topic }}}} in {{{{ inputs.style }}}}"
          - id: check
            function: resume_tools:work
            with: {{name: check, log: "{tmp_path / "calls.log"}", marker: "{marker}",
                    previous: "{{{{ steps.facts.output }}}}"}}
        """)
    failed = cli("run", flow, "--mock", "-i", "topic=tides", "-i", "style=ornate")
    assert failed.exit_code == 1
    hint = failed.stderr.strip().splitlines()[-1]
    assert hint == f"resume with: orchestrate run {flow} --resume {_run_id(failed.stderr)}"
    marker.unlink()
    code, resumed = run(cli, flow, "--mock", "--resume", _run_id(failed.stderr))
    assert code == 0
    assert resumed["inputs"] == {"topic": "tides", "style": "ornate"}
    assert reused(resumed) == {"facts": True, "check": False}
    code, changed = run(cli, flow, "--mock", "--resume", resumed["run_id"], "-i", "topic=moon")
    assert changed["inputs"] == {"topic": "moon", "style": "ornate"}
    assert reused(changed) == {"facts": False, "check": False}


def _run_id(stderr: str) -> str:
    return stderr.split("--resume ")[-1].split()[0]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'prompt: "Describe the style {{ inputs.style }}"',
            'prompt: "Describe the look {{ inputs.style }}"',
            {"facts": True, "tone": False, "article": False},
        ),
        (
            "- id: tone\n",
            "- id: tone\n    temperature: 0.9\n",
            {"facts": True, "tone": False, "article": True},
        ),
        (
            "- id: facts\n",
            '- id: facts\n    mock: "other facts"\n',
            {"facts": False, "tone": True, "article": False},
        ),
        (
            "- id: facts\n",
            "- id: facts\n    on_error: continue\n",
            {"facts": False, "tone": True, "article": True},
        ),
    ],
)
def test_resume_with_a_changed_workflow(
    write_flow: Callable, cli: Callable, old: str, new: str, expected: dict[str, bool]
) -> None:
    """A changed step runs again; steps whose definition and request are the same are reused."""
    flow = write_flow(CHANGING)
    _, first = run(cli, flow, "--mock")
    text = flow.read_text()
    assert old in text
    flow.write_text(text.replace(old, new))
    code, resumed = run(cli, flow, "--mock", "--resume", first["run_id"])
    assert code == 0
    assert {k: v for k, v in reused(resumed).items() if k != "encode"} == expected


@pytest.fixture
def items_flow(tmp_path: Path, write_flow: Callable) -> tuple[Path, Path]:
    """A for_each of function items (a list input, default a, b, c), one at a time; c
    fails while the marker exists; then an LLM step over the list. Returns (flow, marker)."""
    write_flow(TOOLS, "resume_tools.py")
    marker = tmp_path / "marker"
    flow = write_flow(f"""
        inputs:
          names: {{type: array, default: [a, b, c]}}
        steps:
          - id: each
            for_each: inputs.names
            function: resume_tools:work
            with: {{name: "{{{{ item }}}}", log: "{tmp_path / "calls.log"}",
                    marker: "{{% if item == 'c' %}}{marker}{{% endif %}}"}}
          - id: report
            prompt: "Report on {{{{ steps.each.output }}}}"
        """)
    return flow, marker


def test_resume_of_a_failed_for_each_reruns_only_the_items_that_did_not_succeed(
    items_flow: tuple[Path, Path],
    cli: Callable,
    function_calls: Callable[[], list[str]],
) -> None:
    """Item c fails after a and b succeeded; resumed, a and b are taken, c runs."""
    flow, marker = items_flow
    marker.touch()
    code, failed = run(cli, flow, "--mock", "--max-concurrency", "1")
    assert code == 1
    assert function_calls() == ["a", "b", "c"]
    assert failed["error"]["message"].startswith("item 2 ('c'): ")
    marker.unlink()
    code, resumed = run(cli, flow, "--mock", "--resume", failed["run_id"])
    assert code == 0
    assert function_calls() == ["c"]
    assert resumed["outputs"]["each"] == ["a<None>", "b<None>", "c<None>"]
    code, again = run(cli, flow, "--mock", "--resume", resumed["run_id"])
    assert function_calls() == []
    assert reused(again) == {"each": True, "report": True}


def test_resume_takes_the_items_whose_request_is_unchanged(
    items_flow: tuple[Path, Path],
    cli: Callable,
    function_calls: Callable[[], list[str]],
) -> None:
    """A for_each over a changed list: only the new items run, the others are taken."""
    flow, _ = items_flow
    _, first = run(cli, flow, "--mock")
    function_calls()
    code, again = run(
        cli, flow, "--mock", "--resume", first["run_id"], "-i", 'names=["c", "d", "a"]'
    )
    assert code == 0
    assert function_calls() == ["d"]
    assert again["outputs"]["each"] == ["c<None>", "d<None>", "a<None>"]
    assert reused(again) == {"each": False, "report": False}


def test_mock_answers_do_not_resume_real_runs(
    write_flow: Callable, cli: Callable, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An LLM step answered by --mock is not reused by a run without it (nor the reverse)."""
    flow = write_flow("""
        steps:
          - id: ask
            prompt: "What is a tide?"
          - id: encode
            function: json:dumps
            with: {obj: [1, 2]}
        """)
    _, mocked = run(cli, flow, "--mock")
    fixture = tmp_path / "f.json"
    fixture.write_text(json.dumps({"version": 1, "responses": {}}))
    _, replayed = run(cli, flow, "--resume", mocked["run_id"], "--replay", fixture)
    assert reused(replayed) == {"ask": False, "encode": True}
    assert replayed["steps"][0]["error"]["type"] == "provider"


# --- --from and --only --------------------------------------------------------------------------

DIAMOND = """
    name: diamond
    inputs:
      seed: {default: one}
    steps:
      - id: source
        prompt: "Start from {{ inputs.seed }}"
      - id: left
        prompt: "Left of {{ steps.source.output }}"
      - id: right
        prompt: "Right of {{ steps.source.output }}"
      - id: join
        prompt: "Join {{ steps.left.output }} and {{ steps.right.output }}"
      - id: aside
        prompt: "Unrelated"
    """


@pytest.mark.parametrize(
    ("args", "rerun"),
    [
        (["--only", "left"], ["left"]),
        (["--only", "join"], ["join"]),
        (["--from", "left"], ["left", "join"]),
        (["--from", "source"], ["source", "left", "right", "join"]),
        (["--from", "aside"], ["aside"]),
    ],
)
def test_from_and_only(
    write_flow: Callable,
    cli: Callable,
    provider_calls: list[str],
    args: list[str],
    rerun: list[str],
) -> None:
    """--only S reruns S; --from S reruns S and its dependents; the rest comes from before."""
    flow = write_flow(DIAMOND)
    _, first = run(cli, flow, "--mock")
    provider_calls.clear()
    code, again = run(cli, flow, "--mock", *args)
    assert code == 0
    assert sorted(provider_calls) == sorted(rerun)
    assert again["resumed_from"] == first["run_id"]
    assert [s["id"] for s in again["steps"] if not s.get("reused")] == rerun


@pytest.mark.parametrize("flag", ["--only", "--from"])
def test_only_and_from_rerun_what_changed_inputs_reach(
    write_flow: Callable, cli: Callable, provider_calls: list[str], flag: str
) -> None:
    """--only/--from with other inputs: a step whose request changed runs again; only the
    unchanged are reused, and stderr says which, from which run."""
    flow = write_flow(DIAMOND)
    _, first = run(cli, flow, "--mock")
    provider_calls.clear()
    result = cli("run", flow, "--json", "--mock", flag, "join", "-i", "seed=two")
    again = json.loads(result.stdout)
    assert sorted(provider_calls) == ["join", "left", "right", "source"]
    assert again["outputs"]["source"] != first["outputs"]["source"]
    assert reused(again) == {
        "source": False,
        "left": False,
        "right": False,
        "join": False,
        "aside": True,
    }
    assert f"reused 1 step from run {first['run_id']} (aside)\n" in result.stderr


def test_only_reruns_a_step_whose_definition_changed(write_flow: Callable, cli: Callable) -> None:
    """--only never takes the output of a step changed since: it runs again, no warning."""
    flow = write_flow(
        "steps:\n  - {id: a, prompt: x, mock: first}\n"
        "  - {id: b, prompt: '{{ steps.a.output }}', mock: second}\n"
        "  - {id: c, prompt: y, mock: third}\n"
    )
    _, first = run(cli, flow, "--mock")
    flow.write_text(
        flow.read_text().replace("prompt: x, mock: first", "prompt: changed, mock: other")
    )
    result = cli("run", flow, "--mock", "--only", "b", "--json")
    again = json.loads(result.stdout)
    assert reused(again) == {"a": False, "b": False, "c": True}
    assert again["outputs"]["a"] == "other"
    assert not any(s.get("warnings") for s in again["steps"])
    assert f"reused 1 step from run {first['run_id']} (c)" in result.stderr
    _, resumed = run(cli, flow, "--mock", "--resume", again["run_id"])
    assert reused(resumed) == {"a": True, "b": True, "c": True}
    assert resumed["outputs"]["a"] == "other"


def test_from_uses_the_latest_run_of_the_file(
    write_flow: Callable, cli: Callable, provider_calls: list[str]
) -> None:
    """The base is the newest run of this workflow file, not of another one."""
    flow = write_flow(DIAMOND)
    _, first = run(cli, flow, "--mock")
    _, latest = run(cli, flow, "--mock", "-i", "seed=two")
    run(cli, write_flow(DIAMOND, "copy.yaml"), "--mock")
    provider_calls.clear()
    _, again = run(cli, flow, "--mock", "--only", "aside", "-i", "seed=two")
    assert again["resumed_from"] == latest["run_id"]
    assert provider_calls == ["aside"]
    assert again["outputs"]["source"] == latest["outputs"]["source"]
    assert again["outputs"]["source"] != first["outputs"]["source"]


def test_from_with_resume_picks_the_base(write_flow: Callable, cli: Callable) -> None:
    """--resume RUN_ID names the run that --from and --only take outputs from."""
    flow = write_flow(DIAMOND)
    _, first = run(cli, flow, "--mock")
    run(cli, flow, "--mock", "-i", "seed=two")
    _, again = run(cli, flow, "--mock", "--from", "join", "--resume", first["run_id"])
    assert again["resumed_from"] == first["run_id"]
    assert again["outputs"]["source"] == first["outputs"]["source"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "jion"], "did you mean 'join'?"),
        (["--from", "nowhere"], "no step 'nowhere'"),
        (["--from", "left", "--only", "right"], "cannot be used together"),
    ],
)
def test_from_and_only_usage_errors(
    write_flow: Callable, cli: Callable, args: list[str], message: str
) -> None:
    """An unknown step or both options at once: exit 2, nothing run."""
    flow = write_flow(DIAMOND)
    run(cli, flow, "--mock")
    result = cli("run", flow, "--mock", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_from_without_an_earlier_run(write_flow: Callable, cli: Callable) -> None:
    """--from on a workflow never run: exit 2, saying what to do."""
    result = cli("run", write_flow(DIAMOND), "--mock", "--from", "left")
    assert result.exit_code == 2
    assert "run the whole workflow once first" in result.stderr


# --- the mode and the workflow of the base run --------------------------------------------------


@pytest.fixture
def live_calls(respx_mock, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A (fake) OpenAI answering every request; the last message of each, in order."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-2222222222222222")
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        prompt = json.loads(request.content)["messages"][-1]["content"]
        calls.append(prompt)
        return httpx.Response(200, json=openai_reply(f"Live answer to {prompt}", len(calls)))

    respx_mock.post(OPENAI_URL).mock(side_effect=answer)
    return calls


def run_count() -> int:
    with history_connection() as db:
        return db.execute("SELECT count(*) FROM runs").fetchone()[0]


def test_from_takes_the_latest_run_of_the_same_mode(
    write_flow: Callable, cli: Callable, live_calls: list[str]
) -> None:
    """A live --from takes the latest live run, not a newer --mock one (and the reverse)."""
    flow = write_flow(DIAMOND)
    _, live = run(cli, flow)
    _, mocked = run(cli, flow, "--mock")
    live_calls.clear()
    code, again = run(cli, flow, "--from", "join")
    assert code == 0
    assert again["resumed_from"] == live["run_id"]
    assert [call.split()[0] for call in live_calls] == ["Join"]
    assert reused(again) == {
        "source": True,
        "left": True,
        "right": True,
        "join": False,
        "aside": True,
    }
    assert all(s["output"].startswith("Live answer") for s in again["steps"])
    _, mock_again = run(cli, flow, "--mock", "--only", "join")
    assert mock_again["resumed_from"] == mocked["run_id"]
    assert len(live_calls) == 1
    with history_connection() as db:
        assert db.execute(
            "SELECT mode FROM runs WHERE run_id = ?", (again["run_id"],)
        ).fetchone() == ("live",)


@pytest.mark.parametrize("args", [["--from", "join"], ["--only", "left"]])
def test_from_refuses_runs_of_the_other_mode_only(
    write_flow: Callable, cli: Callable, live_calls: list[str], args: list[str]
) -> None:
    """A live --from/--only with only --mock runs of the file: exit 2, no request, no run."""
    flow = write_flow(DIAMOND)
    run(cli, flow, "--mock")
    result = cli("run", flow, *args)
    assert result.exit_code == 2, result.output
    assert f"latest run of {flow} without --mock" in result.stderr
    assert "is a --mock run" in result.stderr
    assert "run the whole workflow once without --mock first" in result.stderr
    assert live_calls == []
    assert run_count() == 1


@pytest.mark.parametrize(
    ("base", "args", "words"),
    [
        ("mock", [], ("a --mock run", "this one is a live run")),
        ("live", ["--mock"], ("a live run", "this one is a --mock run")),
    ],
)
def test_from_with_resume_of_the_other_mode(
    write_flow: Callable,
    cli: Callable,
    live_calls: list[str],
    base: str,
    args: list[str],
    words: tuple[str, str],
) -> None:
    """--from/--only with --resume RUN_ID of the other mode: exit 2 naming both modes."""
    flow = write_flow(DIAMOND)
    runs = {"live": run(cli, flow)[1], "mock": run(cli, flow, "--mock")[1]}
    live_calls.clear()
    result = cli("run", flow, "--only", "join", "--resume", runs[base]["run_id"], *args)
    assert result.exit_code == 2, result.output
    assert runs[base]["run_id"] in result.stderr
    for word in words:
        assert word in result.stderr
    assert "use --resume alone" in result.stderr
    assert live_calls == []
    assert run_count() == 2


def test_replay_counts_as_live_for_from(
    write_flow: Callable, cli: Callable, tmp_path: Path
) -> None:
    """--replay --from takes a live or replay run's outputs, never a --mock run's."""
    flow = write_flow(DIAMOND)
    run(cli, flow, "--mock")
    fixture = tmp_path / "f.json"
    fixture.write_text(json.dumps({"version": 1, "responses": {}}))
    result = cli("run", flow, "--replay", fixture, "--from", "join")
    assert result.exit_code == 2
    assert "is a --mock run" in result.stderr


def test_mock_sub_workflow_answers_do_not_resume_real_runs(
    write_flow: Callable, cli: Callable, tmp_path: Path
) -> None:
    """A sub-workflow step of a --mock run holds mock answers: a real run does not reuse it."""
    write_flow(
        """
        steps:
          - id: polish
            prompt: "Polish"
        """,
        "child.yaml",
    )
    flow = write_flow("""
        steps:
          - id: review
            workflow: child.yaml
          - id: encode
            function: json:dumps
            with: {obj: [1, 2]}
        """)
    _, mocked = run(cli, flow, "--mock")
    fixture = tmp_path / "f.json"
    fixture.write_text(json.dumps({"version": 1, "responses": {}}))
    _, replayed = run(cli, flow, "--resume", mocked["run_id"], "--replay", fixture)
    assert reused(replayed) == {"review": False, "encode": True}
    _, again = run(cli, flow, "--mock", "--resume", mocked["run_id"])
    assert reused(again) == {"review": True, "encode": True}


@pytest.mark.parametrize("args", [[], ["--from", "left"]])
def test_resume_of_another_workflow(write_flow: Callable, cli: Callable, args: list[str]) -> None:
    """--resume with a run of another workflow file: exit 2 naming both, nothing recorded."""
    other = write_flow("steps: [{id: ask, prompt: hi}]", "h.yaml")
    flow = write_flow(DIAMOND.replace("name: diamond", "name: f3"), "f3.yaml")
    _, first = run(cli, other, "--mock")
    result = cli("run", flow, "--mock", "--resume", first["run_id"][:12], *args)
    assert result.exit_code == 2, result.output
    assert (
        f"run {first['run_id']} is of workflow 'h' ({other}), not of 'f3' ({flow})" in result.stderr
    )
    assert run_count() == 1


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (DIAMOND, "moved/renamed.yaml"),  # moved and renamed: the same `name:`
        ("steps: [{id: ask, prompt: hi}]", "moved/renamed.yaml"),  # no name, the same content
    ],
)
def test_resume_of_a_moved_workflow(
    write_flow: Callable, cli: Callable, text: str, name: str
) -> None:
    """A moved or renamed file resumes its runs: same workflow name, or same content."""
    _, first = run(cli, write_flow(text), "--mock")
    code, resumed = run(cli, write_flow(text, name), "--mock", "--resume", first["run_id"])
    assert code == 0
    assert resumed["resumed_from"] == first["run_id"]
    assert all(reused(resumed).values())


# --- the response cache -------------------------------------------------------------------------

CACHED = """
    defaults:
      temperature: 0.2
    steps:
      - id: first
        prompt: "One"
      - id: second
        prompt: "Two, after {{ steps.first.output }}"
    """


def cached(doc: dict[str, Any]) -> dict[str, bool]:
    return {s["id"]: bool(s.get("cached")) for s in doc["steps"]}


def test_cache_hit_and_miss(write_flow: Callable, cli: Callable, provider_calls: list[str]) -> None:
    """--cache: the first run asks and stores, the second answers from the cache."""
    flow = write_flow(CACHED)
    _, first = run(cli, flow, "--mock", "--cache")
    assert cached(first) == {"first": False, "second": False}
    assert provider_calls == ["first", "second"]
    provider_calls.clear()
    _, second = run(cli, flow, "--mock", "--cache")
    assert cached(second) == {"first": True, "second": True}
    assert provider_calls == []
    assert second["outputs"] == first["outputs"]
    assert [s["attempts"] for s in second["steps"]] == [0, 0]
    assert [s["usage"] for s in second["steps"]] == [s["usage"] for s in first["steps"]]
    _, third = run(cli, flow, "--mock")
    assert cached(third) == {"first": False, "second": False}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("temperature: 0.2", "temperature: 0.3", {"first": False, "second": False}),
        ('prompt: "One"', 'prompt: "One!"', {"first": False, "second": False}),
        ("- id: second\n", "- id: second\n    max_tokens: 50\n", {"first": True, "second": False}),
        ("- id: second\n", "- id: second\n    model: gpt-4o\n", {"first": True, "second": False}),
        ("- id: first\n", "- id: first\n    system: Be brief.\n", {"first": False, "second": True}),
        ("- id: first\n", "- id: first\n    timeout: 30\n", {"first": True, "second": True}),
    ],
)
def test_cache_key(
    write_flow: Callable, cli: Callable, old: str, new: str, expected: dict[str, bool]
) -> None:
    """Only the same model, messages and settings (temperature too) hit; timeout does not count."""
    flow = write_flow(CACHED)
    run(cli, flow, "--mock", "--cache")
    flow.write_text(flow.read_text().replace(old, new))
    _, again = run(cli, flow, "--mock", "--cache")
    assert cached(again) == expected


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ("cache: true", {"first": True, "second": True}),
        ("cache: false", {"first": False, "second": False}),
    ],
)
def test_cache_from_the_workflow(
    write_flow: Callable, cli: Callable, settings: str, expected: dict[str, bool]
) -> None:
    """`defaults: {cache: true}` turns the cache on without --cache."""
    flow = write_flow(CACHED.replace("temperature: 0.2", settings))
    run(cli, flow, "--mock")
    _, again = run(cli, flow, "--mock")
    assert cached(again) == expected


def test_step_cache_setting_wins(write_flow: Callable, cli: Callable) -> None:
    """A step's own `cache: false` keeps it out of --cache; `cache: true` caches it alone."""
    flow = write_flow("""
        steps:
          - id: fresh
            prompt: "Always ask"
            cache: false
          - id: kept
            prompt: "Ask once"
            cache: true
          - id: plain
            prompt: "Sometimes"
        """)
    run(cli, flow, "--mock", "--cache")
    _, without_flag = run(cli, flow, "--mock")
    assert cached(without_flag) == {"fresh": False, "kept": True, "plain": False}
    _, with_flag = run(cli, flow, "--mock", "--cache")
    assert cached(with_flag) == {"fresh": False, "kept": True, "plain": True}


def test_cache_never_keeps_failures(
    write_flow: Callable, cli: Callable, provider_calls: list[str]
) -> None:
    """A reply that failed the step (invalid JSON) is not cached: the next run asks again."""
    flow = write_flow("""
        steps:
          - id: data
            prompt: "Give JSON"
            output: json
            retries: 1
            mock: "{{ 'no JSON here' }}"
        """)
    code, _ = run(cli, flow, "--mock", "--cache")
    assert code == 1
    assert provider_calls == ["data", "data"]
    provider_calls.clear()
    code, second = run(cli, flow, "--mock", "--cache")
    assert code == 1
    assert provider_calls == ["data", "data"]
    assert not second["steps"][0].get("cached")
    with history_connection() as db:
        assert db.execute("SELECT count(*) FROM responses").fetchone() == (0,)


def test_cache_never_keeps_provider_errors(
    write_flow: Callable, cli: Callable, respx_mock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider error is not cached: the same request goes to the provider next time."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0000000000000000")
    flow = write_flow(CACHED)
    route = respx_mock.post(OPENAI_URL).mock(
        side_effect=[
            httpx.Response(400, json={"error": {"message": "bad request"}}),
            httpx.Response(200, json=openai_reply("one")),
            httpx.Response(200, json=openai_reply("two")),
        ]
    )
    code, _ = run(cli, flow, "--cache")
    assert code == 1
    code, second = run(cli, flow, "--cache")
    assert code == 0
    assert cached(second) == {"first": False, "second": False}
    assert route.call_count == 3
    _, third = run(cli, flow, "--cache")
    assert cached(third) == {"first": True, "second": True}
    assert route.call_count == 3


ANTHROPIC_REPLY = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "stop_reason": "end_turn",
    "content": [{"type": "text", "text": "An answer."}],
    "usage": {"input_tokens": 9, "output_tokens": 4},
}


@pytest.mark.parametrize(
    ("model", "env", "url", "endpoint", "key"),
    [
        (
            "gpt-4o-mini",
            {},
            "https://api.openai.com/v1/chat/completions",
            "openai https://api.openai.com/v1",
            "05b6505cb6908a1f0c39cf770c2e40e54f0da0ecde6ee21fca5d767ddd8e887d",
        ),
        (
            "gpt-4o-mini",
            {"OPENAI_BASE_URL": "http://127.0.0.1:8080/v1"},
            "http://127.0.0.1:8080/v1/chat/completions",
            "openai http://127.0.0.1:8080/v1",
            "860e304555023593c4ab900a6519de3c8315729176cf04abd0fdd82759a20285",
        ),
        (
            "claude-sonnet-4-5",
            {},
            "https://api.anthropic.com/v1/messages",
            "anthropic https://api.anthropic.com",
            "a2ccdf24043e58beda601226629ed2f1343fa1a9fb398eda19caef3802987178",
        ),
        (
            "claude-sonnet-4-5",
            {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9000"},
            "http://127.0.0.1:9000/v1/messages",
            "anthropic http://127.0.0.1:9000",
            "67182c32462c498e666ffdcb632223cfc7a6c51fe8e12f95c9c77b562cbfc72b",
        ),
    ],
)
def test_cache_keys_stay_the_same(
    write_flow: Callable,
    cli: Callable,
    respx_mock,
    monkeypatch: pytest.MonkeyPatch,
    model: str,
    env: dict[str, str],
    url: str,
    endpoint: str,
    key: str,
) -> None:
    """A built-in provider's endpoint and cache key are pinned: a change empties caches."""
    for name, value in {
        "OPENAI_API_KEY": "sk-test-0000",
        "ANTHROPIC_API_KEY": "sk-ant-0000",
        **env,
    }.items():
        monkeypatch.setenv(name, value)
    reply = openai_reply("An answer.") if model.startswith("gpt") else ANTHROPIC_REPLY
    respx_mock.post(url).mock(return_value=httpx.Response(200, json=reply))
    flow = write_flow(f"steps: [{{id: ask, model: {model}, prompt: One}}]")
    code, _ = run(cli, flow, "--cache")
    assert code == 0
    with history_connection() as db:
        assert db.execute("SELECT provider, key FROM responses").fetchall() == [(endpoint, key)]


SECRET = "0f3a9c1e5b2d4f60a7c8e9d0b1a2c3d4e5f60718"


def test_cache_and_fixture_hold_no_known_secret(
    write_flow: Callable, cli: Callable, respx_mock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A key typed into an input and echoed by the server is scrubbed from the `responses`
    table and the fixture, and both still answer the same request."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-2222222222222222")
    monkeypatch.setenv("SERVICE_TOKEN", SECRET)
    flow = write_flow("""
        inputs:
          token: {type: string}
        steps:
          - id: ask
            prompt: "Is {{ inputs.token }} valid?"
        """)
    route = respx_mock.post(OPENAI_URL).mock(
        return_value=httpx.Response(200, json=openai_reply(f"{SECRET} looks valid."))
    )
    fixture = tmp_path / "fixture.json"
    code, first = run(cli, flow, "-i", f"token={SECRET}", "--cache", "--record", fixture)
    assert code == 0 and first["outputs"]["ask"] == f"{SECRET} looks valid."
    with history_connection() as db:
        stored = db.execute("SELECT request, response FROM responses").fetchall()
    assert len(stored) == 1
    assert [SECRET in text for text in (*stored[0], fixture.read_text())] == [False] * 3
    assert "[REDACTED]" in stored[0][0] and "[REDACTED]" in stored[0][1]
    _, again = run(cli, flow, "-i", f"token={SECRET}", "--cache")
    assert cached(again) == {"ask": True}
    assert route.call_count == 1
    code, replayed = run(cli, flow, "-i", f"token={SECRET}", "--replay", fixture)
    assert code == 0 and replayed["steps"][0]["status"] == "succeeded"


def test_cache_endpoint_leaves_out_a_password(
    write_flow: Callable, cli: Callable, respx_mock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base URL's user and password are not stored, neither as text nor in the key."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://alice:pw-4242@127.0.0.1:8080/v1")
    respx_mock.post("http://127.0.0.1:8080/v1/chat/completions").mock(
        return_value=httpx.Response(200, json=openai_reply("An answer."))
    )
    flow = write_flow("steps: [{id: ask, model: gpt-4o-mini, prompt: One}]")
    code, _ = run(cli, flow, "--cache")
    assert code == 0
    with history_connection() as db:
        rows = db.execute("SELECT provider, key FROM responses").fetchall()
    assert rows == [
        (
            "openai http://[REDACTED]@127.0.0.1:8080/v1",
            "1004e9c06d8b7445daf04609c0ce3721952e4195080a7e3a9708dc864699afc8",
        )
    ]
    assert b"pw-4242" not in history_bytes()


def test_cache_marks_in_progress(write_flow: Callable, cli: Callable) -> None:
    """The plain progress log says `(cached)` for cache hits."""
    flow = write_flow(CACHED)
    cli("run", flow, "--mock", "--cache")
    result = cli("run", flow, "--mock", "--cache")
    assert "✓ first succeeded" in result.stderr
    assert "(cached)" in result.stderr


# --- --record and --replay ----------------------------------------------------------------------


def openai_reply(text: str, n: int = 1) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{n:06d}",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
    }


RECORDED = """
    inputs:
      topic: {default: tides}
    steps:
      - id: facts
        prompt: "Facts about {{ inputs.topic }}"
      - id: summary
        prompt: "Summarize: {{ steps.facts.output }}"
        output: json
    """


@pytest.fixture
def recording(
    write_flow: Callable, cli: Callable, respx_mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path, dict[str, Any]]:
    """A run against a (fake) OpenAI recorded to a fixture: (flow, fixture, result)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-1111111111111111")
    flow = write_flow(RECORDED)
    fixture = tmp_path / "fixtures" / "recorded.json"
    respx_mock.post(OPENAI_URL).mock(
        side_effect=[
            httpx.Response(200, json=openai_reply("Tides follow the moon.", 1)),
            httpx.Response(200, json=openai_reply('{"short": "moon tides"}', 2)),
        ]
    )
    code, doc = run(cli, flow, "--record", fixture)
    assert code == 0
    monkeypatch.delenv("OPENAI_API_KEY")
    respx_mock.reset()
    return flow, fixture, doc


def test_record_writes_a_fixture(recording: tuple[Path, Path, dict[str, Any]]) -> None:
    """--record writes every response, keyed by request, with the request for reading."""
    _, fixture, doc = recording
    data = json.loads(fixture.read_text())
    assert data["version"] == 1
    assert "mock" not in data  # real answers
    entries = sorted(data["responses"].values(), key=lambda e: e["step"])
    assert [e["step"] for e in entries] == ["facts", "summary"]
    assert entries[0]["provider"] == "openai"
    assert entries[0]["request"]["messages"] == [{"role": "user", "content": "Facts about tides"}]
    assert entries[0]["response"]["text"] == "Tides follow the moon."
    assert entries[0]["response"]["response_id"] == "chatcmpl-000001"
    assert list(data["responses"]) == sorted(data["responses"])
    assert doc["steps"][0]["model"] == "gpt-4o-mini-2024-07-18"


@pytest.mark.parametrize(
    "extra",
    [[], ["--mock"], ["--cache"], ["--no-history"]],
    ids=["plain", "mock-loses", "cache", "no-history"],
)
def test_replay_offline_without_a_key(
    recording: tuple[Path, Path, dict[str, Any]], cli: Callable, respx_mock, extra: list[str]
) -> None:
    """--replay answers offline from the fixture, with no key, and wins over --mock."""
    flow, fixture, recorded = recording
    code, replayed = run(cli, flow, "--replay", fixture, *extra)
    assert code == 0
    assert replayed["outputs"] == recorded["outputs"]
    assert replayed["outputs"]["summary"] == {"short": "moon tides"}
    assert [s["model"] for s in replayed["steps"]] == [s["model"] for s in recorded["steps"]]
    assert [s["usage"] for s in replayed["steps"]] == [s["usage"] for s in recorded["steps"]]
    assert [s["provider"] for s in replayed["steps"]] == ["openai", "openai"]
    assert not respx_mock.calls


def test_replay_is_deterministic(
    recording: tuple[Path, Path, dict[str, Any]], cli: Callable
) -> None:
    """Replaying twice gives the same outputs."""
    flow, fixture, _ = recording
    first = run(cli, flow, "--replay", fixture)[1]
    second = run(cli, flow, "--replay", fixture)[1]
    assert first["outputs"] == second["outputs"]


def test_replay_of_a_request_it_does_not_hold(
    recording: tuple[Path, Path, dict[str, Any]], cli: Callable, respx_mock
) -> None:
    """A request the fixture lacks: the step fails as `provider`, naming step and fixture."""
    flow, fixture, _ = recording
    code, doc = run(cli, flow, "--replay", fixture, "-i", "topic=volcanoes")
    assert code == 1
    error = doc["error"]
    assert error["step"] == "facts"
    assert error["type"] == "provider"
    assert str(fixture) in error["message"]
    assert "has no response for this request" in error["message"]
    assert not respx_mock.calls


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no fixture file"),
        ("not json", "is not a fixture file"),
        ('{"version": 7, "responses": {}}', "is not a fixture file"),
    ],
)
def test_replay_bad_fixture(
    write_flow: Callable, cli: Callable, tmp_path: Path, content: str | None, message: str
) -> None:
    """A missing or malformed fixture: exit 2 before the run."""
    fixture = tmp_path / "fixture.json"
    if content is not None:
        fixture.write_text(content)
    result = cli("run", write_flow(RECORDED), "--replay", fixture)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


@pytest.fixture
def mock_fixture(
    write_flow: Callable, cli: Callable, tmp_path: Path
) -> tuple[Path, Path, dict[str, Any]]:
    """A run under --mock recorded to a fixture: (flow, fixture, result)."""
    flow = write_flow(RECORDED.replace("output: json", "output: json\n        mock: '{\"a\": 1}'"))
    fixture = tmp_path / "mocked.json"
    code, recorded = run(cli, flow, "--mock", "--record", fixture)
    assert code == 0
    return flow, fixture, recorded


def test_record_under_mock_marks_the_fixture(
    mock_fixture: tuple[Path, Path, dict[str, Any]],
) -> None:
    """A fixture recorded under --mock says so, and its answers are the mock's."""
    _, fixture, _ = mock_fixture
    data = json.loads(fixture.read_text())
    assert data["mock"] is True
    assert {entry["provider"] for entry in data["responses"].values()} == {"mock"}


@pytest.mark.parametrize("env", [{}, {"ORCHESTRATE_MOCK": "0"}])
def test_a_mock_fixture_does_not_replay_as_a_real_run(
    mock_fixture: tuple[Path, Path, dict[str, Any]],
    cli: Callable,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
) -> None:
    """--replay of a fixture recorded under --mock, without --mock: exit 2 before the run."""
    flow, fixture, _ = mock_fixture
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = cli("run", flow, "--replay", fixture)
    assert result.exit_code == 2
    assert f"the fixture {fixture} was recorded under --mock" in result.stderr
    assert "add --mock" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("flags", "env"),
    [(["--mock"], {}), ([], {"ORCHESTRATE_MOCK": "1"})],
    ids=["option", "environment"],
)
def test_a_mock_fixture_replays_as_a_mock_run(
    mock_fixture: tuple[Path, Path, dict[str, Any]],
    cli: Callable,
    monkeypatch: pytest.MonkeyPatch,
    provider_calls: list[str],
    flags: list[str],
    env: dict[str, str],
) -> None:
    """With --mock (or ORCHESTRATE_MOCK=1) a mock fixture replays, reported as a mock run."""
    flow, fixture, recorded = mock_fixture
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, replayed = run(cli, flow, "--replay", fixture, *flags)
    assert code == 0
    assert replayed["outputs"] == recorded["outputs"]
    assert [s["provider"] for s in replayed["steps"]] == ["mock", "mock"]
    assert provider_calls == []  # answered by the fixture, not by the mock
    with history_connection() as db:
        assert db.execute(
            "SELECT mode FROM runs WHERE run_id = ?", (replayed["run_id"],)
        ).fetchone() == ("mock",)


def test_a_fixture_never_mixes_mock_and_real_answers(
    recording: tuple[Path, Path, dict[str, Any]],
    mock_fixture: tuple[Path, Path, dict[str, Any]],
    cli: Callable,
) -> None:
    """Recording under --mock into a fixture of real answers, or the other way round, is
    exit 2 before the run, and leaves the file as it was."""
    flow, real, _ = recording
    _, mocked, _ = mock_fixture
    for fixture, flags, message in (
        (real, ["--mock"], "holds real answers"),
        (mocked, [], "holds mock answers"),
    ):
        before = fixture.read_text()
        result = cli("run", flow, "--record", fixture, *flags)
        assert result.exit_code == 2
        assert f"the fixture {fixture} {message}" in result.stderr
        assert fixture.read_text() == before


def test_record_adds_to_an_existing_fixture(
    write_flow: Callable, cli: Callable, tmp_path: Path
) -> None:
    """Recording again into the same file keeps the earlier responses."""
    flow = write_flow(RECORDED)
    fixture = tmp_path / "f.json"
    run(cli, flow, "--mock", "--record", fixture)
    run(cli, flow, "--mock", "--record", fixture, "-i", "topic=moon")
    assert len(json.loads(fixture.read_text())["responses"]) == 4
    for topic in ("tides", "moon"):
        assert run(cli, flow, "--replay", fixture, "--mock", "-i", f"topic={topic}")[0] == 0


def test_replay_runs_are_recorded(
    recording: tuple[Path, Path, dict[str, Any]], cli: Callable
) -> None:
    """A replayed run is in the history, marked as such."""
    flow, fixture, _ = recording
    _, doc = run(cli, flow, "--replay", fixture)
    with history_connection() as db:
        assert db.execute(
            "SELECT mode FROM runs WHERE run_id = ?", (doc["run_id"],)
        ).fetchone() == ("replay",)


def test_a_step_finishing_with_a_failure_is_kept(write_flow: Callable, cli: Callable) -> None:
    """A step finishing in the same instant another fails is kept (it was a KeyError)."""
    flow = write_flow("""
        steps:
          - id: facts
            prompt: "Facts"
          - id: article
            prompt: "Write with {{ steps.facts.output }}"
          - id: broken
            function: json:loads
            with: {s: "not json"}
        """)
    for _ in range(5):
        code, doc = run(cli, flow, "--mock")
        assert code == 1
        assert [s["id"] for s in doc["steps"]] == ["facts", "article", "broken"]
        assert doc["steps"][2]["status"] == "failed"


def test_record_writes_no_file_when_the_run_cannot_start(
    write_flow: Callable, cli: Callable, tmp_path: Path
) -> None:
    """A run stopped before it starts (here: no API key) leaves no fixture file behind."""
    fixture = tmp_path / "never.json"
    result = cli("run", write_flow(RECORDED), "--record", fixture)
    assert result.exit_code == 2
    assert "OPENAI_API_KEY" in result.stderr
    assert not fixture.exists()


BARRIER = '''
import time
from pathlib import Path


def meet(folder, me):
    """Wait (at most 30 s) until two runs have reached this step."""
    Path(folder, me).touch()
    deadline = time.monotonic() + 30
    while len(list(Path(folder).iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    return me
'''


def test_two_runs_recording_into_one_fixture_both_land(
    write_flow: Callable, tmp_path: Path
) -> None:
    """Two processes recording into one fixture at once: the file keeps both responses."""
    from tests.conftest import start_orchestrate

    write_flow(BARRIER, "barrier.py")
    (tmp_path / "met").mkdir()
    flow = write_flow(f"""
        inputs:
          topic: {{}}
        steps:
          - id: ask
            prompt: "About {{{{ inputs.topic }}}}"
          - id: wait
            function: barrier:meet
            with: {{folder: "{tmp_path / "met"}", me: "{{{{ inputs.topic }}}}"}}
        """)
    fixture = tmp_path / "shared.json"
    processes = [
        start_orchestrate(
            "run", flow, "--mock", "-q", "--no-history", "--record", fixture, "-i", f"topic={topic}"
        )
        for topic in ("tides", "moon")
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    steps = sorted(
        e["request"]["messages"][0]["content"]
        for e in json.loads(fixture.read_text())["responses"].values()
    )
    assert steps == ["About moon", "About tides"]


def test_record_never_writes_through_a_planted_link(
    write_flow: Callable, cli: Callable, tmp_path: Path
) -> None:
    """The temporary file of --record is new and private: a symlink at the old predictable
    name (.NAME.PID.tmp) is not followed, and the fixture is not world-readable."""
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    fixture = tmp_path / "f.json"
    (tmp_path / f".f.json.{os.getpid()}.tmp").symlink_to(victim)
    assert run(cli, write_flow(RECORDED), "--mock", "--record", fixture)[0] == 0
    assert victim.read_text() == "untouched"
    assert json.loads(fixture.read_text())["version"] == 1
    assert fixture.stat().st_mode & 0o077 == 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]
