"""Turning a model's reply into the step's output: JSON parsing and schema checks."""

from __future__ import annotations

import json
import re
from typing import Any

from orchestrate._errors import InvalidOutput

_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n(.*?)\n?```\s*$", re.DOTALL)


def parse_json_reply(text: str, schema: dict[str, Any] | None) -> Any:
    """The JSON value of a reply (a ```json fence is accepted), checked against `schema`."""
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidOutput(f"the reply is not valid JSON ({exc.msg} at line {exc.lineno} "
                            f"column {exc.colno})") from None
    if schema is not None:
        _check_schema(value, schema)
    return value


def schema_validator(schema: dict[str, Any]) -> Any:
    """The jsonschema validator class for a schema's `$schema` (draft 2020-12 by default)."""
    import jsonschema

    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)


def _check_schema(value: Any, schema: dict[str, Any]) -> None:
    import jsonschema

    error = jsonschema.exceptions.best_match(schema_validator(schema)(schema).iter_errors(value))
    if error is not None:
        where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise InvalidOutput(f"the reply does not match the schema at ${where}: {error.message}")
