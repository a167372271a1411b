"""A workflow's dependency graph as data, Mermaid and Graphviz dot (the tree is in _render)."""

from __future__ import annotations

import json
from typing import Any

from orchestrate._plan import Plan
from orchestrate._spec import AnyStep, Workflow


def graph_dict(workflow: Workflow, plan: Plan) -> dict[str, Any]:
    """`graph --json`: nodes in file order, and edges `a -> b` meaning b depends on a."""
    return {
        "nodes": [{"id": s.id, "kind": s.kind} for s in workflow.steps],
        "edges": [{"from": a, "to": b} for a, b in plan.edges],
    }


def node_label(step: AnyStep) -> str:
    """`id (kind)`, then `[when]` and `[for_each]` for a step that may not run or runs per item."""
    marks = [
        f"[{name}]"
        for name, value in (("when", step.when), ("for_each", step.for_each))
        if value is not None
    ]
    return " ".join([f"{step.id} ({step.kind})", *marks])


def to_mermaid(workflow: Workflow, plan: Plan) -> str:
    """A Mermaid flowchart; node ids get a prefix so that `end` and other keywords work."""
    lines = ["flowchart TD"]
    lines += [f'    {_mermaid_id(s.id)}["{node_label(s)}"]' for s in workflow.steps]
    lines += [f"    {_mermaid_id(a)} --> {_mermaid_id(b)}" for a, b in plan.edges]
    return "\n".join(lines) + "\n"


def _mermaid_id(step_id: str) -> str:
    """A Mermaid node id that no step id can turn into a keyword (`end`, `graph`, ...)."""
    return f"s_{step_id}"


def to_dot(workflow: Workflow, plan: Plan) -> str:
    lines = [f"digraph {json.dumps(workflow.name)} {{", "    rankdir=TB;"]
    for step in workflow.steps:
        label = json.dumps(node_label(step))
        lines.append(f"    {json.dumps(step.id)} [label={label}];")
    lines += [f"    {json.dumps(a)} -> {json.dumps(b)};" for a, b in plan.edges]
    return "\n".join(lines) + "\n}\n"
