"""`orchestrate estimate`: what a run would cost, without calling a model (SPEC 10).

Per LLM step, in file order:

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

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from orchestrate._engine import choose_model
from orchestrate._errors import TemplateError
from orchestrate._pricing import Pricing
from orchestrate._spec import LLMStep, Workflow
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
    items: int | None = None,
    rows: int = 1,
    model: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Estimate:
    """The estimate of one run of `workflow` (times `rows`) with the `inputs` known."""
    env = os.environ if env is None else env
    count, tokenizer = token_counter()
    pricing = Pricing(workflow.providers)
    notes: list[str] = []
    missing = [
        name for name, spec in workflow.inputs.items() if name not in inputs and spec.required
    ]
    if missing:
        notes.append(f"inputs not given count 0 tokens: {', '.join(missing)}")
    context = {"inputs": {**{name: "" for name in missing}, **inputs}, "steps": {}}
    replies: dict[str, Range] = {}
    estimates = []
    for step in workflow.steps:
        if not isinstance(step, LLMStep):
            continue
        provider, chosen = choose_model(workflow, step, model, env)
        price = pricing.price(provider, chosen)
        calls = _calls(step, context, items, notes)
        prompt = Range(0, 0)
        for source in _prompt_sources(step):
            prompt = prompt + _prompt_tokens(source, context, replies, count)
        high = (
            workflow.defaults.merged(step.settings).max_tokens
            or (price.max_output if price else None)
            or UNBOUNDED_REPLY_TOKENS
        )
        reply = Range(min(LOW_REPLY_TOKENS, high), high)
        replies[step.id] = reply * calls
        cost = None
        if price is None:
            notes.append(
                f"no price known for model {chosen!r} (step {step.id}): its cost is unknown"
            )
        else:
            cost = Range(
                prompt.low * price.input + reply.low * price.output,
                prompt.high * price.input + reply.high * price.output,
            ) * (1e-6 * calls)
        estimates.append(
            StepEstimate(
                id=step.id,
                provider=provider,
                model=chosen,
                calls=calls,
                input_tokens=prompt * calls,
                output_tokens=reply * calls,
                cost_usd=cost,
            )
        )
    if any(s.kind == "workflow" for s in workflow.steps):
        notes.append("sub-workflow steps are not estimated")
    return Estimate(
        steps=tuple(estimates), rows=rows, tokenizer=tokenizer, notes=tuple(dict.fromkeys(notes))
    )


def _prompt_sources(step: LLMStep) -> list[str]:
    sources = [step.system, step.prompt, *(m.content for m in step.messages or ())]
    return [s for s in sources if s is not None]


def _calls(step: LLMStep, context: dict[str, Any], items: int | None, notes: list[str]) -> int:
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
    """A template's tokens with the inputs known; a step's output counts its reply."""
    parsed = parse_template(source)
    if isinstance(parsed, Problem):
        return Range(count(source), count(source))
    used = {r.name for r in parsed.references if r.root == "steps"}
    steps = {name: {"output": "", "status": "succeeded"} for name in used}
    try:
        text = parsed.render({**context, "steps": steps, "item": "", "index": 0})
    except TemplateError:  # e.g. steps.x.output.field on a placeholder: the source's size
        text = source
    tokens = Range(count(text), count(text))
    for name in sorted(used):
        tokens = tokens + replies.get(name, Range(0, 0))
    return tokens
