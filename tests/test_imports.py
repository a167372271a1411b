"""`--help` and `validate` stay fast: they never load the modules only a run needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

# What a run needs and these commands must not pay for: the event loop, the HTTP client,
# the history database, the live display, the web view's server and (for --help) the
# template engine.
_RUN_ONLY = ("asyncio", "httpx", "sqlite3", "rich.live", "starlette", "uvicorn", "orchestrate.ui")


def _imported(*args: str) -> set[str]:
    """The modules `python -m orchestrate ARGS` imports, from `-X importtime`'s report."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orchestrate", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    # Each report line ends with "| <indent><module>"; the header says "imported package".
    return {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    } - {"imported package"}


@pytest.mark.parametrize(
    ("args", "unwanted"),
    [
        # markdown_it and pygments: typer's help imports Rich's Markdown and traceback
        # modules for features this CLI leaves off (orchestrate._deferred).
        (("--help",), (*_RUN_ONLY, "jinja2", "markdown_it", "pygments")),
        # validate reads the providers' table, never a request nor a result.
        (
            ("validate", "workflows/article-digest.yaml"),
            (*_RUN_ONLY, "orchestrate.providers._base", "orchestrate._result"),
        ),
    ],
    ids=["help", "validate"],
)
def test_command_leaves_run_only_modules_unimported(
    args: tuple[str, ...], unwanted: tuple[str, ...]
) -> None:
    """The command imports none of the heavy modules that only `run` uses."""
    imported = _imported(*args)
    assert "orchestrate._cli" in imported  # the report was read: the CLI itself is there
    assert [name for name in unwanted if name in imported] == []


def test_run_leaves_httpx_own_command_line_unimported(tmp_path: Path) -> None:
    """`run` imports httpx without its command line (click, rich's console, pygments)."""
    flow = tmp_path / "flow.yaml"
    flow.write_text("steps:\n  - {id: a, prompt: hi, retries: 0, timeout: 5}\n")
    env = {
        **os.environ,
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "OPENAI_API_KEY": "k",
        "ORCHESTRATE_HOME": str(tmp_path / "home"),
    }
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orchestrate", "run", str(flow)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=False,
    )
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "httpx" in imported  # the run sent its request
    assert [name for name in ("click", "pygments", "rich.syntax") if name in imported] == []


def test_runs_list_imports_only_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`runs list` opens the history without what recording a run needs (the event loop,
    the loader, the workflow model, templates): its time is start-up, not the database."""
    monkeypatch.setenv("ORCHESTRATE_HOME", str(tmp_path))
    imported = _imported("runs", "list", "--json")
    assert "orchestrate.history._sqlite" in imported  # the history was opened
    unwanted = (
        "asyncio",
        "httpx",
        "jinja2",
        "orchestrate._loader",
        "orchestrate._spec",
        "orchestrate.history._recorder",
    )
    assert [name for name in unwanted if name in imported] == []


def test_command_annotations_are_objects_not_strings() -> None:
    """typer reads every command's parameters on every start-up: string annotations (from
    `from __future__ import annotations` in _cli.py) would make it compile each one."""
    import typer

    from orchestrate._cli import app

    def callbacks(typer_app: typer.Typer) -> list[Any]:
        found = [command.callback for command in typer_app.registered_commands]
        for group in typer_app.registered_groups:
            assert group.typer_instance is not None
            found += callbacks(group.typer_instance)
        return found

    commands = callbacks(app)
    assert len(commands) > 10  # the sub-apps' commands were found too
    strings = [
        f"{command.__name__}({name})"
        for command in commands
        for name, annotation in command.__annotations__.items()
        if isinstance(annotation, str)
    ]
    assert strings == []
