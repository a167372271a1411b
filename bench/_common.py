"""What every benchmark script shares: the machine, medians, a table, the figures file."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    """Where the figures come from: CPU, cores, Python, and how busy the machine was."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average": load,
    }


def orchestrate_command() -> list[str]:
    """The installed `orchestrate` script next to this interpreter, else `python -m`."""
    script = Path(sys.executable).with_name("orchestrate")
    if script.exists():
        return [str(script)]
    found = shutil.which("orchestrate")
    return [found] if found else [sys.executable, "-m", "orchestrate"]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table, so that it can be pasted into docs/performance.md as it is."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "| " + " | ".join("-" * w for w in widths) + " |",
    ]
    for row in cells:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def write_figures(path: str | None, name: str, data: dict[str, Any]) -> None:
    """Write `{"benchmark": name, "machine": ..., **data}` as JSON, when a path is given."""
    if not path:
        return
    document = {"benchmark": name, "machine": machine(), **data}
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"figures written to {path}", file=sys.stderr)
