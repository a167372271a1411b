"""Engine overhead: big workflows on the mock provider with simulated latency (issue #3).

Each measurement runs in a fresh interpreter (so that peak memory is the run's own and
no run warms the next), through the Python API: ``prepare()`` then
``run_prepared(..., mock=True, mock_latency=...)``. Start-up (interpreter and imports)
is not counted; ``prepare`` (load, validate, resolve inputs) is shown apart from the run.

| scenario | what | target |
| --- | --- | --- |
| chain | 200 steps, each using the previous output, 0 ms | < 1 ms a step; prepare + run < 0.5 s |
| fanout | 50 independent steps then a join, 200 ms, concurrency 50 | within 10% of 0.4 s |
| for_each | one step over 1,000 items, 20 ms, concurrency 32 | within 15% of 0.625 s; < 150 MB |

    python bench/bench_engine.py [--runs 5] [--json FIGURES.json] [--profile chain]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import REPO, machine, median, table, write_figures

MB = 1024 * 1024
SCENARIOS: dict[str, dict[str, Any]] = {
    "chain": {"steps": 200, "latency": 0.0, "concurrency": 8, "label": "chain of 200 steps, 0 ms"},
    "chain_events": {
        "steps": 200,
        "latency": 0.0,
        "concurrency": 8,
        "events": True,
        "label": "same, with --events JSON Lines to /dev/null",
    },
    "fanout": {
        "steps": 50,
        "latency": 0.2,
        "concurrency": 50,
        "ideal": 0.4,
        "slack": 0.10,
        "label": "50 independent steps + join, 200 ms, concurrency 50",
    },
    # The ideal as the issue puts it, 1000 / 32 * 20 ms; whole rounds would make it 0.64 s.
    "for_each": {
        "items": 1000,
        "latency": 0.02,
        "concurrency": 32,
        "slack": 0.15,
        "ideal": 1000 / 32 * 0.02,
        "memory_mb": 150,
        "label": "for_each over 1,000 items, 20 ms, concurrency 32",
    },
}
CHAIN_STEP_MS = 1.0
CHAIN_TOTAL_S = 0.5


def chain_workflow(steps: int) -> str:
    lines = ["name: chain", "steps:", "  - id: s000", "    prompt: Start the chain."]
    for n in range(1, steps):
        lines += [
            f"  - id: s{n:03d}",
            f"    prompt: 'Step {n} continues: {{{{ steps.s{n - 1:03d}.output }}}}'",
        ]
    return "\n".join(lines) + "\n"


def fanout_workflow(steps: int) -> str:
    lines = ["name: fanout", "steps:"]
    for n in range(steps):
        lines += [f"  - id: branch_{n:02d}", f"    prompt: Independent question number {n}."]
    joined = " ".join(f"{{{{ steps.branch_{n:02d}.output }}}}" for n in range(steps))
    lines += ["  - id: join", f"    prompt: 'Combine: {joined}'"]
    return "\n".join(lines) + "\n"


def for_each_workflow() -> str:
    return (
        "name: many-items\n"
        "inputs:\n"
        "  items: {type: array}\n"
        "steps:\n"
        "  - id: each\n"
        "    for_each: inputs.items\n"
        "    prompt: 'Item {{ index }}: rewrite {{ item }} in plain words.'\n"
    )


# --- one measurement, in a child interpreter ----------------------------------------------


def measure(name: str, folder: Path, trace_memory: bool) -> dict[str, Any]:
    """Prepare and run one scenario in this process; the figures as a dict."""
    import asyncio
    import os
    import resource
    import time
    import tracemalloc

    from orchestrate._api import prepare, run_prepared
    from orchestrate._engine import RunOptions
    from orchestrate._events import JsonLinesWriter
    from orchestrate.providers._mock import MockProvider

    calls: list[tuple[float, float]] = []  # (start, end) of each model call
    complete = MockProvider.complete

    async def timed_complete(self: MockProvider, request: Any, **options: Any) -> Any:
        start = time.perf_counter()
        try:
            return await complete(self, request, **options)
        finally:
            calls.append((start, time.perf_counter()))

    MockProvider.complete = timed_complete  # type: ignore[method-assign]

    config = SCENARIOS[name]
    inputs: dict[str, Any] = {}
    if name.startswith("chain"):
        text = chain_workflow(config["steps"])
    elif name == "fanout":
        text = fanout_workflow(config["steps"])
    else:
        text = for_each_workflow()
        inputs = {"items": [f"item number {i}" for i in range(config["items"])]}
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    if trace_memory:
        tracemalloc.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    prepared = prepare(path, inputs)
    t1 = time.perf_counter()
    options = RunOptions(max_concurrency=config["concurrency"])
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        observers = [JsonLinesWriter(devnull)] if config.get("events") else []
        result = asyncio.run(
            run_prepared(
                prepared,
                mock=True,
                options=options,
                observers=observers,
                mock_latency=config["latency"],
            )
        )
    t2, cpu1 = time.perf_counter(), time.process_time()
    traced_peak = tracemalloc.get_traced_memory()[1] if trace_memory else None
    if result.status != "succeeded":
        raise SystemExit(f"{name}: the run {result.status}: {result.error}")
    first_call = min(start for start, _ in calls)
    last_end = max(end for _, end in calls)
    overshoot = sorted(end - start - config["latency"] for start, end in calls)
    return {
        "prepare_s": t1 - t0,
        "run_s": t2 - t1,
        "cpu_s": cpu1 - cpu0,
        "before_first_call_ms": (first_call - t1) * 1000,
        "after_last_call_ms": (t2 - last_end) * 1000,
        "call_overshoot_ms": overshoot[len(overshoot) // 2] * 1000,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "traced_peak_mb": None if traced_peak is None else traced_peak / MB,
    }


def run_child(name: str, folder: Path, *extra: str) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        name,
        "--folder",
        str(folder),
        *extra,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def profile(name: str, folder: Path, top: int) -> None:
    """The scenario's run under cProfile: the functions with the most own time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(measure, name, folder, False)
    stats = pstats.Stats(profiler)
    print(f"\ncProfile of {name}, prepare + run, by own time:\n")
    stats.sort_stats("tottime").print_stats(top)
    print("\nsame, by cumulative time:\n")
    stats.sort_stats("cumulative").print_stats(top)


# --- the report ---------------------------------------------------------------------------


def verdicts(name: str, figures: dict[str, float]) -> list[tuple[str, str, bool]]:
    """(what, target, met) for one scenario's median figures."""
    config = SCENARIOS[name]
    if name == "chain":
        per_step = figures["run_s"] / config["steps"] * 1000
        total = figures["prepare_s"] + figures["run_s"]
        return [
            (
                f"run per step {per_step:.3f} ms",
                f"< {CHAIN_STEP_MS:g} ms",
                per_step < CHAIN_STEP_MS,
            ),
            (f"prepare + run {total:.3f} s", f"< {CHAIN_TOTAL_S:g} s", total < CHAIN_TOTAL_S),
        ]
    checks = []
    if "ideal" in config:
        limit = config["ideal"] * (1 + config["slack"])
        ratio = figures["run_s"] / config["ideal"]
        checks.append(
            (
                f"run {figures['run_s']:.3f} s = {ratio:.2f}x ideal {config['ideal']:.3f} s",
                f"< {limit:.3f} s",
                figures["run_s"] < limit,
            )
        )
    if "memory_mb" in config:
        peak = figures["maxrss_mb"]
        checks.append(
            (
                f"peak RSS {peak:.1f} MB (traced Python heap "
                f"{figures.get('traced_peak_mb') or 0:.1f} MB)",
                f"< {config['memory_mb']} MB",
                peak < config["memory_mb"],
            )
        )
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per scenario (default 5)")
    parser.add_argument(
        "--only",
        choices=sorted(SCENARIOS),
        action="append",
        help="run only this scenario (repeatable)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument(
        "--profile",
        choices=sorted(SCENARIOS),
        help="instead of timing, print a cProfile of one run of a scenario",
    )
    parser.add_argument("--top", type=int, default=25, help="functions in --profile output")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--trace-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(measure(args.child, Path(args.folder), args.trace_memory)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as folder:
        if args.profile:
            profile(args.profile, Path(folder), args.top)
            return
        load_before = machine()["load_average"]
        results: dict[str, dict[str, Any]] = {}
        for name in args.only or list(SCENARIOS):
            runs = [run_child(name, Path(folder)) for _ in range(args.runs)]
            figures = {
                key: median([r[key] for r in runs])
                for key in (
                    "prepare_s",
                    "run_s",
                    "cpu_s",
                    "maxrss_mb",
                    "before_first_call_ms",
                    "after_last_call_ms",
                    "call_overshoot_ms",
                )
            }
            if "memory_mb" in SCENARIOS[name]:
                traced = run_child(name, Path(folder), "--trace-memory")
                figures["traced_peak_mb"] = traced["traced_peak_mb"]
            results[name] = {"figures": figures, "runs": runs, "checks": verdicts(name, figures)}

    print(
        f"\nEngine on the mock provider, median of {args.runs} runs, each in a fresh "
        f"interpreter (load average before: {load_before})\n"
    )
    rows = []
    for name, result in results.items():
        f = result["figures"]
        rows.append(
            [
                SCENARIOS[name]["label"],
                f"{f['prepare_s']:.3f}",
                f"{f['run_s']:.3f}",
                f"{f['cpu_s']:.3f}",
                f"{f['maxrss_mb']:.0f}",
            ]
        )
    print(table(["scenario", "prepare s", "run s", "CPU s (both)", "peak RSS MB"], rows))
    print(
        "\nWhere the run's time goes beyond the latency (medians, ms): before the first "
        "model call (rendering every prompt, building requests), each call's time beyond "
        "its simulated latency (asyncio timer resolution), after the last call\n"
    )
    rows = [
        [
            SCENARIOS[name]["label"],
            f"{f['before_first_call_ms']:.1f}",
            f"{f['call_overshoot_ms']:.2f}",
            f"{f['after_last_call_ms']:.1f}",
        ]
        for name, result in results.items()
        for f in [result["figures"]]
    ]
    print(
        table(["scenario", "before first call", "per call beyond latency", "after last call"], rows)
    )
    print("\nTargets\n")
    rows = [
        [SCENARIOS[name]["label"], what, target, met]
        for name, result in results.items()
        for what, target, met in result["checks"]
    ]
    print(table(["scenario", "measured (median)", "target", "met"], rows))
    write_figures(
        args.json,
        "engine",
        {
            "runs": args.runs,
            "load_average_before": load_before,
            "scenarios": {
                name: {
                    **SCENARIOS[name],
                    **result,
                    "checks": [{"what": w, "target": t, "met": m} for w, t, m in result["checks"]],
                }
                for name, result in results.items()
            },
        },
    )


if __name__ == "__main__":
    main()
