"""`orchestrate estimate`: what a run would cost, without calling a model (SPEC 10).

Per LLM step, in file order; a `workflow:` step adds its child's LLM steps in its place,
as `parent.child` rows, run once per call of the step, with its `with:` values as the
child's inputs (a parent step's output passed there counts that step's reply tokens):

- calls: 1, or one per item of a `for_each` (its list evaluated when the inputs give it,
  else `items`, default :data:`DEFAULT_ITEMS`);
- prompt tokens: the templates rendered with the inputs that are known; what comes from
  another step's output counts that step's reply tokens (low: its low guess; high: its
  `max_tokens`); an input that is not given counts nothing, and is named in the notes;
- reply tokens: from a low guess (:data:`LOW_REPLY_TOKENS`, or `max_tokens` if smaller)
  to `max_tokens` (or the model's `max_output` when the step sets none);
- cost: those tokens at the model's price (as a run would price them); null when unknown.

Totals are multiplied by the rows of `--data`. Tokens are counted with the o200k_base
tokenizer when the optional `bpe-openai` package is installed (`orchestrate[tokens]`, it
works offline), else approximated as characters / 4; the result says which.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from orchestrate._engine import choose_model
from orchestrate._errors import TemplateError
from orchestrate._prepared import find_subworkflow
from orchestrate._pricing import Pricing
from orchestrate._spec import LLMStep, Step, Workflow, WorkflowStep
from orchestrate._templating import Problem, parse_expression, parse_template

DEFAULT_ITEMS = 10
LOW_REPLY_TOKENS = 100
UNBOUNDED_REPLY_TOKENS = 4096  # a model nobody states a max_output for
CHARS_PER_TOKEN = 4


@attrs.frozen
class Range:
    low: float
    high: float

    def __add__(self, other: Range) -> Range:
        return Range(self.low + other.low, self.high + other.high)

    def __mul__(self, factor: float) -> Range:
        return Range(self.low * factor, self.high * factor)

    def to_dict(self, digits: int | None = None) -> dict[str, float]:
        if digits is None:
            return {"low": int(self.low), "high": int(self.high)}
        return {"low": round(self.low, digits), "high": round(self.high, digits)}


@attrs.frozen(kw_only=True)
class StepEstimate:
    id: str
    provider: str
    model: str
    calls: int
    input_tokens: Range
    output_tokens: Range
    cost_usd: Range | None  # None: no price for the model

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "model": self.model,
            "calls": self.calls,
            "input_tokens": self.input_tokens.to_dict(),
            "output_tokens": self.output_tokens.to_dict(),
            "cost_usd": None if self.cost_usd is None else self.cost_usd.to_dict(8),
        }


@attrs.frozen(kw_only=True)
class Estimate:
    steps: tuple[StepEstimate, ...]
    rows: int  # 1 without --data
    tokenizer: str
    notes: tuple[str, ...]

    @property
    def calls(self) -> int:
        return self.rows * sum(s.calls for s in self.steps)

    def total(self) -> dict[str, Any]:
        tokens_in = sum((s.input_tokens for s in self.steps), Range(0, 0)) * self.rows
        tokens_out = sum((s.output_tokens for s in self.steps), Range(0, 0)) * self.rows
        costs = [s.cost_usd for s in self.steps if s.cost_usd is not None]
        cost = None
        if len(costs) == len(self.steps):
            cost = sum(costs, Range(0, 0)) * self.rows
        return {
            "calls": self.calls,
            "rows": self.rows,
            "input_tokens": tokens_in.to_dict(),
            "output_tokens": tokens_out.to_dict(),
            "cost_usd": None if cost is None else cost.to_dict(8),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [s.to_dict() for s in self.steps],
            "total": self.total(),
            "tokenizer": self.tokenizer,
            "notes": list(self.notes),
        }


def token_counter() -> tuple[Callable[[str], int], str]:
    """A tokenizer that works offline, and its name for the output."""
    try:
        import bpe_openai  # optional: orchestrate[tokens]
    except ImportError:
        return (
            lambda text: math.ceil(len(text) / CHARS_PER_TOKEN),
            f"approximate: characters / {CHARS_PER_TOKEN} "
            "(install orchestrate[tokens] for o200k_base counts)",
        )
    encoding = bpe_openai.get_encoding("o200k_base")
    return (lambda text: len(encoding.encode(text))), "o200k_base (bpe-openai)"


def estimate(
    workflow: Workflow,
    inputs: Mapping[str, Any],
    *,
    children: Mapping[Path, Workflow] | None = None,
    items: int | None = None,
    rows: int = 1,
    model: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Estimate:
    """The estimate of one run of `workflow` (times `rows`) with the `inputs` given (the
    defaults fill in the rest); `children` are its sub-workflows by resolved path (as
    validation finds them)."""
    count, tokenizer = token_counter()
    children = children or {}
    endpoints = {}
    for each in (*children.values(), workflow):  # the parent's providers win, as in a run
        endpoints.update(each.providers)
    estimator = _Estimator(
        count=count,
        pricing=Pricing(endpoints),
        children=children,
        items=items,
        model=model,
        env=os.environ if env is None else env,
    )
    estimator.add(workflow, {**_defaults(workflow), **inputs}, carried={}, prefix="", times=1)
    return Estimate(
        steps=tuple(estimator.steps),
        rows=rows,
        tokenizer=tokenizer,
        notes=tuple(dict.fromkeys(estimator.notes)),
    )


@attrs.define(kw_only=True)
class _Estimator:
    count: Callable[[str], int]
    pricing: Pricing
    children: Mapping[Path, Workflow]
    items: int | None
    model: str | None
    env: Mapping[str, str]
    steps: list[StepEstimate] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)

    def add(
        self,
        workflow: Workflow,
        inputs: Mapping[str, Any],
        *,
        carried: Mapping[str, Range],
        prefix: str,
        times: int,
    ) -> Range:
        """Estimate `workflow`'s LLM steps, each run `times` times, named `prefix` + id;
        its outputs' tokens. `carried`: per input, the reply tokens it holds (a parent
        step's output passed in `with:`), on top of its known text."""
        missing = [
            name for name, spec in workflow.inputs.items() if name not in inputs and spec.required
        ]
        if missing:
            where = f"{prefix[:-1]}: " if prefix else ""
            self.notes.append(f"{where}inputs not given count 0 tokens: {', '.join(missing)}")
        context = {"inputs": {**{name: "" for name in missing}, **inputs}, "steps": {}}
        replies = {f"inputs.{name}": tokens for name, tokens in carried.items()}
        for step in workflow.steps:
            if isinstance(step, LLMStep):
                replies[f"steps.{step.id}"] = self.llm_step(
                    workflow, step, context, replies, prefix, times
                )
            elif isinstance(step, WorkflowStep):
                replies[f"steps.{step.id}"] = self.sub_workflow(
                    workflow, step, context, replies, prefix, times
                )
        outputs = [v for v in (workflow.outputs or {}).values() if isinstance(v, str)]
        return sum((_prompt_tokens(v, context, replies, self.count) for v in outputs), Range(0, 0))

    def llm_step(
        self,
        workflow: Workflow,
        step: LLMStep,
        context: dict[str, Any],
        replies: Mapping[str, Range],
        prefix: str,
        times: int,
    ) -> Range:
        """Add the step's estimate; its reply tokens over its calls (one run of it)."""
        provider, chosen = choose_model(workflow, step, self.model, self.env)
        price = self.pricing.price(provider, chosen)
        calls = _calls(step, context, self.items, self.notes)
        prompt = Range(0, 0)
        for source in _prompt_sources(step):
            prompt = prompt + _prompt_tokens(source, context, replies, self.count)
        high = (
            workflow.defaults.merged(step.settings).max_tokens
            or (price.max_output if price else None)
            or UNBOUNDED_REPLY_TOKENS
        )
        reply = Range(min(LOW_REPLY_TOKENS, high), high)
        cost = None
        if price is None:
            self.notes.append(
                f"no price known for model {chosen!r}: the cost of its steps is unknown"
            )
        else:
            cost = Range(
                prompt.low * price.input + reply.low * price.output,
                prompt.high * price.input + reply.high * price.output,
            ) * (1e-6 * calls * times)
        self.steps.append(
            StepEstimate(
                id=prefix + step.id,
                provider=provider,
                model=chosen,
                calls=calls * times,
                input_tokens=prompt * (calls * times),
                output_tokens=reply * (calls * times),
                cost_usd=cost,
            )
        )
        return reply * calls

    def sub_workflow(
        self,
        workflow: Workflow,
        step: WorkflowStep,
        context: dict[str, Any],
        replies: Mapping[str, Range],
        prefix: str,
        times: int,
    ) -> Range:
        """Add the child's LLM steps, run once per call of this step, with the `with:`
        values as its inputs; its outputs' tokens over those calls."""
        child = find_subworkflow(self.children, step, workflow)
        calls = _calls(step, context, self.items, self.notes)
        inputs = _defaults(child)
        carried = {}
        for name, value in step.with_.items():
            inputs[name] = _value(value, context)
            if isinstance(value, str):
                carried[name] = _replies_used(value, replies)
        outputs = self.add(
            child, inputs, carried=carried, prefix=f"{prefix}{step.id}.", times=times * calls
        )
        return outputs * calls


def _defaults(workflow: Workflow) -> dict[str, Any]:
    """The workflow's inputs that have a default, at it."""
    return {name: spec.default for name, spec in workflow.inputs.items() if not spec.required}


def _prompt_sources(step: LLMStep) -> list[str]:
    sources = [step.system, step.prompt, *(m.content for m in step.messages or ())]
    return [s for s in sources if s is not None]


def _calls(step: Step, context: dict[str, Any], items: int | None, notes: list[str]) -> int:
    """1, or the length of the for_each list when the inputs give it, else `items`."""
    if step.for_each is None:
        return 1
    parsed = parse_expression(step.for_each)
    if not isinstance(parsed, Problem) and not any(r.root == "steps" for r in parsed.references):
        try:
            found = parsed.evaluate(context)
        except (TemplateError, TypeError, ValueError):
            found = None
        if isinstance(found, list | tuple):
            return len(found)
    if items is None:
        notes.append(
            f"{step.id}: for_each over a list not known before the run counts "
            f"{DEFAULT_ITEMS} items (set --items N)"
        )
    return DEFAULT_ITEMS if items is None else items


def _prompt_tokens(
    source: str, context: dict[str, Any], replies: Mapping[str, Range], count: Callable[[str], int]
) -> Range:
    """A template's tokens with the inputs known; a step's output counts its reply (and an
    input holding one, a sub-workflow's, counts it too)."""
    text = _rendered(source, context)
    return Range(count(text), count(text)) + _replies_used(source, replies)


def _rendered(source: str, context: dict[str, Any]) -> str:
    """A template rendered with the inputs known, every step's output empty."""
    parsed = parse_template(source)
    if isinstance(parsed, Problem):
        return source
    used = {r.name for r in parsed.references if r.root == "steps"}
    steps = {name: {"output": "", "status": "succeeded"} for name in used}
    try:
        return str(parsed.render({**context, "steps": steps, "item": "", "index": 0}))
    except TemplateError:  # e.g. steps.x.output.field on a placeholder: the source's size
        return source


def _value(value: Any, context: dict[str, Any]) -> Any:
    """A `with:` value as a run would pass it (typed when it is one expression, a list
    stays a list), every step's output empty; else its text rendered so."""
    if not isinstance(value, str):
        return value
    parsed = parse_template(value)
    if not isinstance(parsed, Problem):
        used = {r.name for r in parsed.references if r.root == "steps"}
        steps = {name: {"output": "", "status": "succeeded"} for name in used}
        with contextlib.suppress(TemplateError, TypeError, ValueError):
            return parsed.evaluate({**context, "steps": steps, "item": "", "index": 0})
    return _rendered(value, context)


def _replies_used(source: str, replies: Mapping[str, Range]) -> Range:
    """The reply tokens of the step outputs (and inputs carrying them) a template uses."""
    parsed = parse_template(source)
    if isinstance(parsed, Problem):
        return Range(0, 0)
    used = sorted({f"{r.root}.{r.name}" for r in parsed.references})
    return sum((replies.get(name, Range(0, 0)) for name in used), Range(0, 0))
