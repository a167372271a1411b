"""`--help` and `validate` stay fast: they never load the modules only a run needs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

# What a run needs and these commands must not pay for: the event loop, the HTTP client,
# the history database, the live display, the web view's server and (for --help) the
# template engine.
_RUN_ONLY = ("asyncio", "httpx", "sqlite3", "rich.live", "starlette", "uvicorn",
             "orchestrate.ui")


def _imported(*args: str) -> set[str]:
    """The modules `python -m orchestrate ARGS` imports, from `-X importtime`'s report."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orchestrate", *args],
        capture_output=True, text=True, cwd=REPO, check=True,
    )
    # Each report line ends with "| <indent><module>"; the header says "imported package".
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:")} - {"imported package"}


@pytest.mark.parametrize(
    ("args", "unwanted"),
    [
        (("--help",), (*_RUN_ONLY, "jinja2")),
        (("validate", "workflows/article-digest.yaml"), _RUN_ONLY),
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
