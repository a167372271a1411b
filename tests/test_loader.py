"""The loader: strict types, positions for every key and value, and the file's limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrate import _loader
from orchestrate._loader import load_text
from orchestrate._spec import (
    NO_DEFAULT,
    Defaults,
    FunctionStep,
    LLMStep,
    WorkflowStep,
)


def load(text: str):
    return load_text(text, "flow.yaml", Path("flow.yaml"))


FULL = """\
version: 1
name: digest
description: Summarize
inputs:
  article: {type: string, description: The text}
  language: {default: French}
defaults: {model: gpt-4o, temperature: 0.2, max_tokens: 800, timeout: 120, retries: 2}
steps:
  - id: summarize
    system: Be brief.
    prompt: "{{ inputs.article }}"
  - id: translate
    model: gpt-4o-mini
    prompt: "{{ steps.summarize.output }}"
    when: inputs.language != "English"
  - id: count
    function: tools:count
    with: {text: "{{ steps.summarize.output }}"}
  - id: review
    workflow: ./review.yaml
    with: {text: x}
    on_error: continue
    needs: count
outputs:
  summary: "{{ steps.summarize.output }}"
"""


def test_a_full_workflow_builds_the_spec_classes() -> None:
    """Every part of the format lands in its class, with defaults filled in."""
    result = load(FULL)
    assert result.diagnostics == []
    workflow = result.workflow
    assert workflow.name == "digest"
    assert workflow.inputs["article"].required
    assert workflow.inputs["language"].default == "French"
    assert workflow.defaults == Defaults(
        model="gpt-4o", temperature=0.2, max_tokens=800, timeout=120.0, retries=2
    )
    summarize, translate, count, review = workflow.steps
    assert isinstance(summarize, LLMStep) and summarize.system == "Be brief."
    assert translate.settings.model == "gpt-4o-mini"
    assert isinstance(count, FunctionStep)
    assert count.with_ == {"text": "{{ steps.summarize.output }}"}
    assert isinstance(review, WorkflowStep) and review.needs == ("count",)
    assert review.on_error == "continue"
    assert workflow.outputs == {"summary": "{{ steps.summarize.output }}"}


def test_name_defaults_to_the_file_stem() -> None:
    """Without `name`, a workflow is named after its file."""
    assert load("steps: [{id: a, prompt: x}]").workflow.name == "flow"


def test_input_without_default_is_required() -> None:
    """An input with no `default` key is required; `default: null` is a default."""
    text = "inputs: {a: {}, b: {default: null}}\nsteps: [{id: s, prompt: x}]"
    inputs = load(text).workflow.inputs
    assert inputs["a"].default is NO_DEFAULT
    assert inputs["b"].default is None and not inputs["b"].required


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"false"', "expected true or false, got a string ('false')"),
        ("1", "expected true or false, got an integer (1)"),
        ("yes", "expected true or false, got a string ('yes')"),
    ],
)
def test_booleans_are_not_coerced(value: str, message: str) -> None:
    """cattrs would turn "false" into True; our hooks report a wrong type instead."""
    result = load(f"defaults: {{cache: {value}}}\nsteps: [{{id: a, prompt: x}}]")
    assert [d.message for d in result.diagnostics] == [message]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("retries: 1.9", "expected an integer, got a number (1.9)"),
        ("retries: true", "expected an integer, got a boolean"),
        ("retries: '3'", "expected an integer, got a string ('3')"),
        ("temperature: hot", "expected a number, got a string ('hot')"),
        ("temperature: false", "expected a number, got a boolean"),
        ("model: 3", "expected a string, got an integer (3)"),
        ("model: [a]", "expected a string, got a list"),
    ],
)
def test_numbers_and_strings_are_not_coerced(setting: str, message: str) -> None:
    """1.9 is not an integer and 3 is not a string: each is a located type error."""
    result = load(f"steps:\n  - id: a\n    prompt: x\n    {setting}\n")
    assert [(d.line, d.message) for d in result.diagnostics] == [(4, message)]


def test_integers_are_accepted_for_numbers() -> None:
    """`temperature: 1` is a fine number."""
    result = load("defaults: {temperature: 1}\nsteps: [{id: a, prompt: x}]")
    assert result.diagnostics == []
    assert result.workflow.defaults.temperature == 1.0


def test_positions_point_at_key_value_and_mapping() -> None:
    """Unknown keys point at the key, wrong types at the value, missing fields at the mapping."""
    result = load("steps:\n  - prompt: x\n    retries: many\n    colour: red\n")
    found = sorted((d.line, d.column, d.message) for d in result.diagnostics)
    assert found == [
        (2, 5, "a step is missing the required key 'id'"),
        (3, 14, "expected an integer, got a string ('many')"),
        (4, 5, "unknown key 'colour' in a step"),
    ]


def test_one_broken_step_hides_no_other() -> None:
    """Problems in different steps are all reported, and good steps are still built."""
    result = load(
        "steps:\n  - {id: a, prompt: x, retries: x}\n  - {id: b, promt: y}\n"
        "  - {id: c, prompt: z}\n"
    )
    assert len(result.diagnostics) == 2
    assert [s.id for s in result.workflow.steps] == ["c"]
    assert result.broken_steps == {"a", "b"}


def test_when_accepts_a_yaml_boolean() -> None:
    """`when: false` reads like GitHub Actions' `if: false`."""
    result = load("steps: [{id: a, prompt: x, when: false}]")
    assert result.workflow.steps[0].when == "false"


def test_needs_accepts_a_single_id() -> None:
    """`needs: a` is read as `needs: [a]`."""
    result = load("steps: [{id: a, prompt: x}, {id: b, prompt: y, needs: a}]")
    assert result.workflow.steps[1].needs == ("a",)


def test_recursive_alias_is_bounded() -> None:
    """A self-referencing alias does not hang the loader."""
    result = load("a: &a [*a]\nsteps: [{id: s, prompt: x}]\n")
    assert result.diagnostics[0].message == "unknown key 'a' in the workflow"


def test_merge_keys_are_located_where_the_value_is_written() -> None:
    """A bad value merged in with `<<: *anchor` points at the anchor's text."""
    result = load(
        "x-shared: &shared\n  temperature: hot\nsteps:\n"
        "  - id: a\n    <<: *shared\n    prompt: hi\n"
    )
    assert [(d.line, d.column, d.message) for d in result.diagnostics] == [
        (2, 16, "expected a number, got a string ('hot')"),
    ]


def test_extension_keys_hold_anchors() -> None:
    """Top-level `x-` keys are free for anchors and are otherwise ignored."""
    result = load("x-defaults: &d {model: gpt-4o}\nsteps:\n  - {id: a, prompt: x, <<: *d}\n")
    assert result.diagnostics == []
    assert result.workflow.steps[0].settings.model == "gpt-4o"


def test_duplicate_keys_do_not_hide_other_problems() -> None:
    """Every duplicate key is reported, and the rest of the file is still checked."""
    result = load(
        "steps:\n  - id: a\n    prompt: one\n    prompt: two\n"
        "  - id: b\n    promt: x\n    model: m\n    model: n\n"
    )
    assert [(d.line, d.column, d.message) for d in result.diagnostics] == [
        (4, 5, "duplicate key 'prompt'"),
        (8, 5, "duplicate key 'model'"),
        (6, 5, "unknown key 'promt' in a step"),
    ]


def test_too_many_values_is_not_called_an_alias_bomb(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file past the node limit without aliases says so, at the value past the limit."""
    monkeypatch.setattr(_loader, "MAX_NODES", 100)
    text = "x-data:\n" + "  - 1\n" * 120 + "steps: [{id: a, prompt: x}]\n"
    result = load(text)
    assert [(d.line, d.column, d.message) for d in result.diagnostics] == [
        (100, 5, "the file holds more than 100 values, past the limit"),
    ]
    assert result.workflow is None


def test_aliases_past_the_node_limit_are_an_alias_bomb(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the limit as written but past it once aliases are expanded: an alias bomb."""
    monkeypatch.setattr(_loader, "MAX_NODES", 100)
    text = "x-a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nx-b: [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    result = load(text + "steps: [{id: a, prompt: x}]\n")
    assert [d.message for d in result.diagnostics] == [
        "the file expands to more than 100 nodes through its aliases"
    ]


def test_the_node_limit_stops_reading_before_building_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the node limit no YAML value is built: the file is refused while being read."""
    from ruamel.yaml.constructor import RoundTripConstructor

    def no_building(*args: object) -> None:
        raise AssertionError("a value was built")

    monkeypatch.setattr(_loader, "MAX_NODES", 100)
    monkeypatch.setattr(RoundTripConstructor, "construct_document", no_building)
    result = load("x-data:\n" + "  - 1\n" * 101)
    assert "more than 100 values" in result.diagnostics[0].message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("inputs:\n  a:\n", (2, 3, "input 'a' has no settings (its value is empty)")),
        ("providers: {p:}\n", (1, 13, "provider 'p' has no settings (its value is empty)")),
    ],
)
def test_an_empty_input_or_provider_is_one_problem(text: str, expected: tuple) -> None:
    """`a:` with no value is one located problem, and `inputs.a` is not also unknown."""
    result = load(text + "steps: [{id: s, prompt: '{{ inputs.a }}'}]\n")
    assert [(d.line, d.column, d.message) for d in result.diagnostics] == [expected]
    assert "a" in result.broken_inputs or "providers" in text


LOCATED_PATHS = [
    (("steps", 0, "id"), "value"),
    (("steps", 1, "prompt"), "value"),
    (("steps", 1, "when"), "key"),
    (("steps", 2), "node"),
    (("defaults", "model"), "value"),
    (("inputs", "language"), "key"),
]


def test_a_valid_file_is_read_fast_and_located_as_the_round_trip_tree_would() -> None:
    """libyaml reads a valid file; its positions, computed when first asked, are exact."""
    fast = load(FULL)
    assert not fast.diagnostics and not hasattr(fast.source.root, "lc")  # the fast path
    located = _loader.SourceMap("flow.yaml", _loader._parse_yaml(FULL)[0], FULL)
    for path, at in LOCATED_PATHS:
        assert fast.source.locate(path, at) == located.locate(path, at)


@pytest.mark.parametrize(
    "text",
    [
        "x-a: &a {model: m}\ndefaults:\n  <<: *a\nsteps:\n  - {id: a, prompt: hi}\n",  # merge
        "%YAML 1.2\n---\nsteps:\n  - {id: a, prompt: hi}\n",  # a directive
        "steps:\n  - {id: a, prompt: !!set {hi}}\n",  # a type the round-trip tree has not
    ],
)
def test_what_libyaml_reads_otherwise_takes_the_round_trip_path(text: str) -> None:
    """Merge keys, directives and unusual types are read by the round-trip parser."""
    assert _loader._parse_fast(text) is None
    assert hasattr(load(text).source.root, "lc")


def test_a_large_file_takes_the_round_trip_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past FAST_PATH_CHARS the file is read the slow way, which stops at the node limit."""
    text = "steps:\n  - {id: a, prompt: hi}\n"
    assert _loader._parse_fast(text) is not None
    monkeypatch.setattr(_loader, "FAST_PATH_CHARS", len(text) - 1)
    assert _loader._parse_fast(text) is None
