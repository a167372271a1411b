"""Run history overhead: the 200-step chain with the history on and off (issue #5).

Target: with history on, the run takes at most 20% longer than with `--no-history`.

Two measurements, modes alternating so that drift in the machine's load hits both alike:

- **run** and **prepare + run**: in a fresh interpreter each time, through the Python API
  as the engine benchmark of issue #3 does: ``prepare()``, then ``run_prepared(...,
  mock=True)`` with ``history=HistoryOptions()`` (opening the database, recording every
  step, waiting for the writer to finish) or ``HistoryOptions(record_history=False)``
  (what `--no-history` passes). Start-up is not counted; importing sqlite3 and the store is.
- **cli**: the whole `orchestrate run chain.yaml --mock -q` process, wall time.

Each run with history adds a run to a fresh database in a temporary ORCHESTRATE_HOME.

With `--list`, instead: the whole `orchestrate runs list --json` process (and with
`--user`) as the history grows to 10,000 and 100,000 batch rows (issue #12; target: under
0.3 s). The history holds 50 runs on their own and is filled through the store API (a
batch, its rows' runs and their one step each), as `batch --mock` would fill it.

    python bench/bench_history.py [--runs 15] [--json FIGURES.json]
    python bench/bench_history.py --list [--runs 15] [--sizes 0,10000,100000] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO, machine, median, orchestrate_command, table, write_figures

STEPS = 200
TARGET = 1.20  # history on / history off


def chain_workflow(steps: int) -> str:
    lines = ["name: chain", "steps:", "  - id: s000", "    prompt: Start the chain."]
    for n in range(1, steps):
        lines += [
            f"  - id: s{n:03d}",
            f"    prompt: 'Step {n} continues: {{{{ steps.s{n - 1:03d}.output }}}}'",
        ]
    return "\n".join(lines) + "\n"


def child(flow: str, history: bool, home: str) -> None:
    """One timed run in this interpreter; prints {"seconds": ...}."""
    import asyncio

    from orchestrate._api import prepare, run_prepared
    from orchestrate.history import HistoryOptions

    start = time.perf_counter()
    prepared = prepare(flow)
    # Off is exactly `--no-history`: the same options object, the database never opened.
    options = HistoryOptions(record_history=history, database=Path(home) / "history.db")
    ran = time.perf_counter()
    result = asyncio.run(run_prepared(prepared, mock=True, history=options))
    end = time.perf_counter()
    assert result.status == "succeeded", result.error
    print(json.dumps({"run": end - ran, "prepare_run": end - start}))


def child_env(pycache: Path) -> dict[str, str]:
    """Bytecode cached (in a temporary folder), as in an installed package."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": str(pycache)}


def run_in_child(flow: Path, history: bool, home: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(flow), "--home", str(home)]
    if history:
        command.append("--history")
    env = child_env(home.parent / "pycache")
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.splitlines()[-1])


def run_cli(flow: Path, history: bool, home: Path) -> float:
    command = [*orchestrate_command(), "run", str(flow), "--mock", "-q"]
    if not history:
        command.append("--no-history")
    env = {**child_env(home.parent / "pycache"), "ORCHESTRATE_HOME": str(home)}
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


ALONE = 50  # runs on their own in the history the --list figures read
LIST_TARGET_S = 0.3


def fill_history(database: Path, rows: int, first: int) -> None:
    """Add a finished batch of `rows` rows (a run of one step each), or with `first` 0 the
    runs on their own, through the store API, as a run and a batch record them."""
    from orchestrate._result import RunResult, StepResult, Usage
    from orchestrate.history import RunRecord, StepRecord, open_store
    from orchestrate.history._store import BatchRecord

    started = time.time()
    batch_id = f"batch{first:08d}" if rows else None
    with open_store(location=database) as store:
        if batch_id:
            store.insert_batch(
                BatchRecord(
                    batch_id=batch_id,
                    workflow="flow",
                    file="flow.yaml",
                    file_path="/tmp/flow.yaml",
                    file_sha256="0" * 64,
                    data="rows.jsonl",
                    data_path="/tmp/rows.jsonl",
                    mode="mock",
                    started_at="2026-01-01T00:00:00.000Z",
                    started=started,
                    rows=rows,
                    settings={},
                    resumed_from=None,
                    user_name="bench",
                )
            )
        for index in range(rows or ALONE):
            run_id = f"run{first + index:016d}"
            record = RunRecord(
                run_id=run_id,
                workflow="flow",
                file="flow.yaml",
                file_path="/tmp/flow.yaml",
                file_sha256="0" * 64,
                git_commit=None,
                mode="mock",
                started_at="2026-01-01T00:00:00.000Z",
                started=started + index / 1000,
                inputs={"text": f"number {index}"},
                resumed_from=None,
                provenance={},
                user_name="bench",
                batch_id=batch_id,
                batch_row=index if batch_id else None,
                batch_line=index + 1 if batch_id else None,
            )
            step = StepResult(
                id="rewrite",
                status="succeeded",
                output=f"rewritten number {index}",
                provider="mock",
                model="mock",
                attempts=1,
                usage=Usage(10, 5),
            )
            store.insert_run(lambda record=record: record)
            store.insert_steps(
                run_id,
                lambda step=step: [
                    StepRecord(result=step, position=0, kind="llm", definition="d", finished=0)
                ],
            )
            store.finish_run(
                RunResult(
                    run_id=run_id,
                    workflow="flow",
                    file="flow.yaml",
                    status="succeeded",
                    started_at=record.started_at,
                    duration_ms=1,
                    inputs=record.inputs,
                    outputs={"answer": step.output},
                    steps=(step,),
                ),
                started + 1,
            )
        if batch_id:
            summary = {
                "status": "succeeded",
                "duration_ms": 1000,
                "rows": rows,
                "succeeded": rows,
                "failed": 0,
                "cancelled": 0,
                "cost_usd": 0.0,
            }
            store.finish_batch(batch_id, summary, time.time())


def time_runs_list(home: Path, extra: list[str]) -> float:
    env = {**child_env(home.parent / "pycache"), "ORCHESTRATE_HOME": str(home)}
    command = [*orchestrate_command(), "runs", "list", "--json", *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def runs_list_figures(sizes: list[int], runs: int) -> list[dict[str, Any]]:
    """`runs list` (and `--user`) at each size of the batch rows the history holds."""
    results = []
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        database = home / "history.db"
        fill_history(database, 0, 0)
        held = 0
        for size in sorted(sizes):
            if size > held:
                fill_history(database, size - held, ALONE + held)
                held = size
            figures: dict[str, Any] = {"batch_rows": held, "runs_alone": ALONE}
            for label, extra in (("list", []), ("user", ["--user", "bench"])):
                time_runs_list(home, extra)  # the bytecode written, the file in the cache
                times = [time_runs_list(home, extra) for _ in range(runs)]
                figures[f"{label}_s"] = median(times)
                figures[f"{label}_min_s"] = min(times)
            figures["ok"] = max(figures["list_s"], figures["user_s"]) < LIST_TARGET_S
            results.append(figures)
    return results


def main_list(args: argparse.Namespace) -> None:
    sizes = [int(size) for size in args.sizes.split(",")]
    results = runs_list_figures(sizes, args.runs)
    print(f"`orchestrate runs list --json`, whole process; median (min) of {args.runs} runs\n")
    rows = [
        [
            r["batch_rows"],
            f"{r['list_s']:.3f} ({r['list_min_s']:.3f})",
            f"{r['user_s']:.3f} ({r['user_min_s']:.3f})",
            r["ok"],
        ]
        for r in results
    ]
    print(table(["batch rows", "runs list s", "runs list --user s", "under 0.3 s"], rows))
    print(f"machine: {json.dumps(machine())}")
    write_figures(args.json, "runs_list", {"runs": args.runs, "sizes": results})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--list", action="store_true", help="time `runs list` instead")
    parser.add_argument("--sizes", default="0,10000,100000", help="batch rows, for --list")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--history", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.history, args.home)
        return
    if args.list:
        main_list(args)
        return
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        flow = root / "chain.yaml"
        flow.write_text(chain_workflow(STEPS), encoding="utf-8")
        home = root / "home"
        times: dict[str, dict[bool, list[float]]] = {
            what: {True: [], False: []} for what in ("run", "prepare_run", "cli")
        }
        for history in (False, True):  # warm up: write the bytecode, create the database
            run_in_child(flow, history, home)
            run_cli(flow, history, home)
        for _ in range(args.runs):
            for history in (False, True):
                figures = run_in_child(flow, history, home)
                times["run"][history].append(figures["run"])
                times["prepare_run"][history].append(figures["prepare_run"])
                times["cli"][history].append(run_cli(flow, history, home))
        runs_recorded = len(
            json.loads(
                subprocess.run(
                    [*orchestrate_command(), "runs", "list", "--limit", "0", "--json"],
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "ORCHESTRATE_HOME": str(home)},
                ).stdout
            )
        )
    figures: dict[str, Any] = {"steps": STEPS, "runs": args.runs, "runs_recorded": runs_recorded}
    rows = []
    measures = (
        ("run", "run only (in process)"),
        ("prepare_run", "prepare + run (in process)"),
        ("cli", "orchestrate run (whole process)"),
    )
    for what, label in measures:
        off, on = median(times[what][False]), median(times[what][True])
        ratio = on / off
        figures[what] = {"off_s": off, "on_s": on, "ratio": ratio, "ok": ratio <= TARGET}
        rows.append(
            [
                label,
                f"{off * 1000:.1f}",
                f"{on * 1000:.1f}",
                f"{(on - off) * 1000:+.1f}",
                f"{(ratio - 1) * 100:+.1f}%",
                ratio <= TARGET,
            ]
        )
    print(f"{STEPS}-step chain, mock provider, 0 ms latency; median of {args.runs} runs")
    print(
        table(
            ["measure", "--no-history ms", "history ms", "added ms", "overhead", "within 20%"], rows
        )
    )
    print(f"runs recorded: {runs_recorded}; machine: {json.dumps(machine())}")
    write_figures(args.json, "history", figures)


if __name__ == "__main__":
    main()
