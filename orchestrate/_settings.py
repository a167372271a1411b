"""Settings given on the command line, in the environment or to the Python API: the range
of each number and the spellings of an on/off switch, each rule written once.

Imported by the CLI at start-up: it stays free of heavy imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import attrs

from orchestrate._errors import UsageError

N = TypeVar("N", int, float)


@attrs.frozen
class Bounds:
    """An inclusive range of accepted numbers (NaN is in none)."""

    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def check(self, name: str, value: N) -> N:
        """`value`, or a UsageError naming the setting and its range."""
        if value not in self:
            raise UsageError(
                f"{name} must be between {self.low} and {self.high}, got {_shorten(str(value))}"
            )
        return value

    def validate(self, _instance: object, attribute: attrs.Attribute, value: N) -> None:
        """The check as an attrs validator, named after the field."""
        self.check(attribute.name, value)


def _shorten(text: str) -> str:
    return text if len(text) <= 20 else text[:17] + "..."


# Past these a value is a typo, and can cost a traceback or gigabytes of memory.
MAX_CONCURRENCY = Bounds(1, 1024)  # steps and for_each items at once
RUNS_LIMIT = Bounds(0, 1_000_000)  # `runs list --limit` (0: all)
MOCK_LATENCY = Bounds(0, 3600)  # seconds per mock answer


def not_empty(name: str, value: str | None) -> str | None:
    """`value` unless it is empty (None means not given, and passes)."""
    if value is not None and not value.strip():
        raise UsageError(f"{name} must not be empty")
    return value


def validate_not_empty(_instance: object, attribute: attrs.Attribute, value: str | None) -> None:
    """:func:`not_empty` as an attrs validator, named after the field."""
    not_empty(attribute.name, value)


_SWITCH = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
    "": False,
}


def env_switch(name: str, env: Mapping[str, str]) -> bool:
    """An on/off environment variable: 1/0, true/false, yes/no or on/off in any case;
    unset or empty is off. Anything else is a UsageError naming the variable."""
    raw = env.get(name, "")
    value = _SWITCH.get(raw.strip().lower())
    if value is None:
        raise UsageError(
            f"{name} must be one of 1/0, true/false, yes/no, on/off, got {raw!r}",
            hint=f"unset {name} (or set it empty) to turn it off",
        )
    return value
