"""`orchestrate run` end to end: each control-flow rule of the SPEC on a real workflow file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

RunJson = Callable[..., tuple[int, dict[str, Any]]]


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in doc["steps"]}


def outputs_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {s["id"]: s["output"] for s in doc["steps"]}


# --- results and output channels ------------------------------------------------------------


@pytest.fixture
def done_flow(write_flow: Callable) -> Path:
    """One step whose mock answer is `done`."""
    return write_flow("steps: [{id: a, prompt: x, mock: done}]")


def test_json_document_has_every_field(write_flow: Callable, run_json: RunJson) -> None:
    """--json prints the SPEC's result document with resolved inputs and usage."""
    flow = write_flow("""
        inputs:
          topic: {type: string}
          language: {default: French}
        steps:
          - id: hello
            prompt: "Say hi about {{ inputs.topic }}"
            mock: "Hi about {{ inputs.topic }}"
        """)
    code, doc = run_json(flow, "-i", "topic=tides")
    assert code == 0
    assert {"run_id", "workflow", "file", "status", "started_at", "duration_ms", "inputs",
            "outputs", "steps", "usage", "error"} <= doc.keys()
    assert doc["workflow"] == "flow"
    assert doc["file"] == str(flow)
    assert doc["status"] == "succeeded"
    assert doc["error"] is None
    assert doc["inputs"] == {"topic": "tides", "language": "French"}
    assert doc["outputs"] == {"hello": "Hi about tides"}
    step = doc["steps"][0]
    assert step["provider"] == "openai"
    assert step["model"] == "gpt-4o-mini"
    assert step["attempts"] == 1
    assert step["usage"]["output_tokens"] == 4  # "Hi about tides": 14 chars, 4 per token
    assert doc["usage"] == step["usage"]
    assert doc["started_at"].endswith("Z")


def test_single_output_prints_raw(write_flow: Callable, cli: Callable) -> None:
    """One output goes to stdout as it is, with one trailing newline; nothing else."""
    flow = write_flow("""
        steps:
          - id: only
            prompt: x
            mock: "just this"
        """)
    result = cli("run", flow, "--mock")
    assert result.exit_code == 0
    assert result.stdout == "just this\n"


def test_several_outputs_print_as_sections(write_flow: Callable, cli: Callable) -> None:
    """Several outputs print in declaration order as `## NAME`, the value, a blank line."""
    flow = write_flow("""
        steps:
          - id: a
            prompt: x
            mock: "alpha"
          - id: b
            prompt: y
            output: json
            mock: '{"n": 1}'
        outputs:
          second: "{{ steps.b.output }}"
          first: "{{ steps.a.output }}"
        """)
    result = cli("run", flow, "--mock")
    assert result.stdout == '## second\n{\n  "n": 1\n}\n\n## first\nalpha\n\n'


def test_progress_goes_to_stderr_only(done_flow: Path, cli: Callable) -> None:
    """Without a terminal, progress is plain lines on stderr; stdout holds the result."""
    result = cli("run", done_flow, "--mock")
    assert result.stdout == "done\n"
    assert "✓ a succeeded" in result.stderr
    assert "run succeeded" in result.stderr


def test_quiet_hides_progress(done_flow: Path, cli: Callable) -> None:
    """-q prints no progress and no summary."""
    result = cli("run", done_flow, "--mock", "-q")
    assert result.stdout == "done\n"
    assert result.stderr == ""


def test_events_to_stdout_are_json_lines(done_flow: Path, cli: Callable) -> None:
    """--events - writes one JSON object per event to stdout, and nothing else."""
    result = cli("run", done_flow, "--mock", "--events", "-", "-q")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    names = [e["event"] for e in events]
    assert names == ["run_started", "step_started", "step_finished", "run_finished"]
    assert events[2]["status"] == "succeeded"
    assert events[-1]["outputs"] == {"a": "done"}


def test_events_tokens_include_streamed_text(write_flow: Callable, cli: Callable,
                                             tmp_path: Path) -> None:
    """--events-tokens adds token events whose text makes up the reply."""
    flow = write_flow("""
        steps:
          - id: a
            prompt: x
            mock: "one two three"
        """)
    events_file = tmp_path / "events.jsonl"
    result = cli("run", flow, "--mock", "--events", events_file, "--events-tokens", "-q")
    assert result.exit_code == 0
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    tokens = [e["text"] for e in events if e["event"] == "token"]
    assert "".join(tokens) == "one two three"


# --- templates and values ---------------------------------------------------------------------


def test_values_keep_their_types_in_outputs_and_with(write_flow: Callable,
                                                     run_json: RunJson) -> None:
    """A lone {{ expression }} keeps its type; inside text, non-strings become JSON."""
    flow = write_flow("""
        inputs:
          nums: {type: array, default: [1, 2]}
          flag: {type: boolean, default: true}
        steps:
          - id: a
            prompt: "list {{ inputs.nums }} flag {{ inputs.flag }} none {{ none }}"
            mock: "{{ inputs.nums }}|{{ inputs.flag }}|{{ {'a': 1} }}|{{ none }}"
        outputs:
          nums: "{{ inputs.nums }}"
          flag: "{{ inputs.flag }}"
          nothing: "{{ none }}"
          text: "{{ steps.a.output }}"
        """)
    code, doc = run_json(flow)
    assert code == 0
    assert doc["outputs"] == {
        "nums": [1, 2], "flag": True, "nothing": None, "text": '[1, 2]|true|{"a": 1}|null',
    }


def test_json_output_parses_a_fenced_reply(write_flow: Callable, run_json: RunJson) -> None:
    """output: json parses the reply, a ```json fence included."""
    flow = write_flow("""
        steps:
          - id: a
            prompt: x
            output: json
            mock: |
              ```json
              {"keywords": ["x", "y"]}
              ```
          - id: b
            for_each: steps.a.output.keywords
            prompt: "{{ index }}:{{ item }}"
            mock: "{{ index }}={{ item }}"
        """)
    code, doc = run_json(flow)
    assert code == 0
    assert outputs_of(doc) == {"a": {"keywords": ["x", "y"]}, "b": ["0=x", "1=y"]}


@pytest.mark.parametrize(("retries", "attempts"), [(0, 1), (2, 3)])
def test_invalid_json_fails_with_the_raw_text(write_flow: Callable, run_json: RunJson,
                                              retries: int, attempts: int) -> None:
    """An invalid JSON reply is re-asked `retries` times, then fails showing the reply."""
    flow = write_flow(f"""
        defaults: {{retries: {retries}}}
        steps:
          - id: a
            prompt: x
            output: json
            mock: "not json at all"
        """)
    code, doc = run_json(flow)
    assert code == 1
    assert doc["error"]["type"] == "invalid_output"
    assert doc["error"]["step"] == "a"
    assert "not json at all" in doc["error"]["message"]
    assert doc["steps"][0]["attempts"] == attempts


def test_schema_without_mock_gets_a_minimal_instance(write_flow: Callable,
                                                     run_json: RunJson) -> None:
    """Under --mock a step with a schema gets a small valid instance of it."""
    flow = write_flow("""
        steps:
          - id: a
            prompt: x
            output: json
            schema:
              type: object
              properties:
                category: {enum: [billing, bug]}
                urgency: {type: integer, minimum: 1}
                tags: {type: array, items: {type: string}}
              required: [category, urgency, tags]
        """)
    code, doc = run_json(flow)
    assert code == 0
    assert doc["outputs"]["a"] == {"category": "billing", "urgency": 1, "tags": ["mock"]}


def test_mock_without_text_is_deterministic(write_flow: Callable, run_json: RunJson) -> None:
    """Without `mock:`, the same prompt gets the same reply every time."""
    flow = write_flow("""
        steps:
          - id: a
            prompt: "Tell me about {{ 'tides' }}"
        """)
    first = run_json(flow)[1]["outputs"]["a"]
    second = run_json(flow)[1]["outputs"]["a"]
    assert first == second
    assert "Tell me about tides" in first


# --- control flow ------------------------------------------------------------------------------


def test_when_false_skips_with_null_output(write_flow: Callable, run_json: RunJson) -> None:
    """A step whose `when` is false is skipped with output null; so are its dependents."""
    flow = write_flow("""
        inputs:
          language: {default: English}
        steps:
          - id: summarize
            prompt: x
            mock: summary
          - id: translate
            prompt: "{{ steps.summarize.output }}"
            when: inputs.language != "English"
          - id: polish
            prompt: "{{ steps.translate.output }}"
        """)
    code, doc = run_json(flow)
    assert code == 0
    assert statuses(doc) == {"summarize": "succeeded", "translate": "skipped", "polish": "skipped"}
    assert outputs_of(doc)["translate"] is None


def test_join_with_own_when_runs_after_one_branch(write_flow: Callable,
                                                  run_json: RunJson) -> None:
    """A step after a skipped branch runs when its own `when` says so."""
    flow = write_flow("""
        steps:
          - id: a
            prompt: x
            when: "false"
          - id: b
            prompt: y
            mock: from b
          - id: join
            prompt: "{{ steps.a.output }} {{ steps.b.output }}"
            mock: "joined {{ steps.b.output }}"
            when: steps.a.status == "succeeded" or steps.b.status == "succeeded"
        """)
    code, doc = run_json(flow)
    assert code == 0
    assert statuses(doc) == {"a": "skipped", "b": "succeeded", "join": "succeeded"}
    assert outputs_of(doc)["join"] == "joined from b"


def test_on_error_continue_lets_the_run_succeed(write_flow: Callable, run_json: RunJson) -> None:
    """A failed step with on_error: continue has output null; the run ends succeeded."""
    flow = write_flow("""
        steps:
          - id: broken
            prompt: x
            output: json
            mock: "not json"
            retries: 0
            on_error: continue
          - id: after
            prompt: "{{ steps.broken.output }}"
          - id: independent
            prompt: y
            mock: fine
        """)
    code, doc = run_json(flow)
    assert code == 0
    assert doc["status"] == "succeeded"
    assert statuses(doc) == {"broken": "failed", "after": "skipped", "independent": "succeeded"}
    assert doc["steps"][0]["output"] is None


def test_failure_stops_the_run_and_cancels_the_rest(write_flow: Callable,
                                                    run_json: RunJson) -> None:
    """With on_error: fail, no new steps start: the steps left are cancelled, exit 1."""
    flow = write_flow("""
        steps:
          - id: broken
            prompt: x
            output: json
            mock: "not json"
            retries: 0
          - id: later
            prompt: "{{ steps.broken.output }}"
        """)
    code, doc = run_json(flow)
    assert code == 1
    assert doc["status"] == "failed"
    assert statuses(doc) == {"broken": "failed", "later": "cancelled"}
    assert doc["error"]["step"] == "broken"


def test_for_each_sums_attempts_and_usage(write_flow: Callable, run_json: RunJson) -> None:
    """A for_each output is the ordered list; attempts and usage are summed over items."""
    flow = write_flow("""
        inputs:
          words: {type: array, default: [aa, bb, cc]}
        steps:
          - id: each
            for_each: inputs.words
            prompt: "{{ item }}"
            mock: "{{ index }}{{ item }}"
        """)
    code, doc = run_json(flow)
    assert code == 0
    step = doc["steps"][0]
    assert step["output"] == ["0aa", "1bb", "2cc"]
    assert step["attempts"] == 3
    assert step["usage"] == {"input_tokens": 3, "output_tokens": 3}


def test_empty_for_each_gives_an_empty_list(write_flow: Callable, run_json: RunJson) -> None:
    """A for_each over an empty list succeeds with output []."""
    flow = write_flow("""
        inputs:
          words: {type: array, default: []}
        steps:
          - id: each
            for_each: inputs.words
            prompt: "{{ item }}"
        """)
    code, doc = run_json(flow)
    assert code == 0
    assert doc["steps"][0]["output"] == []


def test_independent_steps_run_concurrently(write_flow: Callable, run_json: RunJson) -> None:
    """Two steps with no dependency between them are in progress at the same time."""
    write_flow("""
        import asyncio

        arrived = 0

        async def rendezvous(name):
            global arrived
            arrived += 1
            async with asyncio.timeout(5):
                while arrived < 2:
                    await asyncio.sleep(0.001)
            return name
        """, "meet.py")
    flow = write_flow("""
        steps:
          - id: left
            function: meet:rendezvous
            with: {name: left}
            timeout: 5
          - id: right
            function: meet:rendezvous
            with: {name: right}
            timeout: 5
        """)
    code, doc = run_json(flow)
    assert code == 0
    assert outputs_of(doc) == {"left": "left", "right": "right"}


# --- functions and sub-workflows ----------------------------------------------------------------


@pytest.fixture
def tools(write_flow: Callable) -> Path:
    return write_flow("""
        import asyncio

        def count_words(text):
            return {"words": len(text.split())}

        async def shout(text):
            await asyncio.sleep(0)
            return text.upper()

        def explode(text):
            raise ValueError(f"cannot handle {text!r}")

        def not_json():
            return {1, 2}
        """, "tools.py")


def test_function_steps_sync_and_async(write_flow: Callable, run_json: RunJson,
                                       tools: Path) -> None:
    """Function steps get `with` as keyword arguments, sync or async; null provider and usage."""
    flow = write_flow("""
        steps:
          - id: count
            function: tools:count_words
            with: {text: "one two three"}
          - id: loud
            function: tools:shout
            with: {text: "{{ steps.count.output.words }} words"}
        """)
    code, doc = run_json(flow)
    assert code == 0
    assert outputs_of(doc) == {"count": {"words": 3}, "loud": "3 WORDS"}
    assert doc["steps"][0]["provider"] is None
    assert doc["steps"][0]["usage"] is None


def test_function_that_raises_fails_the_step(write_flow: Callable, cli: Callable,
                                             tools: Path) -> None:
    """A raising function fails its step with the step id and message, no traceback."""
    flow = write_flow("""
        steps:
          - id: boom
            function: tools:explode
            with: {text: abc}
        """)
    result = cli("run", flow, "--mock")
    assert result.exit_code == 1
    assert "boom" in result.stderr
    assert "ValueError: cannot handle 'abc'" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_function_returning_non_json_fails(write_flow: Callable, run_json: RunJson,
                                           tools: Path) -> None:
    """A function must return JSON-serialisable data."""
    flow = write_flow("""
        steps:
          - id: odd
            function: tools:not_json
        """)
    code, doc = run_json(flow)
    assert code == 1
    assert doc["error"]["type"] == "function"
    assert "not JSON-serialisable" in doc["error"]["message"]


def test_missing_function_is_invalid_at_run_start(write_flow: Callable, cli: Callable,
                                                  tools: Path) -> None:
    """A function that cannot be imported is a located validation error, exit 2."""
    flow = write_flow("""
        steps:
          - id: nope
            function: tools:no_such_thing
        """)
    result = cli("run", flow, "--mock")
    assert result.exit_code == 2
    assert f"{flow}:3:15: error: module 'tools' has no 'no_such_thing'" in result.stderr


def test_sub_workflow_output_is_the_childs_outputs(write_flow: Callable,
                                                   run_json: RunJson) -> None:
    """A workflow step runs the child with `with` as inputs; its output is their outputs."""
    write_flow("""
        inputs:
          text: {}
        steps:
          - id: polish
            prompt: "{{ inputs.text }}"
            mock: "polished {{ inputs.text }}"
        outputs:
          result: "{{ steps.polish.output }}"
        """, "lib/polish.yaml")
    flow = write_flow("""
        steps:
          - id: draft
            prompt: x
            mock: draft
          - id: review
            workflow: lib/polish.yaml
            with: {text: "{{ steps.draft.output }}"}
        """)
    code, doc = run_json(flow)
    assert code == 0
    assert outputs_of(doc)["review"] == {"result": "polished draft"}


def test_failing_sub_workflow_fails_the_step(write_flow: Callable, run_json: RunJson) -> None:
    """A child that fails fails the step, with the child's error type."""
    write_flow("""
        steps:
          - id: bad
            prompt: x
            output: json
            mock: nope
            retries: 0
        """, "child.yaml")
    flow = write_flow("""
        steps:
          - id: sub
            workflow: child.yaml
        """)
    code, doc = run_json(flow)
    assert code == 1
    assert doc["error"]["step"] == "sub"
    assert doc["error"]["type"] == "invalid_output"
    assert "failed at step bad" in doc["error"]["message"]


# --- failures while running ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        pytest.param("""
          - id: a
            for_each: inputs.text
            prompt: "{{ item }}"
        """, "for_each gave str, not a list", id="for-each-over-a-string"),
        pytest.param("""
          - id: a
            prompt: x
            output: json
            mock: '{"b": 1}'
          - id: c
            prompt: "{{ steps.a.output.missing }}"
        """, "has no key 'missing'", id="missing-key-at-run-time"),
        pytest.param("""
          - id: a
            prompt: x
            when: inputs.text.nope.deeper
        """, "when", id="when-raises"),
    ],
)
def test_template_failures_are_located(write_flow: Callable, run_json: RunJson,
                                       steps: str, message: str) -> None:
    """An expression or template failing at run time fails its step with a located error."""
    flow = write_flow("inputs:\n  text: {default: hello}\nsteps:" + steps)
    code, doc = run_json(flow)
    assert code == 1
    assert doc["error"]["type"] == "template"
    assert message in doc["error"]["message"]
    assert doc["error"]["message"].startswith(f"{flow}:")


# --- inputs and usage errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "nope=1"], "error: unknown input 'nope'"),
        (["-i", "count=abc"], "error: input 'count' must be JSON for its type"),
        ([], "error: missing required input 'topic'"),
    ],
)
def test_bad_inputs_exit_2(write_flow: Callable, cli: Callable, args: list[str],
                           message: str) -> None:
    """Unknown, mistyped and missing inputs are usage errors: exit 2 with the reason."""
    flow = write_flow("""
        inputs:
          topic: {}
          count: {type: integer, default: 1}
        steps:
          - id: a
            prompt: "{{ inputs.topic }}"
        """)
    result = cli("run", flow, "--mock", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_invalid_workflow_exits_2_before_running(write_flow: Callable, cli: Callable) -> None:
    """run validates first: an invalid file prints diagnostics and exits 2."""
    flow = write_flow("""
        steps:
          - id: a
            promt: x
        """)
    result = cli("run", flow, "--mock")
    assert result.exit_code == 2
    assert f"{flow}:3:5: error: unknown key 'promt' in a step" in result.stderr
    assert result.stdout == ""


def test_missing_key_is_found_before_any_request(write_flow: Callable, cli: Callable) -> None:
    """Without --mock and without OPENAI_API_KEY, exit 2 naming the variable."""
    flow = write_flow("""
        steps:
          - id: a
            prompt: x
        """)
    result = cli("run", flow)
    assert result.exit_code == 2
    assert "OPENAI_API_KEY" in result.stderr


@pytest.mark.parametrize(("name", "value"), [("ORCHESTRATE_MOCK", "1"),
                                             ("ORCHESTRATE_USE_MOCK", "true")])
def test_mock_from_the_environment(write_flow: Callable, cli: Callable,
                                   monkeypatch: pytest.MonkeyPatch, name: str,
                                   value: str) -> None:
    """ORCHESTRATE_MOCK=1 and ORCHESTRATE_USE_MOCK=true mean --mock."""
    monkeypatch.setenv(name, value)
    flow = write_flow("""
        steps:
          - id: a
            prompt: x
            mock: offline
        """)
    result = cli("run", flow)
    assert result.exit_code == 0
    assert result.stdout == "offline\n"


def test_model_option_overrides_every_step(write_flow: Callable, run_json: RunJson) -> None:
    """--model replaces the model of every LLM step; claude-* implies anthropic."""
    flow = write_flow("""
        defaults: {model: gpt-4o}
        steps:
          - id: a
            prompt: x
          - id: b
            prompt: y
            model: gpt-4o-mini
        """)
    _, doc = run_json(flow, "--model", "claude-3-5-haiku-latest")
    assert [(s["provider"], s["model"]) for s in doc["steps"]] == [
        ("anthropic", "claude-3-5-haiku-latest"), ("anthropic", "claude-3-5-haiku-latest"),
    ]


def test_default_model_comes_from_the_environment(write_flow: Callable, run_json: RunJson,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """ORCHESTRATE_MODEL is the model when a workflow names none."""
    monkeypatch.setenv("ORCHESTRATE_MODEL", "gpt-4.1")
    flow = write_flow("""
        steps:
          - id: a
            prompt: x
        """)
    assert run_json(flow)[1]["steps"][0]["model"] == "gpt-4.1"


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf", "3601", "1e308"])
def test_mock_latency_must_be_seconds(write_flow: Callable, cli: Callable,
                                      monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """An ORCHESTRATE_MOCK_LATENCY that is no number of seconds from 0 to 3600 is a usage
    error naming the variable (not a run that never ends)."""
    monkeypatch.setenv("ORCHESTRATE_MOCK_LATENCY", value)
    flow = write_flow("steps: [{id: a, prompt: x}]")
    result = cli("run", flow, "--mock")
    assert result.exit_code == 2
    assert (f"ORCHESTRATE_MOCK_LATENCY must be a number of seconds from 0 to 3600, "
            f"got {value!r}") in result.stderr


def test_verbose_shows_the_functions_traceback(write_flow: Callable, cli: Callable,
                                               tools: Path) -> None:
    """--verbose adds the traceback of a raising function; it never reaches --json."""
    flow = write_flow("""
        steps:
          - id: boom
            function: tools:explode
            with: {text: abc}
        """)
    result = cli("run", flow, "--mock", "--verbose", "--json")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert 'raise ValueError(f"cannot handle {text!r}")' in result.stderr
    assert "Traceback" not in result.stdout


def test_hints_of_failures_reach_stderr(write_flow: Callable, cli: Callable) -> None:
    """A failed step's hint is printed under its error, and kept out of the JSON."""
    flow = write_flow("""
        steps:
          - id: a
            prompt: x
            output: json
            mock: '{"title": "Tides"}'
          - id: b
            prompt: "{{ steps.a.output.titel }}"
        """)
    result = cli("run", flow, "--mock", "--json")
    assert result.exit_code == 1
    assert "  hint: did you mean 'title'?" in result.stderr
    assert "hint" not in json.loads(result.stdout)["error"]


@pytest.mark.parametrize(
    ("flow_text", "args", "error_type"),
    [
        ("steps: [{id: a, promt: x}]", [], "invalid_workflow"),
        ("inputs: {x: {}}\nsteps: [{id: a, prompt: '{{ inputs.x }}'}]", [], "invalid_input"),
        ("steps: [{id: a, prompt: x}]", ["-i", "nope=1"], "invalid_input"),
    ],
)
def test_json_document_even_when_the_run_never_starts(write_flow: Callable, cli: Callable,
                                                      flow_text: str, args: list[str],
                                                      error_type: str) -> None:
    """With --json, a run stopped before its first step still prints one document, exit 2."""
    flow = write_flow(flow_text)
    result = cli("run", flow, "--mock", "--json", *args)
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert (doc["status"], doc["steps"], doc["error"]["type"]) == ("failed", [], error_type)
    assert doc["file"] == str(flow)
    assert result.stderr.startswith(("error:", str(flow)))


def test_json_document_for_a_missing_key(write_flow: Callable, cli: Callable) -> None:
    """A missing API key stops the run before any request: error type provider, exit 2."""
    flow = write_flow("steps: [{id: a, prompt: x}]")
    result = cli("run", flow, "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "provider"
    assert "OPENAI_API_KEY" in error["message"]


def test_same_module_name_in_two_folders(write_flow: Callable, run_json: RunJson) -> None:
    """Each workflow's `tools.py` is its own, even with the same module name."""
    for folder in ("x", "y"):
        write_flow(f"def f():\n    return 'from {folder}'\n", f"{folder}/tools.py")
        write_flow("steps: [{id: s, function: tools:f}]", f"{folder}/w.yaml")
    flow = write_flow("steps: [{id: a, workflow: x/w.yaml}, {id: b, workflow: y/w.yaml}]")
    code, doc = run_json(flow)
    assert code == 0
    assert outputs_of(doc) == {"a": {"s": "from x"}, "b": {"s": "from y"}}


def test_missing_function_in_a_sub_workflow_is_located_there(write_flow: Callable,
                                                             cli: Callable) -> None:
    """A function a sub-workflow cannot import is reported at its line in the child file."""
    child = write_flow("steps:\n  - id: s\n    function: json:nope\n", "lib/child.yaml")
    flow = write_flow("steps: [{id: a, prompt: x}, {id: b, workflow: lib/child.yaml}]")
    result = cli("run", flow, "--mock")
    assert result.exit_code == 2
    assert f"{child}:3:15: error: module 'json' has no 'nope'" in result.stderr


@pytest.mark.parametrize("body", ["raise SystemExit(3)", "raise KeyboardInterrupt()"])
def test_a_function_that_exits_fails_its_step(write_flow: Callable, run_json: RunJson,
                                              body: str) -> None:
    """sys.exit() or KeyboardInterrupt inside a function fails the step; the CLI goes on."""
    write_flow(f"def leave():\n    {body}\n", "leaving.py")
    flow = write_flow("steps: [{id: a, function: leaving:leave}]")
    code, doc = run_json(flow)
    assert code == 1
    assert doc["error"]["type"] == "function"


@pytest.mark.parametrize("events", [False, True])
def test_what_functions_print_stays_off_stdout(write_flow: Callable, cli: Callable,
                                               events: bool) -> None:
    """A function's print() goes to stderr, so --json and --events - stay parseable."""
    write_flow("def noisy():\n    print('debug: hello')\n    return 1\n", "noisy.py")
    flow = write_flow("steps: [{id: a, function: noisy:noisy}]")
    result = cli("run", flow, *(["--events", "-"] if events else ["--json"]))
    assert result.exit_code == 0
    documents = [json.loads(line) for line in result.stdout.splitlines()] if events else [
        json.loads(result.stdout)]
    assert documents
    assert "debug: hello" in result.stderr


def test_a_stopped_sub_workflow_step_is_cancelled(write_flow: Callable,
                                                  run_json: RunJson,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A sub-workflow still running when a sibling fails ends cancelled, not failed."""
    monkeypatch.setenv("ORCHESTRATE_MOCK_LATENCY", "5")
    write_flow("def fail():\n    raise ValueError('boom')\n", "failing.py")
    write_flow("steps: [{id: slow, prompt: x}]", "lib/child.yaml")
    flow = write_flow("steps: [{id: w, workflow: lib/child.yaml}, {id: f, function: failing:fail}]")
    code, doc = run_json(flow)
    assert code == 1
    assert statuses(doc) == {"w": "cancelled", "f": "failed"}
    assert doc["error"]["step"] == "f"


def test_failed_items_are_reported(write_flow: Callable, cli: Callable) -> None:
    """Every for_each item gets an item_finished event, the failed one included."""
    flow = write_flow("""
        steps:
          - id: fe
            for_each: '["1", "x", "3"]'
            prompt: "n {{ item }}"
            output: json
            retries: 0
            mock: "{{ item }}"
            on_error: continue
        """)
    result = cli("run", flow, "--mock", "--events", "-", "-q", "--max-concurrency", "1")
    items = [json.loads(line) for line in result.stdout.splitlines()]
    finished = [(e["index"], e["status"]) for e in items if e["event"] == "item_finished"]
    assert (1, "failed") in finished
    assert all(status in ("succeeded", "failed") for _, status in finished)


def test_a_run_stopped_before_its_steps_keeps_its_inputs(write_flow: Callable,
                                                         cli: Callable) -> None:
    """A missing key stops the run after inputs are resolved: the document holds them."""
    flow = write_flow("inputs: {topic: {}, n: {type: integer, default: 2}}\n"
                      "steps: [{id: a, prompt: '{{ inputs.topic }}'}]")
    result = cli("run", flow, "-i", "topic=moon", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["inputs"] == {"topic": "moon", "n": 2}


# --- option values: empty, out of range, switches -----------------------------------------


@pytest.mark.parametrize("option", ["--model", "--resume", "--from", "--only", "--record",
                                    "--replay", "--events", "--inputs"])
def test_an_empty_option_value_is_a_usage_error(done_flow: Path, cli: Callable,
                                                option: str) -> None:
    """`--model ''` and the like are exit 2 naming the option, not silently "not given"."""
    result = cli("run", done_flow, "--mock", option, "")
    assert result.exit_code == 2
    assert f"error: {option} must not be empty" in result.stderr
    assert result.stdout == ""


def test_an_empty_flow_is_a_usage_error(cli: Callable) -> None:
    """`run ''` names the argument instead of trying to run the current folder."""
    result = cli("run", "", "--mock")
    assert result.exit_code == 2
    assert "error: FLOW must not be empty" in result.stderr


@pytest.mark.parametrize("value", ["0", "-1", "1025", "1" + "0" * 30])
def test_max_concurrency_out_of_range(done_flow: Path, cli: Callable, value: str) -> None:
    """--max-concurrency takes 1 to 1024; beyond is exit 2 with the range, no traceback."""
    result = cli("run", done_flow, "--mock", "--max-concurrency", value)
    assert result.exit_code == 2
    assert "error: --max-concurrency must be between 1 and 1024, got " in result.stderr


@pytest.mark.parametrize("value", ["1", "1024"])
def test_max_concurrency_ends_of_the_range(done_flow: Path, cli: Callable, value: str) -> None:
    """Both ends of the --max-concurrency range run."""
    assert cli("run", done_flow, "--mock", "--max-concurrency", value).stdout == "done\n"


@pytest.mark.parametrize("name", ["ORCHESTRATE_MOCK", "ORCHESTRATE_USE_MOCK"])
@pytest.mark.parametrize("flag", [[], ["--mock"]])
def test_a_misspelled_mock_switch_is_a_usage_error(done_flow: Path, cli: Callable,
                                                   monkeypatch: pytest.MonkeyPatch, name: str,
                                                   flag: list[str]) -> None:
    """ORCHESTRATE_MOCK=maybe is exit 2 naming the variable (also with --mock), not "off"."""
    monkeypatch.setenv(name, "maybe")
    result = cli("run", done_flow, *flag)
    assert result.exit_code == 2
    assert f"error: {name} must be one of 1/0, true/false, yes/no, on/off, got 'maybe'" in (
        result.stderr)


@pytest.mark.parametrize(("value", "stdout"), [("ON", "done\n"), ("no", ""), ("", "")])
def test_mock_switch_spellings(done_flow: Path, cli: Callable, monkeypatch: pytest.MonkeyPatch,
                               value: str, stdout: str) -> None:
    """ORCHESTRATE_MOCK=ON runs offline; `no` and empty are off (no key: exit 2)."""
    monkeypatch.setenv("ORCHESTRATE_MOCK", value)
    result = cli("run", done_flow)
    assert (result.stdout, result.exit_code) == (stdout, 0 if stdout else 2)
