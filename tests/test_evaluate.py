"""`batch` as an evaluation (SPEC 9): pass rates, --fail-under, --junit, --matrix, replay."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrate import run_batch

FLOW = """
inputs:
  question: {}
  tone: {default: plain}
outputs:
  answer: "{{ steps.answer.output }}"
steps:
  - id: answer
    prompt: "{{ inputs.question }} ({{ inputs.tone }})"
    mock: "{{ inputs.question | upper }}"
checks:
  - id: right
    expect: outputs.answer == row.expected
  - id: polite
    judge: {rubric: The answer is polite.}
"""
# Three rows of four answer right: the `right` check passes 3 of 4.
ROWS = [
    {"question": "a", "expected": "A"},
    {"question": "b", "expected": "B"},
    {"question": "c", "expected": "C"},
    {"question": "d", "expected": "wrong"},
]


@pytest.fixture
def flow(write_flow: Callable[..., Path]) -> Path:
    return write_flow(FLOW)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return path


def test_every_row_is_checked_against_its_own_row(flow: Path) -> None:
    """`row` is the dataset row: each row's checks, and the summary's pass rates."""
    result = run_batch(flow, ROWS, mock=True)
    assert [[c["passed"] for c in r.checks] for r in result.rows] == [
        [True, True],
        [True, True],
        [True, True],
        [False, True],
    ]
    summary = result.summary.to_dict()
    assert summary["checks"] == {
        "right": {"passed": 3, "failed": 1, "pass_rate": 0.75},
        "polite": {"passed": 4, "failed": 0, "pass_rate": 1.0},
    }
    assert summary["pass_rate"] == 0.875
    assert result.exit_code == 1  # the default --fail-under is 1.0


@pytest.mark.parametrize(
    ("fail_under", "code"), [(None, 1), ("1", 1), ("0.9", 1), ("0.875", 0), ("0.5", 0), ("0", 0)]
)
def test_fail_under_decides_the_exit_code(
    flow: Path, data: Path, cli: Callable, fail_under: str | None, code: int
) -> None:
    """Exit 0 when at least RATE of the row-checks pass (7 of 8 here), else 1."""
    extra = ["--fail-under", fail_under] if fail_under is not None else []
    result = cli("batch", flow, "--data", data, "--mock", "-q", *extra)
    assert result.exit_code == code, result.stderr


def test_fail_under_out_of_range_is_a_usage_error(flow: Path, data: Path, cli: Callable) -> None:
    """A rate outside 0..1 is exit 2."""
    assert cli("batch", flow, "--data", data, "--mock", "--fail-under", "1.5").exit_code == 2


def test_a_failed_row_fails_its_checks(write_flow: Callable, cli: Callable, tmp_path: Path) -> None:
    """A row whose run failed has no verdicts: every check counts as failed for it."""
    write_flow("def pick(n):\n    return 10 // n\n", "tools.py")
    flow = write_flow("""
        inputs: {n: {type: integer}}
        steps:
          - id: pick
            function: tools:pick
            with: {n: "{{ inputs.n }}"}
        checks:
          - id: small
            expect: outputs.pick < 6
        """)
    data = tmp_path / "n.jsonl"
    data.write_text('{"n": 2}\n{"n": 0}\n{"n": 1}\n')
    result = cli(
        "batch", flow, "--data", data, "--mock", "--json", "--output", tmp_path / "out.jsonl"
    )
    summary = json.loads(result.stdout)
    assert summary["checks"] == {"small": {"passed": 1, "failed": 2, "pass_rate": 0.3333}}
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [len(r["checks"]) for r in rows] == [1, 0, 1]


def test_the_jsonl_output_carries_each_rows_checks(flow: Path, data: Path, cli: Callable) -> None:
    """Each row line has its checks, as the result document has them."""
    result = cli("batch", flow, "--data", data, "--mock", "-q")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[3]["checks"][0] == {
        "id": "right",
        "passed": False,
        "score": None,
        "message": "`outputs.answer == row.expected` is false",
    }


def test_no_checks_skips_them_in_a_batch(flow: Path, data: Path, cli: Callable) -> None:
    """--no-checks: no verdicts, no pass rate, exit 0."""
    result = cli("batch", flow, "--data", data, "--mock", "-q", "--no-checks")
    assert result.exit_code == 0
    assert all(json.loads(line)["checks"] == [] for line in result.stdout.splitlines())


def test_the_summary_shows_the_pass_rates(flow: Path, data: Path, cli: Callable) -> None:
    """On stderr: the overall rate against --fail-under, then each check's."""
    result = cli("batch", flow, "--data", data, "--mock")
    assert "checks: 87.5% passed (--fail-under 100%: NOT met)" in result.stderr
    assert "    right        3 passed      1 failed   75.0%\n" in result.stderr


# --- JUnit XML ---------------------------------------------------------------------------------


def test_junit_has_a_testcase_per_row_and_check(
    flow: Path, data: Path, cli: Callable, tmp_path: Path
) -> None:
    """--junit FILE: valid XML, one testcase per row and check, failures with messages."""
    report = tmp_path / "junit.xml"
    cli("batch", flow, "--data", data, "--mock", "-q", "--junit", report)
    suites = ET.parse(report).getroot()
    assert suites.tag == "testsuites"
    (suite,) = suites
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("8", "1", "0")
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases[:2]] == [
        ("flow.row 0 (line 1)", "right"),
        ("flow.row 0 (line 1)", "polite"),
    ]
    failed = [c for c in cases if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [
        ("flow.row 3 (line 4)", "right")
    ]
    failure = failed[0].find("failure")
    assert failure is not None
    assert failure.get("message") == "`outputs.answer == row.expected` is false"


def test_junit_escapes_what_xml_cannot_hold(
    write_flow: Callable, cli: Callable, tmp_path: Path
) -> None:
    """Quotes, angle brackets and control characters in a message still parse."""
    flow = write_flow("""
        inputs: {text: {}}
        steps:
          - id: echo
            prompt: x
            mock: "{{ inputs.text }}"
        checks:
          - id: same
            equals: nothing
        """)
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"text": 'a <b> & "c" \x07 ]]>'}) + "\n")
    report = tmp_path / "junit.xml"
    cli("batch", flow, "--data", data, "--mock", "-q", "--junit", report)
    failure = ET.parse(report).getroot().find(".//failure")
    assert failure is not None
    assert '<b> & \\"c\\"' in (failure.get("message") or "")


def test_junit_reports_a_failed_row_as_errors(
    write_flow: Callable, cli: Callable, tmp_path: Path
) -> None:
    """A row that failed is an <error> for each check, with the run's error."""
    write_flow("def boom():\n    raise RuntimeError('down')\n", "tools.py")
    flow = write_flow("""
        steps:
          - id: boom
            function: tools:boom
        checks:
          - id: fine
            expect: "true"
        """)
    data = tmp_path / "rows.jsonl"
    data.write_text("{}\n")
    report = tmp_path / "junit.xml"
    cli("batch", flow, "--data", data, "--mock", "-q", "--junit", report)
    error = ET.parse(report).getroot().find(".//testcase/error")
    assert error is not None
    assert error.get("message") == "the run failed: tools:boom raised RuntimeError: down"


# --- --matrix ----------------------------------------------------------------------------------


def test_matrix_runs_every_combination(
    flow: Path, data: Path, cli: Callable, tmp_path: Path
) -> None:
    """Two axes of two values: four variants, each row once per variant, labelled."""
    out = tmp_path / "out.jsonl"
    result = cli(
        "batch",
        flow,
        "--data",
        data,
        "--mock",
        "--json",
        "--output",
        out,
        "--matrix",
        "model=small,large",
        "--matrix",
        "inputs.tone=plain,warm",
        "--fail-under",
        "0",
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows"] == 16
    assert [v["variant"] for v in summary["variants"]] == [
        {"model": "small", "inputs.tone": "plain"},
        {"model": "small", "inputs.tone": "warm"},
        {"model": "large", "inputs.tone": "plain"},
        {"model": "large", "inputs.tone": "warm"},
    ]
    first = summary["variants"][0]
    assert (first["rows"], first["pass_rate"], first["mean_judge_score"]) == (4, 0.875, 1.0)
    assert set(first) >= {"checks", "usage", "cost_usd", "latency_ms"}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["row"], r["variant"]["model"], r["inputs"]["tone"]) for r in lines[:4]] == [
        (0, "small", "plain"),
        (0, "small", "warm"),
        (0, "large", "plain"),
        (0, "large", "warm"),
    ]


def test_matrix_settings_reach_the_model_calls(flow: Path, tmp_path: Path, cli: Callable) -> None:
    """model, temperature and max_tokens of a variant are what its rows send."""
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps(ROWS[0]) + "\n")
    fixture = tmp_path / "calls.json"
    cli(
        "batch",
        flow,
        "--data",
        data,
        "--mock",
        "-q",
        "--record",
        fixture,
        "--matrix",
        "model=m1,m2",
        "--matrix",
        "temperature=0,0.7",
        "--matrix",
        "max_tokens=50",
    )
    recorded = json.loads(fixture.read_text())
    requests = [
        entry["request"] for entry in recorded["responses"].values() if entry["step"] == "answer"
    ]
    assert sorted((r["model"], r["temperature"], r["max_tokens"]) for r in requests) == [
        ("m1", 0.0, 50),
        ("m1", 0.7, 50),
        ("m2", 0.0, 50),
        ("m2", 0.7, 50),
    ]


def test_matrix_prints_a_comparison_table(flow: Path, data: Path, cli: Callable) -> None:
    """One column per variant; a line per check's pass rate, judge score, tokens, cost,
    latency."""
    result = cli("batch", flow, "--data", data, "--mock", "-q", "--matrix", "model=a,bb")
    result = cli("batch", flow, "--data", data, "--mock", "--matrix", "model=a,bb")
    table = result.stderr[result.stderr.index("model=a") :].splitlines()
    assert table[0].split() == ["model=a", "model=bb"]
    labels = [" ".join(line.split()[:-2]) for line in table[1:9]]
    assert labels == [
        "pass rate",
        "right",
        "polite",
        "mean judge score",
        "rows failed",
        "tokens",
        "cost",
        "latency p50",
    ]
    assert table[1].split()[-2:] == ["87.5%", "87.5%"]


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ("colour=red", "--matrix cannot vary 'colour'"),
        ("modle=a,b", "--matrix cannot vary 'modle'"),
        ("model", "cannot read --matrix 'model'"),
        ("temperature=hot", "--matrix temperature=hot: not a number"),
        ("inputs.nope=1", "unknown input 'nope'"),
    ],
)
def test_a_bad_matrix_is_a_usage_error(
    flow: Path, data: Path, cli: Callable, matrix: str, message: str
) -> None:
    """Exit 2 before any row runs, naming the problem."""
    result = cli("batch", flow, "--data", data, "--mock", "--matrix", matrix)
    assert result.exit_code == 2
    assert message in result.stderr


def test_matrix_shares_one_concurrency_limit(
    write_flow: Callable, tmp_path: Path, cli: Callable
) -> None:
    """Variants run side by side, but never more calls at once than --concurrency."""
    write_flow(
        """
        import asyncio
        state = {"now": 0, "most": 0}

        async def work(i):
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            await asyncio.sleep(0.01)
            state["now"] -= 1
            return state["most"]
        """.replace("\n        ", "\n"),
        "busy.py",
    )
    flow = write_flow("""
        inputs: {i: {type: integer}}
        steps:
          - id: work
            function: busy:work
            with: {i: "{{ inputs.i }}"}
        """)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(f'{{"i": {i}}}\n' for i in range(12)))
    result = cli(
        "batch",
        flow,
        "--data",
        data,
        "--mock",
        "-q",
        "--concurrency",
        "3",
        "--matrix",
        "inputs.i=1,2,3",
    )
    most = max(json.loads(line)["outputs"]["work"] for line in result.stdout.splitlines())
    assert most == 3


# --- replay --------------------------------------------------------------------------------------


def test_a_judged_batch_replays_offline(
    flow: Path, data: Path, cli: Callable, tmp_path: Path
) -> None:
    """--record under the mock, then --replay: the same verdicts, the judge's included,
    every answer from the fixture."""
    fixture = tmp_path / "eval.fixture.json"
    recorded = cli(
        "batch", flow, "--data", data, "--mock", "-q", "--record", fixture, "--fail-under", "0.8"
    )
    replayed = cli(
        "batch", flow, "--data", data, "--mock", "-q", "--replay", fixture, "--fail-under", "0.8"
    )
    assert (recorded.exit_code, replayed.exit_code) == (0, 0), replayed.stderr

    def verdicts(result: Any) -> list[list[tuple[str, bool, Any]]]:
        return [
            [(c["id"], c["passed"], c["score"]) for c in json.loads(line)["checks"]]
            for line in result.stdout.splitlines()
        ]

    assert verdicts(replayed) == verdicts(recorded)
    # The judge's answers come from the fixture: a harsher recorded verdict fails them.
    stored = json.loads(fixture.read_text())
    judged = [e for e in stored["responses"].values() if e["step"] == "checks.polite"]
    assert len(judged) == len(ROWS)
    for entry in judged:
        entry["response"]["text"] = '{"score": 0.2, "reason": "blunt"}'
    fixture.write_text(json.dumps(stored))
    harsher = cli("batch", flow, "--data", data, "--mock", "-q", "--replay", fixture)
    assert {
        c["message"]
        for line in harsher.stdout.splitlines()
        for c in json.loads(line)["checks"]
        if c["id"] == "polite"
    } == {"blunt"}


# --- the history: runs show, runs diff ---------------------------------------------------------


def _batch_ids(cli: Callable) -> list[str]:
    listed = json.loads(cli("runs", "list", "--json").stdout)
    return [entry["run_id"] for entry in reversed(listed) if entry["kind"] == "batch"]


def test_runs_show_of_a_batch_gives_its_checks(flow: Path, data: Path, cli: Callable) -> None:
    """The recorded summary keeps the pass rates; the rows with failing checks are listed."""
    cli("batch", flow, "--data", data, "--mock", "-q")
    (batch_id,) = _batch_ids(cli)
    shown = json.loads(cli("runs", "show", batch_id, "--json").stdout)
    assert shown["checks"]["right"] == {"passed": 3, "failed": 1, "pass_rate": 0.75}
    assert [(r["row"], [c["id"] for c in r["checks"]]) for r in shown["failed_checks"]] == [
        (3, ["right"])
    ]
    text = cli("runs", "show", batch_id).stdout
    assert "checks: 87.5% passed" in text
    assert "✗ row 3 right: `outputs.answer == row.expected` is false" in text


def test_runs_diff_of_two_batches_lists_the_changed_verdicts(
    flow: Path, data: Path, cli: Callable
) -> None:
    """Pass rates per check before and after; rows that went pass -> fail come first."""
    cli("batch", flow, "--data", data, "--mock", "-q")
    rows = [{**ROWS[0], "expected": "no"}, *ROWS[1:3], {**ROWS[3], "expected": "D"}]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    cli("batch", flow, "--data", data, "--mock", "-q")
    first, second = _batch_ids(cli)
    diff = json.loads(cli("runs", "diff", first, second, "--json").stdout)
    assert diff["checks"]["right"] == {"a": 0.75, "b": 0.75, "delta": 0.0}
    assert [(r["row"], r["check"], r["a"], r["b"]) for r in diff["changed_rows"]] == [
        (0, "right", True, False),
        (3, "right", False, True),
    ]
    text = cli("runs", "diff", first, second).stdout
    assert text.index("row 0 right: pass -> fail") < text.index("row 3 right: fail -> pass")


def test_runs_diff_of_a_run_and_a_batch_is_a_usage_error(
    flow: Path, data: Path, cli: Callable
) -> None:
    """A run and a batch cannot be compared: exit 2."""
    cli("batch", flow, "--data", data, "--mock", "-q")
    (batch_id,) = _batch_ids(cli)
    run = json.loads(cli("run", flow, "--mock", "--json", "-i", "question=x").stdout)
    result = cli("runs", "diff", run["run_id"], batch_id)
    assert result.exit_code == 2
    assert "compares two runs or two batches" in result.stderr


# --- the shipped example -------------------------------------------------------------------


def test_the_example_evaluation_replays_its_fixture(cli: Callable, tmp_path: Path) -> None:
    """workflows/review-sentiment.yaml over its 24 cases, answered from the recorded fixture
    (judge included): it meets --fail-under 0.9, and its JUnit XML parses."""
    from tests.conftest import REPO

    report = tmp_path / "eval.xml"
    result = cli(
        "batch",
        REPO / "workflows/review-sentiment.yaml",
        "--data",
        REPO / "workflows/data/reviews.jsonl",
        "--mock",
        "--replay",
        REPO / "workflows/data/reviews.fixture.json",
        "--fail-under",
        "0.9",
        "--junit",
        report,
        "-q",
    )
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 24 and {len(r["checks"]) for r in rows} == {5}
    suite = ET.parse(report).getroot()[0]
    assert (suite.get("tests"), suite.get("failures")) == ("120", "6")
