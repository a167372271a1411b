"""Recording overhead on PostgreSQL: the 200-step chain with no history, SQLite, PostgreSQL.

The same measurement as bench_history.py (each run in a fresh interpreter, through the
Python API: ``prepare()`` then ``run_prepared(..., mock=True)``, modes alternating), with a
third mode that records into PostgreSQL. Then (unless --batch-rows 0) bench_batch.py's
batch under --mock, recorded into SQLite and into PostgreSQL, alternating: the batch's own
time and rows per second. Without --url, a throw-away local server is started with the
machine's PostgreSQL binaries (tests/postgres_server.py) and stopped at the end; its
connections go over TCP on 127.0.0.1.

    python bench/bench_postgres.py [--runs 15] [--batch-rows 10000] [--batches 3]
                                   [--url postgresql://...] [--json FIGURES.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import REPO, machine, median, table, write_figures
from bench_batch import FLOW as BATCH_FLOW
from bench_batch import run_batch
from bench_history import STEPS, chain_workflow, child_env

MODES = ("off", "sqlite", "postgres")


def child(flow: str, database: str) -> None:
    """One timed run in this interpreter; prints {"run": ..., "prepare_run": ...}."""
    import asyncio

    from orchestrate._api import prepare, run_prepared
    from orchestrate.history import HistoryOptions

    start = time.perf_counter()
    prepared = prepare(flow)
    options = HistoryOptions(record_history=database != "off", database=database)
    ran = time.perf_counter()
    result = asyncio.run(run_prepared(prepared, mock=True, history=options))
    end = time.perf_counter()
    assert result.status == "succeeded", result.error
    print(json.dumps({"run": end - ran, "prepare_run": end - start}))


def run_in_child(flow: Path, database: str, pycache: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(flow), "--database", database]
    out = subprocess.run(
        command, check=True, capture_output=True, text=True, env=child_env(pycache)
    ).stdout
    return json.loads(out.splitlines()[-1])


@contextlib.contextmanager
def server_url(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    sys.path.insert(0, str(REPO))
    from tests.postgres_server import running_server

    with running_server() as server:
        yield server.url


def recorded(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as db:
        return db.execute("SELECT count(*) FROM runs").fetchone()[0]


def batches(root: Path, url: str, rows: int, repeats: int) -> dict[str, Any]:
    """`orchestrate batch --mock` of `rows` rows into each history, `repeats` times."""
    (root / "flow.yaml").write_text(BATCH_FLOW, encoding="utf-8")
    databases = {"sqlite": str(root / "batch-history.db"), "postgres": url}
    before = recorded(url)
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in databases}
    for _ in range(repeats):
        for mode, db in databases.items():
            results[mode].append(run_batch(root, rows, 32, mock=True, db=db))
    figures: dict[str, Any] = {
        "rows": rows,
        "repeats": repeats,
        "postgres_runs_recorded": recorded(url) - before,
    }
    for mode, runs in results.items():
        figures[mode] = {
            key: median([run[key] for run in runs])
            for key in ("batch_s", "wall_s", "rows_per_s", "peak_rss_mb")
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--url", help="a PostgreSQL database to record into (default: a throw-away local server)"
    )
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument(
        "--batch-rows", type=int, default=10_000, help="rows of the batch measured (0: no batch)"
    )
    parser.add_argument("--batches", type=int, default=3, help="batches per history")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.database)
        return
    with tempfile.TemporaryDirectory() as folder, server_url(args.url) as url:
        root = Path(folder)
        flow = root / "chain.yaml"
        flow.write_text(chain_workflow(STEPS), encoding="utf-8")
        databases = {"off": "off", "sqlite": str(root / "history.db"), "postgres": url}
        times: dict[str, dict[str, list[float]]] = {
            what: {mode: [] for mode in MODES} for what in ("run", "prepare_run")
        }
        before = recorded(url) if args.url else 0
        for mode in MODES:  # warm up: bytecode, schemas
            run_in_child(flow, databases[mode], root / "pycache")
        for _ in range(args.runs):
            for mode in MODES:
                figures = run_in_child(flow, databases[mode], root / "pycache")
                for what in times:
                    times[what][mode].append(figures[what])
        runs_recorded = recorded(url) - before
        batch = batches(root, url, args.batch_rows, args.batches) if args.batch_rows else None
    figures: dict[str, Any] = {
        "steps": STEPS,
        "runs": args.runs,
        "postgres_runs_recorded": runs_recorded,
    }
    rows = []
    for what, label in (
        ("run", "run only (in process)"),
        ("prepare_run", "prepare + run (in process)"),
    ):
        off, lite, pg = (median(times[what][mode]) for mode in MODES)
        figures[what] = {"off_s": off, "sqlite_s": lite, "postgres_s": pg}
        rows.append(
            [
                label,
                f"{off * 1000:.1f}",
                f"{lite * 1000:.1f}",
                f"{pg * 1000:.1f}",
                f"{(pg - off) * 1000:+.1f}",
                f"{(pg / off - 1) * 100:+.1f}%",
            ]
        )
    print(f"{STEPS}-step chain, mock provider, 0 ms latency; median of {args.runs} runs")
    print(
        table(
            [
                "measure",
                "--no-history ms",
                "SQLite ms",
                "PostgreSQL ms",
                "PostgreSQL added ms",
                "overhead",
            ],
            rows,
        )
    )
    print(
        f"runs recorded in PostgreSQL: {runs_recorded} (of {args.runs + 1}); "
        f"machine: {json.dumps(machine())}"
    )
    if batch is not None:
        figures["batch"] = batch
        print(
            f"\n`orchestrate batch --mock` of {batch['rows']:,} rows, --concurrency 32; "
            f"median of {batch['repeats']}"
        )
        print(
            table(
                ["history", "batch s", "rows/s", "wall s", "peak RSS MB"],
                [
                    [
                        mode,
                        f"{batch[mode]['batch_s']:.2f}",
                        f"{batch[mode]['rows_per_s']:.0f}",
                        f"{batch[mode]['wall_s']:.2f}",
                        f"{batch[mode]['peak_rss_mb']:.0f}",
                    ]
                    for mode in ("sqlite", "postgres")
                ],
            )
        )
        print(
            f"rows recorded in PostgreSQL: {batch['postgres_runs_recorded']} "
            f"(of {batch['rows'] * batch['repeats']})"
        )
    write_figures(args.json, "postgres", figures)


if __name__ == "__main__":
    main()
