"""The example library: every workflow in workflows/ validates and runs offline."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from orchestrate._schema import workflow_schema
from orchestrate._validate import validate_file
from tests.conftest import REPO

EXAMPLES = sorted((REPO / "workflows").glob("**/*.yaml"))
RUNNABLE = sorted((REPO / "workflows").glob("*.yaml"))


def test_there_are_examples() -> None:
    """The library holds at least the six workflows the docs promise."""
    assert len(RUNNABLE) >= 6


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_clean(path: Path) -> None:
    """Each example has no diagnostics at all."""
    assert validate_file(path).diagnostics == []


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.name)
def test_example_runs_under_mock(cli: Callable, path: Path) -> None:
    """Each example runs with --mock and no inputs, and prints one JSON document."""
    result = cli("run", path, "--mock", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "succeeded"
    assert all(s["status"] in ("succeeded", "skipped") for s in doc["steps"])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_schema_accepts_the_example(path: Path) -> None:
    """`orchestrate schema` accepts every example workflow."""
    from ruamel.yaml import YAML

    data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    jsonschema.validate(data, workflow_schema())


def _documented_workflows() -> list[tuple[str, str]]:
    """Each ```yaml block of README.md and docs/ that is a whole workflow (a top-level
    `steps:`), named FILE:LINE."""
    found = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for block in re.finditer(r"```ya?ml\n(.*?)```", text, re.S):
            if re.search(r"^steps:", block.group(1), re.M):
                line = text.count("\n", 0, block.start()) + 2
                found.append((f"{doc.name}:{line}", block.group(1)))
    return found


@pytest.mark.parametrize(
    ("where", "text"), _documented_workflows(), ids=[where for where, _ in _documented_workflows()]
)
def test_every_workflow_in_the_docs_validates(where: str, text: str, tmp_path: Path) -> None:
    """A reader who copies a documented workflow gets a valid one."""
    flow = tmp_path / "flow.yaml"
    flow.write_text(text, encoding="utf-8")
    report = validate_file(flow)
    assert [d.message for d in report.diagnostics if d.severity == "error"] == [], where
