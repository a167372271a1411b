"""The ranges of numeric settings and the spellings of on/off environment variables."""

from __future__ import annotations

import math

import pytest

from orchestrate import RunOptions, UsageError
from orchestrate._settings import MAX_CONCURRENCY, env_switch, not_empty


@pytest.mark.parametrize("value", [1, 8, 1024])
def test_bounds_accept_their_range(value: int) -> None:
    """A value inside the range, both ends included, comes back unchanged."""
    assert value == MAX_CONCURRENCY.check("--max-concurrency", value)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "0"),
        (-3, "-3"),
        (1025, "1025"),
        (10**30, "10000000000000000..."),
        (math.nan, "nan"),
    ],
)
def test_bounds_refuse_what_is_outside(value: float, shown: str) -> None:
    """Outside the range (NaN included): a UsageError naming the setting, its range and
    the value, shortened when it is long."""
    with pytest.raises(UsageError) as caught:
        MAX_CONCURRENCY.check("--max-concurrency", value)
    assert f"--max-concurrency must be between 1 and 1024, got {shown}" == caught.value.message


@pytest.mark.parametrize("value", ["", " ", "\t\n"])
def test_not_empty_refuses_blank_text(value: str) -> None:
    """An empty or blank value is an error naming the setting, never "not given"."""
    with pytest.raises(UsageError) as caught:
        not_empty("--model", value)
    assert caught.value.message == "--model must not be empty"


@pytest.mark.parametrize("value", [None, "gpt-4o", " x "])
def test_not_empty_passes_values_and_absence(value: str | None) -> None:
    """None (not given) and any text with a character pass unchanged."""
    assert value == not_empty("--model", value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("OFF", False),
        ("", False),
        ("  ", False),
    ],
)
def test_env_switch_spellings(raw: str, expected: bool) -> None:
    """1/0, true/false, yes/no, on/off in any case, and empty, are understood."""
    assert expected == env_switch("ORCHESTRATE_MOCK", {"ORCHESTRATE_MOCK": raw})


def test_env_switch_unset_is_off() -> None:
    """A variable that is not set is off."""
    assert env_switch("ORCHESTRATE_MOCK", {}) is False


@pytest.mark.parametrize("raw", ["maybe", "2", "y", "enable", "truee"])
def test_env_switch_refuses_other_values(raw: str) -> None:
    """Any other value is an error naming the variable and the accepted spellings."""
    with pytest.raises(UsageError) as caught:
        env_switch("ORCHESTRATE_USE_MOCK", {"ORCHESTRATE_USE_MOCK": raw})
    assert caught.value.message == (
        f"ORCHESTRATE_USE_MOCK must be one of 1/0, true/false, yes/no, on/off, got {raw!r}"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency must be between 1 and 1024, got 0"),
        ({"max_concurrency": 5000}, "max_concurrency must be between 1 and 1024, got 5000"),
        ({"model": ""}, "model must not be empty"),
    ],
)
def test_run_options_check_their_values(kwargs: dict, message: str) -> None:
    """RunOptions from Python are held to the same ranges as the command line."""
    with pytest.raises(UsageError) as caught:
        RunOptions(**kwargs)
    assert message == caught.value.message
