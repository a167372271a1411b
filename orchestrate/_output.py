"""Turning a model's reply into the step's output: JSON parsing and schema checks."""

from __future__ import annotations

import json
import re
from typing import Any

from orchestrate._errors import InvalidOutput

_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n(.*?)\n?```\s*$", re.DOTALL)


def parse_json_reply(text: str, schema: dict[str, Any] | None, what: str = "reply") -> Any:
    """The JSON value of a reply (a ```json fence is accepted), checked against `schema`.

    `what` names the text in errors: the validator checks a constant `mock:` this way.
    """
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidOutput(f"the {what} is not valid JSON ({exc.msg} at line {exc.lineno} "
                            f"column {exc.colno})") from None
    except _NotJSON as exc:
        raise InvalidOutput(f"the {what} is not valid JSON ({exc})") from None
    if schema is not None:
        _check_schema(value, schema, what)
    return value


def schema_validator(schema: dict[str, Any]) -> Any:
    """The jsonschema validator class for a schema's `$schema` (draft 2020-12 by default)."""
    import jsonschema

    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)


class _NotJSON(ValueError):
    """A reply uses a constant that JSON does not have (NaN, Infinity)."""


def _no_constant(name: str) -> Any:
    raise _NotJSON(f"{name} is not a JSON value")


class _NoFetch(Exception):
    """A schema refers to another document: orchestrate never fetches schemas."""


def _no_retrieve(uri: str) -> Any:
    raise _NoFetch(f"remote $ref {uri!r}: orchestrate never fetches schemas")


def _offline_registry() -> Any:
    """A registry that resolves only what is inside the schema, never over the network."""
    from referencing import Registry

    return Registry(retrieve=_no_retrieve)  # type: ignore[call-arg]


def _check_schema(value: Any, schema: dict[str, Any], what: str) -> None:
    import jsonschema

    try:
        validator = schema_validator(schema)(schema, registry=_offline_registry())
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except RecursionError:
        raise InvalidOutput("the step's schema cannot be used: it refers to itself "
                            "without end") from None
    except Exception as exc:
        raise InvalidOutput(f"the step's schema cannot be used: {_describe(exc)}") from None
    if error is not None:
        where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise InvalidOutput(f"the {what} does not match the schema at ${where}: {error.message}")


def _describe(exc: BaseException) -> str:
    """A one-line account of why a schema could not be used."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, _NoFetch):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
