"""Cold start: `orchestrate --help` and `orchestrate validate` on a 20-step workflow.

Each command runs as a fresh subprocess, several times; the table gives the median wall
time. Then `python -X importtime` shows where the start-up of `validate` goes: the
biggest top-level imports, and for each heavy module that a command without network,
templates or a terminal UI should not need, whether it was imported and by whom.

Target (issue #2): `validate` of a 20-step file in under 0.3 s wall on 2 cores.

    python bench/bench_startup.py [--runs 15] [--json FIGURES.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import machine, median, orchestrate_command, table, write_figures

TARGET_VALIDATE = 0.3  # seconds
# Modules `validate` should not need, or only for some workflows (jinja2's compiler
# and jsonschema only when the file has templates or a schema).
WATCHED = (
    "asyncio",
    "httpx",
    "httpcore",
    "ssl",
    "sqlite3",
    "rich",
    "rich.live",
    "rich.markdown",
    "pydantic",
    "jinja2",
    "jinja2.compiler",
    "jsonschema",
    "ruamel.yaml",
    "cattrs",
)
_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
# Run in a fresh interpreter: the stages of `orchestrate validate flow.yaml`, one at a time.
# Importing a library ahead of the code that imports it lazily isolates its cost.
_STAGES = r"""
import json, sys, time
marks = [time.perf_counter()]
def mark():
    marks.append(time.perf_counter())
import orchestrate._cli; mark()
import orchestrate._validate; mark()
import ruamel.yaml; mark()
import cattrs; mark()
import jinja2, jinja2.sandbox; mark()
import jsonschema; mark()
sys.argv = ["orchestrate", "validate", "flow.yaml"]
try:
    orchestrate._cli.app()
except SystemExit:
    pass
mark()
steps = [b - a for a, b in zip(marks, marks[1:])]
print(json.dumps(steps), file=sys.stderr)
"""
STAGE_NAMES = (
    "import orchestrate._cli (typer, attrs, orchestrate._errors)",
    "import orchestrate._validate (loader, spec, plan, templating, providers)",
    "import ruamel.yaml (lazy in the loader)",
    "import cattrs (lazy in the loader)",
    "import jinja2 + sandbox (lazy in templating)",
    "import jsonschema (lazy: only for `schema:` blocks)",
    "validate: load, check 20 steps, print",
)


def twenty_step_workflow() -> str:
    """A realistic 20-step file: chained prompts, schemas, a for_each, `when`, a join."""
    lines = [
        "version: 1",
        "name: twenty-steps",
        "description: A generated 20-step workflow for the start-up benchmark.",
        "inputs:",
        "  topic: {type: string, default: heat pumps}",
        "  depth: {type: integer, default: 3}",
        "defaults:",
        "  model: gpt-4o-mini",
        "  temperature: 0.2",
        "  max_tokens: 400",
        "steps:",
        "  - id: outline",
        "    system: You are a careful researcher.",
        "    prompt: 'Outline {{ inputs.depth }} angles on {{ inputs.topic }}.'",
        "    output: json",
        "    schema:",
        "      type: object",
        "      required: [angles]",
        "      properties:",
        "        angles: {type: array, items: {type: string}}",
        "  - id: angle_notes",
        "    for_each: steps.outline.output.angles",
        "    prompt: 'Notes on {{ item }} (angle {{ index + 1 }}) for {{ inputs.topic }}.'",
    ]
    previous = "angle_notes"
    for n in range(3, 19):
        step = f"step_{n:02d}"
        lines += [
            f"  - id: {step}",
            "    prompt: |",
            f"      Part {n} about {{{{ inputs.topic }}}}.",
            f"      Build on: {{{{ steps.{previous}.output }}}}",
        ]
        if n % 5 == 0:
            lines += [f"    when: steps.{previous}.status == 'succeeded' and inputs.depth > 1"]
        if n % 4 == 0:
            lines += [
                "    output: json",
                "    schema:",
                "      type: object",
                "      required: [summary, score]",
                "      properties:",
                "        summary: {type: string}",
                "        score: {type: integer, minimum: 0, maximum: 10}",
            ]
        previous = step
    lines += [
        "  - id: review",
        "    model: gpt-4o",
        "    prompt: 'Score {{ steps.step_16.output.summary }}: {{ steps.step_18.output }}'",
        "    on_error: continue",
        "  - id: final",
        "    needs: [review]",
        "    prompt: 'Write it up: {{ steps.outline.output.angles | join(\", \") }}'",
        "outputs:",
        "  report: '{{ steps.final.output }}'",
    ]
    return "\n".join(lines) + "\n"


def wall_times(
    command: list[str], runs: int, cwd: Path, env: dict[str, str] | None = None
) -> list[float]:
    """Wall seconds of `runs` cold runs (after one untimed warm-up for the disk cache and
    the template cache)."""
    times = []
    for attempt in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, capture_output=True, check=False, env=env)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stderr.decode()}")
        if attempt:
            times.append(elapsed)
    return times


def import_profile(argv: list[str], runs: int, cwd: Path) -> dict[str, dict[str, Any]]:
    """`python -X importtime`: per module, the median cumulative ms and its first importer."""
    samples: dict[str, list[float]] = {}
    info: dict[str, dict[str, Any]] = {}
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", *argv],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
        rows = [
            (m[4], len(m[3]) // 2, int(m[1]), int(m[2]))
            for m in map(_IMPORTTIME.match, done.stderr.splitlines())
            if m
        ]
        # A module's line comes after those of the modules it imported (one level deeper),
        # so walking backwards, the importer of a line is the last one seen a level up.
        stack: list[tuple[int, str]] = []
        for name, depth, _self_us, cumulative_us in reversed(rows):
            while stack and stack[-1][0] >= depth:
                stack.pop()
            parent = stack[-1][1] if stack else None
            stack.append((depth, name))
            samples.setdefault(name, []).append(cumulative_us / 1000)
            info.setdefault(name, {"depth": depth, "importer": parent})
    for name, values in samples.items():
        info[name]["ms"] = median(values)
    for entry in info.values():
        chain, parent = [], entry["importer"]
        while parent is not None and len(chain) < 8:
            chain.append(parent)
            parent = info.get(parent, {}).get("importer")
        entry["chain"] = chain
    return info


def stages(runs: int, cwd: Path) -> list[float]:
    """Median milliseconds of each stage of `validate`, in a fresh interpreter each run."""
    samples: list[list[float]] = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", _STAGES], cwd=cwd, capture_output=True, text=True, check=False
        )
        samples.append(json.loads(done.stderr.strip().splitlines()[-1]))
    return [median([run[i] * 1000 for run in samples]) for i in range(len(STAGE_NAMES))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command (default 15)")
    parser.add_argument(
        "--import-runs",
        type=int,
        default=5,
        help="`-X importtime` runs to take medians of (default 5)",
    )
    parser.add_argument("--top", type=int, default=12, help="top-level imports to list")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()

    orchestrate = orchestrate_command()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        cwd = Path(folder)
        (cwd / "flow.yaml").write_text(twenty_step_workflow(), encoding="utf-8")
        # templates checked once are read back, as for a user (the benchmark's own cache)
        os.environ["ORCHESTRATE_CACHE_DIR"] = str(cwd / "cache")
        # bytecode too: without it, a module changed since its .pyc compiles in every run
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        cache_off = {**os.environ, "ORCHESTRATE_CACHE_DIR": ""}
        commands = {
            "python -c pass (interpreter only)": [sys.executable, "-c", "pass"],
            "python -c 'import orchestrate'": [sys.executable, "-c", "import orchestrate"],
            "orchestrate --version": [*orchestrate, "--version"],
            "orchestrate --help": [*orchestrate, "--help"],
            "orchestrate validate flow.yaml (20 steps)": [*orchestrate, "validate", "flow.yaml"],
        }
        load_before = machine()["load_average"]
        timings = {label: wall_times(cmd, args.runs, cwd) for label, cmd in commands.items()}
        timings["orchestrate validate flow.yaml (20 steps, template cache off)"] = wall_times(
            [*orchestrate, "validate", "flow.yaml"], args.runs, cwd, cache_off
        )
        imports = import_profile(
            ["-m", "orchestrate", "validate", "flow.yaml"], args.import_runs, cwd
        )
        help_imports = import_profile(["-m", "orchestrate", "--help"], args.import_runs, cwd)
        stage_ms = stages(args.import_runs, cwd)

    rows = []
    for label, values in timings.items():
        target = TARGET_VALIDATE if "validate" in label else None
        met = None if target is None else median(values) < target
        rows.append(
            [
                label,
                len(values),
                median(values),
                min(values),
                max(values),
                "" if target is None else f"< {target}",
                "" if met is None else met,
            ]
        )
    print(f"\nCold start, {args.runs} runs each (seconds; load average before: {load_before})\n")
    print(table(["command", "runs", "median", "min", "max", "target", "met"], rows))

    top = sorted((e["ms"], n) for n, e in imports.items() if e["depth"] == 0)[::-1][: args.top]
    print(
        f"\n`python -X importtime -m orchestrate validate flow.yaml`: top-level imports "
        f"(median cumulative ms of {args.import_runs} runs)\n"
    )
    print(table(["module", "cumulative ms"], [[n, f"{ms:.1f}"] for ms, n in top]))

    print(
        f"\nWhere `validate` spends its time, stage by stage, without -X importtime "
        f"(median ms of {args.import_runs} runs)\n"
    )
    rows = [[name, f"{ms:.1f}"] for name, ms in zip(STAGE_NAMES, stage_ms, strict=True)]
    rows.append(["total (plus ~15 ms of interpreter start)", f"{sum(stage_ms):.1f}"])
    print(table(["stage", "ms"], rows))

    print("\nHeavy modules: imported by `validate` / `--help`? (first importer chain)\n")
    watched_rows = []
    for name in WATCHED:
        for command, profile in (("validate", imports), ("--help", help_imports)):
            entry = profile.get(name)
            if entry is None:
                watched_rows.append([name, command, "no", "", ""])
            else:
                chain = " <- ".join(entry["chain"]) or "a function, at run time (lazy import)"
                watched_rows.append([name, command, "yes", f"{entry['ms']:.1f}", chain])
    print(table(["module", "command", "imported", "cumulative ms", "imported by"], watched_rows))

    write_figures(
        args.json,
        "startup",
        {
            "runs": args.runs,
            "load_average_before": load_before,
            "wall_seconds": {
                label: {"median": median(v), "min": min(v), "max": max(v)}
                for label, v in timings.items()
            },
            "target_validate_seconds": TARGET_VALIDATE,
            "validate_met": median(timings["orchestrate validate flow.yaml (20 steps)"])
            < TARGET_VALIDATE,
            "validate_top_imports_ms": {n: round(ms, 1) for ms, n in top},
            "validate_stages_ms": {
                n: round(ms, 1) for n, ms in zip(STAGE_NAMES, stage_ms, strict=True)
            },
            "watched": {
                name: {
                    "validate": imports.get(name, {}).get("chain"),
                    "help": help_imports.get(name, {}).get("chain"),
                }
                for name in WATCHED
            },
        },
    )


if __name__ == "__main__":
    main()
