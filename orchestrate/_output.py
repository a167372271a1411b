"""Turning a model's reply into the step's output: JSON parsing and schema checks."""

from __future__ import annotations

import json
import re
from typing import Any

from orchestrate._errors import InvalidOutput

# A fenced block: the fences on lines of their own, as Markdown writes them. A JSON string
# holds no raw line break, so a fence found this way is never inside one.
_FENCE = re.compile(
    r"^[ \t]*```[ \t]*([\w+-]*)[ \t]*\n(.*?)\n?[ \t]*```[ \t]*$", re.MULTILINE | re.DOTALL
)
_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def parse_json_reply(text: str, schema: dict[str, Any] | None, what: str = "reply") -> Any:
    """The JSON value of a reply, checked against `schema`.

    Models wrap JSON in prose and fences, so the reply may be: the JSON alone; one
    ```json (or plain ```) block, with prose around it; or one object or array with prose
    around it that holds no brackets. Anything else is an :class:`InvalidOutput`.
    `what` names the text in errors: the validator checks a constant `mock:` this way.
    """
    value = _json_in(text, what)
    if schema is not None:
        _check_schema(value, schema, what)
    return value


def _json_in(text: str, what: str) -> Any:
    try:
        return _decode(text, 0, len(text), what)
    except InvalidOutput as not_json:
        problem = not_json
    span = _fenced_block(text, what) or _embedded_span(text)
    if span is None:
        raise problem
    return _decode(text, *span, what)


def _fenced_block(text: str, what: str) -> tuple[int, int] | None:
    """Where the body of the reply's one JSON fence is (```json, else a plain ```)."""
    blocks = [match for match in _FENCE.finditer(text) if match[1].lower() in ("json", "")]
    tagged = [match for match in blocks if match[1]]
    blocks = tagged or blocks
    if len(blocks) > 1:
        raise InvalidOutput(f"the {what} holds {len(blocks)} JSON code blocks, not one")
    return blocks[0].span(2) if blocks else None


def _embedded_span(text: str) -> tuple[int, int] | None:
    """From the first ``{`` or ``[`` to the last ``}`` or ``]``: the one candidate.

    Taking the outermost brackets, never a part inside them, means that broken JSON is
    never mistaken for the valid array or object it contains, and that two values, or
    brackets in the prose, make the candidate fail to parse rather than pick one of them.
    """
    starts = [index for index in (text.find("{"), text.find("[")) if index >= 0]
    end = max(text.rfind("}"), text.rfind("]")) + 1
    if not starts or end <= min(starts):
        return None
    return min(starts), end


class _NotJSON(ValueError):
    """A reply uses a constant that JSON does not have (NaN, Infinity)."""


def _no_constant(name: str) -> Any:
    raise _NotJSON(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _decode(text: str, start: int, end: int, what: str) -> Any:
    """The one JSON value in ``text[start:end]``, whitespace around it allowed; an error
    names its line and column in the whole reply."""
    try:
        value, stop = _DECODER.raw_decode(text, _skip_space(text, start))
        stop = _skip_space(text, stop)
        if stop < end:
            raise json.JSONDecodeError("Extra data", text, stop)
    except json.JSONDecodeError as exc:
        raise InvalidOutput(
            f"the {what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except _NotJSON as exc:
        raise InvalidOutput(f"the {what} is not valid JSON ({exc})") from None
    except RecursionError:
        raise InvalidOutput(f"the {what} is not valid JSON (it is nested too deeply)") from None
    return value


def _skip_space(text: str, index: int) -> int:
    match = _JSON_SPACE.match(text, index)
    return match.end() if match else index


def schema_validator(schema: dict[str, Any]) -> Any:
    """The jsonschema validator class for a schema's `$schema` (draft 2020-12 by default)."""
    import jsonschema

    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)


class _NoFetch(Exception):
    """A schema refers to another document: orchestrate never fetches schemas."""


def _no_retrieve(uri: str) -> Any:
    raise _NoFetch(f"remote $ref {uri!r}: orchestrate never fetches schemas")


def _offline_registry() -> Any:
    """A registry that resolves only what is inside the schema, never over the network."""
    from referencing import Registry

    # referencing wraps attrs.frozen in its own decorator, which hides the field's
    # `retrieve` alias from mypy's attrs plugin.
    return Registry(retrieve=_no_retrieve)  # type: ignore[call-arg]


def _check_schema(value: Any, schema: dict[str, Any], what: str) -> None:
    import jsonschema

    try:
        validator = schema_validator(schema)(schema, registry=_offline_registry())
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except RecursionError:
        raise InvalidOutput(
            "the step's schema cannot be used: it refers to itself without end"
        ) from None
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
