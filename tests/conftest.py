"""Fixtures every test gets: a private data directory and an environment without keys."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from orchestrate._cli import app
from orchestrate.providers import KINDS

# The variables that would make a test depend on the machine it runs on.
_ENVIRONMENT = (
    *(name for kind in KINDS.values() for name in (kind.api_key_env, kind.base_url_env)),
    "ORCHESTRATE_MOCK",
    "ORCHESTRATE_USE_MOCK",
    "ORCHESTRATE_MODEL",
    "ORCHESTRATE_DATABASE_URL",
    "ORCHESTRATE_USER",
)

REPO = Path(__file__).resolve().parent.parent


# A step that finishes at once, then a function that waits a minute: for Ctrl-C tests.
SLOW = """
    import asyncio

    async def wait_long():
        await asyncio.sleep(60)
        return "never"
    """
FAST_THEN_SLOW = """
    steps:
      - id: fast
        prompt: x
        mock: quick answer
      - id: slow
        function: slow:wait_long
        needs: [fast]
    """


# A template that takes about a minute to render, well within the sandbox's limits.
SLOW_TEMPLATE = (
    "{% set s = 'x' * 900000 %}{% for i in range(100000) %}"
    "{% if s.count('y') %}{% endif %}{% endfor %}done"
)


def start_orchestrate(*args: str | Path) -> subprocess.Popen:
    """`python -m orchestrate ARGS` as a real process, its output unbuffered and piped."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrate", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = 30) -> None:
    """Read the process's stderr until a line holds `text`; fail the test after `timeout` s.

    A thread reads, so a process that prints nothing cannot block the test past the
    deadline; it stops at the line, leaving the rest of stderr to `communicate()`.
    """
    stderr = process.stderr
    assert stderr is not None
    seen: list[str] = []

    def read() -> None:
        for line in stderr:
            seen.append(line)
            if text in line:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not seen or text not in seen[-1]:
        process.kill()  # ends the reader at end of file
        reader.join()
        process.communicate()
        pytest.fail(
            f"no line with {text!r} on stderr within {timeout:g} s; it read:\n" + "".join(seen)
        )


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point ORCHESTRATE_HOME and the template cache at temporary folders and drop keys
    and mock switches."""
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORCHESTRATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ORCHESTRATE_CACHE_DIR", str(tmp_path / "cache"))
    yield


@pytest.fixture
def anyio_backend() -> str:
    """Run the @pytest.mark.anyio tests on asyncio only: orchestrate never uses trio."""
    return "asyncio"


@pytest.fixture
def write_flow(tmp_path: Path) -> Callable[..., Path]:
    """Write a workflow (dedented YAML) into the test's folder and return its path."""

    def write(text: str, name: str = "flow.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Invoke the CLI in-process; stdout and stderr stay separate."""

    def invoke(*args: str | Path, input: str | None = None) -> Result:
        return CliRunner().invoke(app, [str(a) for a in args], input=input)

    return invoke


@pytest.fixture
def run_json(cli: Callable[..., Result]) -> Callable[..., tuple[int, dict[str, Any]]]:
    """`orchestrate run FLOW --mock --json ...`: the exit code and the parsed document."""

    def run(flow: Path, *args: str) -> tuple[int, dict[str, Any]]:
        result = cli("run", flow, "--mock", "--json", *args)
        return result.exit_code, json.loads(result.stdout)

    return run


# --- the history on both backends ----------------------------------------------------------------
# A test module that says `pytestmark = pytest.mark.usefixtures("history_backend")` runs
# each test on SQLite and on a real PostgreSQL (a fresh schema per test); a test marked
# `sqlite_only` (it checks the file itself) runs on SQLite alone.

HISTORY_BACKENDS = ("sqlite", "postgres")
_schemas = itertools.count()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "history_backend" in metafunc.fixturenames:
        only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize(
            "history_backend", ["sqlite"] if only_sqlite else HISTORY_BACKENDS, indirect=True
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A throw-away PostgreSQL server for the whole session; the tests that need it skip
    when PostgreSQL is not installed, unless ORCHESTRATE_REQUIRE_POSTGRES=1 (CI)."""
    from tests.postgres_server import REQUIRE, running_server

    try:
        import psycopg  # noqa: F401
    except ImportError:
        if os.environ.get(REQUIRE) == "1":
            raise
        pytest.skip("psycopg is not installed")
    try:
        with running_server() as server:
            yield server
    except FileNotFoundError as exc:
        if os.environ.get(REQUIRE) == "1":
            raise
        pytest.skip(str(exc))


def fresh_schema(server: Any) -> str:
    """The URL of a new, empty schema on `server` (much faster than a database per test)."""
    import psycopg

    schema = f"test_{os.getpid()}_{next(_schemas)}"
    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    return f"{server.url}?options=-csearch_path%3D{schema}"


@pytest.fixture
def history_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The history on SQLite (ORCHESTRATE_HOME) or on PostgreSQL (ORCHESTRATE_DATABASE_URL)."""
    if request.param == "postgres":
        url = fresh_schema(request.getfixturevalue("postgres_server"))
        monkeypatch.setenv("ORCHESTRATE_DATABASE_URL", url)
    return str(request.param)


class _PostgresConnection:
    """psycopg, spoken to like sqlite3: `?` placeholders, `with` closes."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.raw = psycopg.connect(url, autocommit=True)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.raw.execute(sql.replace("%", "%%").replace("?", "%s"), params)

    def __enter__(self) -> _PostgresConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()


def history_connection() -> Any:
    """A connection to the tests' history, whichever backend holds it (`?` placeholders)."""
    url = os.environ.get("ORCHESTRATE_DATABASE_URL")
    if url:
        return _PostgresConnection(url)
    return sqlite3.connect(Path(os.environ["ORCHESTRATE_HOME"]) / "history.db")


def history_bytes() -> bytes:
    """Everything the history holds, to search for what must not be there: the SQLite
    file's bytes, or every row of every table of the PostgreSQL schema."""
    url = os.environ.get("ORCHESTRATE_DATABASE_URL")
    if not url:
        return (Path(os.environ["ORCHESTRATE_HOME"]) / "history.db").read_bytes()
    with _PostgresConnection(url) as db:
        tables = [
            row[0]
            for row in db.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        ]
        return "".join(
            str(db.execute(f"SELECT * FROM {table}").fetchall()) for table in tables
        ).encode()
