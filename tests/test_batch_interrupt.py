"""Ctrl-C and SIGTERM during a batch: exit 130 (143), finished rows written, the rest resumable."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import start_orchestrate, wait_for_line

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT is POSIX")

# Rows 0 and 1 answer at once; the others wait a minute, until the file `fixed` exists.
FUNCTIONS = """
    import asyncio
    import os
    import sys

    async def work(i):
        if i >= 2 and not os.path.exists("{fixed}"):
            print(f"row {{i}} waiting", file=sys.stderr, flush=True)
            await asyncio.sleep(60)
        return i
    """
FLOW = """
    inputs:
      i: {type: integer}
    steps:
      - id: work
        function: fns:work
        with: {i: "{{ inputs.i }}"}
    """


def wait_for_written_rows(output: Path, count: int) -> None:
    """Until `output` holds `count` rows: rows 0 and 1 end at once, but after a slow row
    starts."""
    deadline = time.monotonic() + 30
    while len(output.read_bytes().splitlines()) < count and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.usefixtures("history_backend")
def test_ctrl_c_writes_what_is_done_and_resume_finishes(
    write_flow: Callable[..., Path], tmp_path: Path, cli: Callable
) -> None:
    """SIGINT: rows done are written, the batch is recorded cancelled, exit 130; --resume
    runs only the rest and writes the complete output."""
    fixed = tmp_path / "fixed"
    write_flow(FUNCTIONS.format(fixed=fixed), "fns.py")
    flow = write_flow(FLOW)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(f'{{"i": {i}}}\n' for i in range(6)))
    first = tmp_path / "first.jsonl"
    process = start_orchestrate(
        "batch", flow, "--data", data, "--mock", "--concurrency", "4", "--output", first, "--json"
    )
    wait_for_line(process, "row 5 waiting")
    wait_for_written_rows(first, 2)
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 130
    summary = json.loads(stdout)
    assert (summary["status"], summary["succeeded"], summary["cancelled"]) == ("cancelled", 2, 4)
    written = [json.loads(line) for line in first.read_text().splitlines()]
    assert [(r["row"], r["status"]) for r in written] == [
        (0, "succeeded"),
        (1, "succeeded"),
        *((i, "cancelled") for i in range(2, 6)),
    ]
    shown = json.loads(cli("runs", "show", summary["batch_id"], "--json").stdout)
    assert shown["status"] == "cancelled"
    assert [r["row"] for r in shown["failed_rows"]] == [2, 3, 4, 5]

    fixed.touch()
    again = cli("batch", flow, "--resume", summary["batch_id"], "--mock", "-q")
    assert again.exit_code == 0, again.stderr
    rows = [json.loads(line) for line in again.stdout.splitlines()]
    assert [(r["row"], r["status"], r["outputs"]) for r in rows] == [
        (i, "succeeded", {"work": i}) for i in range(6)
    ]
    assert [r["run_id"] for r in rows[:2]] == [r["run_id"] for r in written[:2]]


def test_sigterm_cancels_the_batch_like_ctrl_c(
    write_flow: Callable[..., Path], tmp_path: Path, cli: Callable
) -> None:
    """SIGTERM (CI cancel, `timeout`): exit 143, 'orchestrate: terminated', rows done
    written, and the batch recorded cancelled, not left running."""
    write_flow(FUNCTIONS.format(fixed=tmp_path / "never"), "fns.py")
    flow = write_flow(FLOW)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(f'{{"i": {i}}}\n' for i in range(4)))
    out = tmp_path / "out.jsonl"
    process = start_orchestrate(
        "batch", flow, "--data", data, "--mock", "--concurrency", "4", "--output", out, "--json"
    )
    wait_for_line(process, "row 3 waiting")
    wait_for_written_rows(out, 2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 143
    assert "orchestrate: terminated" in stderr
    summary = json.loads(stdout)
    assert (summary["status"], summary["succeeded"], summary["cancelled"]) == ("cancelled", 2, 2)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in written] == ["succeeded"] * 2 + ["cancelled"] * 2
    shown = json.loads(cli("runs", "show", summary["batch_id"], "--json").stdout)
    assert shown["status"] == "cancelled"
