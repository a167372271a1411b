"""`orchestrate graph`: dependencies as a tree, Mermaid, dot and JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrate._plan import CycleError, build_plan
from orchestrate._validate import load_workflow

FLOW = """
steps:
  - id: summarize
    prompt: "{{ inputs.text }}"
  - id: keywords
    prompt: "{{ steps.summarize.output }}"
  - id: translate
    prompt: "{{ steps.summarize.output }}"
  - id: report
    prompt: "{{ steps.translate.output }} {{ steps.keywords.output }}"
  - id: count
    function: tools:count
    needs: [report]
inputs:
  text: {}
"""


@pytest.fixture
def flow(write_flow: Callable) -> Path:
    return write_flow(FLOW)


def test_graph_json_nodes_and_edges(cli: Callable, flow: Path) -> None:
    """--json lists nodes in file order and edges a -> b where b depends on a."""
    result = cli("graph", flow, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "nodes": [
            {"id": "summarize", "kind": "llm"},
            {"id": "keywords", "kind": "llm"},
            {"id": "translate", "kind": "llm"},
            {"id": "report", "kind": "llm"},
            {"id": "count", "kind": "function"},
        ],
        "edges": [
            {"from": "summarize", "to": "keywords"},
            {"from": "summarize", "to": "translate"},
            {"from": "keywords", "to": "report"},
            {"from": "translate", "to": "report"},
            {"from": "report", "to": "count"},
        ],
    }


def test_graph_mermaid(cli: Callable, flow: Path) -> None:
    """--format mermaid prints a flowchart with one arrow per dependency."""
    result = cli("graph", flow, "--format", "mermaid")
    assert result.stdout.startswith("flowchart TD\n")
    assert "    s_summarize --> s_keywords\n" in result.stdout
    assert '    s_count["count (function)"]\n' in result.stdout


def test_graph_mermaid_prefixes_node_ids_so_keywords_work(
    cli: Callable, write_flow: Callable
) -> None:
    """A step named `end` (a Mermaid keyword) gets a prefixed node id and keeps its label."""
    path = write_flow("""
        steps:
          - id: start
            prompt: "go"
          - id: end
            prompt: "{{ steps.start.output }}"
        """)
    result = cli("graph", path, "--format", "mermaid")
    assert result.exit_code == 0
    assert result.stdout == (
        'flowchart TD\n    s_start["start (llm)"]\n    s_end["end (llm)"]\n    s_start --> s_end\n'
    )


def test_graph_dot(cli: Callable, flow: Path) -> None:
    """--format dot prints a Graphviz digraph."""
    result = cli("graph", flow, "--format", "dot")
    assert result.stdout.startswith('digraph "flow" {')
    assert '    "report" -> "count";\n' in result.stdout


def test_graph_tree_shows_dependents_under_each_step(cli: Callable, flow: Path) -> None:
    """The default tree nests each step under what it depends on, once."""
    result = cli("graph", flow)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "flow"
    assert any("summarize (llm)" in line for line in lines)
    assert sum("report (llm)" in line for line in lines) == 1
    assert any("report (see above)" in line for line in lines)


def test_plan_order_uses_file_order_as_tie_breaker(flow: Path) -> None:
    """Steps come in dependency order, and in file order when free to choose."""
    plan = build_plan(load_workflow(flow))
    assert plan.order == ("summarize", "keywords", "translate", "report", "count")


def test_cycle_is_named(write_flow: Callable) -> None:
    """A cycle error lists the cycle in data-flow order."""
    from orchestrate._loader import load_file

    path = write_flow("""
        steps:
          - id: a
            prompt: "{{ steps.b.output }}"
          - id: b
            prompt: "{{ steps.a.output }}"
        """)
    workflow = load_file(path).workflow
    with pytest.raises(CycleError) as caught:
        build_plan(workflow)
    assert caught.value.cycle in (["a", "b", "a"], ["b", "a", "b"])


def test_graph_of_invalid_file_exits_2(cli: Callable, write_flow: Callable) -> None:
    """graph validates first."""
    path = write_flow("steps: 3\n")
    result = cli("graph", path)
    assert result.exit_code == 2
    assert "expected a list of steps" in result.stderr


def test_graph_json_of_an_invalid_file_is_still_a_document(
    cli: Callable, write_flow: Callable
) -> None:
    """--json on a broken file prints empty nodes and edges with the diagnostics, exit 2."""
    path = write_flow(
        "steps: [{id: a, prompt: '{{ steps.b.output }}'}, {id: b, prompt: '{{ steps.a.output }}'}]"
    )
    result = cli("graph", path, "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert (doc["nodes"], doc["edges"]) == ([], [])
    assert doc["diagnostics"][0]["message"].startswith("dependency cycle:")


def test_graph_of_an_empty_path(cli: Callable) -> None:
    """`graph ''` is exit 2 naming the argument, not an attempt to read the current folder."""
    result = cli("graph", "")
    assert result.exit_code == 2
    assert "error: FLOW must not be empty" in result.stderr


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("tree", ["a (llm)", "b (llm) [when]", "c (llm) [when] [for_each]"]),
        (
            "mermaid",
            ['s_a["a (llm)"]', 's_b["b (llm) [when]"]', 's_c["c (llm) [when] [for_each]"]'],
        ),
        (
            "dot",
            [
                '"a" [label="a (llm)"];',
                '"b" [label="b (llm) [when]"];',
                '"c" [label="c (llm) [when] [for_each]"];',
            ],
        ),
    ],
)
def test_graph_marks_conditional_and_per_item_steps(
    cli: Callable, write_flow: Callable, fmt: str, expected: list[str]
) -> None:
    """Every format marks a step with `when` and one with `for_each`; a plain step has no mark."""
    path = write_flow("""
        steps:
          - id: a
            prompt: x
          - id: b
            when: steps.a.output == "x"
            prompt: "{{ steps.a.output }}"
          - id: c
            when: "true"
            for_each: range(3)
            prompt: "{{ item }} {{ steps.b.output }}"
        """)
    lines = [line.strip(" └─│") for line in cli("graph", path, "-f", fmt).stdout.splitlines()]
    assert [line for line in lines if line in expected] == expected


@pytest.mark.parametrize(
    "command", [["validate"], ["graph"], ["graph", "--json"], ["run", "--mock", "--json"]]
)
def test_only_run_executes_function_modules(
    command: list[str], write_flow: Callable, cli: Callable, tmp_path: Path
) -> None:
    """`validate` and `graph` run no user code; `run` imports function modules, --mock too
    (docs/security.md)."""
    marker = tmp_path / "imported"
    write_flow(
        f"open({str(marker)!r}, 'w').close()\n\ndef hello():\n    return 'hi'\n", "side_effect.py"
    )
    flow = write_flow("steps: [{id: a, function: 'side_effect:hello'}]\n")
    result = cli(command[0], flow, *command[1:])
    assert result.exit_code == 0, result.stderr
    assert marker.exists() is (command[0] == "run")
