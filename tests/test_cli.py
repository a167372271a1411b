"""What every command's `--help` shows, across the whole CLI."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

COMMANDS = [["run"], ["validate"], ["graph"], ["schema"], ["init"], ["runs", "list"],
            ["runs", "show"], ["runs", "diff"], ["runs", "delete"], ["runs", "prune"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_usage_names_arguments_in_capitals(command: list[str], cli: Callable) -> None:
    """Usage lines name every argument the same way: FLOW, FLOW..., RUN_ID, [PATH]."""
    result = cli(*command, "--help")
    usage = next(line for line in result.stdout.splitlines() if "Usage:" in line)
    arguments = usage.split("[OPTIONS]", 1)[1].split()
    assert all(re.fullmatch(r"[{\[][A-Z_]+(\.\.\.)?[}\]]", a) for a in arguments), usage
