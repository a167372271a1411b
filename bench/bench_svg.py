"""The SVG picture of a graph: `graph_svg` on generated workflows of 60 and 200 steps.

Target: well under 100 ms for 200 steps, since the web view draws the picture on every
visit of a workflow or run page. The workflows are the generated shapes of
tests/test_svg.py (random DAGs where each step needs up to 3 of the 12 before it, a
chain, a fan-out, a lattice); the plan is built once, outside the timing, and the layout
stages are timed apart: ranking, ordering (crossing reduction), then the whole document.

    python bench/bench_svg.py [--runs 15] [--json FIGURES.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import REPO, machine, median, table, write_figures

sys.path.insert(0, str(REPO))

from orchestrate._plan import build_plan
from orchestrate._svg import graph_svg, order_ranks, rank_nodes
from tests.test_svg import chain, fan_out, lattice, random_dag

TARGET_MS = 100.0
SHAPES = {
    "random DAG, 60 steps": lambda: random_dag(60, 1),
    "random DAG, 200 steps": lambda: random_dag(200, 7),
    "chain, 200 steps": lambda: chain(200),
    "fan-out, 200 steps": lambda: fan_out(200),
    "lattice 20x10, 200 steps": lambda: lattice(20, 10),
}


def timed_ms(work: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Medians of `runs` timings of `work` after one warm-up, in ms: wall time, CPU time.

    On a shared machine the wall time grows with the load; the CPU time hardly does.
    """
    work()
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        work()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return median(wall), median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    print(f"machine: {machine()}", file=sys.stderr)
    rows, figures = [], {}
    for name, make in SHAPES.items():
        workflow = make()
        plan = build_plan(workflow)
        ranked = rank_nodes(plan.order, plan.edges)
        dummies = sum(len(rank) for rank in ranked.ranks) - len(plan.order)
        figure = {
            "edges": len(plan.edges),
            "dummies": dummies,
            "rank_ms": timed_ms(lambda p=plan: rank_nodes(p.order, p.edges), args.runs)[0],
            "order_ms": timed_ms(lambda r=ranked: order_ranks(r), args.runs)[0],
        }
        figure["svg_ms"], figure["svg_cpu_ms"] = timed_ms(
            lambda w=workflow, p=plan: graph_svg(w, p), args.runs
        )
        figures[name] = figure
        rows.append(
            [
                name,
                figure["edges"],
                dummies,
                f"{figure['rank_ms']:.2f}",
                f"{figure['order_ms']:.2f}",
                f"**{figure['svg_ms']:.1f}**",
                f"{figure['svg_cpu_ms']:.1f}",
                figure["svg_ms"] < TARGET_MS,
            ]
        )
    print(
        table(
            [
                "workflow",
                "edges",
                "dummies",
                "rank ms",
                "order ms",
                "graph_svg ms",
                "CPU ms",
                f"< {TARGET_MS:.0f} ms",
            ],
            rows,
        )
    )
    write_figures(args.json, "svg", {"runs": args.runs, "shapes": figures})


if __name__ == "__main__":
    main()
