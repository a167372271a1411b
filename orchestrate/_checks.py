"""Checks (SPEC 9): a run's outputs graded once the run succeeded, by `run` and `batch`.

    CheckRunner         evaluates a workflow's checks on a RunResult (`row` in a batch)
    ├── expect          an expression over inputs, outputs, steps (and row)
    ├── schema          an output against a JSON Schema
    ├── contains, icontains, regex, equals      an output against a template's value
    ├── judge           a model grades an output against a rubric: a call through the run's
    │                   ProviderPool, so retried, cached, recorded, replayed and metered
    │                   like any step's, answered with structured output {score, reason}
    └── function        a Python callable, sync or async, as function steps are called

Checks never raise: one that cannot be evaluated fails with the error as its message.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from orchestrate._engine import DEFAULT_RETRIES, DEFAULT_TIMEOUT, choose_model, render_data
from orchestrate._errors import InvalidOutput, OrchestrateError
from orchestrate._functions import FunctionCall, FunctionKey, call_function, function_key
from orchestrate._output import parse_json_reply
from orchestrate._plan import check_sites
from orchestrate._result import CheckResult, RunResult
from orchestrate._spec import (
    AnyCheck,
    ExpectCheck,
    FunctionCheck,
    JudgeCheck,
    LLMStep,
    MatchCheck,
    ModelSettings,
    SchemaCheck,
    Workflow,
)
from orchestrate._templating import Problem, is_truthy, parse_expression, run_templates
from orchestrate.providers import MOCK, LLMRequest, ProviderPool

# What the judge must answer: OpenAI's strict structured outputs need every property
# required and no others.
JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string"},
    },
    "required": ["score", "reason"],
    "additionalProperties": False,
}
JUDGE_SYSTEM = (
    "You grade the output of an AI workflow against a rubric. Answer with JSON: `score`, "
    "a number from 0 (fails the rubric entirely) to 1 (meets it fully), and `reason`, one "
    "sentence saying why."
)
MOCK_VERDICT = '{"score": 1.0, "reason": "the mock judge passes every output"}'
EXCERPT_CHARS = 80  # how much of an output a failure message quotes


class CheckFailed(Exception):
    """A check could not be evaluated: it fails with this message."""


class CheckRunner:
    """Evaluates a workflow's checks after a run; one per run or per batch."""

    def __init__(
        self,
        workflow: Workflow,
        *,
        pool: ProviderPool,
        functions: Mapping[FunctionKey, Callable[..., Any]],
        env: Mapping[str, str],
        mock: bool = False,
        semaphore: asyncio.Semaphore | None = None,
    ) -> None:
        self.workflow = workflow
        self.pool = pool
        self.functions = functions
        self.env = env
        self.mock = mock
        self.semaphore = semaphore  # model calls in flight, shared with the steps'
        self.folder = workflow.path.parent if workflow.path else None

    async def evaluate(
        self, result: RunResult, row: Mapping[str, Any] | None = None
    ) -> tuple[CheckResult, ...]:
        """Every check's verdict on a run that succeeded, in the order of `checks:`."""
        context: dict[str, Any] = {
            "inputs": result.inputs,
            "outputs": result.outputs,
            "steps": {s.id: {"output": s.output, "status": s.status} for s in result.steps},
        }
        checks = self.workflow.checks
        if row is None:  # a check about the dataset's row has nothing to grade in a run
            checks = tuple(check for check in checks if not _reads_row(check))
        else:
            context["row"] = dict(row)
        return tuple(await asyncio.gather(*(self._one(check, context) for check in checks)))

    async def with_checks(
        self, result: RunResult, row: Mapping[str, Any] | None = None
    ) -> RunResult:
        """The result with its checks' verdicts; one that did not succeed is left as it is."""
        if result.status != "succeeded" or not self.workflow.checks:
            return result
        return attrs.evolve(result, checks=await self.evaluate(result, row))

    async def _one(self, check: AnyCheck, context: dict[str, Any]) -> CheckResult:
        try:
            if isinstance(check, JudgeCheck):
                return await self._judge(check, context)
            if isinstance(check, FunctionCheck):
                return await self._function(check, context)
            local = check  # narrowed for the closure
            return await run_templates(lambda: self._local(local, context))
        except CheckFailed as exc:
            return CheckResult(id=check.id, passed=False, message=f"error: {exc}")
        except OrchestrateError as exc:
            return CheckResult(id=check.id, passed=False, message=f"error: {exc.message}")
        except Exception as exc:  # a check never takes the run down
            return CheckResult(
                id=check.id, passed=False, message=f"error: {type(exc).__name__}: {exc}"
            )

    # --- checks evaluated here ---------------------------------------------------------------

    def _local(
        self, check: ExpectCheck | SchemaCheck | MatchCheck, context: dict[str, Any]
    ) -> CheckResult:
        if isinstance(check, ExpectCheck):
            return _expect(check, context)
        name, value = self._output(check, context)
        if isinstance(check, SchemaCheck):
            try:
                parse_json_reply(json.dumps(value), check.schema, what=f"output {name!r}")
            except InvalidOutput as exc:  # the output is wrong: a failure, not an error
                return CheckResult(id=check.id, passed=False, message=exc.message)
            return CheckResult(id=check.id, passed=True)
        assert isinstance(check, MatchCheck)
        expected = render_data(check.expected, context, f"checks.{check.id}.{check.operator}")
        return _match(check, name, value, expected)

    def _output(
        self, check: SchemaCheck | MatchCheck | JudgeCheck, context: dict[str, Any]
    ) -> tuple[str, Any]:
        """The output a check looks at: its `output`, or the run's only one."""
        name = check.output or self.workflow.output_names[0]
        outputs = context["outputs"]
        if name not in outputs:
            raise CheckFailed(f"the run has no output {name!r}")
        return name, outputs[name]

    # --- a model as the judge ----------------------------------------------------------------

    async def _judge(self, check: JudgeCheck, context: dict[str, Any]) -> CheckResult:
        request = await run_templates(lambda: self._judge_request(check, context))
        assert request.provider is not None
        provider = self.pool.get(request.provider)
        if self.semaphore is None:
            response = await provider.complete(request)
        else:
            async with self.semaphore:
                response = await provider.complete(request)
        usage, cost = response.usage, response.cost_usd
        try:
            verdict = parse_json_reply(response.text, JUDGE_SCHEMA, what="judge's reply")
        except OrchestrateError as exc:
            return CheckResult(
                id=check.id,
                passed=False,
                message=f"error: {exc.message}",
                usage=usage,
                cost_usd=cost,
            )
        score = float(verdict["score"])
        return CheckResult(
            id=check.id,
            passed=score >= check.judge.threshold,
            score=score,
            message=verdict["reason"] or None,
            usage=usage,
            cost_usd=cost,
        )

    def _judge_request(self, check: JudgeCheck, context: dict[str, Any]) -> LLMRequest:
        """The judge's call: its own model (or the workflow's defaults), never `--model`'s:
        a comparison of models keeps one judge."""
        name, output = self._output(check, context)
        rubric = render_data(check.judge.rubric, context, f"checks.{check.id}.judge.rubric")
        provider, model = judge_model(self.workflow, check, self.env, mock=self.mock)
        settings = self.workflow.defaults
        mock_text = None
        if provider == MOCK:
            mock_text = (
                MOCK_VERDICT
                if check.mock is None
                else str(render_data(check.mock, context, f"checks.{check.id}.mock"))
            )
        user = (
            f"Rubric:\n{rubric}\n\nInputs:\n{_text(context['inputs'])}\n\n"
            f"Output {name!r}:\n{_text(output)}"
        )
        return LLMRequest(
            model=model,
            messages=(
                {"role": "system", "content": JUDGE_SYSTEM},
                {"role": "user", "content": user},
            ),
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            timeout=settings.timeout or DEFAULT_TIMEOUT,
            retries=DEFAULT_RETRIES if settings.retries is None else settings.retries,
            schema=JUDGE_SCHEMA,
            json_mode=True,
            step_id=f"checks.{check.id}",
            provider=provider,
            mock_text=mock_text,
            cache=settings.cache,
        )

    # --- a Python function -------------------------------------------------------------------

    async def _function(self, check: FunctionCheck, context: dict[str, Any]) -> CheckResult:
        function = self.functions[function_key(self.folder, check.function)]
        kwargs = await run_templates(
            lambda: render_data(check.with_, context, f"checks.{check.id}.with")
        )
        value = await call_function(FunctionCall(check.function, kwargs), function, None)
        return _verdict(check, value)


def _reads_row(check: AnyCheck) -> bool:
    """Whether a check reads `row`, which only a batch has."""
    return any(
        not isinstance(parsed, Problem) and "row" in parsed.variables
        for parsed in (site.parse() for site in check_sites(check))
    )


def judge_model(
    workflow: Workflow, check: JudgeCheck, env: Mapping[str, str], *, mock: bool = False
) -> tuple[str, str]:
    """(provider, model) of a judge: its own, else the workflow's defaults; a model named
    without a provider picks its provider as `--model` does."""
    judge = check.judge
    step = LLMStep(
        id=f"checks.{check.id}",
        prompt="",
        settings=ModelSettings(model=judge.model, provider=judge.provider),
    )
    override = judge.model if judge.provider is None else None
    return choose_model(workflow, step, override, env, mock=mock)


def judge_models(
    workflow: Workflow, env: Mapping[str, str], *, mock: bool = False
) -> set[tuple[str, str]]:
    """The (provider, model) pairs the workflow's judges call."""
    return {
        judge_model(workflow, check, env, mock=mock)
        for check in workflow.checks
        if isinstance(check, JudgeCheck)
    }


def _expect(check: ExpectCheck, context: dict[str, Any]) -> CheckResult:
    parsed = parse_expression(check.expect)
    if isinstance(parsed, Problem):  # validate reports it before any run
        raise CheckFailed(parsed.message)
    value = parsed.evaluate(context)
    if is_truthy(value):
        return CheckResult(id=check.id, passed=True)
    return CheckResult(id=check.id, passed=False, message=f"`{check.expect}` is {_excerpt(value)}")


def _match(check: MatchCheck, name: str, value: Any, expected: Any) -> CheckResult:
    text, operator = _text(value), check.operator
    if operator == "equals":
        passed = value == expected or text.strip() == _text(expected).strip()
        problem = f"is {_excerpt(value)}, not {_excerpt(expected)}"
    elif operator == "regex":
        try:
            passed = re.search(_text(expected), text) is not None
        except re.error as exc:  # a pattern made by a template, known only now
            raise CheckFailed(f"invalid regular expression: {exc}") from None
        problem = f"does not match /{_text(expected)}/: {_excerpt(value)}"
    elif operator == "icontains":
        passed = _text(expected).casefold() in text.casefold()
        problem = f"does not contain {_excerpt(expected)} (ignoring case): {_excerpt(value)}"
    else:
        passed = _text(expected) in text
        problem = f"does not contain {_excerpt(expected)}: {_excerpt(value)}"
    return CheckResult(
        id=check.id, passed=passed, message=None if passed else f"output {name!r} {problem}"
    )


def _verdict(check: FunctionCheck, value: Any) -> CheckResult:
    """A check function's answer: a bool, a score from 0 to 1, or a mapping with `passed`
    or `score`, and `message` (or `reason`)."""
    message = None
    if isinstance(value, dict):
        message = value.get("message", value.get("reason"))
        value = value["passed"] if "passed" in value else value.get("score")
    if isinstance(value, bool):
        return CheckResult(id=check.id, passed=value, message=message)
    if isinstance(value, int | float) and 0 <= value <= 1:
        passed = value >= check.threshold
        if not passed and message is None:
            message = f"score {value:g} is below the threshold {check.threshold:g}"
        return CheckResult(id=check.id, passed=passed, score=float(value), message=message)
    raise CheckFailed(
        f"{check.function} returned {_excerpt(value)}; a check function "
        "returns a bool, a score from 0 to 1, or {score, message}"
    )


def _text(value: Any) -> str:
    """A value as a check compares it: a string as it is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _excerpt(value: Any) -> str:
    """A value in a message: JSON, cut to EXCERPT_CHARS."""
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= EXCERPT_CHARS else shown[: EXCERPT_CHARS - 1] + '…"'
