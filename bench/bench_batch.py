"""`orchestrate batch` against the local fake server: speed, overhead, memory.

    latency_20ms   N rows of a 1-step workflow at 20 ms, --concurrency 32, against a bare
                   httpx loop making the same N calls at the same concurrency (same run)
    zero_latency   N rows at 0 ms, history on: rows per second (the target is >= 1,000)
    memory         --mock with the history on at 10k, 50k and 100k rows: peak RSS
                   (the target is under 150 MB and flat) and `runs list` afterwards
    three_steps    5,000 rows of two parallel LLM steps and a join at 20 ms, --concurrency
                   32: the calls in flight (the server's count) stay at 32, rows overlap
    rate_limited   --rate-rows rows against a server that answers 429 with Retry-After: 1
                   above 50 requests a second: no failed row, close to 50 requests a
                   second, 429s under 5% of the requests

Each batch runs as the real command (`orchestrate batch ... --json -o rows.jsonl`) in its
own process; its summary gives the batch's own time (start-up excluded) and its peak RSS
is read with wait4. The fake server runs in another process.

    python bench/bench_batch.py [--rows 10000] [--only SCENARIO] [--sizes 10000,50000,100000]
                                [--three-rows 5000] [--rate-rows 1000] [--json batch.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, machine, median, orchestrate_command, table, write_figures
from bench_history import child_env
from bench_providers import bare_httpx, server_stats, start_server

FLOW = """\
inputs:
  text: {type: string}
steps:
  - id: rewrite
    prompt: "Rewrite item {{ inputs.text }} more clearly."
    mock: "rewritten {{ inputs.text }}"
outputs:
  answer: "{{ steps.rewrite.output }}"
"""

THREE_STEPS = """\
inputs:
  text: {type: string}
steps:
  - id: summary
    prompt: "Summarise item {{ inputs.text }}."
  - id: keywords
    prompt: "List keywords of item {{ inputs.text }}."
  - id: join
    prompt: "Combine {{ steps.summary.output }} and {{ steps.keywords.output }}."
outputs:
  answer: "{{ steps.join.output }}"
"""
RATE_LIMIT = 50  # requests a second the rate_limited scenario's server allows


def write_rows(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for index in range(rows):
            out.write(json.dumps({"text": f"number {index}", "id": index}) + "\n")


def run_batch(
    folder: Path,
    rows: int,
    concurrency: int,
    *,
    base_url: str | None = None,
    mock: bool = False,
    db: str | None = None,
    flow: str = "flow.yaml",
) -> dict[str, Any]:
    """One `orchestrate batch` in its own process: its summary, wall time and peak RSS;
    `db`: the history's --db (default: history.db in the folder's home)."""
    data = folder / f"rows-{rows}.jsonl"
    if not data.exists():
        write_rows(data, rows)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "ANTHROPIC_", "ORCHESTRATE_"))
    }
    env["ORCHESTRATE_HOME"] = str(folder / "home")
    if base_url:
        env["OPENAI_BASE_URL"] = base_url
    command = [
        *orchestrate_command(),
        "batch",
        str(folder / flow),
        "--data",
        str(data),
        "--concurrency",
        str(concurrency),
        "--json",
        "-q",
        "-o",
        str(folder / "out.jsonl"),
        *(["--mock"] if mock else []),
        *(["--db", db] if db else []),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO
    )
    stdout_chunks = []
    assert process.stdout is not None
    for chunk in iter(lambda: process.stdout.read(65536), b""):
        stdout_chunks.append(chunk)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"batch of {rows} failed:\n{process.stderr.read().decode()}")
    summary = json.loads(b"".join(stdout_chunks))
    return {
        "rows": rows,
        "wall_s": wall,
        "batch_s": summary["duration_ms"] / 1000,
        "rows_per_s": summary["rows_per_second"],
        "failed": summary["failed"],
        "retries": summary["retries"],
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


def runs_list_time(folder: Path, runs: int = 5) -> float:
    """The median of `runs` whole `runs list` processes, bytecode cached as in an installed
    package (with PYTHONDONTWRITEBYTECODE, each would compile the modules again)."""
    env = {**child_env(folder / "pycache"), "ORCHESTRATE_HOME": str(folder / "home")}
    command = [*orchestrate_command(), "runs", "list", "--json"]
    times = []
    for _ in range(runs + 1):  # the first writes the bytecode
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return median(times[1:])


def latency_20ms(folder: Path, rows: int) -> dict[str, Any]:
    server, base_url = start_server(0.020)
    try:
        os.environ["OPENAI_BASE_URL"] = base_url
        before = server_stats(base_url)
        batch = run_batch(folder, rows, 32, base_url=base_url)
        requests = server_stats(base_url)["requests"] - before["requests"]
        bare = asyncio.run(bare_httpx(rows, 32, False))
    finally:
        server.kill()
    ratio = batch["batch_s"] / bare["wall_s"]
    return {
        **batch,
        "requests": requests,
        "bare_httpx_s": bare["wall_s"],
        "ratio": ratio,
        "target_met": ratio <= 1.2,
    }


def zero_latency(folder: Path, rows: int) -> dict[str, Any]:
    server, base_url = start_server(0.0)
    try:
        batch = run_batch(folder, rows, 32, base_url=base_url)
    finally:
        server.kill()
    return {**batch, "target_met": batch["rows_per_s"] >= 1000}


def memory(folder: Path, sizes: list[int]) -> list[dict[str, Any]]:
    results = []
    for rows in sizes:
        batch = run_batch(folder, rows, 32, mock=True)
        batch["runs_list_s"] = runs_list_time(folder)
        batch["target_met"] = batch["peak_rss_mb"] < 150 and batch["runs_list_s"] < 0.3
        results.append(batch)
    return results


def three_steps(folder: Path, rows: int, latency: float = 0.020) -> dict[str, Any]:
    """Two parallel LLM steps and a join a row: calls in flight should stay at the
    concurrency (rows' steps overlap), so the ideal is 3 x rows / 32 rounds of `latency`."""
    (folder / "three.yaml").write_text(THREE_STEPS, encoding="utf-8")
    server, base_url = start_server(latency)
    try:
        batch = run_batch(folder, rows, 32, base_url=base_url, flow="three.yaml")
        stats = server_stats(base_url)
    finally:
        server.kill()
    ideal = 3 * rows / 32 * latency
    mean_in_flight = stats["requests"] * latency / batch["batch_s"]
    return {
        **batch,
        "requests": stats["requests"],
        "max_in_flight": stats["max_in_flight"],
        "mean_in_flight": mean_in_flight,
        "ideal_s": ideal,
        "latency_ms": latency * 1000,
        "target_met": stats["max_in_flight"] <= 32 and mean_in_flight >= 0.9 * 32,
    }


def rate_limited(folder: Path, rows: int) -> dict[str, Any]:
    """A server that answers 429 (Retry-After: 1) above RATE_LIMIT requests a second."""
    server, base_url = start_server(0.020, "--rate-limit", str(RATE_LIMIT))
    try:
        batch = run_batch(folder, rows, 32, base_url=base_url)
        stats = server_stats(base_url)
    finally:
        server.kill()
    share = stats["rate_limited"] / stats["requests"]
    answered = stats["requests"] - stats["rate_limited"]
    rate = answered / batch["batch_s"]
    return {
        **batch,
        "requests": stats["requests"],
        "rate_limited": stats["rate_limited"],
        "share_429": share,
        "answered_per_s": rate,
        "target_met": batch["failed"] == 0 and share < 0.05 and rate >= 0.9 * RATE_LIMIT,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--sizes", default="10000,50000,100000")
    parser.add_argument(
        "--only", choices=["latency_20ms", "zero_latency", "memory", "three_steps", "rate_limited"]
    )
    parser.add_argument("--three-rows", type=int, default=5_000)
    parser.add_argument("--three-latency-ms", type=float, default=20.0)
    parser.add_argument("--rate-rows", type=int, default=1_000)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        folder = Path(tmp)
        (folder / "flow.yaml").write_text(FLOW, encoding="utf-8")
        print(f"machine: {machine()}\n")
        if args.only in (None, "latency_20ms"):
            result = latency_20ms(folder, args.rows)
            figures["latency_20ms"] = result
            print(f"{args.rows:,} rows, 1 step at 20 ms, --concurrency 32, vs bare httpx\n")
            print(
                table(
                    [
                        "rows",
                        "batch s",
                        "bare httpx s",
                        "ratio",
                        "<= 1.2x",
                        "requests",
                        "peak RSS MB",
                    ],
                    [
                        [
                            result["rows"],
                            result["batch_s"],
                            result["bare_httpx_s"],
                            result["ratio"],
                            result["target_met"],
                            result["requests"],
                            result["peak_rss_mb"],
                        ]
                    ],
                )
                + "\n"
            )
        if args.only in (None, "zero_latency"):
            result = zero_latency(folder, args.rows)
            figures["zero_latency"] = result
            print(f"{args.rows:,} rows at 0 ms, history on\n")
            print(
                table(
                    ["rows", "batch s", "rows/s", ">= 1,000", "CPU s", "peak RSS MB"],
                    [
                        [
                            result["rows"],
                            result["batch_s"],
                            result["rows_per_s"],
                            result["target_met"],
                            result["cpu_s"],
                            result["peak_rss_mb"],
                        ]
                    ],
                )
                + "\n"
            )
        if args.only in (None, "memory"):
            sizes = [int(s) for s in args.sizes.split(",")]
            results = memory(folder, sizes)
            figures["memory"] = results
            print("--mock, history on: peak memory and `runs list` after each batch\n")
            print(
                table(
                    ["rows", "batch s", "rows/s", "peak RSS MB", "runs list s", "met"],
                    [
                        [
                            r["rows"],
                            r["batch_s"],
                            r["rows_per_s"],
                            r["peak_rss_mb"],
                            r["runs_list_s"],
                            r["target_met"],
                        ]
                        for r in results
                    ],
                )
                + "\n"
            )
        if args.only in (None, "three_steps"):
            result = three_steps(folder, args.three_rows, args.three_latency_ms / 1000)
            figures["three_steps"] = result
            print(
                f"{args.three_rows:,} rows of 2 parallel steps + a join at "
                f"{args.three_latency_ms:g} ms, --concurrency 32\n"
            )
            print(
                table(
                    [
                        "rows",
                        "batch s",
                        "ideal s",
                        "CPU s",
                        "requests",
                        "max in flight",
                        "mean in flight",
                        "met",
                        "peak RSS MB",
                    ],
                    [
                        [
                            result["rows"],
                            result["batch_s"],
                            result["ideal_s"],
                            result["cpu_s"],
                            result["requests"],
                            result["max_in_flight"],
                            result["mean_in_flight"],
                            result["target_met"],
                            result["peak_rss_mb"],
                        ]
                    ],
                )
                + "\n"
            )
        if args.only in (None, "rate_limited"):
            result = rate_limited(folder, args.rate_rows)
            figures["rate_limited"] = result
            print(
                f"{args.rate_rows:,} rows, 429 with Retry-After: 1 above {RATE_LIMIT} "
                "requests a second, --concurrency 32\n"
            )
            print(
                table(
                    [
                        "rows",
                        "failed",
                        "batch s",
                        "requests",
                        "429s",
                        "429 share",
                        "answered/s",
                        "retries",
                        "met",
                    ],
                    [
                        [
                            result["rows"],
                            result["failed"],
                            result["batch_s"],
                            result["requests"],
                            result["rate_limited"],
                            result["share_429"],
                            result["answered_per_s"],
                            result["retries"],
                            result["target_met"],
                        ]
                    ],
                )
                + "\n"
            )
    write_figures(args.json_path, "batch", figures)


if __name__ == "__main__":
    main()
