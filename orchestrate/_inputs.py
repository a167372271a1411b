"""Workflow inputs: from the command line and files, checked against their specs."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from orchestrate._errors import InputError
from orchestrate._hints import did_you_mean
from orchestrate._secrets import redact, secret_env_values
from orchestrate._spec import InputSpec

_EOF_KEYS = "Ctrl-Z then Enter" if sys.platform == "win32" else "Ctrl-D"

_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def has_type(value: Any, type_name: str) -> bool:
    """Whether `value` is of an input type (a bool is no number; NaN is no number)."""
    return _CHECKS[type_name](value)


def read_inputs_file(path: str | Path) -> dict[str, Any]:
    """`--inputs FILE`: a JSON or YAML mapping of input names to values."""
    from orchestrate._loader import load_data

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the inputs file {path}: {exc}") from None
    data = load_data(text, str(path))  # JSON is YAML: one parser, located errors
    if not isinstance(data, dict):
        raise InputError(f"the inputs file {path} must hold a mapping of names to values")
    return data


def parse_assignments(
    assignments: list[str], specs: Mapping[str, InputSpec], stdin: IO[str] | None = None
) -> dict[str, Any]:
    """`-i NAME=VALUE` pairs; typed values are JSON.

    `@file` reads a file, `@-` stdin, and `@@text` is the literal `@text`.
    """
    values: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, raw = assignment.partition("=")
        if not sep or not name:
            raise InputError(
                f"expected NAME=VALUE, got {assignment!r}",
                hint="for example: -i article=@article.txt",
            )
        if name not in specs:
            raise InputError(f"unknown input {name!r}", hint=_input_hint(name, specs))
        text = _read_value(name, raw, stdin)
        values[name] = text if specs[name].type == "string" else _parse_json(name, text)
    return values


def _read_value(name: str, raw: str, stdin: IO[str] | None) -> str:
    if raw.startswith("@@"):
        return raw[1:]
    if raw == "@-":
        source = stdin or sys.stdin
        if _is_terminal(source):  # else the command seems to hang, waiting for input
            print(f"reading input {name!r} from stdin (end with {_EOF_KEYS})", file=sys.stderr)
        binary = getattr(source, "buffer", None)
        if binary is None:
            return source.read()
        try:
            return binary.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"standard input is not valid UTF-8 (byte {exc.start})") from None
    if raw.startswith("@"):
        try:
            return Path(raw[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read {raw[1:]}: {exc}") from None
    return raw


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _parse_json(name: str, text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant, parse_int=_int_within_limit)
    except _TooManyDigits as exc:
        raise InputError(f"input {name!r}: {exc}") from None
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        shown = _shown(text)
        raise InputError(f"input {name!r} must be JSON for its type, got {shown!r}") from None


class _TooManyDigits(ValueError):
    pass


def _int_within_limit(digits: str) -> int:
    """An integer, unless it is past Python's digit limit (which would be a traceback)."""
    limit = sys.get_int_max_str_digits()
    if limit and len(digits.lstrip("-")) > limit:
        raise _TooManyDigits(f"the number has more than {limit:,} digits")
    return int(digits)


def _shown(text: str, limit: int | None = 60) -> str:
    """An input's value as an error quotes it: redacted whole, then shortened."""
    text = redact(text, secret_env_values(os.environ))
    return text if limit is None or len(text) < limit else text[: limit - 3] + "..."


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON, whatever Python's json module accepts."""
    raise ValueError(f"{name} is not JSON")


def resolve_inputs(
    specs: Mapping[str, InputSpec], given: Mapping[str, Any], *, partial: bool = False
) -> dict[str, Any]:
    """The run's inputs: given values checked by type, defaults filled in, in spec order.

    `partial`: only check the given values (a batch's shared inputs, which its rows
    complete).
    """
    for name in given:
        if name not in specs:
            raise InputError(f"unknown input {name!r}", hint=_input_hint(name, specs))
    resolved: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in given:
            value = given[name]
            if not has_type(value, spec.type):
                shown = _shown(json.dumps(value, ensure_ascii=False, default=str), limit=None)
                raise InputError(f"input {name!r} must be of type {spec.type}, got {shown}")
            if spec.enum is not None and value not in spec.enum:
                raise not_a_choice(name, value, spec.enum)
            resolved[name] = value
        elif partial:
            continue
        elif spec.required:
            raise InputError(
                f"missing required input {name!r}",
                hint=f"pass it with -i {name}=VALUE or --inputs FILE",
            )
        else:
            resolved[name] = spec.default
    return resolved


def choices_text(values: tuple[Any, ...]) -> str:
    """An `enum`'s values as messages list them: `fast, slow` (non-strings as JSON)."""
    return ", ".join(v if isinstance(v, str) else json.dumps(v) for v in values)


def not_a_choice(name: str, value: Any, values: tuple[Any, ...]) -> InputError:
    """A value that is not one of the input's `enum` values, with the nearest as a hint."""
    shown = _shown(json.dumps(value, ensure_ascii=False, default=str))
    hint = did_you_mean(value, values) if isinstance(value, str) else None
    return InputError(
        f"input {name!r} must be one of {choices_text(values)}, got {shown}",
        hint=hint or f"the values it takes: {choices_text(values)}",
    )


def _input_hint(name: str, specs: Mapping[str, InputSpec]) -> str:
    if not specs:
        return "this workflow takes no inputs"
    return did_you_mean(name, specs) or f"known inputs: {', '.join(specs)}"
