"""What every command's `--help` shows, across the whole CLI."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate._cli import app

COMMANDS = [
    ["run"],
    ["validate"],
    ["graph"],
    ["schema"],
    ["init"],
    ["runs", "list"],
    ["runs", "show"],
    ["runs", "diff"],
    ["runs", "delete"],
    ["runs", "prune"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_usage_names_arguments_in_capitals(command: list[str], cli: Callable) -> None:
    """Usage lines name every argument the same way: FLOW, FLOW..., RUN_ID, [PATH]."""
    result = cli(*command, "--help")
    usage = next(line for line in result.stdout.splitlines() if "Usage:" in line)
    arguments = usage.split("[OPTIONS]", 1)[1].split()
    assert all(re.fullmatch(r"[{\[][A-Z_]+(\.\.\.)?[}\]]", a) for a in arguments), usage


def _options(command: Any, name: str = "orchestrate") -> Iterator[tuple[str, Any]]:
    for sub_name, sub in (getattr(command, "commands", None) or {}).items():
        yield from _options(sub, f"{name} {sub_name}")
    for param in command.params:
        if param.param_type_name == "option":
            yield name, param


def test_every_option_with_a_value_names_it_as_the_docs_do() -> None:
    """`--model MODEL`, `-i NAME=VALUE`, `--limit N`: no `<str>`/`<int>` in any --help,
    and docs/cli.md names every option of every command."""
    import typer.main

    docs = Path(__file__).parents[1].joinpath("docs", "cli.md").read_text(encoding="utf-8")
    missing, unnamed = [], []
    for command, option in _options(typer.main.get_command(app)):
        if option.is_flag or option.opts == ["--help"]:
            continue
        if option.metavar is None and not hasattr(option.type, "choices"):
            unnamed.append(f"{command} {option.opts[0]}")
        if option.opts[0] not in docs:
            missing.append(f"{command} {option.opts[0]}")
    assert unnamed == []
    assert missing == []
