"""A workflow ready to run, as :func:`orchestrate.prepare` leaves it.

Below both the API (which makes it) and the history (which records and resumes it), so
that neither has to import the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from orchestrate._functions import FunctionKey
    from orchestrate._loader import SourceMap
    from orchestrate._spec import ProviderSpec, Workflow, WorkflowStep


@attrs.frozen
class PreparedRun:
    """A workflow checked and ready to run: its inputs resolved, its functions imported."""

    workflow: Workflow
    inputs: dict[str, Any]
    file: str | None
    source: SourceMap | None
    functions: dict[FunctionKey, Callable[..., Any]]
    children: dict[Path, Workflow]

    def locate(self, step_id: str, field: str) -> str | None:
        if self.source is None or self.source.root is None:
            return None
        steps = self.source.root.get("steps") or []
        for index, raw in enumerate(steps):
            if isinstance(raw, dict) and raw.get("id") == step_id:
                line, column = self.source.locate(("steps", index, *_field_path(field)))
                return f"{self.source.file}:{line}:{column}"
        return None

    def subworkflow(self, step: WorkflowStep, parent: Workflow) -> Workflow:
        return find_subworkflow(self.children, step, parent)

    def all_workflows(self) -> Iterator[Workflow]:
        yield self.workflow
        yield from self.children.values()


def find_subworkflow(
    children: Mapping[Path, Workflow], step: WorkflowStep, parent: Workflow
) -> Workflow:
    """The workflow a `workflow:` step of `parent` runs (its path is relative to the
    parent's file), among `children` by resolved path."""
    folder = parent.path.parent if parent.path else Path()
    return children[(folder / step.workflow).resolve()]


def _field_path(field: str) -> tuple[str | int, ...]:
    if field.startswith("messages["):
        return ("messages", int(field[9:-1]), "content")
    return (field,)


def endpoints_of(prepared: PreparedRun) -> dict[str, ProviderSpec]:
    """The `providers:` of the workflow and its sub-workflows; the workflow's own win."""
    endpoints: dict[str, ProviderSpec] = {}
    for workflow in reversed(list(prepared.all_workflows())):
        endpoints.update(workflow.providers)
    return endpoints
