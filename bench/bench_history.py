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

    python bench/bench_history.py [--runs 15] [--json FIGURES.json]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--history", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.history, args.home)
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
