"""`orchestrate validate` on large workflows: many steps, many megabytes, diamond includes.

Each file is generated in a temporary folder and validated by a fresh `orchestrate
validate` process; the table gives the median wall time, the child's peak memory and how
the command ended (exit 0 valid, 2 refused, with the first diagnostic). A run that takes
longer than `--timeout` is stopped and reported as such.

Target (issue "second look", item 10): a 5 MB file or a 10,000-step file validated in
under 2 s, whole process.

    python bench/bench_validate_large.py [--runs 3] [--only NAME] [--timeout 120] [--json FILE]
    python bench/bench_validate_large.py --profile steps_10k [--top 25]   # cProfile instead
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _common import median, orchestrate_command, table, write_figures

TARGET = 2.0  # seconds, for the cases marked as targets


def steps_file(count: int) -> str:
    """`count` LLM steps, each reading the one before it; every tenth also `needs` one."""
    lines = [
        "inputs:",
        "  topic: {type: string, default: tea}",
        "steps:",
        "  - id: s0",
        '    prompt: "Write about {{ inputs.topic }}."',
    ]
    for i in range(1, count):
        lines += [f"  - id: s{i}", f'    prompt: "Improve: {{{{ steps.s{i - 1}.output }}}}"']
        if i % 10 == 0:
            lines.append(f"    needs: [s{i // 2}]")
    lines += ["outputs:", f'  last: "{{{{ steps.s{count - 1}.output }}}}"']
    return "\n".join(lines) + "\n"


def text_file(megabytes: float) -> str:
    """Few nodes, many bytes: steps whose block-scalar prompts hold ~2.5 KB of text each."""
    paragraph = "The quick brown fox jumps over the lazy dog, {{ inputs.topic }}. " * 40
    count = int(megabytes * 1024 * 1024 / (len(paragraph) + 40))
    lines = ["inputs:", "  topic: {type: string, default: tea}", "steps:"]
    for i in range(count):
        lines += [f"  - id: s{i}", "    prompt: |", f"      {paragraph}", "      The end."]
    return "\n".join(lines) + "\n"


def many_nodes_file(megabytes: float) -> str:
    """A file far past the node limit without a single alias: a long list of numbers."""
    item = "  - 1234567\n"
    count = int(megabytes * 1024 * 1024 / len(item))
    return "x-data:\n" + item * count + "steps:\n  - id: a\n    prompt: hi\n"


def diamond(folder: Path, levels: int) -> Path:
    """`levels` diamonds stacked: each file uses two that both use the next level's file."""
    bottom = folder / f"d{levels}.yaml"
    bottom.write_text(
        'inputs:\n  x: {type: string}\nsteps:\n  - id: a\n    prompt: "{{ inputs.x }}"\n',
        encoding="utf-8",
    )
    for level in range(levels - 1, -1, -1):
        for side in ("l", "r"):
            (folder / f"d{level}{side}.yaml").write_text(
                "inputs:\n  x: {type: string}\nsteps:\n  - id: a\n"
                f'    workflow: ./d{level + 1}.yaml\n    with: {{x: "{{{{ inputs.x }}}}"}}\n',
                encoding="utf-8",
            )
        (folder / f"d{level}.yaml").write_text(
            "inputs:\n  x: {type: string}\nsteps:\n"
            f'  - id: a\n    workflow: ./d{level}l.yaml\n    with: {{x: "{{{{ inputs.x }}}}"}}\n'
            f'  - id: b\n    workflow: ./d{level}r.yaml\n    with: {{x: "{{{{ inputs.x }}}}"}}\n',
            encoding="utf-8",
        )
    return folder / "d0.yaml"


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# name -> (what it is, whether the 2 s target applies, how to make it in a folder)
CASES: dict[str, tuple[str, bool, Callable[[Path], Path]]] = {
    "steps_10k": ("10,000 chained steps", True, lambda d: _write(d, "s10k", steps_file(10_000))),
    "steps_30k": ("30,000 chained steps", False, lambda d: _write(d, "s30k", steps_file(30_000))),
    "text_5mb": ("5 MB of block-scalar prompts", True, lambda d: _write(d, "t5", text_file(5))),
    "nodes_9mb": (
        "9 MB list of numbers, no alias",
        True,
        lambda d: _write(d, "n9", many_nodes_file(9)),
    ),
    "diamond_20": (
        "20 stacked diamonds of sub-workflows (61 files)",
        True,
        lambda d: diamond(d, 20),
    ),
}


def measure(path: Path, timeout: float) -> tuple[float, float, int | None, str]:
    """(wall seconds, the child's peak MB, exit code or None when stopped, first stderr line)."""
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        child = subprocess.Popen(
            [*orchestrate_command(), "validate", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        timer = threading.Timer(timeout, child.kill)
        timer.start()
        _, status, usage = os.wait4(child.pid, 0)  # the rusage of this child alone
        wall = time.perf_counter() - start
        timer.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        lines = stderr.read().decode("utf-8", "replace").strip().splitlines()
    stopped = child.returncode < 0
    first = f"stopped after {timeout:g} s" if stopped else (lines[0] if lines else "")
    return wall, usage.ru_maxrss / 1024, None if stopped else child.returncode, first[:90]


def profile(name: str, top: int) -> None:
    """cProfile of validating one case in this process, sorted by cumulative time."""
    from orchestrate._validate import validate_file

    with tempfile.TemporaryDirectory() as tmp:
        path = CASES[name][2](Path(tmp))
        profiler = cProfile.Profile()
        profiler.enable()
        report = validate_file(path)
        profiler.disable()
        print(f"{len(report.diagnostics)} diagnostics", file=sys.stderr)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--only", choices=sorted(CASES), action="append", help="these cases")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per run")
    parser.add_argument("--profile", choices=sorted(CASES), help="cProfile one case instead")
    parser.add_argument("--top", type=int, default=30, help="functions shown by --profile")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    if args.profile:
        profile(args.profile, args.top)
        return
    rows, figures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or CASES:
            what, targeted, make = CASES[name]
            folder = Path(tmp) / name
            folder.mkdir()
            path = make(folder)
            size = sum(p.stat().st_size for p in folder.iterdir())
            runs = [measure(path, args.timeout) for _ in range(args.runs)]
            wall = median([r[0] for r in runs])
            peak = max(r[1] for r in runs)
            code, first = runs[-1][2], runs[-1][3]
            met = wall < TARGET if targeted else "-"
            rows.append(
                [
                    name,
                    what,
                    f"{size / 1e6:.1f} MB",
                    wall,
                    f"{peak:.0f} MB",
                    "stopped" if code is None else code,
                    met,
                    first,
                ]
            )
            figures.append(
                {
                    "case": name,
                    "bytes": size,
                    "wall_s": wall,
                    "peak_mb": peak,
                    "exit": code,
                    "first_line": first,
                    "target_met": met,
                }
            )
            print(f"{name}: {wall:.2f} s", file=sys.stderr)
    print(
        table(
            [
                "case",
                "file",
                "size",
                "wall s",
                "peak",
                "exit",
                f"< {TARGET:g} s",
                "first line of stderr",
            ],
            rows,
        )
    )
    write_figures(args.json, "validate_large", {"cases": figures})


if __name__ == "__main__":
    main()
