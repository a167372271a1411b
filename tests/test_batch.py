"""`orchestrate batch` and run_batch(): order, failures, output, history, resume."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import orchestrate
from orchestrate._api import prepare
from orchestrate._batch import BatchRunner, BatchSummary, RowResult
from orchestrate._engine import RunOptions
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
    result = orchestrate.run_batch(flow, [{"i": i} for i in range(10)], concurrency=10,
                                   on_row=lambda r: seen.append(r.row))
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
        runner = BatchRunner(prepared, pool=pool, options=RunOptions(max_concurrency=8),
                             summary=summary, window=3)
        written: list[int] = []
        await runner.run(rows, lambda r: written.append(r.row))
        return written

    assert asyncio.run(main()) == list(range(8))
    fns = __import__("fns")
    before_first_end = fns.CALLS[:fns.CALLS.index(("end", 0))]
    assert {i for kind, i in before_first_end if kind == "start"} == {0, 1, 2}


def test_a_failed_row_is_recorded_and_the_batch_goes_on(shaky: tuple[Path, Path],
                                                        cli: Callable) -> None:
    """Rows that fail carry their error; the others succeed; exit 1."""
    flow, rows = shaky
    result = cli("batch", flow, "--data", rows, "--mock", "-q")
    assert result.exit_code == 1, result.stderr
    out = lines(result.stdout)
    assert [r["status"] for r in out] == ["failed" if i % 3 == 1 else "succeeded"
                                          for i in range(9)]
    assert out[1]["error"] == {"step": "shaky", "type": "function",
                               "message": "fns:shaky raised ValueError: row 1 is shaky"}
    assert out[2]["outputs"] == {"value": 2}
    assert set(out[0]) == {"row", "line", "status", "inputs", "outputs", "error", "checks",
                           "usage", "cost_usd", "duration_ms", "run_id"}


def test_resume_reruns_only_the_rows_that_did_not_succeed(shaky: tuple[Path, Path],
                                                          cli: Callable, tmp_path: Path) -> None:
    """--resume BATCH_ID runs the failed rows alone, reusing their succeeded steps, and
    writes the whole output again; the new batch is one entry of `runs list`."""
    flow, rows = shaky
    log = tmp_path / "calls.log"
    first = cli("batch", flow, "--data", rows, "--mock", "--json", "-o", tmp_path / "a.jsonl")
    batch_id = json.loads(first.stdout)["batch_id"]
    assert calls(log) == list(range(9))
    log.unlink()
    (tmp_path / "calls.log.fixed").touch()
    again = cli("batch", flow, "--resume", batch_id, "--mock", "--json",
                "-o", tmp_path / "b.jsonl")
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
        ("batch", 9, "succeeded"), ("batch", 9, "failed")]


def test_runs_show_gives_the_summary_and_the_failed_rows(shaky: tuple[Path, Path],
                                                         cli: Callable) -> None:
    """`runs show BATCH_ID --json`: the summary with each failed row and its error; a row's
    run is shown with `runs show RUN_ID`."""
    flow, rows = shaky
    out = lines(cli("batch", flow, "--data", rows, "--mock", "-q").stdout)
    batch_id = json.loads(cli("runs", "list", "--json").stdout)[0]["run_id"]
    shown = json.loads(cli("runs", "show", batch_id, "--json").stdout)
    assert (shown["rows"], shown["succeeded"], shown["failed"]) == (9, 6, 3)
    assert [(r["row"], r["line"], r["error"]["type"]) for r in shown["failed_rows"]] == [
        (1, 2, "function"), (4, 5, "function"), (7, 8, "function")]
    assert [r["run_id"] for r in shown["failed_rows"]] == [out[i]["run_id"] for i in (1, 4, 7)]
    text = cli("runs", "show", batch_id)
    assert "row 1 is shaky" in text.stdout and "6 succeeded, 3 failed" in text.stdout
    run = json.loads(cli("runs", "show", out[0]["run_id"], "--json").stdout)
    assert run["status"] == "succeeded" and run["inputs"]["i"] == 0


def test_csv_output_has_a_column_per_input_and_output(flow: Path, cli: Callable,
                                                      tmp_path: Path) -> None:
    """--output FILE.csv: row, status, each input, output.NAME, error, cost_usd."""
    data = tmp_path / "rows.csv"
    data.write_text("i,n\n0,1\n1,2\n")
    target = tmp_path / "out.csv"
    result = cli("batch", flow, "--data", data, "--mock", "-q", "--output", target)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert list(csv.reader(io.StringIO(target.read_text()))) == [
        ["row", "status", "i", "n", "output.value", "error", "cost_usd"],
        ["0", "succeeded", "0", "1", "0", "", "0.0"],  # a function costs nothing
        ["1", "succeeded", "1", "2", "10", "", "0.0"],
    ]


def test_bad_rows_stop_the_batch_before_any_call(shaky: tuple[Path, Path], cli: Callable,
                                                 tmp_path: Path) -> None:
    """A bad row: exit 2, every problem located, nothing run, nothing recorded."""
    flow, rows = shaky
    rows.write_text(rows.read_text() + '{"i": "ten", "log": "x"}\n[]\n')
    result = cli("batch", flow, "--data", rows, "--mock")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{rows}:10: error: input 'i' must be of type integer, got \"ten\"",
        f"{rows}:11: error: a row must be a JSON object, got an array"]
    assert result.stdout == ""
    assert not (tmp_path / "calls.log").exists()
    assert json.loads(cli("runs", "list", "--json").stdout) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--json"], "--json prints the summary on stdout, so the rows need --output FILE"),
    (["--output", "out.txt"], "cannot tell the format of --output out.txt"),
    (["--map", "nope=x"], "--map nope=x: the workflow has no input 'nope'"),
])
def test_usage_errors(flow: Path, cli: Callable, tmp_path: Path, args: list[str],
                      message: str) -> None:
    """Options that cannot work are exit 2 with a message, before any row runs."""
    data = tmp_path / "rows.jsonl"
    data.write_text('{"i": 1}\n')
    result = cli("batch", flow, "--data", data, "--mock", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_shared_inputs_and_limit(flow: Path, cli: Callable, tmp_path: Path) -> None:
    """-i gives every row a value (a row's own wins); --limit runs the first N rows."""
    data = tmp_path / "rows.jsonl"
    data.write_text('{"i": 1}\n{"i": 2, "n": 3}\n{"i": 3}\n')
    out = lines(cli("batch", flow, "--data", data, "--mock", "-q", "-i", "n=20",
                    "--limit", "2").stdout)
    assert [r["inputs"] for r in out] == [{"i": 1, "n": 20}, {"i": 2, "n": 3}]


def test_run_batch_checks_every_row_first(flow: Path) -> None:
    """From Python too, one bad row means no row runs."""
    with pytest.raises(BadRows) as caught:
        orchestrate.run_batch(flow, [{"i": 1}, {"i": "x"}])
    assert caught.value.format() == ("<rows>:2: error: input 'i' must be of type integer, "
                                     "got \"x\"")
    assert __import__("fns").CALLS == []


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
