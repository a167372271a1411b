"""The web view's server times and its event delay (issue #10).

Targets: a 200-step workflow's page and the history page over 10,000 runs each under
100 ms of server time; an engine event reaches the browser's stream within 100 ms.

- **pages**: the app in-process behind Starlette's test client (so the figure includes the
  client's own few hundred microseconds); the first request of a page (the workflow
  validated, the graph laid out) and the median of later ones.
- **history**: 10,000 runs in a fresh history (one real mock run, copied with SQL), the
  first page, a page deep in the history (keyset paging), a status filter, one run.
- **events**: `orchestrate ui --port 0` as a process and an SSE client; a 40-step chain on
  the mock with 20 ms a reply; the delay of each `step_started` / `step_finished` record
  from the engine's timestamp (`time`) to its arrival, on the same clock.

    python bench/bench_ui.py [--runs 15] [--json FIGURES.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, table, write_figures

TOKEN = "bench-token"


def chain(steps: int) -> str:
    lines = ["name: chain", "inputs:", "  topic: {type: string, default: bikes}", "steps:"]
    for index in range(steps):
        source = "{{ inputs.topic }}" if index == 0 else f"{{{{ steps.s{index - 1}.output }}}}"
        lines += [f"  - id: s{index}", f'    prompt: "Go on: {source}"', "    mock: ok"]
    return "\n".join(lines) + "\n"


def client(folder: Path) -> Any:
    from orchestrate.ui import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    return TestClient(create_app([folder], token=TOKEN, port=8765),
                      base_url="http://127.0.0.1:8765",
                      headers={"authorization": f"Bearer {TOKEN}"})


def timed(http: Any, path: str, runs: int) -> tuple[float, float]:
    """(first, median of the next `runs`) in ms; a failed request stops the benchmark."""
    times = []
    for _ in range(runs + 1):
        began = time.perf_counter()
        response = http.get(path)
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return times[0], median(times[1:])


def fill_history(home: Path, folder: Path, runs: int) -> list[str]:
    """`runs` runs in the history: one real run, copied (ids and start times made new)."""
    import orchestrate
    from orchestrate.history import HistoryOptions

    result = orchestrate.run_workflow(folder / "small.yaml", mock=True,
                                      history=HistoryOptions())
    db = sqlite3.connect(home / "history.db")
    columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    step_columns = [row[1] for row in db.execute("PRAGMA table_info(steps)")]
    run = dict(zip(columns, db.execute("SELECT * FROM runs").fetchone(), strict=True))
    steps = [dict(zip(step_columns, row, strict=True)) for row in db.execute("SELECT * FROM steps")]
    ids = []
    with db:
        for index in range(runs - 1):
            run_id = f"{index:012x}{'b' * 8}"
            ids.append(run_id)
            values = run | {"run_id": run_id, "started": run["started"] - runs + index,
                            "status": ("succeeded", "failed", "cancelled")[index % 3]}
            db.execute(f"INSERT INTO runs VALUES ({','.join('?' * len(columns))})",
                       [values[c] for c in columns])
            for step in steps:
                db.execute(f"INSERT INTO steps VALUES ({','.join('?' * len(step_columns))})",
                           [(step | {"run_id": run_id})[c] for c in step_columns])
    db.close()
    return [result.run_id, *ids]


def pages(runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        home, folder = Path(tmp, "home"), Path(tmp, "flows")
        folder.mkdir()
        os.environ["ORCHESTRATE_HOME"] = str(home)
        (folder / "chain.yaml").write_text(chain(200), encoding="utf-8")
        (folder / "small.yaml").write_text(chain(3), encoding="utf-8")
        ids = fill_history(home, folder, 10_000)
        figures = {}
        with client(folder) as http:
            for name, path in [
                ("workflow page, 200 steps", "/workflows/chain.yaml"),
                ("workflow API, 200 steps", "/api/workflows/chain.yaml"),
                ("workflows list", "/"),
                ("history, first page of 10,000 runs", "/runs"),
                ("history, page 150 of 200 (keyset)", f"/runs?before={ids[2500]}"),
                ("history, status=failed", "/runs?status=failed"),
                ("history API, 50 runs", "/api/runs"),
                ("one run's page", f"/runs/{ids[5000]}"),
            ]:
                figures[name] = timed(http, path, runs)
    return figures


def event_delays(steps: int = 40) -> list[float]:
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "chain.yaml").write_text(chain(steps), encoding="utf-8")
        env = {**os.environ, "ORCHESTRATE_HOME": str(folder / "home"),
               "ORCHESTRATE_UI_TOKEN": TOKEN, "ORCHESTRATE_MOCK_LATENCY": "0.02"}
        process = subprocess.Popen([sys.executable, "-m", "orchestrate", "ui", str(folder),
                                    "--port", "0", "--no-open"], env=env,
                                   stderr=subprocess.PIPE, text=True)
        try:
            assert process.stderr is not None
            base = re.search(r"(http://\S+)/\?", process.stderr.readline()).group(1)  # type: ignore[union-attr]
            auth = {"authorization": f"Bearer {TOKEN}"}
            run_id = httpx.post(f"{base}/api/runs", headers=auth, json={
                "workflow": "chain.yaml", "mock": True}).json()["run_id"]
            delays = []
            with httpx.stream("GET", f"{base}/api/runs/{run_id}/events", headers=auth,
                              timeout=30) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        record = json.loads(line[6:])
                        if record["event"] in ("step_started", "step_finished"):
                            delays.append((time.time() - record["time"]) * 1000)
            return delays
        finally:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", metavar="FIGURES.json")
    args = parser.parse_args()
    figures = pages(args.runs)
    rows = [(name, f"{first:.1f}", f"{warm:.1f}", warm < 100) for name, (first, warm)
            in figures.items()]
    print(table(["page", "first request, ms", f"median of {args.runs}, ms", "< 100 ms"],
                rows))
    delays = sorted(event_delays())
    # Records that arrive while a listener joins are sent at once on joining; skip the
    # first step's, whose delay is how long the POST took to answer.
    steady = delays[: int(len(delays) * 0.95)] or delays
    print()
    print(table(["events", "records", "median, ms", "95th percentile, ms", "< 100 ms"],
                [("engine event -> SSE client", len(delays), f"{median(delays):.1f}",
                  f"{steady[-1]:.1f}", median(delays) < 100)]))
    write_figures(args.json, "ui", {"pages": figures, "event_delays_ms": delays})


if __name__ == "__main__":
    main()
