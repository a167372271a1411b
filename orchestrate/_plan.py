"""The dependency graph of a workflow's steps: who needs whom, in which order.

A step depends on every step its templates and expressions reference, plus `needs`.
The file's order breaks ties and is the display order; it is never a dependency.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from orchestrate._spec import (
    AnyCheck,
    AnyStep,
    ExpectCheck,
    FunctionCheck,
    FunctionStep,
    JudgeCheck,
    LLMStep,
    MatchCheck,
    Workflow,
    WorkflowStep,
)
from orchestrate._templating import Expression, Problem, Template, parse_expression, parse_template


@attrs.frozen
class TemplateSite:
    """One template or expression in a step: where it sits (a path in the YAML) and what."""

    path: tuple[str | int, ...]  # below the step's mapping, e.g. ("messages", 0, "content")
    source: str
    is_expression: bool = False

    def parse(self) -> Template | Expression | Problem:
        return parse_expression(self.source) if self.is_expression else parse_template(self.source)


def template_sites(step: AnyStep) -> Iterator[TemplateSite]:
    """Every template and expression of a step, in the order they appear in the format."""
    if step.when is not None:
        yield TemplateSite(("when",), step.when, is_expression=True)
    if step.for_each is not None:
        yield TemplateSite(("for_each",), step.for_each, is_expression=True)
    if isinstance(step, LLMStep):
        for key in ("system", "prompt", "mock"):
            value = getattr(step, key)
            if value is not None:
                yield TemplateSite((key,), value)
        for index, message in enumerate(step.messages or ()):
            yield TemplateSite(("messages", index, "content"), message.content)
    elif isinstance(step, FunctionStep | WorkflowStep):
        yield from data_template_sites(step.with_, ("with",))


def check_sites(check: AnyCheck) -> Iterator[TemplateSite]:
    """Every template and expression of a check (SPEC 9)."""
    if isinstance(check, ExpectCheck):
        yield TemplateSite(("expect",), check.expect, is_expression=True)
    elif isinstance(check, MatchCheck):
        yield from data_template_sites(check.expected, (check.operator,))
    elif isinstance(check, JudgeCheck):
        yield TemplateSite(("judge", "rubric"), check.judge.rubric)
        if check.mock is not None:
            yield TemplateSite(("mock",), check.mock)
    elif isinstance(check, FunctionCheck):
        yield from data_template_sites(check.with_, ("with",))


def raw_template_sites(raw: dict[str, Any]) -> Iterator[TemplateSite]:
    """The templates of a step that could not be built, read from its YAML mapping.

    Only values that are strings where a template belongs are returned, so the validator
    can report a broken step's template problems along with its shape problems.
    """
    for key in ("when", "for_each"):
        if isinstance(raw.get(key), str):
            yield TemplateSite((key,), raw[key], is_expression=True)
    for key in ("system", "prompt", "mock"):
        if isinstance(raw.get(key), str):
            yield TemplateSite((key,), raw[key])
    messages = raw.get("messages")
    for index, message in enumerate(messages if isinstance(messages, list) else ()):
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            yield TemplateSite(("messages", index, "content"), message["content"])
    if isinstance(raw.get("with"), dict):
        yield from data_template_sites(raw["with"], ("with",))


def data_template_sites(value: Any, path: tuple[str | int, ...]) -> Iterator[TemplateSite]:
    """The strings inside a `with` or `outputs` value, which are templates, at any depth."""
    if isinstance(value, str):
        yield TemplateSite(path, value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from data_template_sites(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from data_template_sites(item, (*path, index))


def referenced_steps(step: AnyStep) -> set[str]:
    """The step ids a step's templates and expressions refer to (parse problems ignored)."""
    found: set[str] = set()
    for site in template_sites(step):
        parsed = site.parse()
        if not isinstance(parsed, Problem):
            found.update(r.name for r in parsed.references if r.root == "steps")
    return found


class CycleError(Exception):
    def __init__(self, cycle: list[str]) -> None:
        super().__init__(" -> ".join(cycle))
        self.cycle = cycle


@attrs.frozen
class Plan:
    """The steps in an order that respects dependencies, and the dependencies themselves."""

    order: tuple[str, ...]
    needs: dict[str, frozenset[str]]  # step id -> the step ids it depends on

    @property
    def edges(self) -> list[tuple[str, str]]:
        """(a, b) pairs meaning b depends on a, in display order."""
        return [(dep, step) for step in self.order for dep in sorted(self.needs[step])]

    def dependents(self, step_id: str) -> list[str]:
        return [s for s in self.order if step_id in self.needs[s]]


def step_dependencies(
    workflow: Workflow, referenced: Callable[[AnyStep], set[str]] = referenced_steps
) -> dict[str, frozenset[str]]:
    """Each step's dependencies among the workflow's steps (unknown ids left out).

    `referenced` gives the steps a step's templates name; the validator, which has parsed
    every template already, passes what it found instead of parsing them again.
    """
    known = set(workflow.step_ids)
    return {
        step.id: frozenset(((referenced(step) | set(step.needs)) & known) - {step.id})
        for step in workflow.steps
    }


def build_plan(
    workflow: Workflow, referenced: Callable[[AnyStep], set[str]] = referenced_steps
) -> Plan:
    """Order the steps; raises :class:`CycleError` naming the cycle."""
    needs = step_dependencies(workflow, referenced)
    step_ids = workflow.step_ids
    position = {step_id: i for i, step_id in enumerate(step_ids)}
    dependents: dict[str, list[str]] = {step_id: [] for step_id in needs}
    for step_id, deps in needs.items():
        for dep in deps:
            dependents[dep].append(step_id)
    waiting = {step_id: len(deps) for step_id, deps in needs.items()}
    ready = [position[s] for s, count in waiting.items() if not count]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        step_id = step_ids[heapq.heappop(ready)]
        order.append(step_id)
        for other in dependents[step_id]:
            waiting[other] -= 1
            if not waiting[other]:
                heapq.heappush(ready, position[other])
    if len(order) < len(needs):
        ordered = set(order)
        raise CycleError(_find_cycle({s: d for s, d in needs.items() if s not in ordered}))
    return Plan(tuple(order), needs)


def _find_cycle(needs: dict[str, frozenset[str]]) -> list[str]:
    """A cycle among the steps left unordered, written in data-flow order: a -> b -> a."""
    import graphlib

    try:
        graphlib.TopologicalSorter({s: d & needs.keys() for s, d in needs.items()}).prepare()
    except graphlib.CycleError as exc:
        return list(reversed(exc.args[1]))
    raise AssertionError("the steps left unordered hold no cycle")
