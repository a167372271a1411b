"""`orchestrate run` end to end: each control-flow rule of the SPEC on a real workflow file."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SLOW_TEMPLATE

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
    assert {
        "run_id",
        "workflow",
        "file",
        "status",
        "started_at",
        "duration_ms",
        "inputs",
        "outputs",
        "steps",
        "usage",
        "error",
    } <= doc.keys()
    assert doc["workflow"] == "flow"
    assert doc["file"] == str(flow)
    assert doc["status"] == "succeeded"
    assert doc["error"] is None
    assert doc["inputs"] == {"topic": "tides", "language": "French"}
    assert doc["outputs"] == {"hello": "Hi about tides"}
    step = doc["steps"][0]
    assert step["provider"] == "mock"  # --mock: never reported as a real provider's answer
    assert step["model"] == "gpt-4o-mini"
    assert step["attempts"] == 1
    assert (step["cached"], step["reused"]) == (False, False)  # false, not missing
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
    assert re.search(r"^run \w+ succeeded in ", result.stderr, re.MULTILINE)


def test_quiet_hides_progress(done_flow: Path, cli: Callable) -> None:
    """-q prints no progress and no summary."""
    result = cli("run", done_flow, "--mock", "-q")
    assert result.stdout == "done\n"
    assert result.stderr == ""


def test_events_to_stdout_are_json_lines(done_flow: Path, cli: Callable) -> None:
    """--events - writes one JSON object per event to stdout, and nothing else; every
    record names its step `step_id`."""
    result = cli("run", done_flow, "--mock", "--events", "-", "-q")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    names = [e["event"] for e in events]
    assert names == ["run_started", "step_started", "step_finished", "run_finished"]
    assert events[0]["steps"] == [{"step_id": "a", "kind": "llm"}]
    assert [e["step_id"] for e in events[1:3]] == ["a", "a"]
    assert not any("id" in e for e in events)
    assert events[2]["status"] == "succeeded"
    assert events[-1]["outputs"] == {"a": "done"}


def test_events_tokens_include_streamed_text(
    write_flow: Callable, cli: Callable, tmp_path: Path
) -> None:
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


def test_events_tokens_redact_a_known_secret_split_across_chunks(
    write_flow: Callable, cli: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret value the model echoes is [REDACTED] in token events, though the mock
    streams it in three chunks (one per word); the rest of the text is all there."""
    monkeypatch.setenv("VAULT_TOKEN", "open sesame 1234")
    flow = write_flow("""
        steps:
          - id: a
            prompt: x
            mock: "the key is open sesame 1234 ok"
        """)
    events_file = tmp_path / "events.jsonl"
    result = cli("run", flow, "--mock", "--events", events_file, "--events-tokens", "-q")
    assert result.exit_code == 0
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    tokens = [e["text"] for e in events if e["event"] == "token"]
    assert "".join(tokens) == "the key is [REDACTED] ok"
    assert not any("sesame" in text for text in tokens)


# --- templates and values ---------------------------------------------------------------------


def test_values_keep_their_types_in_outputs_and_with(
    write_flow: Callable, run_json: RunJson
) -> None:
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
        "nums": [1, 2],
        "flag": True,
        "nothing": None,
        "text": '[1, 2]|true|{"a": 1}|null',
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
def test_invalid_json_fails_with_the_raw_text(
    write_flow: Callable, run_json: RunJson, retries: int, attempts: int
) -> None:
    """An invalid JSON reply is re-asked `retries` times, then fails showing the reply."""
    flow = write_flow(f"""
        defaults: {{retries: {retries}}}
        steps:
          - id: a
            prompt: x
            output: json
            mock: "not json {{{{ 'at' }}}} all"  # a template: validate cannot know
        """)
    code, doc = run_json(flow)
    assert code == 1
    assert doc["error"]["type"] == "invalid_output"
    assert doc["error"]["step"] == "a"
    assert "not json at all" in doc["error"]["message"]
    assert doc["steps"][0]["attempts"] == attempts


CUT_OFF_ROUTES = {
    "gpt-4o-mini": ("https://api.openai.com/v1/chat/completions", "OPENAI_API_KEY"),
    "claude-sonnet-4-5": ("https://api.anthropic.com/v1/messages", "ANTHROPIC_API_KEY"),
}


@pytest.fixture
def cut_off(respx_mock, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """A (fake) provider for the model that answers `text`, cut off at max_tokens."""

    def serve(model: str, text: str) -> Any:
        url, key_env = CUT_OFF_ROUTES[model]
        monkeypatch.setenv(key_env, "sk-test-3333333333333333")
        if model.startswith("claude"):
            body = {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "max_tokens",
                "usage": {"input_tokens": 5, "output_tokens": 800},
            }
        else:
            body = {
                "id": "chatcmpl-1",
                "model": model,
                "usage": {"prompt_tokens": 5, "completion_tokens": 800},
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "length",
                        "message": {"role": "assistant", "content": text},
                    }
                ],
            }
        return respx_mock.post(url).mock(return_value=httpx.Response(200, json=body))

    return serve


def run_live(cli: Callable, flow: Path) -> tuple[int, dict[str, Any]]:
    result = cli("run", flow, "--json")
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.parametrize("model", sorted(CUT_OFF_ROUTES))
@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (", max_tokens: 800", "the reply was cut off at max_tokens=800; raise max_tokens"),
        ("", "the reply was cut off at the provider's default max_tokens; set max_tokens"),
    ],
)
def test_cut_off_json_fails_at_once(
    write_flow: Callable, cli: Callable, cut_off: Callable, model: str, settings: str, problem: str
) -> None:
    """A JSON reply cut off at max_tokens fails saying so, and is not re-asked."""
    route = cut_off(model, '{"facts": ["one", "tw')
    flow = write_flow(f"""
        defaults: {{model: {model}, retries: 2{settings}}}
        steps:
          - id: a
            prompt: x
            output: json
        """)
    code, doc = run_live(cli, flow)
    assert (code, doc["error"]["type"]) == (1, "invalid_output")
    assert doc["error"]["message"] == f'{problem}; the reply was: {{"facts": ["one", "tw'
    assert (route.call_count, doc["steps"][0]["attempts"]) == (1, 1)


@pytest.mark.parametrize("model", sorted(CUT_OFF_ROUTES))
def test_cut_off_after_complete_json_succeeds(
    write_flow: Callable, cli: Callable, cut_off: Callable, model: str
) -> None:
    """A reply cut off in the prose after its JSON is used, with a warning."""
    cut_off(model, 'Sure!\n```json\n{"facts": ["one"]}\n```\nHope this he')
    flow = write_flow(f"""
        steps:
          - id: a
            model: {model}
            prompt: x
            output: json
        """)
    code, doc = run_live(cli, flow)
    assert (code, doc["outputs"]["a"]) == (0, {"facts": ["one"]})
    assert doc["steps"][0]["warnings"] == ["the reply was cut off at max_tokens"]


@pytest.mark.parametrize("model", sorted(CUT_OFF_ROUTES))
def test_cut_off_text_succeeds_with_a_warning(
    write_flow: Callable, cli: Callable, cut_off: Callable, model: str
) -> None:
    """A text step keeps a cut-off reply as its output, warning that it was cut off."""
    cut_off(model, "Once upon a ti")
    flow = write_flow(f"""
        steps:
          - id: a
            model: {model}
            prompt: x
        """)
    code, doc = run_live(cli, flow)
    assert (code, doc["outputs"]["a"]) == (0, "Once upon a ti")
    assert doc["steps"][0]["warnings"] == ["the reply was cut off at max_tokens"]


def test_schema_without_mock_gets_a_minimal_instance(
    write_flow: Callable, run_json: RunJson
) -> None:
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


# Three steps on `provider: mock`, one for each rule of the mock's answer.
MOCK_PROVIDER_STEPS = """
    inputs:
      topic: {default: tides}
    defaults: {provider: mock, model: gpt-4o}
    steps:
      - id: canned
        prompt: x
        mock: "Facts about {{ inputs.topic }}"
      - id: shaped
        prompt: y
        schema:
          type: object
          properties: {n: {type: integer, minimum: 3}}
          required: [n]
      - id: echoed
        prompt: "Tell me about {{ inputs.topic }}"
    """


@pytest.mark.parametrize("flags", [[], ["--mock"]], ids=["provider-mock", "mock-option"])
def test_provider_mock_answers_as_the_mock_option_does(
    write_flow: Callable, cli: Callable, flags: list[str]
) -> None:
    """`provider: mock` answers with the rendered `mock:` text, a schema's minimal instance
    or an echo of the prompt, exactly as --mock does."""
    result = cli("run", write_flow(MOCK_PROVIDER_STEPS), "--json", *flags)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    outputs = outputs_of(doc)
    assert outputs["canned"] == "Facts about tides"
    assert outputs["shaped"] == {"n": 3}
    assert outputs["echoed"].startswith("Mock reply ")
    assert outputs["echoed"].endswith("to: Tell me about tides")
    assert {(s["provider"], s["model"]) for s in doc["steps"]} == {("mock", "gpt-4o")}


def test_provider_mock_leaves_other_steps_on_their_provider(
    write_flow: Callable, cli: Callable, respx_mock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `provider: mock` step answers offline while the run's other steps still call
    their real provider."""
    import httpx

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-2222222222222222")
    route = respx_mock.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=httpx.Response(
            200,
            json={
                "id": "chatcmpl-1",
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "A real answer."},
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 3},
            },
        )
    )
    flow = write_flow("""
        steps:
          - id: offline
            provider: mock
            prompt: x
            mock: "canned {{ 1 + 1 }}"
          - id: online
            prompt: "Improve: {{ steps.offline.output }}"
            mock: never used
        """)
    result = cli("run", flow, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert outputs_of(doc) == {"offline": "canned 2", "online": "A real answer."}
    assert [s["provider"] for s in doc["steps"]] == ["mock", "openai"]
    assert route.call_count == 1
    assert json.loads(route.calls[0].request.content)["messages"][-1]["content"] == (
        "Improve: canned 2"
    )


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


def test_join_with_own_when_runs_after_one_branch(write_flow: Callable, run_json: RunJson) -> None:
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
            mock: "{{ 'not json' }}"  # a template: found invalid only at run time
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


def test_failure_stops_the_run_and_cancels_the_rest(
    write_flow: Callable, run_json: RunJson
) -> None:
    """With on_error: fail, no new steps start: the steps left are cancelled, exit 1."""
    flow = write_flow("""
        steps:
          - id: broken
            prompt: x
            output: json
            mock: "{{ 'not json' }}"  # a template: found invalid only at run time
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
    write_flow(
        """
        import asyncio

        arrived = 0

        async def rendezvous(name):
            global arrived
            arrived += 1
            async with asyncio.timeout(5):
                while arrived < 2:
                    await asyncio.sleep(0.001)
            return name
        """,
        "meet.py",
    )
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
    return write_flow(
        """
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
        """,
        "tools.py",
    )


def test_function_steps_sync_and_async(
    write_flow: Callable, run_json: RunJson, tools: Path
) -> None:
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


def test_function_that_raises_fails_the_step(
    write_flow: Callable, cli: Callable, tools: Path
) -> None:
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


def test_function_returning_non_json_fails(
    write_flow: Callable, run_json: RunJson, tools: Path
) -> None:
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


def test_missing_function_is_invalid_at_run_start(
    write_flow: Callable, cli: Callable, tools: Path
) -> None:
    """A function that cannot be imported is a located validation error, exit 2."""
    flow = write_flow("""
        steps:
          - id: nope
            function: tools:no_such_thing
        """)
    result = cli("run", flow, "--mock")
    assert result.exit_code == 2
    assert f"{flow}:3:15: error: module 'tools' has no 'no_such_thing'" in result.stderr


def test_sub_workflow_output_is_the_childs_outputs(write_flow: Callable, run_json: RunJson) -> None:
    """A workflow step runs the child with `with` as inputs; its output is their outputs."""
    write_flow(
        """
        inputs:
          text: {}
        steps:
          - id: polish
            prompt: "{{ inputs.text }}"
            mock: "polished {{ inputs.text }}"
        outputs:
          result: "{{ steps.polish.output }}"
        """,
        "lib/polish.yaml",
    )
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
    write_flow(
        """
        steps:
          - id: bad
            prompt: x
            output: json
            mock: "{{ 'nope' }}"
            retries: 0
        """,
        "child.yaml",
    )
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
        pytest.param(
            """
          - id: a
            for_each: inputs.text | string  # not statically typed
            prompt: "{{ item }}"
        """,
            "for_each gave str, not a list",
            id="for-each-over-a-string",
        ),
        pytest.param(
            """
          - id: a
            prompt: x
            output: json
            mock: '{"b": 1}'
          - id: c
            prompt: "{{ steps.a.output.missing }}"
        """,
            "has no key 'missing'",
            id="missing-key-at-run-time",
        ),
        pytest.param(
            """
          - id: a
            prompt: x
            when: inputs.text.nope.deeper
        """,
            "when",
            id="when-raises",
        ),
    ],
)
def test_template_failures_are_located(
    write_flow: Callable, run_json: RunJson, steps: str, message: str
) -> None:
    """An expression or template failing at run time fails its step with a located error."""
    flow = write_flow("inputs:\n  text: {default: hello}\nsteps:" + steps)
    code, doc = run_json(flow)
    assert code == 1
    assert doc["error"]["type"] == "template"
    assert message in doc["error"]["message"]
    assert doc["error"]["message"].startswith(f"{flow}:")


NOT_JSON_STEPS = {
    "outputs": """
        steps:
          - id: a
            prompt: x
        outputs:
          r: "{{ VALUE }}"
        """,
    "with": """
        steps:
          - id: a
            function: tools:echo
            with:
              v: "{{ VALUE }}"
        """,
    "for_each": """
        steps:
          - id: a
            for_each: "VALUE"
            prompt: x
        """,
    "prompt": """
        steps:
          - id: a
            prompt: "text {{ VALUE }}"
        """,
}


def not_json_flow(write_flow: Callable, where: str, value: str) -> Path:
    write_flow("def echo(v):\n    return repr(v)\n", "tools.py")
    return write_flow(
        "inputs:\n  text: {default: hi}\n"
        + textwrap.dedent(NOT_JSON_STEPS[where]).replace("VALUE", value)
    )


@pytest.mark.parametrize("where", list(NOT_JSON_STEPS))
@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("namespace(d=1)", "a namespace"),
        ("inputs.text.upper", "a method"),
        ("[range]", "a function"),
        ("(1, dict)", "a function"),
        ("{'k': namespace}", "a class"),
    ],
)
def test_a_value_without_json_form_fails_the_step(
    write_flow: Callable, cli: Callable, where: str, value: str, kind: str
) -> None:
    """A function, method or namespace in outputs, with:, for_each or text is a template error."""
    result = cli("run", not_json_flow(write_flow, where, value), "--mock", "--json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert doc["error"]["type"] == "template"
    assert f"the template gives {kind}, which is not JSON data" in doc["error"]["message"]
    assert "<" not in json.dumps(doc)  # no <function ...> or <Namespace ...> anywhere
    if where != "outputs":
        assert doc["steps"][0]["status"] == "failed"


@pytest.mark.parametrize("where", list(NOT_JSON_STEPS))
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("range", "'range' is a function, which is not JSON data"),
        ("cycler", "unknown variable 'cycler'"),
        ("joiner()", "unknown variable 'joiner'"),
        ("lipsum", "unknown variable 'lipsum'"),
    ],
)
def test_a_value_without_json_form_is_found_before_the_run(
    write_flow: Callable, cli: Callable, where: str, value: str, message: str
) -> None:
    """A bare global, or a Jinja global templates do not get, fails validation: exit 2."""
    result = cli("run", not_json_flow(write_flow, where, value), "--mock")
    assert result.exit_code == 2
    assert message in result.stderr


@pytest.mark.parametrize("kind", ["prompt", "function"])
def test_a_slow_template_times_out_without_blocking_the_run(
    write_flow: Callable, run_json: RunJson, kind: str
) -> None:
    """A template slower than the step's timeout fails it (timeout) while others go on."""
    write_flow("def echo(v):\n    return v\n", "tools.py")
    slow = (
        f'prompt: "{SLOW_TEMPLATE}"'
        if kind == "prompt"
        else f'function: tools:echo\n    with: {{v: "{SLOW_TEMPLATE}"}}'
    )
    flow = write_flow(f"""
steps:
  - id: slow
    timeout: 1
    on_error: continue
    {slow}
  - id: other
    function: asyncio:sleep
    with: {{delay: 0.2}}
""")
    started = time.perf_counter()
    code, doc = run_json(flow)
    assert time.perf_counter() - started < 5  # the template alone takes about a minute
    assert code == 0
    slow_step, other = doc["steps"]
    assert slow_step["status"] == "failed"
    assert slow_step["error"]["type"] == "timeout"
    assert "templates took longer than 1 s to render" in slow_step["error"]["message"]
    assert other["status"] == "succeeded"
    assert other["duration_ms"] < 900  # the loop was free while the template rendered


# --- inputs and usage errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "nope=1"], "error: unknown input 'nope'"),
        (["-i", "count=abc"], "error: input 'count' must be JSON for its type"),
        ([], "error: missing required input 'topic'"),
    ],
)
def test_bad_inputs_exit_2(
    write_flow: Callable, cli: Callable, args: list[str], message: str
) -> None:
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


@pytest.mark.parametrize(
    ("env", "state"),
    [({}, "is not set"), ({"LOCAL_KEY": ""}, "is empty"), ({"LOCAL_KEY": "  "}, "is empty")],
)
def test_a_named_key_variable_is_needed_even_on_a_custom_server(
    write_flow: Callable,
    cli: Callable,
    respx_mock,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    state: str,
) -> None:
    """An endpoint's `api_key_env` unset or empty is exit 2 naming it, before any request,
    although its base_url is a local server."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    route = respx_mock.post("http://127.0.0.1:8000/v1/chat/completions")
    flow = write_flow("""
        providers:
          local: {base_url: "http://127.0.0.1:8000/v1", api_key_env: LOCAL_KEY}
        steps:
          - {id: offline, provider: mock, prompt: x}
          - {id: a, provider: local, prompt: x}
        """)
    result = cli("run", flow)
    assert result.exit_code == 2
    assert f"environment variable LOCAL_KEY {state}" in result.stderr
    assert not route.called


@pytest.mark.parametrize(
    ("name", "value"), [("ORCHESTRATE_MOCK", "1"), ("ORCHESTRATE_USE_MOCK", "true")]
)
def test_mock_from_the_environment(
    write_flow: Callable, cli: Callable, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
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
    """--model replaces the model of every LLM step, also as reported under --mock."""
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
        ("mock", "claude-3-5-haiku-latest"),
        ("mock", "claude-3-5-haiku-latest"),
    ]


@pytest.mark.parametrize(("mock", "expected"), [(False, {"anthropic", "local"}), (True, {"mock"})])
def test_model_option_picks_the_provider_again(
    write_flow: Callable, mock: bool, expected: set[str]
) -> None:
    """--model claude-* moves steps to anthropic but not off a custom endpoint; --mock
    moves every step to the mock."""
    from orchestrate._api import prepare, providers_in_use
    from orchestrate._engine import RunOptions

    flow = write_flow("""
        providers: {local: {base_url: "http://127.0.0.1:9/v1"}}
        defaults: {model: gpt-4o}
        steps:
          - {id: a, prompt: x}
          - {id: b, prompt: y, provider: local}
        """)
    options = RunOptions(model="claude-3-5-haiku-latest", mock=mock)
    assert providers_in_use(prepare(flow), options, {}) == expected


def test_default_model_comes_from_the_environment(
    write_flow: Callable, run_json: RunJson, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORCHESTRATE_MODEL is the model when a workflow names none."""
    monkeypatch.setenv("ORCHESTRATE_MODEL", "gpt-4.1")
    flow = write_flow("""
        steps:
          - id: a
            prompt: x
        """)
    assert run_json(flow)[1]["steps"][0]["model"] == "gpt-4.1"


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf", "3601", "1e308"])
def test_mock_latency_must_be_seconds(
    write_flow: Callable, cli: Callable, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """An ORCHESTRATE_MOCK_LATENCY that is no number of seconds from 0 to 3600 is a usage
    error naming the variable (not a run that never ends)."""
    monkeypatch.setenv("ORCHESTRATE_MOCK_LATENCY", value)
    flow = write_flow("steps: [{id: a, prompt: x}]")
    result = cli("run", flow, "--mock")
    assert result.exit_code == 2
    assert (
        f"ORCHESTRATE_MOCK_LATENCY must be a number of seconds from 0 to 3600, got {value!r}"
    ) in result.stderr


def test_verbose_shows_the_functions_traceback(
    write_flow: Callable, cli: Callable, tools: Path
) -> None:
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
def test_json_document_even_when_the_run_never_starts(
    write_flow: Callable, cli: Callable, flow_text: str, args: list[str], error_type: str
) -> None:
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


def test_missing_function_in_a_sub_workflow_is_located_there(
    write_flow: Callable, cli: Callable
) -> None:
    """A function a sub-workflow cannot import is reported at its line in the child file."""
    child = write_flow("steps:\n  - id: s\n    function: json:nope\n", "lib/child.yaml")
    flow = write_flow("steps: [{id: a, prompt: x}, {id: b, workflow: lib/child.yaml}]")
    result = cli("run", flow, "--mock")
    assert result.exit_code == 2
    assert f"{child}:3:15: error: module 'json' has no 'nope'" in result.stderr


@pytest.mark.parametrize("body", ["raise SystemExit(3)", "raise KeyboardInterrupt()"])
def test_a_function_that_exits_fails_its_step(
    write_flow: Callable, run_json: RunJson, body: str
) -> None:
    """sys.exit() or KeyboardInterrupt inside a function fails the step; the CLI goes on."""
    write_flow(f"def leave():\n    {body}\n", "leaving.py")
    flow = write_flow("steps: [{id: a, function: leaving:leave}]")
    code, doc = run_json(flow)
    assert code == 1
    assert doc["error"]["type"] == "function"


@pytest.mark.parametrize("events", [False, True])
def test_what_functions_print_stays_off_stdout(
    write_flow: Callable, cli: Callable, events: bool
) -> None:
    """A function's print() goes to stderr, so --json and --events - stay parseable."""
    write_flow("def noisy():\n    print('debug: hello')\n    return 1\n", "noisy.py")
    flow = write_flow("steps: [{id: a, function: noisy:noisy}]")
    result = cli("run", flow, *(["--events", "-"] if events else ["--json"]))
    assert result.exit_code == 0
    documents = (
        [json.loads(line) for line in result.stdout.splitlines()]
        if events
        else [json.loads(result.stdout)]
    )
    assert documents
    assert "debug: hello" in result.stderr


def test_a_stopped_sub_workflow_step_is_cancelled(
    write_flow: Callable, run_json: RunJson, monkeypatch: pytest.MonkeyPatch
) -> None:
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


def test_a_run_stopped_before_its_steps_keeps_its_inputs(
    write_flow: Callable, cli: Callable
) -> None:
    """A missing key stops the run after inputs are resolved: the document holds them."""
    flow = write_flow(
        "inputs: {topic: {}, n: {type: integer, default: 2}}\n"
        "steps: [{id: a, prompt: '{{ inputs.topic }}'}]"
    )
    result = cli("run", flow, "-i", "topic=moon", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["inputs"] == {"topic": "moon", "n": 2}


# --- option values: empty, out of range, switches -----------------------------------------


@pytest.mark.parametrize(
    "option",
    ["--model", "--resume", "--from", "--only", "--record", "--replay", "--events", "--inputs"],
)
def test_an_empty_option_value_is_a_usage_error(
    done_flow: Path, cli: Callable, option: str
) -> None:
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
def test_a_misspelled_mock_switch_is_a_usage_error(
    done_flow: Path, cli: Callable, monkeypatch: pytest.MonkeyPatch, name: str, flag: list[str]
) -> None:
    """ORCHESTRATE_MOCK=maybe is exit 2 naming the variable (also with --mock), not "off"."""
    monkeypatch.setenv(name, "maybe")
    result = cli("run", done_flow, *flag)
    assert result.exit_code == 2
    assert f"error: {name} must be one of 1/0, true/false, yes/no, on/off, got 'maybe'" in (
        result.stderr
    )


@pytest.mark.parametrize(("value", "stdout"), [("ON", "done\n"), ("no", ""), ("", "")])
def test_mock_switch_spellings(
    done_flow: Path, cli: Callable, monkeypatch: pytest.MonkeyPatch, value: str, stdout: str
) -> None:
    """ORCHESTRATE_MOCK=ON runs offline; `no` and empty are off (no key: exit 2)."""
    monkeypatch.setenv("ORCHESTRATE_MOCK", value)
    result = cli("run", done_flow)
    assert (result.stdout, result.exit_code) == (stdout, 0 if stdout else 2)


@pytest.mark.parametrize(
    ("args", "hinted"), [([], True), (["--no-history"], False), (["-q"], False)]
)
def test_a_failed_recorded_run_says_how_to_resume(
    write_flow: Callable, cli: Callable, args: list[str], hinted: bool
) -> None:
    """A failed run recorded in the history ends with `resume with: ... --resume ID`."""
    flow = write_flow("""
        steps:
          - id: a
            prompt: x
            output: json
            mock: '{"title": "Tides"}'
          - id: b
            prompt: "{{ steps.a.output.titel }}"
        """)
    result = cli("run", flow, "--mock", "--json", *args)
    run_id = json.loads(result.stdout)["run_id"]
    hint = f"resume with: orchestrate run {flow} --resume {run_id}\n"
    assert result.exit_code == 1
    assert (hint in result.stderr) is hinted


# --- secrets in errors --------------------------------------------------------------------

LEAKY_KEY = "0f3a9c1e5b2d4f60a7c8e9d0b1a2c3d4e5f60718"


@pytest.mark.parametrize(
    ("variable", "leaked"),
    [
        pytest.param("AZURE_CRED", LEAKY_KEY, id="read-by-a-header"),  # not a key-like name
        pytest.param("BILLING_API_KEY", LEAKY_KEY, id="key-like-name"),
        pytest.param("UNRELATED", "sk-live-" + LEAKY_KEY, id="sk-shaped"),
        pytest.param("UNRELATED", f"http://me:{LEAKY_KEY}@db.local/x", id="url-password"),
    ],
)
def test_function_errors_are_redacted_everywhere(
    variable: str,
    leaked: str,
    write_flow: Callable,
    cli: Callable,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A function's exception quoting a key reaches no stream, event, document or file."""
    monkeypatch.setenv(variable, leaked)
    write_flow(
        f"""
        import os

        def leak():
            raise RuntimeError("cannot log in with " + os.environ[{variable!r}])
        """,
        "leaky.py",
    )
    flow = write_flow("""
        providers:
          azure:
            type: openai
            base_url: https://example.openai.azure.com/openai
            headers: {api-key: "${AZURE_CRED}"}
        steps:
          - id: boom
            function: leaky:leak
        """)
    events = tmp_path / "events.jsonl"
    result = cli("run", flow, "--mock", "--json", "--events", events, "--verbose")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["message"].startswith("leaky:leak raised")
    home = tmp_path / "home"
    texts = {"stdout": result.stdout, "stderr": result.stderr, "events": events.read_text()}
    texts |= {
        str(p): p.read_bytes().decode("utf-8", "replace") for p in home.rglob("*") if p.is_file()
    }
    assert [name for name, text in texts.items() if LEAKY_KEY in text] == []
    assert "[REDACTED]" in result.stdout and "[REDACTED]" in texts["events"]


# --- start-up -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["run"], ["batch", "--data", "rows.jsonl"]])
def test_garbage_collection_is_off_for_start_up_only(
    write_flow: Callable, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """main() skips garbage collection while the command starts; the steps of a run or a
    batch, and what follows them, run with it on again."""
    import gc
    import sys

    from orchestrate import __main__

    probe = write_flow(
        """
        import gc
        from pathlib import Path

        def collecting() -> None:
            Path(__file__).with_name("seen.txt").write_text(str(gc.isenabled()))
        """,
        "probe.py",
    )
    (probe.parent / "rows.jsonl").write_text('{"n": 1}\n', encoding="utf-8")
    flow = write_flow("steps: [{id: probe, function: 'probe:collecting'}]")
    monkeypatch.chdir(probe.parent)
    monkeypatch.setattr(
        sys, "argv", ["orchestrate", command[0], str(flow), *command[1:], "-q", "--no-history"]
    )
    try:
        with pytest.raises(SystemExit) as exited:
            __main__.main()
        after = gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()
    seen = (probe.parent / "seen.txt").read_text()
    assert (exited.value.code, seen, after) == (0, "True", True)


# --- what function steps print ------------------------------------------------------------------

LOUD = """
    import sys

    def shout():
        print("before\\x1b]52;c;aGk=\\x07\\x1b[2Jafter")
        return "done"
    """


def run_with_stderr_on_a_terminal(*args: str | Path) -> tuple[str, str]:
    """`python -m orchestrate ARGS` with stderr on a pseudo-terminal: (stdout, stderr)."""
    import pty

    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "orchestrate", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    ) as process:
        os.close(follower)
        seen = b""
        with contextlib.suppress(OSError):  # EIO once the process has closed its end
            while chunk := os.read(leader, 4096):
                seen += chunk
        stdout = process.stdout.read() if process.stdout else ""
    os.close(leader)
    return stdout, seen.decode()


@pytest.mark.parametrize("terminal", [True, False])
def test_what_a_function_prints_is_escaped_on_a_terminal(
    write_flow: Callable, cli: Callable, tmp_path: Path, terminal: bool
) -> None:
    """A function step's print() goes to stderr: its control characters (a clipboard write,
    a screen clear) are shown as escapes on a terminal, and left byte-exact off one."""
    (tmp_path / "loud.py").write_text(textwrap.dedent(LOUD))
    flow = write_flow("steps:\n  - {id: a, function: 'loud:shout'}\n")
    if terminal:
        stdout, stderr = run_with_stderr_on_a_terminal("run", flow, "-q", "--no-history")
        assert "before\\x1b]52;c;aGk=\\x07\\x1b[2Jafter" in stderr
        assert "\x1b" not in stderr
    else:
        result = cli("run", flow, "-q", "--no-history")
        stdout, stderr = result.stdout, result.stderr
        assert "before\x1b]52;c;aGk=\x07\x1b[2Jafter\n" in stderr
    assert stdout == "done\n"
