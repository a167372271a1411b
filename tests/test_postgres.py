"""The history on PostgreSQL: migrating, many writers at once, and a database that fails.

The rest of the history suite runs on PostgreSQL too (the `history_backend` fixture);
these tests are about what only a shared server has.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate._errors import StoreError
from orchestrate.history import open_store
from orchestrate.history._schema import MIGRATIONS, POSTGRESQL
from tests.conftest import fresh_schema, history_connection, start_orchestrate, wait_for_line
from tests.postgres_server import PASSWORD_USER, running_server

TWO_STEPS = """
    steps:
      - id: draft
        prompt: "Write about tides"
        mock: "a draft"
      - id: title
        prompt: "A title for: {{ steps.draft.output }}"
        mock: "A Title"
    """


@pytest.fixture
def postgres_url(postgres_server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """ORCHESTRATE_DATABASE_URL pointing at a fresh, empty schema."""
    url = fresh_schema(postgres_server)
    monkeypatch.setenv("ORCHESTRATE_DATABASE_URL", url)
    return url


def query(sql: str, *params: object) -> list[tuple]:
    with history_connection() as db:
        return [tuple(row) for row in db.execute(sql, params).fetchall()]


def finish(process: Any, timeout: float = 120) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


# --- the schema ----------------------------------------------------------------------------------


def test_an_empty_schema_is_migrated(postgres_url: str) -> None:
    """A first open creates every table and records each migration once, by name."""
    with open_store() as store:
        assert store.applied_migrations() == [m.name for m in MIGRATIONS]
    with open_store() as store:  # already up to date: nothing applied twice
        assert sorted(store.applied_migrations()) == sorted(m.name for m in MIGRATIONS)
    tables = {
        row[0]
        for row in query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    }
    assert tables == {"_migrations", "runs", "steps", "responses", "batches"}
    assert query(
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'runs' "
        "AND column_name = 'started' AND table_schema = current_schema()"
    ) == [("double precision",)]


def test_an_old_database_is_migrated(postgres_url: str) -> None:
    """A schema made by the first migration alone is upgraded; its runs stay readable."""
    with history_connection() as db:
        db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        for statement in MIGRATIONS[0].sql(POSTGRESQL):
            db.execute(statement)
        db.execute("INSERT INTO _migrations (name) VALUES ('m001_initial')")
        db.execute(
            "INSERT INTO runs (run_id, workflow, status, mode, started_at, started, "
            "inputs) VALUES ('r1', 'w', 'succeeded', 'mock', 'then', 0, '{}')"
        )
        db.execute(
            "INSERT INTO steps (run_id, position, step_id, kind, status, output) "
            "VALUES ('r1', 0, 'each', 'llm', 'succeeded', '[1, 2]')"
        )
    with open_store() as store:
        [stored] = store.stored_steps("r1")
        assert store.run_row("r1")["user_name"] is None
        assert len(store.applied_migrations()) == len(MIGRATIONS)
    assert (stored.result.output, stored.result.items) == ([1, 2], ())


def test_a_newer_database_is_refused(
    postgres_url: str, write_flow: Callable, cli: Callable
) -> None:
    """A schema migrated by a newer orchestrate: exit 2 naming it, nothing written."""
    with open_store():
        pass
    with history_connection() as db:
        db.execute("INSERT INTO _migrations (name) VALUES ('m999_from_the_future')")
    for command in (["run", str(write_flow(TWO_STEPS)), "--mock"], ["runs", "list"]):
        result = cli(*command)
        assert result.exit_code == 2, result.stderr
        assert "written by a newer orchestrate" in result.stderr
        assert "m999_from_the_future" in result.stderr
    assert query("SELECT count(*) FROM runs") == [(0,)]


def test_a_foreign_runs_table_is_refused(postgres_url: str) -> None:
    """A schema whose `runs` table is someone else's is refused, and left untouched."""
    with history_connection() as db:
        db.execute("CREATE TABLE runs (id INTEGER)")
    with pytest.raises(StoreError, match="not orchestrate's"):
        open_store()
    assert query("SELECT to_regclass('_migrations') IS NULL") == [(True,)]


def test_processes_starting_at_once_migrate_once(postgres_url: str) -> None:
    """Six processes open a fresh schema at the same moment: all succeed (the advisory lock
    lets one migrate while the others wait), each migration recorded once."""
    processes = [start_orchestrate("runs", "list", "--json") for _ in range(6)]
    for process in processes:
        code, stdout, stderr = finish(process)
        assert code == 0, stderr
        assert json.loads(stdout) == []
    assert sorted(query("SELECT name FROM _migrations")) == sorted((m.name,) for m in MIGRATIONS)


# --- many writers --------------------------------------------------------------------------------


def test_many_processes_record_into_one_database(postgres_url: str, write_flow: Callable) -> None:
    """Four runs at once in four processes: each recorded in full, nothing mixed up."""
    steps = ["steps:"] + [
        f"  - {{id: s{n}, prompt: 'step {n}', mock: 'answer {n}'}}" for n in range(30)
    ]
    flow = write_flow("\n".join(steps) + "\n")
    processes = [start_orchestrate("run", flow, "--mock", "--json", "-q") for _ in range(4)]
    run_ids = []
    for process in processes:
        code, stdout, stderr = finish(process)
        assert code == 0, stderr
        run_ids.append(json.loads(stdout)["run_id"])
    rows = query(
        "SELECT run_id, status, (SELECT count(*) FROM steps s WHERE s.run_id = r.run_id)"
        " FROM runs r ORDER BY run_id"
    )
    assert rows == sorted((run_id, "succeeded", 30) for run_id in run_ids)


def test_the_cache_answers_other_processes(
    postgres_url: str, write_flow: Callable, cli: Callable
) -> None:
    """An answer cached by one process answers the same request in others, at once."""
    flow = write_flow(TWO_STEPS)
    first = cli("run", flow, "--mock", "--cache", "--json")
    assert first.exit_code == 0
    processes = [start_orchestrate("run", flow, "--mock", "--cache", "--json") for _ in range(3)]
    for process in processes:
        code, stdout, stderr = finish(process)
        assert code == 0, stderr
        assert [step["cached"] for step in json.loads(stdout)["steps"]] == [True, True]
    assert query("SELECT count(*) FROM responses") == [(2,)]


FAILING_ONCE = """
from pathlib import Path


def work(marker):
    if Path(marker).exists():
        raise RuntimeError("the marker file is there")
    return "done"
"""


def test_two_resumes_of_one_run_at_once(
    postgres_url: str, write_flow: Callable, cli: Callable, tmp_path: Path
) -> None:
    """Two `--resume` of the same failed run at the same time: each makes its own new run
    resumed from it, both recorded in full, the failed run left as it was."""
    write_flow(FAILING_ONCE, "tools.py")
    marker = tmp_path / "marker"
    marker.write_text("x")
    flow = write_flow(f"""
        steps:
          - {{id: ask, prompt: hello, mock: hi}}
          - id: work
            function: tools:work
            with: {{marker: "{marker}"}}
            needs: [ask]
        """)
    failed = cli("run", flow, "--mock", "--json")
    assert failed.exit_code == 1
    failed_id = json.loads(failed.stdout)["run_id"]
    marker.unlink()
    processes = [
        start_orchestrate("run", flow, "--mock", "--json", "--resume", failed_id) for _ in range(2)
    ]
    docs = []
    for process in processes:
        code, stdout, stderr = finish(process)
        assert code == 0, stderr
        docs.append(json.loads(stdout))
    assert len({doc["run_id"] for doc in docs}) == 2
    assert all(doc["resumed_from"] == failed_id for doc in docs)
    assert all(doc["steps"][0]["reused"] for doc in docs)
    for doc in docs:
        assert query("SELECT status, resumed_from FROM runs WHERE run_id = ?", doc["run_id"]) == [
            ("succeeded", failed_id)
        ]
    assert query("SELECT status FROM runs WHERE run_id = ?", failed_id) == [("failed",)]


# --- who ran it ----------------------------------------------------------------------------------


def test_runs_record_their_user_and_host(
    postgres_url: str, write_flow: Callable, cli: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORCHESTRATE_USER names the runner; `runs list --user` filters; `runs show` says."""
    import socket

    flow = write_flow(TWO_STEPS)
    for user in ("ada", "grace", "ada"):
        monkeypatch.setenv("ORCHESTRATE_USER", user)
        assert cli("run", flow, "--mock", "-q").exit_code == 0
    listed = json.loads(cli("runs", "list", "--json", "--user", "ada").stdout)
    assert len(listed) == 2
    assert json.loads(cli("runs", "list", "--json", "--user", "nobody").stdout) == []
    shown = cli("runs", "show", listed[0]["run_id"])
    assert f"ada on {socket.gethostname()}" in shown.stdout


# --- a database that fails -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://orchestrate:pw-s3cret-1@127.0.0.1:PORT/postgres",
        f"postgresql://{PASSWORD_USER}:pw-s3cret-1@127.0.0.1:SERVER/postgres",
        "postgresql://nobody:pw-s3cret-1@127.0.0.1:SERVER/postgres",
        "postgresql://postgres:pw-s3cret-1@127.0.0.1:SERVER/no_such_db",
        "postgresql://orchestrate:pw-s3cret-1@[127.0.0.1/postgres",
        "postgresql://orchestrate:pw-s3cret-1@127.0.0.1:SERVER/postgres?sslmode=sometimes",
    ],
    ids=["refused", "bad password", "unknown user", "unknown database", "bad url", "bad option"],
)
def test_a_database_that_cannot_be_reached(
    url: str, postgres_server: Any, write_flow: Callable, cli: Callable
) -> None:
    """Exit 2 before the run, a clear message, the password nowhere, no traceback."""
    from tests.postgres_server import free_port

    url = url.replace("PORT", str(free_port())).replace("SERVER", str(postgres_server.port))
    result = cli("run", write_flow(TWO_STEPS), "--mock", "--db", url)
    assert result.exit_code == 2
    assert "cannot connect to the run history postgresql://[REDACTED]@" in result.stderr
    assert "pw-s3cret-1" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.fixture
def own_server(monkeypatch: pytest.MonkeyPatch, postgres_server: Any) -> Iterator[Any]:
    """A server of the test's own, that it may stop."""
    with running_server() as server:
        monkeypatch.setenv("ORCHESTRATE_DATABASE_URL", server.url)
        yield server


SLOW_STEP = """
import time


def slow():
    time.sleep(2)
    return "late"
"""


def test_a_database_gone_mid_run(own_server: Any, write_flow: Callable) -> None:
    """The server stops while a run goes on: the run finishes, its result is printed, the
    exit code is the run's, and the failure to record it is a one-line warning."""
    write_flow(SLOW_STEP, "slow.py")
    flow = write_flow("""
        steps:
          - {id: fast, prompt: x, mock: quick}
          - {id: slow, function: "slow:slow", needs: [fast]}
        """)
    process = start_orchestrate("run", flow, "--mock")
    wait_for_line(process, "slow started")
    time.sleep(0.3)  # the first step is written
    own_server.stop()
    code, stdout, stderr = finish(process)
    assert code == 0, stderr
    assert "## slow\nlate\n" in stdout
    assert "could not record the run in postgresql://" in stderr
    assert "Traceback" not in stderr


def test_the_driver_missing_is_a_clear_error(
    write_flow: Callable, cli: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without psycopg, a postgresql:// URL says how to install it (exit 2)."""
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)
    result = cli("runs", "list", "--db", "postgresql://u:pw-s3cret-1@localhost/db")
    assert result.exit_code == 2
    assert "pip install 'orchestrate[postgres]'" in result.stderr
    assert "pw-s3cret-1" not in result.stderr
