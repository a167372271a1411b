"""`orchestrate history export` and `import`: runs move between any two histories intact."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fresh_schema

FLOW = """
    inputs:
      topic: {default: tides}
    steps:
      - id: draft
        prompt: "Write about {{ inputs.topic }}"
        mock: "a draft about {{ inputs.topic }}"
      - id: each
        for_each: '["a", "b"]'
        prompt: "Say {{ item }}"
        mock: "said {{ item }}"
      - id: broken
        prompt: "{{ inputs.topic }}"
        output: json
        mock: "{{ inputs.topic }}"
        on_error: continue
    """


def location(kind: str, tmp_path: Path, request: pytest.FixtureRequest, name: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / name / 'history.db'}"
    return fresh_schema(request.getfixturevalue("postgres_server"))


def documents(cli: Callable, db: str) -> dict[str, Any]:
    runs = json.loads(cli("runs", "list", "--json", "-n", "0", "--db", db).stdout)
    return {
        run["run_id"]: json.loads(cli("runs", "show", run["run_id"], "--json", "--db", db).stdout)
        for run in runs
    }


def exported_runs(path: Path) -> dict[str, Any]:
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    return {record["run"]["run_id"]: record for record in lines[1:] if "run" in record}


@pytest.mark.parametrize(
    ("source", "target"), [("sqlite", "postgres"), ("postgres", "sqlite"), ("sqlite", "sqlite")]
)
def test_a_round_trip_loses_nothing(
    source: str,
    target: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    write_flow: Callable,
    cli: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Runs exported from one history and imported into another: the same rows, the same
    documents; importing the file again adds nothing."""
    here, there = (
        location(kind, tmp_path, request, name) for kind, name in ((source, "a"), (target, "b"))
    )
    flow = write_flow(FLOW)
    monkeypatch.setenv("ORCHESTRATE_USER", "ada")
    for topic in ("tides", "moons"):
        assert (
            cli(
                "run", flow, "--mock", "-q", "-i", f"topic={topic}", "--cache", "--db", here
            ).exit_code
            == 0
        )
    exported = tmp_path / "runs.jsonl"
    result = cli("history", "export", exported, "--db", here)
    assert result.exit_code == 0, result.stderr
    assert "exported 2 runs" in result.stderr
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600  # it holds what the history holds
    imported = cli("history", "import", exported, "--db", there)
    assert imported.exit_code == 0, imported.stderr
    assert "imported 2 runs into" in imported.stderr
    assert documents(cli, there) == documents(cli, here)
    again = tmp_path / "again.jsonl"
    assert cli("history", "export", again, "--db", there).exit_code == 0
    assert exported_runs(again) == exported_runs(exported)
    twice = cli("history", "import", exported, "--db", there)
    assert "imported 0 runs" in twice.stderr and "(2 already there)" in twice.stderr
    listed = json.loads(cli("runs", "list", "--json", "--user", "ada", "--db", there).stdout)
    assert len(listed) == 2


@pytest.mark.parametrize(("source", "target"), [("sqlite", "postgres"), ("postgres", "sqlite")])
def test_a_batch_travels_with_its_rows(
    source: str,
    target: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    write_flow: Callable,
    cli: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch exported and imported is the same batch: one entry of `runs list` (made by
    the same user), the same summary, its rows' runs with it."""
    here, there = (
        location(kind, tmp_path, request, name) for kind, name in ((source, "a"), (target, "b"))
    )
    flow = write_flow(FLOW)
    data = tmp_path / "topics.jsonl"
    data.write_text("".join(json.dumps({"topic": t}) + "\n" for t in ("tides", "moons", "reefs")))
    monkeypatch.setenv("ORCHESTRATE_USER", "ada")
    ran = cli(
        "batch",
        flow,
        "--data",
        data,
        "--mock",
        "--json",
        "-o",
        tmp_path / "out.jsonl",
        "--db",
        here,
    )
    assert ran.exit_code == 0, ran.stderr
    batch_id = json.loads(ran.stdout)["batch_id"]
    exported = tmp_path / "batch.jsonl"
    result = cli("history", "export", exported, "--db", here)
    assert "exported 3 runs and 1 batch" in result.stderr, result.stderr
    imported = cli("history", "import", exported, "--db", there)
    assert "imported 3 runs and 1 batch into" in imported.stderr, imported.stderr

    def listed(db: str) -> list[dict[str, Any]]:
        return json.loads(cli("runs", "list", "--json", "--user", "ada", "--db", db).stdout)

    assert listed(there) == listed(here) and [r["run_id"] for r in listed(there)] == [batch_id]
    shown = [
        json.loads(cli("runs", "show", batch_id, "--json", "--db", db).stdout)
        for db in (here, there)
    ]
    assert shown[0] == shown[1] and shown[1]["succeeded"] == 3
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert documents_of(cli, there, rows) == documents_of(cli, here, rows)
    assert json.loads(cli("runs", "list", "--json", "--user", "bob", "--db", there).stdout) == []


def documents_of(cli: Callable, db: str, rows: list[dict[str, Any]]) -> list[Any]:
    return [
        json.loads(cli("runs", "show", row["run_id"], "--json", "--db", db).stdout) for row in rows
    ]


HEADER = {"format": "orchestrate-history", "version": 1, "migrations": ["m001_initial"]}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "is empty"),
        (["not json"], ":1: not JSON"),
        ([json.dumps({"format": "something else"})], "is not an orchestrate history export"),
        ([json.dumps(HEADER | {"version": 7})], "export of version 7"),
        ([json.dumps(HEADER | {"migrations": ["m999_future"]})], "written by a newer orchestrate"),
        ([json.dumps(HEADER), json.dumps({"run": "x"})], ":2: expected a run and its steps"),
        (
            [
                json.dumps(HEADER),
                json.dumps({"run": {"run_id": "r", "colour": "red"}, "steps": []}),
            ],
            "columns",
        ),
    ],
)
def test_a_bad_file_is_refused(
    lines: list[str], message: str, tmp_path: Path, cli: Callable
) -> None:
    """A file that is not an export (or is from a newer orchestrate): exit 2, located."""
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("history", "import", path)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
