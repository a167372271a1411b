"""The history database: where it lives, what it holds, and how it fails."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from orchestrate._errors import StoreError
from orchestrate._result import ErrorInfo, ItemResult, StepResult, Usage
from orchestrate.history import (
    RunRecord,
    StepRecord,
    database_path,
    git_commit,
    home,
    open_store,
)
from orchestrate.history._schema import MIGRATIONS, SQLITE
from orchestrate.history._sqlite import APPLICATION_ID, SQLiteStore
from tests.conftest import (
    FAST_THEN_SLOW,
    SLOW,
    history_bytes,
    history_connection,
    start_orchestrate,
    wait_for_line,
)

pytestmark = pytest.mark.usefixtures("history_backend")

FAKE_KEY = "sk-test-4e1d7c0b9a8f6e5d4c3b2a19"
OPENAI_URL = "https://api.openai.com/v1/chat/completions"


def history_db() -> Path:
    return Path(os.environ["ORCHESTRATE_HOME"]) / "history.db"


def query(sql: str, *params: object) -> list[tuple]:
    with history_connection() as db:
        return [tuple(row) for row in db.execute(sql, params).fetchall()]


TWO_STEPS = """
    inputs:
      topic: {default: tides}
    steps:
      - id: draft
        prompt: "Write about {{ inputs.topic }}"
        mock: "a draft about {{ inputs.topic }}"
      - id: title
        prompt: "A title for: {{ steps.draft.output }}"
        mock: "A Title"
    """


# --- where and what ---------------------------------------------------------------------------


def test_home_follows_orchestrate_home(tmp_path: Path) -> None:
    """ORCHESTRATE_HOME decides the folder; without it, the user data dir is used."""
    assert database_path({"ORCHESTRATE_HOME": str(tmp_path)}) == tmp_path / "history.db"
    default = home({})
    assert default.name == "orchestrate"
    assert default.is_absolute()


def test_a_run_is_recorded_with_its_steps(write_flow: Callable, run_json: Callable) -> None:
    """A run leaves one row in `runs` and one per step, with outputs, usage and provenance."""
    flow = write_flow(TWO_STEPS)
    code, doc = run_json(flow)
    assert code == 0
    (run,) = query(
        "SELECT run_id, workflow, file, status, mode, file_sha256, input_tokens,"
        " output_tokens, inputs FROM runs"
    )
    assert run[:5] == (doc["run_id"], "flow", str(flow), "succeeded", "mock")
    import hashlib

    assert run[5] == hashlib.sha256(flow.read_bytes()).hexdigest()
    assert (run[6], run[7]) == (doc["usage"]["input_tokens"], doc["usage"]["output_tokens"])
    assert json.loads(run[8]) == {"topic": "tides"}
    steps = query(
        "SELECT step_id, position, kind, status, output, model, response_id,"
        " fingerprint, request FROM steps ORDER BY position"
    )
    assert [s[:4] for s in steps] == [
        ("draft", 0, "llm", "succeeded"),
        ("title", 1, "llm", "succeeded"),
    ]
    assert json.loads(steps[0][4]) == "a draft about tides"
    assert steps[0][5] == "gpt-4o-mini"
    assert steps[0][6].startswith("mock-")
    assert len(steps[0][7]) == 64
    request = json.loads(steps[1][8])
    assert request["messages"] == [{"role": "user", "content": "A title for: a draft about tides"}]


@pytest.mark.sqlite_only
def test_schema_is_versioned_by_named_migrations(write_flow: Callable, run_json: Callable) -> None:
    """Each migration is recorded by name; the file is marked as ours and uses WAL."""
    run_json(write_flow(TWO_STEPS))
    assert [r[0] for r in query("SELECT name FROM _migrations ORDER BY rowid")] == [
        m.name for m in MIGRATIONS
    ]
    assert query("PRAGMA journal_mode") == [("wal",)]
    assert query("PRAGMA application_id")[0][0] != 0
    assert query("PRAGMA user_version") == [(len(MIGRATIONS),)]


@pytest.mark.sqlite_only
def test_a_database_of_the_first_schema_is_upgraded(tmp_path: Path) -> None:
    """A history made before m002 (no `items` column) opens, upgraded, its steps readable."""
    path = tmp_path / "history.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        for statement in MIGRATIONS[0].sql(SQLITE):
            db.execute(statement)
        db.execute("INSERT INTO _migrations (name) VALUES ('m001_initial')")
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO runs (run_id, workflow, status, mode, started_at, started, "
            "inputs) VALUES ('r1', 'w', 'succeeded', 'mock', 'then', 0, '{}')"
        )
        db.execute(
            "INSERT INTO steps (run_id, position, step_id, kind, status, output) "
            "VALUES ('r1', 0, 'each', 'llm', 'succeeded', '[1, 2]')"
        )
    db.close()
    with SQLiteStore.open(path) as store:
        [stored] = store.stored_steps("r1")
    assert (stored.result.output, stored.result.items) == ([1, 2], ())
    with sqlite3.connect(path) as db:
        applied = db.execute("SELECT name FROM _migrations ORDER BY rowid").fetchall()
    assert applied == [(m.name,) for m in MIGRATIONS]


@pytest.mark.sqlite_only
def test_a_database_made_before_users_gets_them(tmp_path: Path) -> None:
    """A history with m001..m004 (batches and cost, under the names they were released
    with) gains the user and checks columns; its batches and runs stay listed, by no one."""
    assert [m.name for m in MIGRATIONS] == [
        "m001_initial",
        "m002_step_items",
        "m003_batches",
        "m004_cost",
        "m005_run_user",
        "m006_checks",
        "m007_runs_alone_by_user",
    ]
    path = tmp_path / "history.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        for migration in MIGRATIONS[:4]:
            for statement in migration.sql(SQLITE):
                db.execute(statement)
            db.execute("INSERT INTO _migrations (name) VALUES (?)", (migration.name,))
        db.execute("PRAGMA user_version = 4")
        db.execute(
            "INSERT INTO batches (batch_id, workflow, status, mode, started_at, "
            "started, rows, settings) VALUES ('b1', 'w', 'succeeded', 'mock', 'then', "
            "1, 1, '{}')"
        )
        db.execute(
            "INSERT INTO runs (run_id, workflow, status, mode, started_at, started, "
            "inputs, cost_usd) VALUES ('r1', 'w', 'succeeded', 'mock', 'then', 0, "
            "'{}', 0.5)"
        )
    db.close()
    with SQLiteStore.open(path) as store:
        listed = store.list_runs()
        assert [(r["run_id"], r["kind"], r["user"]) for r in listed] == [
            ("b1", "batch", None),
            ("r1", "run", None),
        ]
        assert listed[1]["cost_usd"] == 0.5
        assert store.applied_migrations()[4:] == [
            "m005_run_user",
            "m006_checks",
            "m007_runs_alone_by_user",
        ]


def test_no_history_writes_nothing(write_flow: Callable, cli: Callable) -> None:
    """--no-history does not even create the database."""
    result = cli("run", write_flow(TWO_STEPS), "--mock", "--no-history")
    assert result.exit_code == 0
    assert not history_db().exists()


@pytest.mark.parametrize(
    "flag", [["--resume", "abc"], ["--from", "draft"], ["--only", "draft"], ["--cache"]]
)
def test_history_options_need_the_history(
    write_flow: Callable, cli: Callable, flag: list[str]
) -> None:
    """Options that read the history with --no-history: exit 2, naming the option."""
    result = cli("run", write_flow(TWO_STEPS), "--mock", "--no-history", *flag)
    assert result.exit_code == 2
    assert f"{flag[0]} needs the run history" in result.stderr


def test_git_commit_is_recorded(tmp_path: Path, write_flow: Callable, run_json: Callable) -> None:
    """A workflow inside a git repository records the repository's HEAD commit."""
    flow = write_flow(TWO_STEPS, "repo/flows/flow.yaml")
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    try:
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert git_commit(flow.parent) == head
    subprocess.run([*git, "pack-refs", "--all"], check=True)  # packed refs are read too
    assert git_commit(flow.parent) == head
    run_json(flow)
    assert query("SELECT git_commit FROM runs") == [(head,)]


def test_no_git_no_commit(tmp_path: Path) -> None:
    """Outside a repository (or with a broken .git) the commit is simply unknown."""
    assert git_commit(Path("/")) is None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / ".git").write_text("nonsense")
    assert git_commit(tmp_path / "broken") is None


STEP_RESULTS = [
    StepResult(
        id="ask",
        status="succeeded",
        output="Tides are long waves.",
        provider="openai",
        model="gpt-4o-mini-2024-07-18",
        attempts=2,
        duration_ms=850,
        usage=Usage(9, 4),
        request={"model": "gpt-4o-mini", "messages": []},
        fingerprint="f" * 64,
        response_id="chatcmpl-1",
    ),
    StepResult(
        id="parse",
        status="failed",
        output=None,
        error=ErrorInfo("function", "bad input", step="parse"),
        duration_ms=3,
    ),
    StepResult(
        id="fan",
        status="succeeded",
        output=[{"a": 1}, None],
        provider="mock",
        usage=Usage(0, 0),
        cached=True,
        reused=True,
        warnings=("one", "two"),
    ),
    StepResult(id="sub", status="failed", error=ErrorInfo("provider", "down", step="inner")),
    StepResult(id="later", status="skipped"),
    StepResult(
        id="each",
        status="succeeded",
        output=["x!", {"y": 1}],
        usage=Usage(5, 2),
        items=(
            ItemResult(
                index=0,
                output="x!",
                fingerprint="a" * 64,
                attempts=1,
                usage=Usage(3, 1),
                model="m-1",
                reused=True,
            ),
            ItemResult(index=1, output={"y": 1}, fingerprint="b" * 64),
        ),
    ),
    StepResult(
        id="each_failed",
        status="failed",
        usage=Usage(3, 1),
        attempts=1,
        error=ErrorInfo("provider", "item 0 ('x'): down", step="each_failed"),
        items=(
            ItemResult(index=1, output="y!", fingerprint="c" * 64, attempts=1, usage=Usage(3, 1)),
        ),
    ),
]


def plain_run(run_id: str) -> RunRecord:
    """A run's record with nothing but its id and a start."""
    return RunRecord(
        run_id=run_id,
        workflow="w",
        file=None,
        file_path=None,
        file_sha256=None,
        git_commit=None,
        mode="mock",
        started_at="2024-01-01T00:00:00.000Z",
        started=1704067200.0,
        inputs={},
        resumed_from=None,
        provenance={},
    )


@pytest.mark.parametrize("step", STEP_RESULTS, ids=[s.id for s in STEP_RESULTS])
def test_a_step_result_survives_the_store(step: StepResult) -> None:
    """StepResult -> row -> StepResult and -> document: nothing lost, nothing added."""
    run = plain_run("r1")
    with open_store() as store:
        store.insert_run(lambda: run)
        store.insert_steps(
            "r1",
            lambda: [
                StepRecord(
                    result=step, position=0, kind="llm", definition="d", finished=1704067201.5
                )
            ],
        )
    with open_store() as store:
        [stored] = store.stored_steps("r1")
        assert (step, "d") == (stored.result, stored.definition)
        assert [step.to_dict()] == store.document("r1")["steps"]


@pytest.mark.parametrize("count", [1, 100], ids=lambda n: f"{n} steps")
def test_a_batch_of_steps_is_stored_whole_and_a_repeated_step_keeps_its_last_row(
    count: int,
) -> None:
    """One batch of many steps (more than one statement holds) stores every step, each at
    its position, and a step that comes twice in the batch keeps its later row."""
    run = plain_run("r1")

    def record(n: int, output: str) -> StepRecord:
        result = StepResult(id=f"s{n:03d}", status="succeeded", output=output)
        return StepRecord(result=result, position=n, kind="llm", definition=None, finished=1.0)

    records = [record(n, f"first {n}") for n in range(count)] + [record(0, "again")]
    with open_store() as store:
        store.insert_run(lambda: run)
        store.insert_steps("r1", lambda: records)
    with open_store() as store:
        stored = [s.result for s in store.stored_steps("r1")]
    assert [(s.id, s.output) for s in stored] == [("s000", "again")] + [
        (f"s{n:03d}", f"first {n}") for n in range(1, count)
    ]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "runs_alone_by_start"),
        ({"workflow": "w"}, "runs_alone_by_workflow"),
        ({"user": "ann"}, "runs_alone_by_user"),
    ],
    ids=["none", "workflow", "user"],
)
def test_listing_runs_reads_an_index_without_batch_rows(
    filters: dict[str, str], index: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`runs list` finds the runs on their own through a partial index that leaves the
    batches' rows out, so 100,000 rows of a batch are never walked past."""
    with SQLiteStore.open(history_db()) as store:
        plans: list[str] = []
        query_rows = store.db.query

        def explained(sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
            if "FROM runs" in sql:
                plan = store.db.raw.execute(f"EXPLAIN QUERY PLAN {sql}", tuple(params))
                plans.append(" ".join(row[3] for row in plan))
            return query_rows(sql, params)

        monkeypatch.setattr(store.db, "query", explained)
        store.list_runs(**filters)
    [plan] = plans
    assert f"USING INDEX {index} " in plan


# --- bad databases ------------------------------------------------------------------------------


BAD_FILES = {
    "garbage": b"this is not a database at all, just text" * 100,
    "truncated header": b"SQLite format 3\x00" + b"\x00" * 50,
}


@pytest.mark.sqlite_only
@pytest.mark.parametrize("content", BAD_FILES.values(), ids=BAD_FILES.keys())
@pytest.mark.parametrize("command", [["run", "FLOW", "--mock"], ["runs", "list"]])
def test_corrupt_database(
    write_flow: Callable, cli: Callable, content: bytes, command: list[str]
) -> None:
    """A corrupt history.db: exit 2, naming the file and --no-history, no traceback."""
    flow = write_flow(TWO_STEPS)
    history_db().parent.mkdir(parents=True)
    history_db().write_bytes(content)
    result = cli(*[str(flow) if part == "FLOW" else part for part in command])
    assert result.exit_code == 2
    assert str(history_db()) in result.stderr
    assert "--no-history" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.sqlite_only
def test_corrupt_database_with_no_history_runs(write_flow: Callable, cli: Callable) -> None:
    """--no-history is the way out: the run works and the bad file is left alone."""
    history_db().parent.mkdir(parents=True)
    history_db().write_bytes(BAD_FILES["garbage"])
    result = cli("run", write_flow(TWO_STEPS), "--mock", "--no-history")
    assert result.exit_code == 0
    assert history_db().read_bytes() == BAD_FILES["garbage"]


@pytest.mark.sqlite_only
def test_foreign_database(write_flow: Callable, cli: Callable) -> None:
    """An SQLite file of another program is refused, and left untouched."""
    history_db().parent.mkdir(parents=True)
    with sqlite3.connect(history_db()) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    result = cli("run", write_flow(TWO_STEPS), "--mock")
    assert result.exit_code == 2
    assert f"{history_db()} is not an orchestrate history database" in result.stderr
    assert query("SELECT name FROM sqlite_master WHERE type = 'table'") == [("notes",)]


@pytest.mark.sqlite_only
def test_foreign_database_is_not_touched(tmp_path: Path) -> None:
    """A foreign SQLite file is refused before any write: same bytes, same journal mode."""
    path = tmp_path / "history.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
        db.execute("INSERT INTO notes VALUES ('keep me')")
    db.close()
    before, files = path.read_bytes(), sorted(tmp_path.iterdir())
    with pytest.raises(StoreError, match="is not an orchestrate history database"):
        SQLiteStore.open(path)
    assert path.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == files  # no -wal, no -shm
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not "wal"


@pytest.mark.sqlite_only
def test_newer_schema(write_flow: Callable, cli: Callable, run_json: Callable) -> None:
    """A database migrated by a newer orchestrate: a clear error, not a guess."""
    flow = write_flow(TWO_STEPS)
    run_json(flow)
    with sqlite3.connect(history_db()) as db:  # as a later version would leave it
        db.execute("INSERT INTO _migrations (name) VALUES ('m999_from_the_future')")
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    for command in (["run", str(flow), "--mock"], ["runs", "list"]):
        result = cli(*command)
        assert result.exit_code == 2
        assert "written by a newer orchestrate" in result.stderr
        assert "upgrade orchestrate" in result.stderr


@pytest.mark.sqlite_only
def test_unknown_migration_name(write_flow: Callable, run_json: Callable) -> None:
    """A migration this version does not know, with an old version number: still refused."""
    run_json(write_flow(TWO_STEPS))
    with sqlite3.connect(history_db()) as db:
        db.execute("INSERT INTO _migrations (name) VALUES ('m001_other_branch')")
        db.execute("PRAGMA user_version = 0")
    with pytest.raises(StoreError, match="unknown migration m001_other_branch"):
        SQLiteStore.open(history_db())


@pytest.mark.sqlite_only
def test_store_open_raises_store_error(tmp_path: Path) -> None:
    """The library raises StoreError (exit code 2) for a file it cannot use."""
    path = tmp_path / "history.db"
    path.write_bytes(BAD_FILES["garbage"])
    with pytest.raises(StoreError) as caught:
        SQLiteStore.open(path)
    assert caught.value.exit_code == 2
    assert str(path) in caught.value.message


@pytest.mark.sqlite_only
def test_unwritable_home(
    tmp_path: Path, write_flow: Callable, cli: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORCHESTRATE_HOME under a file: exit 2 with the way out, not a traceback."""
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("ORCHESTRATE_HOME", str(tmp_path / "file" / "home"))
    result = cli("run", write_flow(TWO_STEPS), "--mock")
    assert result.exit_code == 2
    assert "--no-history" in result.stderr


# --- secrets ----------------------------------------------------------------------------------


def openai_reply(text: str) -> dict:
    return {
        "id": "chatcmpl-xyz789",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }


def test_no_key_is_stored(
    write_flow: Callable, cli: Callable, respx_mock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With a real provider, an echoing 401, the cache and a fixture: the key is in no file."""
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    flow = write_flow("""
        inputs:
          topic: {default: tides}
        steps:
          - id: ask
            prompt: "Tell me about {{ inputs.topic }}"
        """)
    respx_mock.post(OPENAI_URL).mock(
        side_effect=[
            httpx.Response(200, json=openai_reply("Tides are long waves.")),
            httpx.Response(
                401,
                json={"error": {"message": f"Incorrect API key provided: {FAKE_KEY}. Check it."}},
            ),
        ]
    )
    fixture = tmp_path / "fixture.json"
    first = cli("run", flow, "--json", "--cache", "--record", fixture)
    assert first.exit_code == 0, first.stderr
    second = cli("run", flow, "--json", "-i", "topic=moon", "--cache")
    assert second.exit_code == 1
    assert json.loads(second.stdout)["error"]["type"] == "provider"
    for data in (history_bytes(), fixture.read_bytes()):
        assert FAKE_KEY.encode() not in data
        assert b"Bearer " not in data
    assert query("SELECT count(*) FROM steps WHERE error_message LIKE '%Incorrect API key%'") == [
        (1,)
    ]


def docs_query(heading: str) -> str:
    """The SQL block that follows `heading` in docs/history.md."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "history.md").read_text()
    after = docs[docs.index(heading) :]
    return after[after.index("```sql") + 6 : after.index("```", after.index("```sql") + 6)]


@pytest.mark.sqlite_only
def test_mock_answers_are_not_counted_as_spent(
    write_flow: Callable, cli: Callable, respx_mock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --mock run records provider `mock`, and the docs' spend query counts only the
    live run's real call (not its `provider: mock` step, not the mock run)."""
    flow = write_flow("""
        defaults: {model: gpt-4o-mini}
        steps:
          - {id: offline, provider: mock, prompt: x, mock: canned}
          - {id: ask, prompt: "Tell me about tides"}
        """)
    assert cli("run", flow, "--mock", "-q").exit_code == 0
    assert query("SELECT step_id, provider, model FROM steps ORDER BY step_id") == [
        ("ask", "mock", "gpt-4o-mini"),
        ("offline", "mock", "gpt-4o-mini"),
    ]
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    respx_mock.post(OPENAI_URL).mock(
        return_value=httpx.Response(200, json=openai_reply("Tides are long waves."))
    )
    assert cli("run", flow, "-q").exit_code == 0
    spent = query(docs_query("Tokens actually spent per provider and model"))
    assert spent == [("openai", "gpt-4o-mini-2024-07-18", 1, 9, 4)]


def test_key_in_an_input_is_scrubbed(
    write_flow: Callable, run_json: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a key pasted into an input or a prompt is kept out of the history."""
    monkeypatch.setenv("MY_SERVICE_TOKEN", FAKE_KEY)
    flow = write_flow(TWO_STEPS)
    code, doc = run_json(flow, "-i", f"topic={FAKE_KEY}")
    assert code == 0
    assert doc["inputs"]["topic"] == FAKE_KEY  # the run itself is not changed
    assert FAKE_KEY.encode() not in history_bytes()
    assert query("SELECT inputs FROM runs") == [(json.dumps({"topic": "[REDACTED]"}),)]


# --- concurrency, crashes, interrupts -------------------------------------------------------------


def test_two_processes_at_once_both_record(write_flow: Callable) -> None:
    """Two runs in parallel processes, on a fresh database: both recorded in full."""
    steps = ["steps:"]
    for n in range(60):
        steps += [
            f"  - id: s{n}",
            f"    prompt: 'step {n} after {{{{ steps.s{n - 1}.output }}}}'"
            if n
            else "    prompt: start",
        ]
    flow = write_flow("\n".join(steps) + "\n")
    processes = [start_orchestrate("run", flow, "--mock", "--json", "-q") for _ in range(2)]
    run_ids = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        run_ids.append(json.loads(stdout)["run_id"])
    rows = query(
        "SELECT run_id, status, (SELECT count(*) FROM steps s WHERE s.run_id = r.run_id)"
        " FROM runs r ORDER BY run_id"
    )
    assert rows == sorted((run_id, "succeeded", 60) for run_id in run_ids)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_records_the_run_as_cancelled(write_flow: Callable) -> None:
    """SIGINT mid-run: exit 130; the history has the run cancelled and the finished step."""
    write_flow(SLOW, "slow.py")
    flow = write_flow(FAST_THEN_SLOW)
    process = start_orchestrate("run", flow, "--mock", "--json")
    wait_for_line(process, "slow started")
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 130
    run_id = json.loads(stdout)["run_id"]
    assert query("SELECT run_id, status, error_type FROM runs") == [
        (run_id, "cancelled", "cancelled")
    ]
    assert query("SELECT step_id, status, output FROM steps ORDER BY position") == [
        ("fast", "succeeded", '"quick answer"'),
        ("slow", "cancelled", None),
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_killed_process_loses_no_finished_step(write_flow: Callable, cli: Callable) -> None:
    """SIGKILL after a step finished: the step is kept and `runs show` shows the run running."""
    write_flow(SLOW, "slow.py")
    flow = write_flow(FAST_THEN_SLOW)
    process = start_orchestrate("run", flow, "--mock")
    wait_for_line(process, "slow started")
    time.sleep(0.5)  # the writer commits within a fraction of a second
    process.kill()
    process.communicate(timeout=30)
    assert query("SELECT step_id, status FROM steps") == [("fast", "succeeded")]
    (run_id,) = query("SELECT run_id FROM runs")[0]
    shown = cli("runs", "show", run_id, "--json")
    assert shown.exit_code == 0
    doc = json.loads(shown.stdout)
    assert doc["status"] == "running"
    assert [s["id"] for s in doc["steps"]] == ["fast"]
    (listed,) = json.loads(cli("runs", "list", "--json").stdout)
    assert (listed["status"], listed["usage"]) == ("running", doc["steps"][0]["usage"])


def documented_query(marker: str) -> str:
    """The SQL statement of docs/history.md that holds `marker`."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "history.md").read_text("utf-8")
    blocks = [b.split("```", 1)[0] for b in doc.split("```sql\n")[1:]]
    statements = [s.strip() for block in blocks for s in block.split(";")]
    return next(s for s in statements if marker in s)


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("step", "prompt"),
    [
        ("prompt: Summarize a", "Summarize a"),
        ('for_each: \'["a", "b"]\'\n        prompt: Summarize {{ item }}', "Summarize b"),
    ],
)
def test_the_documented_last_prompt_query(
    write_flow: Callable, cli: Callable, step: str, prompt: str
) -> None:
    """docs/history.md's "last prompt a step sent" query answers for a plain step and for a
    for_each step (its last item's prompt), run against a real history."""
    flow = write_flow(f"""
    steps:
      - id: summarize
        {step}
    """)
    assert cli("run", flow, "--mock", "-q").exit_code == 0
    sql = documented_query("AS prompt")
    [(_, found)] = query(sql)
    assert found == prompt


class _GatedStore:
    """A store whose writer's connection is only made once `gate` is set."""

    location = "the gated store"

    def __init__(self) -> None:
        import threading

        self.gate = threading.Event()
        self.written: list[int] = []

    def connect(self) -> object:
        self.gate.wait()
        return _NoConnection()

    def failure(self, exc: BaseException, doing: str) -> StoreError:
        return StoreError(f"{doing}: {exc}")


class _NoConnection:
    @contextlib.contextmanager
    def transaction(self) -> Iterator[_NoConnection]:
        yield self

    def close(self) -> None:
        pass


def test_writer_queue_is_bounded_and_submit_waits_for_room() -> None:
    """Writes past the queue's limit wait for the writer (backpressure), not pile up."""
    import threading

    from orchestrate.history._sql import Writer

    store = _GatedStore()
    writer = Writer(store, limit=3)  # type: ignore[arg-type]
    submitted: list[int] = []

    def produce() -> None:
        for number in range(10):
            writer.submit(lambda db, number=number: store.written.append(number))
            submitted.append(number)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.3)
    assert writer.queue.qsize() <= 3
    assert len(submitted) <= 4  # the writer took one and waits; three queued; one waits
    store.gate.set()
    producer.join(timeout=10)
    writer.close()
    assert store.written == list(range(10))  # every write, in order


def test_writer_that_died_does_not_hang_submit() -> None:
    """A writer thread that is gone makes submit give up, and close report it."""
    import threading

    from orchestrate.history._sql import _STOP, Writer

    store = _GatedStore()
    writer = Writer(store, limit=1)  # type: ignore[arg-type]
    writer.queue.put(lambda db: None)  # full, and (below) nobody left to take it
    alive, writer.thread = writer.thread, threading.Thread(target=lambda: None)
    writer.thread.start()
    writer.thread.join()
    writer.submit(lambda db: None)  # returns instead of waiting forever
    with pytest.raises(StoreError, match="writer stopped"):
        writer.close()
    store.gate.set()  # let the real thread finish
    writer.queue.put(_STOP)
    alive.join(timeout=10)
