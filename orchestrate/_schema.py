"""The JSON Schema of the workflow format, built from the spec classes so it cannot drift.

Editors use it to check a file as it is typed (see docs/editors.md).
"""

from __future__ import annotations

import re
import types
from typing import Any, Literal, Union, get_args, get_origin

import attrs

from orchestrate._loader import converter
from orchestrate._spec import LLMStep, ModelSettings, ProviderType, Workflow
from orchestrate.providers import builtin_provider_names, kind_names

SCHEMA_ID = "https://orchestrate.dev/schema/workflow-v1.json"

_DESCRIPTIONS = {
    "version": "The format version; only 1 exists.",
    "name": "The workflow's name; default: the file's stem.",
    "inputs": "Named inputs, given with -i NAME=VALUE or --inputs FILE.",
    "defaults": "Settings every LLM step inherits.",
    "providers": "Extra OpenAI-compatible or Anthropic endpoints, by name (and rate limits).",
    "steps": "The steps; each is an LLM step, a function step or a sub-workflow step.",
    "outputs": "Named results, as templates; default: every step's output by id.",
    "id": "Unique step id: letters, digits and underscores, not starting with a digit.",
    "when": "A Jinja2 expression; when false the step is skipped.",
    "for_each": "An expression giving a list; the step runs once per item (`item`, `index`).",
    "needs": "Step ids this step depends on beyond those its templates reference.",
    "on_error": "fail (default) stops the run; continue records the failure and goes on.",
    "timeout": "Seconds per attempt.",
    "prompt": "The user message, a Jinja2 template.",
    "messages": "The conversation, instead of `prompt`.",
    "system": "The system message, a Jinja2 template.",
    "output": "text (default) or json (the reply is parsed as JSON).",
    "schema": "A JSON Schema the reply must match; sent as structured output.",
    "mock": "The text --mock returns for this step (a template).",
    "function": "A Python callable, `package.module:callable`.",
    "workflow": "A sub-workflow file, relative to this file.",
    "with": "Keyword arguments (function) or inputs (workflow), as templates.",
    "model": "The model name.",
    "provider": f"{', '.join(builtin_provider_names())}, or a name from `providers`.",
    "temperature": "Sampling temperature.",
    "max_tokens": "The most tokens the reply may have.",
    "retries": "Retries on transient failures (429, 5xx, network).",
    "cache": "Answer from earlier identical requests (see `run --cache`).",
    "checks": "Checks graded after a successful run and on every batch row (SPEC 9).",
    "expect": "A Jinja2 expression over inputs, outputs, steps (and row in a batch); true passes.",
    "contains": "The output (as text) must contain this text (a template).",
    "icontains": "The output must contain this text, ignoring case (a template).",
    "regex": "The output must match this regular expression (a template), anywhere.",
    "equals": "The output must equal this value (a template; text compared trimmed).",
    "judge": "A model grades the output against a rubric, with a score from 0 to 1.",
    "rubric": "What a good output is, for the judge (a template).",
    "threshold": "The score (0 to 1) needed to pass.",
    "base_url": "The endpoint's URL; left out, the built-in provider of this name.",
    "rpm": "Requests a minute the provider allows: calls wait for a slot instead.",
    "tpm": "Tokens a minute the provider allows (input and output).",
    "enum": "The only values the input takes; a form shows them as a choice.",
    "max_cost": "The run's budget in USD: a model call that could pass it is not made.",
    "pricing": "Prices by model, in USD per million tokens; they win over the shipped table.",
}

# A price's fields: `input` and `output` mean something else in a step.
_PRICE_DESCRIPTIONS = {
    "input": "USD per million prompt tokens.",
    "output": "USD per million reply tokens.",
    "cached_input": "USD per million prompt tokens read from the provider's cache.",
    "cache_write": "USD per million prompt tokens written to the provider's cache.",
    "max_output": "The most reply tokens the model gives (what a budget reserves).",
}


def workflow_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that every valid workflow file satisfies."""
    converter()  # resolves the classes' string annotations
    top = _object_schema(Workflow, skip=("path",), required=("steps",))
    top["properties"]["steps"] = {
        "description": _DESCRIPTIONS["steps"],
        "type": "array",
        "minItems": 1,
        "items": {"oneOf": [{"$ref": f"#/$defs/{name}"} for name in _STEP_DEFS]},
    }
    top["properties"]["checks"] = {
        "description": _DESCRIPTIONS["checks"],
        "type": "array",
        "items": {"oneOf": [{"$ref": f"#/$defs/{name}"} for name in _CHECK_DEFS]},
    }
    top["patternProperties"] = {"^x-": {"description": "Free for anchors (`<<: *name`)."}}
    defs = {**_STEP_DEFS, **_CHECK_DEFS}
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "orchestrate workflow",
        **top,
        "$defs": {name: build() for name, build in defs.items()},
    }
    _add_validation_rules(schema)
    return schema


def _add_validation_rules(schema: dict[str, Any]) -> None:
    """The rules `validate` applies that JSON Schema can say too, from the same constants:
    id and name patterns, the version, setting ranges, non-empty messages and typed input
    defaults. A step's `schema` is not tied to the meta-schema: that is a remote document
    editors would have to fetch, and the step's own `$schema` picks the draft."""
    from orchestrate._validate import FUNCTION_PATTERN, ID_PATTERN, MONEY_BOUNDS, SETTING_RANGES

    properties = schema["properties"]
    properties["version"]["const"] = 1
    properties["inputs"]["propertyNames"] = {"pattern": _anchored(ID_PATTERN)}
    input_spec = properties["inputs"]["additionalProperties"]
    input_spec["allOf"] = _typed_defaults()
    input_spec["properties"]["enum"]["minItems"] = 1
    ranged = [properties["defaults"]["properties"]]
    for step in schema["$defs"].values():
        step["properties"]["id"]["pattern"] = _anchored(ID_PATTERN)
        ranged.append(step["properties"])
    for check in ("function_check", "judge_check"):
        fields = schema["$defs"][check]["properties"]
        fields = fields["judge"]["properties"] if check == "judge_check" else fields
        fields["threshold"].update({"minimum": 0, "maximum": 1})
    schema["$defs"]["function_check"]["properties"]["function"]["pattern"] = _anchored(
        FUNCTION_PATTERN
    )
    for fields in ranged:
        for key, bounds, _ in SETTING_RANGES:
            if key in fields:
                fields[key].update(bounds)
    provider = properties["providers"]["additionalProperties"]["properties"]
    for key in ("rpm", "tpm"):
        provider[key]["minimum"] = 1
    properties["defaults"]["properties"]["max_cost"].update(MONEY_BOUNDS)
    price = properties["providers"]["additionalProperties"]["properties"]["pricing"]
    for key, field in price["additionalProperties"]["properties"].items():
        field.update(MONEY_BOUNDS, description=_PRICE_DESCRIPTIONS[key])
    function_step = schema["$defs"]["function_step"]["properties"]
    function_step["function"]["pattern"] = _anchored(FUNCTION_PATTERN)
    schema["$defs"]["llm_step"]["properties"]["messages"]["minItems"] = 1


def _anchored(pattern: re.Pattern[str]) -> str:
    """A Python pattern used with `match` and ending in \\Z, as a JSON Schema pattern."""
    return "^" + pattern.pattern.removesuffix(r"\Z") + "$"


def _typed_defaults() -> list[dict[str, Any]]:
    """An input's `default` (or null) and `enum` values have the input's type; no `type`
    means string."""
    from orchestrate._spec import InputType

    rules = []
    for kind in get_args(InputType):
        condition: dict[str, Any] = {"properties": {"type": {"const": kind}}}
        if kind != "string":  # without `type` the `properties` test holds: a string
            condition["required"] = ["type"]
        rules.append(
            {
                "if": condition,
                "then": {
                    "properties": {
                        "default": {"type": [kind, "null"]},
                        "enum": {"items": {"type": kind}},
                    }
                },
            }
        )
    return rules


def _llm_step() -> dict[str, Any]:
    schema = _object_schema(LLMStep, skip=("settings",), required=("id",))
    settings = _object_schema(ModelSettings, skip=("timeout",))
    schema["properties"].update(settings["properties"])
    schema["oneOf"] = [{"required": ["prompt"]}, {"required": ["messages"]}]
    return schema


def _kind_step(cls: type) -> Any:
    def build() -> dict[str, Any]:
        return _object_schema(cls, required=("id",))

    return build


def _step_classes() -> dict[str, Any]:
    from orchestrate._spec import FunctionStep, WorkflowStep

    return {
        "llm_step": _llm_step,
        "function_step": _kind_step(FunctionStep),
        "workflow_step": _kind_step(WorkflowStep),
    }


_STEP_DEFS = _step_classes()


def _check_classes() -> dict[str, Any]:
    from orchestrate._spec import (
        MATCH_KEYS,
        ExpectCheck,
        FunctionCheck,
        JudgeCheck,
        MatchCheck,
        SchemaCheck,
    )

    def match_check() -> dict[str, Any]:
        schema = _described(_object_schema(MatchCheck, required=("id",)))
        schema["oneOf"] = [{"required": [key]} for key in MATCH_KEYS]
        return schema

    def kind_check(cls: type, key: str) -> Any:
        return lambda: _described(_object_schema(cls, required=("id", key)))

    return {
        "expect_check": kind_check(ExpectCheck, "expect"),
        "schema_check": kind_check(SchemaCheck, "schema"),
        "match_check": match_check,
        "judge_check": kind_check(JudgeCheck, "judge"),
        "function_check": kind_check(FunctionCheck, "function"),
    }


# What the keys a check shares with steps mean in a check.
_CHECK_DESCRIPTIONS = {
    "id": "Unique check id: letters, digits and underscores, not starting with a digit.",
    "output": "The output the check looks at; may be left out when there is only one.",
    "schema": "A JSON Schema the output must match.",
    "mock": "What --mock answers for the judge (a template): JSON with score and reason.",
    "with": "Keyword arguments of the function, as templates.",
}


def _described(schema: dict[str, Any]) -> dict[str, Any]:
    for key, text in _CHECK_DESCRIPTIONS.items():
        if key in schema["properties"]:
            schema["properties"][key]["description"] = text
    return schema


_CHECK_DEFS = _check_classes()


def _object_schema(
    cls: type, skip: tuple[str, ...] = (), required: tuple[str, ...] | None = None
) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    needed: list[str] = []
    for field in attrs.fields(cls):
        if field.name in skip:
            continue
        key = field.name.rstrip("_")
        properties[key] = _type_schema(field.type)
        if key in _DESCRIPTIONS:
            properties[key]["description"] = _DESCRIPTIONS[key]
        if field.default is attrs.NOTHING:
            needed.append(key)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    needed = list(required) if required is not None else needed
    if needed:
        schema["required"] = needed
    return schema


def _type_schema(type_: Any) -> dict[str, Any]:
    origin, args = get_origin(type_), get_args(type_)
    if type_ is Any:
        return {}
    if type_ in _SCALARS:
        return {"type": _SCALARS[type_]}
    if origin is Literal:
        return {"enum": list(args)}
    if type_ is ProviderType:
        return {"enum": list(kind_names())}
    if origin in (Union, types.UnionType):
        options = [_type_schema(a) for a in args if a is not type(None)]
        return options[0] if len(options) == 1 else {"anyOf": options}
    if origin is tuple:
        item = _type_schema(args[0])
        if args[0] is str:  # `needs: a` is accepted for `needs: [a]`
            return {"anyOf": [item, {"type": "array", "items": item}]}
        return {"type": "array", "items": item}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1])}
    if attrs.has(type_):
        return _object_schema(type_)
    raise TypeError(f"no JSON Schema for {type_!r}")


_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}
