"""`orchestrate runs`: list, show, diff, delete and prune the recorded runs."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from orchestrate.history._provenance import user_name
from tests.conftest import history_connection

pytestmark = pytest.mark.usefixtures("history_backend")

FLOW = """
    name: greet
    inputs:
      who: {default: world}
    steps:
      - id: hello
        prompt: "Say hello to {{ inputs.who }}"
        mock: "Hello, {{ inputs.who }}!"
      - id: shout
        prompt: "Shout: {{ steps.hello.output }}"
        mock: "{{ steps.hello.output | upper }}"
    """
OTHER = """
    name: other
    steps:
      - id: only
        prompt: x
        mock: "fine"
    """
FAILING = """
    name: broken
    steps:
      - id: bad
        prompt: x
        output: json
        mock: "{{ 'not json' }}"  # a template, so validate lets it reach the run
        retries: 0
    """


@pytest.fixture
def runs(write_flow: Callable, run_json: Callable) -> list[dict[str, Any]]:
    """Four recorded runs, oldest first: greet(world), greet(moon), other, broken (failed)."""
    docs = []
    for text, name, args in (
        (FLOW, "greet.yaml", []),
        (FLOW, "greet.yaml", ["-i", "who=moon"]),
        (OTHER, "other.yaml", []),
        (FAILING, "broken.yaml", []),
    ):
        docs.append(run_json(write_flow(text, name), *args)[1])
        time.sleep(0.002)  # distinct start times, so "newest first" is well defined
    return docs


def json_out(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# --- runs list ------------------------------------------------------------------------------


def test_list_json_newest_first(runs: list[dict[str, Any]], cli: Callable) -> None:
    """--json: an array, newest first, of the SPEC's fields, `kind` (run or batch) and `user`."""
    listed = json_out(cli("runs", "list", "--json"))
    assert [r["run_id"] for r in listed] == [d["run_id"] for d in reversed(runs)]
    newest = runs[-1]
    assert listed[0] == {
        key: newest[key]
        for key in (
            "run_id",
            "workflow",
            "file",
            "status",
            "started_at",
            "duration_ms",
            "usage",
            "cost_usd",
        )
    } | {"kind": "run", "user": user_name(os.environ)}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--limit", "2"], [3, 2]),
        (["-n", "1"], [3]),
        (["--workflow", "greet"], [1, 0]),
        (["-w", "nothing-like-it"], []),
        (["--status", "failed"], [3]),
        (["--status", "succeeded", "--workflow", "greet", "--limit", "1"], [1]),
        (["--limit", "0"], [3, 2, 1, 0]),
    ],
)
def test_list_filters(
    runs: list[dict[str, Any]], cli: Callable, args: list[str], expected: list[int]
) -> None:
    """--limit, --workflow and --status narrow the list, newest first."""
    listed = json_out(cli("runs", "list", "--json", *args))
    assert [r["run_id"] for r in listed] == [runs[i]["run_id"] for i in expected]


def test_list_table(runs: list[dict[str, Any]], cli: Callable) -> None:
    """Without --json: a table on stdout with id, workflow, status and tokens."""
    result = cli("runs", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "run",
        "id",
        "workflow",
        "status",
        "started",
        "time",
        "tokens",
        "cost",
    ]
    assert runs[-1]["run_id"] in lines[1] and "broken" in lines[1] and "failed" in lines[1]
    assert runs[0]["run_id"] in lines[4] and "succeeded" in lines[4]


def test_list_empty(cli: Callable) -> None:
    """No runs yet: an empty array, or a note on stderr."""
    assert json_out(cli("runs", "list", "--json")) == []
    result = cli("runs", "list")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no runs are recorded" in result.stderr
    filtered = cli("runs", "list", "--status", "failed")
    assert "no runs match" in filtered.stderr


def test_list_bad_status(cli: Callable) -> None:
    """An unknown --status is a usage error."""
    assert cli("runs", "list", "--status", "great").exit_code == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "-1"], "--limit must be between 0 and 1000000, got -1"),
        (["-n", "1000001"], "--limit must be between 0 and 1000000, got 1000001"),
        (["-n", "9" * 30], "--limit must be between 0 and 1000000, got 99999999999999999..."),
        (["--workflow", ""], "--workflow must not be empty"),
    ],
)
def test_list_bad_option_values(
    runs: list[dict[str, Any]], cli: Callable, args: list[str], message: str
) -> None:
    """An out-of-range --limit or an empty --workflow is exit 2 naming the option."""
    result = cli("runs", "list", "--json", *args)
    assert result.exit_code == 2
    assert f"error: {message}\n" == result.stderr


def test_list_largest_limit(runs: list[dict[str, Any]], cli: Callable) -> None:
    """--limit 1000000, the top of its range, lists every run."""
    assert len(json_out(cli("runs", "list", "--json", "-n", "1000000"))) == 4


# --- runs show --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [FLOW, OTHER, FAILING], ids=["two-steps", "one-step", "failed"])
def test_show_json_is_the_run_document(write_flow: Callable, cli: Callable, text: str) -> None:
    """`runs show --json` prints exactly what `run --json` printed for that run."""
    result = cli("run", write_flow(text), "--mock", "--json")
    printed = json.loads(result.stdout)
    shown = cli("runs", "show", printed["run_id"], "--json")
    assert shown.exit_code == 0
    assert json.loads(shown.stdout) == printed
    assert shown.stdout == result.stdout


def test_show_json_keeps_warnings_and_cache_marks(write_flow: Callable, cli: Callable) -> None:
    """Fields beyond the SPEC (cached, reused, warnings, resumed_from) come back too."""
    flow = write_flow(FLOW)
    cli("run", flow, "--mock", "--cache")
    first = json.loads(cli("run", flow, "--mock", "--json", "--cache").stdout)
    resumed = cli("run", flow, "--mock", "--json", "--resume", first["run_id"])
    printed = json.loads(resumed.stdout)
    assert printed["resumed_from"] == first["run_id"]
    assert all(s.get("reused") for s in printed["steps"])
    assert all(s.get("cached") for s in first["steps"])
    for doc in (first, printed):
        assert json_out(cli("runs", "show", doc["run_id"], "--json")) == doc


def test_show_accepts_a_unique_prefix(runs: list[dict[str, Any]], cli: Callable) -> None:
    """A prefix that matches one run is enough, as with git."""
    run_id = runs[2]["run_id"]
    for length in range(len(run_id), 0, -1):
        if sum(r["run_id"].startswith(run_id[:length]) for r in runs) > 1:
            break
        prefix = run_id[:length]
    assert json_out(cli("runs", "show", prefix, "--json"))["run_id"] == run_id


def test_show_ambiguous_prefix(runs: list[dict[str, Any]], cli: Callable) -> None:
    """A prefix of several runs: exit 2 and the candidates listed."""
    result = cli("runs", "show", runs[0]["run_id"][:2])
    assert result.exit_code == 2
    assert "ambiguous" in result.stderr
    for run in runs:
        assert run["run_id"] in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("run_id", ["ffffffffffff", "nope", "%", "_"])
def test_show_unknown_id(runs: list[dict[str, Any]], cli: Callable, run_id: str) -> None:
    """An unknown id (LIKE wildcards included): exit 2, with recent runs as candidates."""
    result = cli("runs", "show", run_id)
    assert result.exit_code == 2
    assert f"no run with id {run_id!r}" in result.stderr
    assert runs[-1]["run_id"] in result.stderr


def test_show_text(runs: list[dict[str, Any]], cli: Callable) -> None:
    """The text view: the run's facts, its outputs, and one line per step."""
    result = cli("runs", "show", runs[1]["run_id"])
    assert result.exit_code == 0
    out = result.stdout
    assert f"run {runs[1]['run_id']}  greet" in out
    assert "succeeded" in out
    assert "## hello\nHello, moon!\n" in out
    assert "## shout\nHELLO, MOON!\n" in out
    assert '"who": "moon"' in out
    assert "sha256" in out and "mock" in out
    assert any(line.split()[1:2] == ["hello"] for line in out.splitlines() if "✓" in line)


def test_show_text_of_a_failed_run(runs: list[dict[str, Any]], cli: Callable) -> None:
    """A failed run shows the error and the failed step's message."""
    out = cli("runs", "show", runs[3]["run_id"]).stdout
    assert "failed" in out
    assert "step bad: invalid_output" in out
    assert "✗" in out


# --- runs delete and prune --------------------------------------------------------------------


def test_delete(runs: list[dict[str, Any]], cli: Callable) -> None:
    """delete removes the named runs (prefixes accepted) and their steps, nothing else."""
    result = cli("runs", "delete", runs[0]["run_id"], runs[2]["run_id"][:-3])
    assert result.exit_code == 0
    assert "deleted 2 runs" in result.stderr
    listed = json_out(cli("runs", "list", "--json"))
    assert [r["run_id"] for r in listed] == [runs[3]["run_id"], runs[1]["run_id"]]
    with history_connection() as db:
        left = {r[0] for r in db.execute("SELECT DISTINCT run_id FROM steps")}
    assert left == {runs[3]["run_id"], runs[1]["run_id"]}
    assert cli("runs", "show", runs[0]["run_id"]).exit_code == 2


def test_delete_unknown_deletes_nothing(runs: list[dict[str, Any]], cli: Callable) -> None:
    """One unknown id among several: exit 2 and no run deleted."""
    result = cli("runs", "delete", runs[0]["run_id"], "nope")
    assert result.exit_code == 2
    assert len(json_out(cli("runs", "list", "--json"))) == 4


def age_runs(days: float, *run_ids: str) -> None:
    """Pretend these runs (and every cached response) started `days` ago."""
    with history_connection() as db:
        for run_id in run_ids:
            db.execute(
                "UPDATE runs SET started = started - ? WHERE run_id = ?", (days * 86400, run_id)
            )
        db.execute("UPDATE responses SET created = created - ?", (days * 86400,))


@pytest.mark.parametrize(
    ("age", "left"),
    [
        ("30d", [3, 2, 1]),
        ("4w", [3, 2, 1]),
        ("900h", [3, 2, 1]),
        ("20d", [3, 2]),
        ("90s", [3, 2]),
        ("60w", [3, 2, 1, 0]),
        (" 45m ", [3, 2]),
    ],
)
def test_prune(runs: list[dict[str, Any]], cli: Callable, age: str, left: list[int]) -> None:
    """prune --older-than deletes runs started before that age; units s, m, h, d, w."""
    age_runs(40, runs[0]["run_id"])
    age_runs(25, runs[1]["run_id"])
    result = cli("runs", "prune", "--older-than", age)
    assert result.exit_code == 0, result.stderr
    deleted = 4 - len(left)
    assert f"deleted {deleted} run" in result.stderr
    listed = json_out(cli("runs", "list", "--json"))
    assert [r["run_id"] for r in listed] == [runs[i]["run_id"] for i in left]


def test_prune_drops_old_cached_responses(write_flow: Callable, cli: Callable) -> None:
    """prune also forgets cached responses older than the age."""
    flow = write_flow(FLOW)
    cli("run", flow, "--mock", "--cache")
    age_runs(10)
    result = cli("runs", "prune", "--older-than", "7d")
    assert "and 2 cached responses" in result.stderr
    second = json.loads(cli("run", flow, "--mock", "--cache", "--json").stdout)
    assert not any(s.get("cached") for s in second["steps"])


@pytest.mark.parametrize("age", ["30", "d", "30 days", "-1d", "1y", ""])
def test_prune_bad_age(runs: list[dict[str, Any]], cli: Callable, age: str) -> None:
    """An age without a known unit is a usage error that shows the format."""
    result = cli("runs", "prune", "--older-than", age)
    assert result.exit_code == 2
    assert "30d" in result.stderr
    assert len(json_out(cli("runs", "list", "--json"))) == 4


@pytest.mark.parametrize("age", ["36501d", "5215w", "9" * 400 + "s"])
def test_prune_age_over_a_century(runs: list[dict[str, Any]], cli: Callable, age: str) -> None:
    """An age over 100 years is exit 2 naming the limit, and deletes nothing."""
    result = cli("runs", "prune", "--older-than", age)
    assert result.exit_code == 2
    assert "is over 100 years" in result.stderr and "36500d" in result.stderr
    assert len(json_out(cli("runs", "list", "--json"))) == 4


def test_prune_age_of_a_century(runs: list[dict[str, Any]], cli: Callable) -> None:
    """36500d, the longest age, is accepted."""
    assert cli("runs", "prune", "--older-than", "36500d").exit_code == 0


# --- runs diff --------------------------------------------------------------------------------


def test_diff_json(runs: list[dict[str, Any]], cli: Callable) -> None:
    """--json: per step, both sides and unified diffs of the request and the output."""
    a, b = runs[0]["run_id"], runs[1]["run_id"]
    diff = json_out(cli("runs", "diff", a[:-2], b, "--json"))
    assert diff["a"]["run_id"] == a and diff["b"]["run_id"] == b
    assert '-  "who": "world"\n+  "who": "moon"\n' in diff["inputs_diff"]
    hello, shout = diff["steps"]
    assert hello["id"] == "hello"
    assert hello["request_changed"] and hello["output_changed"]
    assert "-Say hello to world\n+Say hello to moon\n" in hello["request_diff"]
    assert "-Hello, world!\n+Hello, moon!\n" in hello["output_diff"]
    assert hello["output_diff"].startswith(f"--- {a}/hello/output\n+++ {b}/hello/output\n")
    assert hello["a"]["status"] == hello["b"]["status"] == "succeeded"
    assert hello["a"]["usage"] == runs[0]["steps"][0]["usage"]
    assert hello["b"]["duration_ms"] == runs[1]["steps"][0]["duration_ms"]
    assert "-HELLO, WORLD!\n+HELLO, MOON!\n" in shout["output_diff"]


def test_diff_of_identical_runs(write_flow: Callable, cli: Callable) -> None:
    """Two runs of the same thing: nothing changed, empty diffs."""
    flow = write_flow(FLOW)
    first = json.loads(cli("run", flow, "--mock", "--json").stdout)["run_id"]
    second = json.loads(cli("run", flow, "--mock", "--json").stdout)["run_id"]
    diff = json_out(cli("runs", "diff", first, second, "--json"))
    assert diff["inputs_diff"] == diff["outputs_diff"] == ""
    assert [(s["request_changed"], s["output_changed"]) for s in diff["steps"]] == [
        (False, False),
        (False, False),
    ]
    text = cli("runs", "diff", first, second)
    assert text.exit_code == 0
    assert "## hello" in text.stdout and "unchanged" in text.stdout
    assert "---" not in text.stdout


def test_diff_of_different_workflows(runs: list[dict[str, Any]], cli: Callable) -> None:
    """Steps present on one side only are listed with the other side empty."""
    diff = json_out(cli("runs", "diff", runs[0]["run_id"], runs[2]["run_id"], "--json"))
    assert [(s["id"], s["a"] is None, s["b"] is None) for s in diff["steps"]] == [
        ("hello", False, True),
        ("shout", False, True),
        ("only", True, False),
    ]
    assert "+fine\n" in diff["steps"][2]["output_diff"]


def test_diff_text(runs: list[dict[str, Any]], cli: Callable) -> None:
    """The text view: one header per step with status, tokens and time, then the diffs."""
    result = cli("runs", "diff", runs[0]["run_id"], runs[1]["run_id"])
    assert result.exit_code == 0
    out = result.stdout
    assert "## hello  succeeded" in out
    assert "request changed, output changed" in out
    assert "-Say hello to world" in out and "+Say hello to moon" in out
    assert "inputs: changed" in out


def test_diff_unknown_run(runs: list[dict[str, Any]], cli: Callable) -> None:
    """An unknown run id in diff: exit 2."""
    assert cli("runs", "diff", runs[0]["run_id"], "nope").exit_code == 2


def test_runs_help_lists_the_commands(cli: Callable) -> None:
    """`runs --help` lists list, show, diff, delete and prune."""
    out = cli("runs", "--help").stdout
    for command in ("list", "show", "diff", "delete", "prune"):
        assert command in out


@pytest.mark.parametrize("command", [["list"], ["show", "RUN"], ["diff", "RUN", "RUN"]])
def test_piped_tables_have_no_trailing_spaces(
    runs: list[dict[str, Any]], cli: Callable, command: list[str]
) -> None:
    """Piped, `runs list`, `show` and `diff` print no line that ends in spaces."""
    args = [runs[1]["run_id"] if arg == "RUN" else arg for arg in command]
    out = cli("runs", *args).stdout
    assert len(out.splitlines()) > 3
    assert [line for line in out.splitlines() if line != line.rstrip()] == []


def mark_running(*run_ids: str) -> None:
    """Pretend these runs are still going (as a run in another process is)."""
    with history_connection() as db:
        for run_id in run_ids:
            db.execute("UPDATE runs SET status = 'running' WHERE run_id = ?", (run_id,))


def test_prune_keeps_running_runs(runs: list[dict[str, Any]], cli: Callable) -> None:
    """prune never deletes a run that is still going, however old its start."""
    age_runs(40, runs[0]["run_id"], runs[1]["run_id"])
    mark_running(runs[0]["run_id"])
    result = cli("runs", "prune", "--older-than", "30d")
    assert result.exit_code == 0, result.stderr
    assert "deleted 1 run " in result.stderr
    listed = json_out(cli("runs", "list", "--json"))
    assert runs[0]["run_id"] in [r["run_id"] for r in listed]
    with history_connection() as db:
        kept = db.execute(
            "SELECT count(*) FROM steps WHERE run_id = ?", (runs[0]["run_id"],)
        ).fetchone()[0]
    assert kept == len(runs[0]["steps"])


def test_delete_refuses_a_running_run(runs: list[dict[str, Any]], cli: Callable) -> None:
    """delete of a running run: exit 2 naming it and --force, and nothing is deleted."""
    mark_running(runs[1]["run_id"])
    result = cli("runs", "delete", runs[0]["run_id"], runs[1]["run_id"])
    assert result.exit_code == 2
    assert runs[1]["run_id"] in result.stderr
    assert "--force" in result.stderr
    assert len(json_out(cli("runs", "list", "--json"))) == 4


def test_delete_force_deletes_a_running_run(runs: list[dict[str, Any]], cli: Callable) -> None:
    """delete --force deletes a run recorded as running (its process may be gone)."""
    mark_running(runs[1]["run_id"])
    result = cli("runs", "delete", "--force", runs[1]["run_id"])
    assert result.exit_code == 0, result.stderr
    assert "deleted 1 run" in result.stderr
    assert len(json_out(cli("runs", "list", "--json"))) == 3


# --- a batch and its rows' runs go together ------------------------------------------------------


@pytest.fixture
def batch(write_flow: Callable, cli: Callable, tmp_path: Any) -> tuple[str, list[str]]:
    """A finished batch of three rows (under --mock): its id and its rows' run ids."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"who": w}) + "\n" for w in ("a", "b", "c")))
    out = cli("batch", write_flow(FLOW), "--data", rows, "--mock", "-q")
    assert out.exit_code == 0, out.stderr
    batch_id = json_out(cli("runs", "list", "--json"))[0]["run_id"]
    return batch_id, [json.loads(line)["run_id"] for line in out.stdout.splitlines()]


def age_batch(days: float, batch_id: str) -> None:
    """Pretend this batch (not its rows' runs) started `days` ago."""
    with history_connection() as db:
        db.execute(
            "UPDATE batches SET started = started - ? WHERE batch_id = ?", (days * 86400, batch_id)
        )


def left_in_history() -> tuple[set[str], set[str], set[str]]:
    """The batch ids, run ids, and run ids with steps, still in the history."""
    with history_connection() as db:
        return (
            {r[0] for r in db.execute("SELECT batch_id FROM batches")},
            {r[0] for r in db.execute("SELECT run_id FROM runs")},
            {r[0] for r in db.execute("SELECT DISTINCT run_id FROM steps")},
        )


@pytest.mark.parametrize("old", ["batch", "rows", "both"])
def test_prune_takes_a_batch_with_its_rows_by_the_batchs_start(
    batch: tuple[str, list[str]], cli: Callable, old: str
) -> None:
    """prune decides by the batch's start: an old batch goes with all its rows' runs (even
    younger ones), a young batch keeps them all (even older ones); nothing is orphaned."""
    batch_id, row_runs = batch
    if old in ("batch", "both"):
        age_batch(40, batch_id)
    if old in ("rows", "both"):
        age_runs(40, *row_runs)
    result = cli("runs", "prune", "--older-than", "30d")
    assert result.exit_code == 0, result.stderr
    batches, runs, with_steps = left_in_history()
    if old == "rows":
        assert (batches, runs, with_steps) == ({batch_id}, set(row_runs), set(row_runs))
        assert "deleted 0 runs" in result.stderr
    else:
        assert (batches, runs, with_steps) == (set(), set(), set())
        assert f"deleted batch {batch_id} (3 rows) and 0 cached" in result.stderr


def test_prune_keeps_a_running_batch(batch: tuple[str, list[str]], cli: Callable) -> None:
    """prune never deletes a batch still going, nor its rows' runs, however old."""
    batch_id, row_runs = batch
    age_batch(40, batch_id)
    age_runs(40, *row_runs)
    with history_connection() as db:
        db.execute("UPDATE batches SET status = 'running' WHERE batch_id = ?", (batch_id,))
    assert cli("runs", "prune", "--older-than", "30d").exit_code == 0
    assert left_in_history() == ({batch_id}, set(row_runs), set(row_runs))


def test_prune_keeps_a_batch_with_a_running_row(
    batch: tuple[str, list[str]], cli: Callable
) -> None:
    """A finished batch whose row's run is still marked running is kept whole: never a
    running run deleted, never a row's run left without its batch."""
    batch_id, row_runs = batch
    age_batch(40, batch_id)
    mark_running(row_runs[1])
    assert cli("runs", "prune", "--older-than", "30d").exit_code == 0
    assert left_in_history() == ({batch_id}, set(row_runs), set(row_runs))


def test_delete_of_a_batch_says_batch_and_rows(
    batch: tuple[str, list[str]], runs: Any, cli: Callable
) -> None:
    """`runs delete BATCH_ID RUN_ID` names the batch and its rows, not "deleted 2 runs"."""
    batch_id, _ = batch
    result = cli("runs", "delete", batch_id, runs[0]["run_id"])
    assert result.exit_code == 0, result.stderr
    assert f"deleted 1 run and batch {batch_id} (3 rows)" in result.stderr
    only = cli("runs", "delete", runs[1]["run_id"])
    assert "deleted 1 run\n" in only.stderr
