"""`orchestrate estimate`: calls, tokens and a cost range per step, without a model call."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrate import _estimate

CHAIN = """
inputs:
  article: {}
defaults: {model: gpt-4o, max_tokens: 400}
steps:
  - id: summarize
    prompt: "Summarize: {{ inputs.article }}"
  - id: keywords
    prompt: "Keywords for: {{ steps.summarize.output }}"
    max_tokens: 40
  - id: tally
    function: tools:count
    with: {text: "{{ steps.keywords.output }}"}
"""
FOR_EACH = """
inputs:
  topics: {type: array, default: [a, b, c]}
defaults: {model: gpt-4o-mini, max_tokens: 50}
steps:
  - id: list
    prompt: "Name topics"
    output: json
  - id: known
    for_each: inputs.topics
    prompt: "Define {{ item }}"
  - id: unknown
    for_each: steps.list.output.topics
    prompt: "Define {{ item }}"
"""


@pytest.fixture(autouse=True)
def _approximate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Characters / 4, whether or not a tokenizer is installed, so counts are exact here."""
    monkeypatch.setattr(
        _estimate, "token_counter", lambda: (lambda text: math.ceil(len(text) / 4), "approximate")
    )


@pytest.fixture
def estimate(
    cli: Callable, write_flow: Callable, respx_mock: Any, tmp_path: Path
) -> Callable[..., Any]:
    """`orchestrate estimate FLOW --json ARGS`, with every HTTP request refused."""
    (tmp_path / "tools.py").write_text("def count(text):\n    return len(text)\n")

    def run(text: str, *args: str) -> dict[str, Any]:
        flow = write_flow(text)
        result = cli("estimate", flow, "--json", *args)
        assert result.exit_code == 0, result.stderr
        assert not respx_mock.calls
        return json.loads(result.stdout)

    return run


def test_a_chain_counts_known_inputs_and_upstream_replies(estimate: Callable) -> None:
    """Rendered prompts with the given inputs; a step's output counts its reply tokens."""
    doc = estimate(CHAIN, "-i", "article=" + "x" * 400)
    summarize, keywords = doc["steps"]
    assert [s["id"] for s in doc["steps"]] == ["summarize", "keywords"]  # LLM steps only
    assert summarize["input_tokens"] == {"low": 103, "high": 103}  # 411 characters
    assert summarize["output_tokens"] == {"low": 100, "high": 400}
    assert keywords["input_tokens"] == {"low": 4 + 100, "high": 4 + 400}
    assert keywords["output_tokens"] == {"low": 40, "high": 40}
    low = (103 * 2.5 + 100 * 10) * 1e-6
    high = (103 * 2.5 + 400 * 10) * 1e-6
    assert summarize["cost_usd"] == {"low": round(low, 8), "high": round(high, 8)}
    total = doc["total"]
    assert total["calls"] == 2 and total["rows"] == 1
    assert total["input_tokens"] == {"low": 207, "high": 507}
    assert doc["tokenizer"] == "approximate"


def test_an_input_not_given_is_named_in_the_notes(estimate: Callable) -> None:
    """Without the input, its text counts 0 tokens and a note says so."""
    doc = estimate(CHAIN)
    assert doc["steps"][0]["input_tokens"] == {"low": 3, "high": 3}
    assert "inputs not given count 0 tokens: article" in doc["notes"]


def test_a_for_each_counts_its_items(estimate: Callable) -> None:
    """A list the inputs give counts its items; one known only at run time counts --items
    (10 by default, said in the notes)."""
    doc = estimate(FOR_EACH)
    calls = {s["id"]: s["calls"] for s in doc["steps"]}
    assert calls == {"list": 1, "known": 3, "unknown": 10}
    assert doc["total"]["calls"] == 14
    assert any("counts 10 items" in note for note in doc["notes"])
    assert estimate(FOR_EACH, "--items", "4")["total"]["calls"] == 8
    known = next(s for s in doc["steps"] if s["id"] == "known")
    assert known["output_tokens"] == {"low": 150, "high": 150}


@pytest.mark.parametrize(
    ("name", "text", "rows"),
    [
        ("rows.jsonl", '{"a": 1}\n\n{"a": 2}\n{"a": 3}\n', 3),
        ("rows.json", '[{"a": 1}, {"a": 2}]', 2),
        ("rows.csv", 'a,b\n1,"two\nlines"\n3,4\n', 2),
        # read as `batch` reads them: blank and all-empty CSV lines are no rows
        ("rows.csv", "a,b\n1,2\n\n,\n3,4\n", 2),
        ("rows.ndjson", '{"a": 1}\n   \n\r\n{"a": 2}\n', 2),
    ],
)
def test_data_multiplies_the_total_by_its_rows(
    estimate: Callable, tmp_path: Path, name: str, text: str, rows: int
) -> None:
    """--data: the total is one run's times the rows of the dataset."""
    data = tmp_path / name
    data.write_text(text)
    one = estimate(FOR_EACH)["total"]
    doc = estimate(FOR_EACH, "--data", str(data))
    assert doc["total"]["rows"] == rows
    assert doc["total"]["calls"] == one["calls"] * rows
    assert doc["total"]["cost_usd"]["high"] == pytest.approx(
        one["cost_usd"]["high"] * rows, abs=1e-8
    )


def test_an_unknown_price_makes_the_cost_unknown(estimate: Callable) -> None:
    """A model without a price: its step's and the total's cost are null, with a note."""
    doc = estimate("steps:\n  - {id: a, model: my-local, prompt: hi}\n")
    assert doc["steps"][0]["cost_usd"] is None and doc["total"]["cost_usd"] is None
    assert any("'my-local'" in note for note in doc["notes"])


def test_an_unknown_price_is_noted_once_per_model(estimate: Callable) -> None:
    """Several steps on one unpriced model: one note for the model, not one per step."""
    doc = estimate(
        "steps:\n"
        + "".join(
            f"  - {{id: s{i}, model: {m}, prompt: hi}}\n"
            for i, m in enumerate(["my-local", "my-local", "x-1"])
        )
    )
    notes = [note for note in doc["notes"] if "no price known" in note]
    assert len(notes) == 2 and "'my-local'" in notes[0] and "'x-1'" in notes[1]


def test_the_table_shows_steps_total_and_the_tokenizer(cli: Callable, write_flow: Callable) -> None:
    """Without --json: a table on stdout with a total line, the tokenizer and the notes."""
    result = cli("estimate", write_flow(FOR_EACH))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "step",
        "model",
        "calls",
        "input",
        "tokens",
        "output",
        "tokens",
        "cost",
    ]
    assert lines[4].split()[:2] == ["total", "14"]
    assert "tokens: approximate" in result.stdout
    assert "set --items N" in result.stdout


def test_data_counts_the_rows_of_stdin_and_locates_a_broken_row(
    cli: Callable, write_flow: Callable, tmp_path: Path
) -> None:
    """--data - counts JSON Lines on stdin; a row a batch could not read is a located
    error (exit 2), as `batch` reports it."""
    flow = write_flow(FOR_EACH)
    piped = cli("estimate", flow, "--data", "-", "--json", input='{"a": 1}\n\n{"a": 2}\n')
    assert piped.exit_code == 0, piped.stderr
    assert json.loads(piped.stdout)["total"]["rows"] == 2
    broken = tmp_path / "rows.jsonl"
    broken.write_text('{"a": 1}\n[1]\n')
    result = cli("estimate", flow, "--data", broken)
    assert result.exit_code == 2
    assert f"{broken}:2: error: a row must be a JSON object, got an array" in result.stderr


CHILD = """
inputs:
  text: {}
  tone: {default: plain}
defaults: {model: gpt-4o, max_tokens: 200}
steps:
  - id: edit
    prompt: "Edit ({{ inputs.tone }}): {{ inputs.text }}"
  - id: note
    for_each: inputs.tags
    prompt: "Tag {{ item }}"
    max_tokens: 10
outputs:
  text: "{{ steps.edit.output }}"
"""
PARENT = """
defaults: {model: gpt-4o, max_tokens: 300}
inputs:
  tone: {default: crisp}
steps:
  - id: draft
    prompt: "Draft it"
  - id: polish
    workflow: child.yaml
    with: {text: "{{ steps.draft.output }}", tone: "{{ inputs.tone }}"}
  - id: review
    prompt: "Review: {{ steps.polish.output.text }}"
"""


def test_a_sub_workflow_counts_its_llm_steps(estimate: Callable, write_flow: Callable) -> None:
    """A `workflow:` step adds its child's LLM steps as `parent.child` rows, their prompts
    rendered with the `with:` values (a parent step's output counts its reply tokens), and
    the parent's later steps count the child's outputs."""
    write_flow(CHILD.replace("inputs.tags", "'[1, 2]'"), "child.yaml")
    doc = estimate(PARENT)
    steps = {s["id"]: s for s in doc["steps"]}
    assert list(steps) == ["draft", "polish.edit", "polish.note", "review"]
    edit = steps["polish.edit"]
    prompt = math.ceil(len("Edit (crisp): ") / 4)
    assert edit["input_tokens"] == {"low": prompt + 100, "high": prompt + 300}
    assert edit["output_tokens"] == {"low": 100, "high": 200}
    assert steps["polish.note"]["calls"] == 2
    review = math.ceil(len("Review: {{ steps.polish.output.text }}") / 4)  # as written
    assert steps["review"]["input_tokens"] == {"low": review + 100, "high": review + 200}
    assert doc["total"]["calls"] == 5
    assert not any("not estimated" in note for note in doc["notes"])


def test_a_sub_workflow_in_a_for_each_counts_each_item(
    estimate: Callable, write_flow: Callable
) -> None:
    """A `workflow:` step over a for_each runs its child's steps once per item."""
    write_flow(CHILD.replace("inputs.tags", "'[1]'"), "child.yaml")
    doc = estimate(
        PARENT.replace("workflow: child.yaml", "workflow: child.yaml\n    for_each: '[1, 2, 3]'")
    )
    calls = {s["id"]: s["calls"] for s in doc["steps"]}
    assert calls == {"draft": 1, "polish.edit": 3, "polish.note": 3, "review": 1}


def test_the_release_notes_example_counts_its_polish_pass(cli: Callable) -> None:
    """workflows/release-notes.yaml: the lib/polish.yaml steps are in the estimate."""
    result = cli(
        "estimate", Path(__file__).parent.parent / "workflows/release-notes.yaml", "--json"
    )
    assert result.exit_code == 0, result.stderr
    ids = [s["id"] for s in json.loads(result.stdout)["steps"]]
    assert ids == ["group", "draft", "polish.edit", "polish.changes"]
