"""`orchestrate batch` and run_batch(): order, failures, output, history, resume."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import orchestrate
from orchestrate._api import prepare
from orchestrate._batch import BatchRequest, BatchRunner, BatchSummary, RowResult
from orchestrate._engine import RunOptions
from orchestrate._errors import UsageError
from orchestrate._render_batch import progress_line
from orchestrate._result import Usage
from orchestrate._rows import BadRows, RawRow
from orchestrate.history import HistoryOptions
from orchestrate.providers import ProviderPool

# Row i sleeps (n - i) hundredths: later rows finish first. Each call is logged, so a test
# can tell which rows ran, and how many ran at once.
FUNCTIONS = """
    import asyncio
    import os

    CALLS = []
    IN_FLIGHT = [0, 0]  # now, most

    async def slow(i, n):
        CALLS.append(("start", i))
        IN_FLIGHT[0] += 1
        IN_FLIGHT[1] = max(IN_FLIGHT)
        await asyncio.sleep((n - i) / 100)
        IN_FLIGHT[0] -= 1
        CALLS.append(("end", i))
        return i * 10

    def shaky(i, log):
        with open(log, "a") as f:
            f.write(f"{i}\\n")
        if i % 3 == 1 and not os.path.exists(log + ".fixed"):
            raise ValueError(f"row {i} is shaky")
        return i
    """
FLOW = """
    inputs:
      i: {type: integer}
      n: {type: integer, default: 10}
    steps:
      - id: slow
        function: fns:slow
        with: {i: "{{ inputs.i }}", n: "{{ inputs.n }}"}
    outputs:
      value: "{{ steps.slow.output }}"
    """
# `first` succeeds in every row; `shaky` fails in rows 1, 4, 7 ... until LOG.fixed exists.
SHAKY = """
    inputs:
      i: {type: integer}
      log: {type: string}
    steps:
      - id: first
        prompt: "row {{ inputs.i }}"
      - id: shaky
        function: fns:shaky
        with: {i: "{{ inputs.i }}", log: "{{ inputs.log }}"}
        needs: [first]
    outputs:
      value: "{{ steps.shaky.output }}"
    """


@pytest.fixture
def flow(write_flow: Callable[..., Path]) -> Path:
    write_flow(FUNCTIONS, "fns.py")
    return write_flow(FLOW)


@pytest.fixture
def shaky(write_flow: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    write_flow(FUNCTIONS, "fns.py")
    flow = write_flow(SHAKY, "shaky.yaml")
    log = tmp_path / "calls.log"
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"i": i, "log": str(log)}) + "\n" for i in range(9)))
    return flow, rows


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def calls(log: Path) -> list[int]:
    return sorted(int(x) for x in log.read_text().split()) if log.exists() else []


def test_rows_are_written_in_order_though_they_finish_out_of_order(flow: Path) -> None:
    """Later rows finish first, run concurrently, and still come out in row order."""
    seen: list[int] = []
    result = orchestrate.run_batch(
        flow, [{"i": i} for i in range(10)], concurrency=10, on_row=lambda r: seen.append(r.row)
    )
    assert seen == list(range(10))
    assert [r.outputs["value"] for r in result.rows] == [i * 10 for i in range(10)]
    fns = __import__("fns")
    ends = [i for kind, i in fns.CALLS if kind == "end"]
    assert ends[:3] == [9, 8, 7]  # they ran at once: the shortest ended first
    assert result.summary.to_dict()["succeeded"] == 10
    assert result.exit_code == 0


def test_concurrency_is_shared_across_rows(flow: Path) -> None:
    """--concurrency bounds the calls in flight over all rows, not per row."""
    orchestrate.run_batch(flow, [{"i": i, "n": 12} for i in range(12)], concurrency=3)
    assert __import__("fns").IN_FLIGHT[1] == 3


def test_rows_run_at_most_a_window_ahead_of_the_slowest(flow: Path) -> None:
    """A slow row holds back later rows' writing, and their starting past the window."""
    prepared = prepare(flow, partial=True)
    rows = [(RawRow(i + 1, {}), {"i": i, "n": 50 if i == 0 else i}) for i in range(8)]

    async def main() -> list[int]:
        pool = ProviderPool(mock=True)
        summary = BatchSummary(batch_id="b", workflow="w", file=None, data=None, rows=8)
        runner = BatchRunner(
            prepared, pool=pool, options=RunOptions(max_concurrency=8), summary=summary, window=3
        )
        written: list[int] = []
        await runner.run(rows, lambda r: written.append(r.row))
        return written

    assert asyncio.run(main()) == list(range(8))
    fns = __import__("fns")
    before_first_end = fns.CALLS[: fns.CALLS.index(("end", 0))]
    assert {i for kind, i in before_first_end if kind == "start"} == {0, 1, 2}


@pytest.mark.usefixtures("history_backend")
def test_a_failed_row_is_recorded_and_the_batch_goes_on(
    shaky: tuple[Path, Path], cli: Callable
) -> None:
    """Rows that fail carry their error; the others succeed; exit 1."""
    flow, rows = shaky
    result = cli("batch", flow, "--data", rows, "--mock", "-q")
    assert result.exit_code == 1, result.stderr
    out = lines(result.stdout)
    assert [r["status"] for r in out] == ["failed" if i % 3 == 1 else "succeeded" for i in range(9)]
    assert out[1]["error"] == {
        "step": "shaky",
        "type": "function",
        "message": "fns:shaky raised ValueError: row 1 is shaky",
    }
    assert out[2]["outputs"] == {"value": 2}
    assert set(out[0]) == {
        "row",
        "line",
        "status",
        "inputs",
        "outputs",
        "error",
        "checks",
        "usage",
        "cost_usd",
        "duration_ms",
        "run_id",
    }


@pytest.mark.usefixtures("history_backend")
def test_resume_reruns_only_the_rows_that_did_not_succeed(
    shaky: tuple[Path, Path], cli: Callable, tmp_path: Path
) -> None:
    """--resume BATCH_ID runs the failed rows alone, reusing their succeeded steps, and
    writes the whole output again; the new batch is one entry of `runs list`."""
    flow, rows = shaky
    log = tmp_path / "calls.log"
    first = cli("batch", flow, "--data", rows, "--mock", "--json", "-o", tmp_path / "a.jsonl")
    batch_id = json.loads(first.stdout)["batch_id"]
    assert calls(log) == list(range(9))
    log.unlink()
    (tmp_path / "calls.log.fixed").touch()
    again = cli("batch", flow, "--resume", batch_id, "--mock", "--json", "-o", tmp_path / "b.jsonl")
    assert again.exit_code == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["succeeded"], summary["reused"], summary["resumed_from"]) == (9, 6, batch_id)
    assert calls(log) == [1, 4, 7]
    out = lines((tmp_path / "b.jsonl").read_text())
    assert [r["outputs"]["value"] for r in out] == list(range(9))
    rerun = json.loads(cli("runs", "show", out[1]["run_id"], "--json").stdout)
    assert {s["id"]: s["reused"] for s in rerun["steps"]} == {"first": True, "shaky": False}
    listed = json.loads(cli("runs", "list", "--json").stdout)
    assert [(r["kind"], r["rows"], r["status"]) for r in listed] == [
        ("batch", 9, "succeeded"),
        ("batch", 9, "failed"),
    ]
    table = cli("runs", "list").stdout.splitlines()
    assert [batch_id in line for line in table] == [False, False, True]
    assert "(batch of 9 rows)" in table[2]


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["runs", "diff", "{batch}", "{run}"], id="runs-diff-a-batch"),
        pytest.param(["runs", "diff", "{run}", "{batch}", "--json"], id="runs-diff-b-batch"),
        pytest.param(
            ["run", "{flow}", "--mock", "-i", "i=0", "-i", "log=x", "--resume", "{batch}"],
            id="run-resume-a-batch",
        ),
    ],
)
def test_a_batch_id_where_a_run_id_is_needed(
    shaky: tuple[Path, Path], cli: Callable, command: list[str]
) -> None:
    """`runs diff` and `run --resume` of a batch id: exit 2 saying it is a batch, not 'no
    run with id' of an id `runs list` just showed."""
    flow, rows = shaky
    out = lines(cli("batch", flow, "--data", rows, "--mock", "-q").stdout)
    batch_id = json.loads(cli("runs", "list", "--json").stdout)[0]["run_id"]
    args = [a.format(batch=batch_id, run=out[0]["run_id"], flow=flow) for a in command]
    result = cli(*args)
    assert result.exit_code == 2
    assert f"{batch_id} is a batch, not a run" in result.stderr
    assert result.stdout == ""


def test_runs_delete_of_a_batch_deletes_its_rows_runs(
    shaky: tuple[Path, Path], cli: Callable
) -> None:
    """`runs delete BATCH_ID`, as batch.md says: the batch and every row's run are gone."""
    flow, rows = shaky
    out = lines(cli("batch", flow, "--data", rows, "--mock", "-q").stdout)
    batch_id = json.loads(cli("runs", "list", "--json").stdout)[0]["run_id"]
    deleted = cli("runs", "delete", batch_id)
    assert deleted.exit_code == 0, deleted.stderr
    assert json.loads(cli("runs", "list", "--json").stdout) == []
    assert cli("runs", "show", out[0]["run_id"]).exit_code == 2


@pytest.mark.usefixtures("history_backend")
def test_runs_show_gives_the_summary_and_the_failed_rows(
    shaky: tuple[Path, Path], cli: Callable
) -> None:
    """`runs show BATCH_ID --json`: the summary with each failed row and its error; a row's
    run is shown with `runs show RUN_ID`."""
    flow, rows = shaky
    out = lines(cli("batch", flow, "--data", rows, "--mock", "-q").stdout)
    batch_id = json.loads(cli("runs", "list", "--json").stdout)[0]["run_id"]
    shown = json.loads(cli("runs", "show", batch_id, "--json").stdout)
    assert (shown["rows"], shown["succeeded"], shown["failed"]) == (9, 6, 3)
    assert [(r["row"], r["line"], r["error"]["type"]) for r in shown["failed_rows"]] == [
        (1, 2, "function"),
        (4, 5, "function"),
        (7, 8, "function"),
    ]
    assert [r["run_id"] for r in shown["failed_rows"]] == [out[i]["run_id"] for i in (1, 4, 7)]
    text = cli("runs", "show", batch_id)
    assert "row 1 is shaky" in text.stdout and "6 succeeded, 3 failed" in text.stdout
    run = json.loads(cli("runs", "show", out[0]["run_id"], "--json").stdout)
    assert run["status"] == "succeeded" and run["inputs"]["i"] == 0


def test_csv_output_has_a_column_per_input_and_output(
    flow: Path, cli: Callable, tmp_path: Path
) -> None:
    """--output FILE.csv: row, status, each input, output.NAME, error, cost_usd."""
    data = tmp_path / "rows.csv"
    data.write_text("i,n\n0,1\n1,2\n")
    target = tmp_path / "out.csv"
    result = cli("batch", flow, "--data", data, "--mock", "-q", "--output", target)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert list(csv.reader(io.StringIO(target.read_text()))) == [
        ["row", "status", "i", "n", "output.value", "error", "cost_usd"],
        ["0", "succeeded", "0", "1", "0", "", "0.0"],
        ["1", "succeeded", "1", "2", "10", "", "0.0"],
    ]


def test_bad_rows_stop_the_batch_before_any_call(
    shaky: tuple[Path, Path], cli: Callable, tmp_path: Path
) -> None:
    """A bad row: exit 2, every problem located, nothing run, nothing recorded."""
    flow, rows = shaky
    rows.write_text(rows.read_text() + '{"i": "ten", "log": "x"}\n[]\n')
    result = cli("batch", flow, "--data", rows, "--mock")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{rows}:10: error: input 'i' must be of type integer, got \"ten\"",
        f"{rows}:11: error: a row must be a JSON object, got an array",
    ]
    assert result.stdout == ""
    assert not (tmp_path / "calls.log").exists()
    assert json.loads(cli("runs", "list", "--json").stdout) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--json"], "--json prints the summary on stdout, so the rows need --output FILE"),
        (["--output", "out.txt"], "cannot tell the format of --output out.txt"),
        (["--map", "nope=x"], "--map nope=x: the workflow has no input 'nope'"),
        (["--concurrency", "0"], "--concurrency must be between 1 and 1024, got 0"),
        (["-c", "1025"], "--concurrency must be between 1 and 1024, got 1025"),
        (["--limit", "-1"], "--limit must be between 0 and 1000000, got -1"),
        (["--limit", "1000001"], "--limit must be between 0 and 1000000, got 1000001"),
        (["--max-cost", "-1"], "--max-cost"),
        *[
            ([option, value], f"{option} must not be empty")
            for option in (
                "--data",
                "--output",
                "--model",
                "--resume",
                "--record",
                "--replay",
                "--inputs",
            )
            for value in ("", " ")
        ],
    ],
)
def test_usage_errors(
    flow: Path, cli: Callable, tmp_path: Path, args: list[str], message: str
) -> None:
    """Options that cannot work are exit 2 with a message, before any row runs."""
    data = tmp_path / "rows.jsonl"
    data.write_text('{"i": 1}\n')
    result = cli("batch", flow, "--data", data, "--mock", *args)
    assert result.exit_code == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"concurrency": 0}, "concurrency must be between 1 and 1024, got 0"),
        ({"limit": -1}, "limit must be between 0 and 1000000, got -1"),
        ({"data": ""}, "data must not be empty"),
        ({"flow": " "}, "flow must not be empty"),
    ],
)
def test_a_batch_request_checks_its_settings(settings: dict[str, Any], message: str) -> None:
    """BatchRequest applies the same checks from Python as the options on the CLI."""
    with pytest.raises(UsageError) as caught:
        BatchRequest(**{"flow": "flow.yaml", **settings})
    assert caught.value.message == message


def test_shared_inputs_and_limit(flow: Path, cli: Callable, tmp_path: Path) -> None:
    """-i gives every row a value (a row's own wins); --limit runs the first N rows."""
    data = tmp_path / "rows.jsonl"
    data.write_text('{"i": 1}\n{"i": 2, "n": 3}\n{"i": 3}\n')
    out = lines(
        cli("batch", flow, "--data", data, "--mock", "-q", "-i", "n=20", "--limit", "2").stdout
    )
    assert [r["inputs"] for r in out] == [{"i": 1, "n": 20}, {"i": 2, "n": 3}]


def test_run_batch_checks_every_row_first(flow: Path) -> None:
    """From Python too, one bad row means no row runs."""
    with pytest.raises(BadRows) as caught:
        orchestrate.run_batch(flow, [{"i": 1}, {"i": "x"}])
    assert caught.value.format() == (
        "<rows>:2: error: input 'i' must be of type integer, got \"x\""
    )
    assert __import__("fns").CALLS == []


@pytest.mark.usefixtures("history_backend")
def test_run_batch_records_history_when_asked(flow: Path) -> None:
    """run_batch(history=HistoryOptions()) records the batch and its rows' runs."""
    result = orchestrate.run_batch(flow, ({"i": i} for i in range(3)), history=HistoryOptions())
    from orchestrate.history import open_store

    with open_store() as store:
        batch = store.batch(result.summary.batch_id)
        rows = list(store.batch_rows(result.summary.batch_id))
    assert batch is not None and batch["status"] == "succeeded"
    assert [(r.row, r.run_id) for r in rows] == [(r.row, r.run_id) for r in result.rows]


def test_row_result_document_keys() -> None:
    """A row's line has SPEC 8's keys, with room for checks and cost."""
    row = RowResult.crashed(0, RawRow(2, {}), {}, RuntimeError("boom"), 5)
    assert row.to_dict()["checks"] == [] and row.to_dict()["cost_usd"] is None
    assert row.to_dict()["error"]["message"] == "internal error: RuntimeError('boom')"


# --- cost and budgets (SPEC 8, 10) --------------------------------------------------------------

# Prompts are free, each reply costs 2 USD a million tokens: a call's worst case is exactly
# its max_tokens of reply (100 tokens: $0.0002), and every answer costs 5 tokens ($0.00001).
PRICED = """
    inputs:
      i: {type: integer}
    providers:
      paid:
        base_url: https://llm.example/v1
        pricing:
          m: {input: 0, output: 2.0}
    steps:
      - id: ask
        provider: paid
        model: MODEL
        max_tokens: 100
        prompt: "Item {{ inputs.i }}"
    """
PAID_URL = "https://llm.example/v1/chat/completions"
ONE_CALL = 5 * 2e-6
WORST_CALL = 100 * 2e-6


@pytest.fixture
def paid(respx_mock: Any) -> Any:
    """The `paid` endpoint: every answer 10 prompt and 5 reply tokens."""
    reply = {
        "id": "r1",
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
    }
    return respx_mock.post(PAID_URL).mock(return_value=httpx.Response(200, json=reply))


@pytest.fixture
def ten_rows(tmp_path: Path) -> Path:
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(f'{{"i": {i}}}\n' for i in range(10)))
    return data


def test_rows_and_the_summary_carry_the_cost(
    write_flow: Callable, cli: Callable, paid: Any, ten_rows: Path, tmp_path: Path
) -> None:
    """Each row's cost_usd is its run's; the summary sums them, keeps them in the history
    (runs show, runs list) and shows them on stderr; the mock costs 0, not null."""
    flow = write_flow(PRICED.replace("MODEL", "m"))
    result = cli("batch", flow, "--data", ten_rows, "-o", tmp_path / "out.jsonl", "--json")
    assert result.exit_code == 0, result.stderr
    out = lines((tmp_path / "out.jsonl").read_text())
    assert [r["cost_usd"] for r in out] == pytest.approx([ONE_CALL] * 10)
    summary = json.loads(result.stdout)
    assert summary["cost_usd"] == pytest.approx(10 * ONE_CALL) and summary["notes"] == []
    shown = json.loads(cli("runs", "show", summary["batch_id"], "--json").stdout)
    assert shown["cost_usd"] == summary["cost_usd"]
    assert json.loads(cli("runs", "list", "--json").stdout)[0]["cost_usd"] == shown["cost_usd"]
    assert "$0.0001" in cli("batch", flow, "--data", ten_rows, "-o", tmp_path / "b.jsonl").stderr
    mocked = cli("batch", flow, "--data", ten_rows, "--mock", "-o", tmp_path / "c.jsonl", "--json")
    assert json.loads(mocked.stdout)["cost_usd"] == 0.0
    assert {r["cost_usd"] for r in lines((tmp_path / "c.jsonl").read_text())} == {0.0}


def test_an_unknown_price_makes_the_batch_cost_null_with_a_note(
    write_flow: Callable, cli: Callable, paid: Any, ten_rows: Path, tmp_path: Path
) -> None:
    """A model nobody priced: the rows' and the summary's cost_usd are null (never 0), and
    the summary names the model; with --max-cost, exit 2 before any call."""
    flow = write_flow(PRICED.replace("MODEL", "unpriced-model"))
    result = cli("batch", flow, "--data", ten_rows, "-o", tmp_path / "out.jsonl", "--json")
    summary = json.loads(result.stdout)
    assert summary["cost_usd"] is None
    assert {r["cost_usd"] for r in lines((tmp_path / "out.jsonl").read_text())} == {None}
    assert ["'unpriced-model'" in note for note in summary["notes"]] == [True]
    text = cli("batch", flow, "--data", ten_rows, "-o", tmp_path / "b.jsonl").stderr
    assert "cost unknown" in text and "note: no price known for model 'unpriced-model'" in text
    assert text.count("no price known") == 1  # once for the batch, not per row or step
    calls = paid.call_count
    budgeted = cli("batch", flow, "--data", ten_rows, "--max-cost", "1", "-q")
    assert budgeted.exit_code == 2
    assert "'unpriced-model'" in budgeted.stderr
    assert paid.call_count == calls


def test_a_budget_stops_the_batch_and_resume_finishes_it(
    write_flow: Callable, cli: Callable, paid: Any, ten_rows: Path, tmp_path: Path
) -> None:
    """--max-cost is one budget for every row: the spend never passes it; once a row fails
    with `budget` no new row starts and the batch fails (exit 1); --resume with a new
    budget runs the rest."""
    flow = write_flow(PRICED.replace("MODEL", "m"))
    budget = WORST_CALL + 2.5 * ONE_CALL  # three calls fit, not a fourth one's worst case
    first = cli(
        "batch",
        flow,
        "--data",
        ten_rows,
        "--max-cost",
        str(budget),
        "-c",
        "1",
        "-o",
        tmp_path / "a.jsonl",
        "--json",
    )
    assert first.exit_code == 1, first.stderr
    summary = json.loads(first.stdout)
    assert summary["status"] == "failed"
    assert paid.call_count == 3
    assert summary["cost_usd"] == pytest.approx(3 * ONE_CALL) and summary["cost_usd"] <= budget
    out = lines((tmp_path / "a.jsonl").read_text())
    assert [r["status"] for r in out[:3]] == ["succeeded"] * 3
    assert {r["error"]["type"] for r in out[3:]} == {"budget"}  # under way, made no call
    assert len(out) < 10 and summary["cancelled"] == 10 - len(out)  # never started
    assert summary["succeeded"] == 3

    again = cli(
        "batch",
        flow,
        "--resume",
        summary["batch_id"],
        "--max-cost",
        "1",
        "-o",
        tmp_path / "b.jsonl",
        "--json",
    )
    assert again.exit_code == 0, again.stderr
    resumed = json.loads(again.stdout)
    assert (resumed["succeeded"], resumed["reused"]) == (10, 3)
    assert paid.call_count == 10
    assert resumed["cost_usd"] == pytest.approx(7 * ONE_CALL)  # the reused rows cost 0 now


def test_run_batch_shares_one_budget(write_flow: Callable, paid: Any) -> None:
    """From Python, max_cost is one budget across the rows, as on the command line."""
    flow = write_flow(PRICED.replace("MODEL", "m"))
    result = orchestrate.run_batch(
        flow, [{"i": i} for i in range(5)], concurrency=1, max_cost=WORST_CALL + 1.5 * ONE_CALL
    )
    assert [r.status for r in result.rows[:2]] == ["succeeded"] * 2
    assert result.rows[2].error is not None and result.rows[2].error["type"] == "budget"
    assert result.exit_code == 1 and paid.call_count == 2


def test_the_progress_line_shows_the_cost_so_far_and_a_budget_stop() -> None:
    """The live display reads the summary's cost (`?` once unknown) and says when the
    budget stopped new rows."""
    summary = BatchSummary(batch_id="b", workflow="w", file=None, data=None, rows=4)
    row = RowResult(
        row=0,
        line=1,
        status="succeeded",
        inputs={},
        outputs={},
        error=None,
        usage=Usage(),
        duration_ms=1,
        run_id="r",
        cost_usd=0.0012,
    )
    summary.add(row)
    assert "$0.0012" in progress_line(summary)
    summary.add(
        RowResult(
            row=1,
            line=2,
            status="failed",
            inputs={},
            outputs={},
            error={"type": "budget", "message": "no"},
            usage=Usage(),
            duration_ms=1,
            run_id="r2",
            cost_usd=None,
        )
    )
    assert " · ? (budget reached: no new rows)" in progress_line(summary)
