"""Checks (SPEC 9) after `run`: every kind passing and failing, errors, the judge, exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrate import run_workflow

FLOW = """
inputs:
  city: {{}}
outputs:
  answer: "{{{{ steps.answer.output }}}}"
  data: "{{{{ steps.data.output }}}}"
steps:
  - id: answer
    prompt: "Name the capital city {{{{ inputs.city }}}}"
    mock: "The capital is Paris."
  - id: data
    prompt: "As JSON"
    output: json
    mock: '{{"total": 3}}'
checks:
  - id: the_check
{check}
"""

CHECKS = """
def score(text):
    return 0.8 if "Paris" in text else 0.2

def verdict(text):
    return "Paris" in text

def detailed(text):
    return {"score": 0.1, "message": "far too short"}

def broken(text):
    raise ValueError("no luck")

def nonsense(text):
    return "maybe"
"""

# (the check's YAML, whether it passes, its score, its message)
CASES: list[tuple[str, bool, float | None, str | None]] = [
    ("expect: outputs.answer | length > 0", True, None, None),
    ("expect: outputs.data.total == 4", False, None, "`outputs.data.total == 4` is false"),
    ("expect: steps.answer.status == 'succeeded'", True, None, None),
    ("{output: data, schema: {type: object, required: [total]}}", True, None, None),
    (
        "{output: data, schema: {type: object, required: [sum]}}",
        False,
        None,
        "the output 'data' does not match the schema at $: 'sum' is a required property",
    ),
    ("{output: answer, contains: '{{ inputs.city }}'}", True, None, None),
    (
        "{output: answer, contains: Rome}",
        False,
        None,
        'output \'answer\' does not contain "Rome": "The capital is Paris."',
    ),
    ("{output: answer, icontains: 'THE CAPITAL'}", True, None, None),
    (
        "{output: answer, icontains: rome}",
        False,
        None,
        'output \'answer\' does not contain "rome" (ignoring case): "The capital is Paris."',
    ),
    ("{output: answer, regex: 'capital is [A-Z]\\w+'}", True, None, None),
    (
        "{output: answer, regex: '^Paris'}",
        False,
        None,
        "output 'answer' does not match /^Paris/: \"The capital is Paris.\"",
    ),
    ("{output: answer, equals: '  The capital is Paris.\n'}", True, None, None),
    ("{output: data, equals: {total: 3}}", True, None, None),
    (
        "{output: data, equals: '{\"total\": 3}'}",
        False,
        None,
        'output \'data\' is {"total": 3}, not "{\\"total\\": 3}"',
    ),
    ("{function: 'checks:score', with: {text: '{{ outputs.answer }}'}}", True, 0.8, None),
    (
        "{function: 'checks:score', with: {text: x}, threshold: 0.3}",
        False,
        0.2,
        "score 0.2 is below the threshold 0.3",
    ),
    ("{function: 'checks:verdict', with: {text: '{{ outputs.answer }}'}}", True, None, None),
    ("{function: 'checks:detailed', with: {text: x}}", False, 0.1, "far too short"),
    (
        "{output: answer, judge: {rubric: 'Names {{ inputs.city }}'}}",
        True,
        1.0,
        "the mock judge passes every output",
    ),
    (
        "{output: answer, judge: {rubric: Polite, threshold: 0.7},"
        ' mock: \'{"score": 0.4, "reason": "curt"}\'}',
        False,
        0.4,
        "curt",
    ),
]


@pytest.fixture
def checked(write_flow: Callable[..., Path]) -> Callable[[str], dict[str, Any]]:
    """Run a workflow with one check under the mock; the check's result."""

    def run(check: str) -> dict[str, Any]:
        write_flow(CHECKS, "checks.py")
        flow = write_flow(
            FLOW.format(check=f"    {check}" if not check.startswith("{") else f"    <<: {check}")
        )
        result = run_workflow(flow, {"city": "Paris"}, mock=True)
        assert result.status == "succeeded"
        (only,) = result.checks
        return only.to_dict()

    return run


@pytest.mark.parametrize(
    ("check", "passed", "score", "message"),
    CASES,
    ids=[f"{i}-{c[:30]}" for i, (c, *_) in enumerate(CASES)],
)
def test_every_kind_passes_and_fails(
    checked: Callable, check: str, passed: bool, score: float | None, message: str | None
) -> None:
    """Each kind of check gives the verdict, score and message its output deserves."""
    result = checked(check)
    assert (result["passed"], result["score"], result["message"]) == (passed, score, message)


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (
            "{function: 'checks:broken', with: {text: x}}",
            "error: checks:broken raised ValueError: no luck",
        ),
        (
            "{function: 'checks:nonsense', with: {text: x}}",
            'error: checks:nonsense returned "maybe"; a check function returns a bool, a score '
            "from 0 to 1, or {score, message}",
        ),
        ("expect: outputs.data.missing", "error: 'outputs.data' has no key 'missing'"),
        (
            "{output: answer, regex: '{{ \"(\" }}'}",
            "error: invalid regular expression: missing ), unterminated subpattern at position 0",
        ),
    ],
)
def test_a_check_that_errors_fails_with_the_error(
    checked: Callable, check: str, message: str
) -> None:
    """A check that cannot be evaluated fails, with the error as its message."""
    result = checked(check)
    assert (result["passed"], result["message"]) == (False, message)


def test_checks_about_the_row_are_left_out_of_a_run(
    write_flow: Callable, run_json: Callable
) -> None:
    """`row` exists only in a batch: in a run, the checks that read it are not evaluated."""
    flow = write_flow("""
        steps:
          - id: a
            prompt: x
            mock: "yes"
        checks:
          - id: labelled
            expect: outputs.a == row.expected
          - id: said_yes
            equals: "yes"
        """)
    code, doc = run_json(flow)
    assert (code, [c["id"] for c in doc["checks"]]) == (0, ["said_yes"])


def test_checks_are_skipped_when_the_run_fails(write_flow: Callable, run_json: Callable) -> None:
    """A run that failed gets no checks: they would grade outputs it does not have."""
    write_flow("def boom():\n    raise RuntimeError('x')\n", "tools.py")
    flow = write_flow("""
        steps:
          - id: a
            function: tools:boom
        checks:
          - id: never
            expect: "false"
        """)
    code, doc = run_json(flow)
    assert (code, doc["status"], doc["checks"]) == (1, "failed", [])


@pytest.fixture
def two_checks(write_flow: Callable) -> Path:
    return write_flow("""
        steps:
          - id: answer
            prompt: hi
            mock: "Bonjour"
        checks:
          - id: greets
            icontains: bonjour
          - id: english
            contains: Hello
        """)


def test_a_failing_check_is_exit_1_and_the_run_stays_succeeded(
    two_checks: Path, run_json: Callable
) -> None:
    """Exit 1, status succeeded, and both results in the document."""
    code, doc = run_json(two_checks)
    assert (code, doc["status"]) == (1, "succeeded")
    assert [(c["id"], c["passed"]) for c in doc["checks"]] == [("greets", True), ("english", False)]


def test_no_checks_skips_them(two_checks: Path, run_json: Callable) -> None:
    """--no-checks: no checks run, exit 0."""
    code, doc = run_json(two_checks, "--no-checks")
    assert (code, doc["checks"]) == (0, [])


def test_the_terminal_shows_each_check(two_checks: Path, cli: Callable) -> None:
    """✓/✗ with the message on stderr; stdout keeps only the output."""
    result = cli("run", two_checks, "--mock")
    assert result.stdout == "Bonjour\n"
    assert "✓ greets\n" in result.stderr
    assert '✗ english: output \'answer\' does not contain "Hello": "Bonjour"\n' in result.stderr
    assert "checks: 1 passed, 1 failed\n" in result.stderr


def test_quiet_shows_only_the_failed_checks(two_checks: Path, cli: Callable) -> None:
    """-q keeps the failures (they explain the exit code) and drops the rest."""
    result = cli("run", two_checks, "--mock", "-q")
    assert "greets" not in result.stderr
    assert "✗ english" in result.stderr


def test_runs_show_includes_the_checks(two_checks: Path, cli: Callable) -> None:
    """The history keeps the checks: `runs show --json` gives them back as run printed them."""
    printed = json.loads(cli("run", two_checks, "--mock", "--json").stdout)
    shown = json.loads(cli("runs", "show", printed["run_id"], "--json").stdout)
    assert shown["checks"] == printed["checks"]


# --- the judge through a real provider (respx) ---------------------------------------------------

JUDGED = """
outputs:
  answer: "{{ steps.answer.output }}"
steps:
  - id: answer
    prompt: "Greet me"
checks:
  - id: polite
    judge:
      rubric: The reply is polite.
      model: gpt-4o-mini
      threshold: 0.7
"""


def _chat(text: str, tokens: tuple[int, int] = (10, 5)) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-1",
            "model": "gpt-4o-mini",
            "usage": {"prompt_tokens": tokens[0], "completion_tokens": tokens[1]},
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ],
        },
    )


def test_the_judge_asks_for_structured_output_and_counts_its_usage(
    write_flow: Callable, respx_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The judge's request carries the verdict's JSON Schema; its reply gives the score and
    reason; its tokens count in the run's usage and cost."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-1234567890abcdef")
    route = respx_mock.post("https://api.openai.com/v1/chat/completions").mock(
        side_effect=[
            _chat("Hello, dear friend!", (10, 5)),
            _chat('{"score": 0.9, "reason": "warm and courteous"}', (100, 20)),
        ]
    )
    result = run_workflow(write_flow(JUDGED), mock=False)
    judged = json.loads(route.calls[1].request.content)
    assert judged["response_format"]["type"] == "json_schema"
    assert judged["response_format"]["json_schema"]["schema"]["required"] == ["score", "reason"]
    assert "The reply is polite." in judged["messages"][1]["content"]
    assert "Hello, dear friend!" in judged["messages"][1]["content"]
    assert [c.to_dict() for c in result.checks] == [
        {
            "id": "polite",
            "passed": True,
            "score": 0.9,
            "message": "warm and courteous",
            "usage": {"input_tokens": 100, "output_tokens": 20},
            "cost_usd": result.checks[0].cost_usd,
        }
    ]
    assert (result.usage.input_tokens, result.usage.output_tokens) == (110, 25)
    assert result.cost_usd is not None and result.cost_usd > result.steps[0].cost_usd


def test_a_judge_reply_that_is_not_a_verdict_fails_the_check(
    write_flow: Callable, respx_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A score outside 0..1 is an error of the check, not a crash of the run."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-1234567890abcdef")
    respx_mock.post("https://api.openai.com/v1/chat/completions").mock(
        side_effect=[_chat("Hi"), _chat('{"score": 7, "reason": "great"}')]
    )
    result = run_workflow(write_flow(JUDGED), mock=False)
    (check,) = result.checks
    assert result.status == "succeeded" and not check.passed
    assert check.message == (
        "error: the judge's reply does not match the schema at $.score: "
        "7 is greater than the maximum of 1"
    )


def test_a_judge_is_retried_on_a_server_error(
    write_flow: Callable, respx_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The judge's call goes through the provider's retries like a step's."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-1234567890abcdef")
    respx_mock.post("https://api.openai.com/v1/chat/completions").mock(
        side_effect=[_chat("Hi"), httpx.Response(503), _chat('{"score": 1, "reason": "fine"}')]
    )
    result = run_workflow(write_flow(JUDGED), mock=False)
    assert [c.passed for c in result.checks] == [True]
