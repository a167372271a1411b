"""The web view's server times and its event delay (issue #10).

Targets: a 200-step workflow's page and the history page over 10,000 runs each under
100 ms of server time; an engine event reaches the browser's stream within 100 ms; a
1,000-item for_each watched live costs the server under 10 % more CPU.

- **pages**: the app in-process behind Starlette's test client (so the figure includes the
  client's own few hundred microseconds); the first request of a page (the workflow
  validated, the graph laid out) and the median of later ones.
- **history**: 10,000 runs in a fresh history (one real mock run, copied with SQL), the
  first page, a page deep in the history (keyset paging), a status filter, one run.
- **events**: `orchestrate ui --port 0` as a process and an SSE client; a 40-step chain on
  the mock with 20 ms a reply; the delay of each `step_started` / `step_finished` record
  from the engine's timestamp (`time`) to its arrival, on the same clock.
- **watch** (target: a 1,000-item for_each watched live, the browser stays responsive and
  the server's CPU for events is under 10 % of the run's): the same server, the for_each
  on the mock (10 ms a reply) started through the API, watched by nobody, by an httpx SSE
  client, or by Chromium on the step's page (Playwright; a requestAnimationFrame probe
  and a long-task observer in the page); the server process's CPU (/proc/PID/stat) and
  its event loop's (the main thread's, to the ns) from the start to the end of each run;
  what watching costs is the loop's CPU over that with nobody watching, as a share of
  the process's; medians over `--watch-runs` rounds taken in turn.

    python bench/bench_ui.py [--runs 15] [--watch-runs 7] [--only watch] [--json FIGURES.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, table, write_figures

TOKEN = "bench-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


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
    return TestClient(
        create_app([folder], token=TOKEN, port=8765),
        base_url="http://127.0.0.1:8765",
        headers={"authorization": f"Bearer {TOKEN}"},
    )


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

    result = orchestrate.run_workflow(folder / "small.yaml", mock=True, history=HistoryOptions())
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
            values = run | {
                "run_id": run_id,
                "started": run["started"] - runs + index,
                "status": ("succeeded", "failed", "cancelled")[index % 3],
            }
            db.execute(
                f"INSERT INTO runs VALUES ({','.join('?' * len(columns))})",
                [values[c] for c in columns],
            )
            for step in steps:
                db.execute(
                    f"INSERT INTO steps VALUES ({','.join('?' * len(step_columns))})",
                    [(step | {"run_id": run_id})[c] for c in step_columns],
                )
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


@contextlib.contextmanager
def ui_server(folder: Path, latency: float) -> Iterator[tuple[str, int]]:
    """`orchestrate ui FOLDER --port 0` as a process, the mock answering after `latency`
    seconds: its address and process id; stopped with Ctrl-C at the end."""
    env = {
        **os.environ,
        "ORCHESTRATE_HOME": str(folder / "home"),
        "ORCHESTRATE_UI_TOKEN": TOKEN,
        "ORCHESTRATE_MOCK_LATENCY": str(latency),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "ui", str(folder), "--port", "0", "--no-open"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        base = re.search(r"(http://\S+)/\?", process.stderr.readline()).group(1)  # type: ignore[union-attr]
        yield base, process.pid
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=15)


def start_run(base: str, workflow: str) -> str:
    import httpx

    response = httpx.post(
        f"{base}/api/runs", headers=AUTH, json={"workflow": workflow, "mock": True}, timeout=30
    )
    return str(response.json()["run_id"])


def follow(base: str, run_id: str) -> Iterator[dict[str, Any]]:
    """The run's SSE records as an httpx client reads them, until the stream ends."""
    import httpx

    with httpx.stream(
        "GET", f"{base}/api/runs/{run_id}/events", headers=AUTH, timeout=60
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                yield json.loads(line[6:])


def event_delays(steps: int = 40) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "chain.yaml").write_text(chain(steps), encoding="utf-8")
        with ui_server(folder, latency=0.02) as (base, _):
            run_id = start_run(base, "chain.yaml")
            return [
                (time.time() - record["time"]) * 1000
                for record in follow(base, run_id)
                if record["event"] in ("step_started", "step_finished")
            ]


# --- a 1,000-item for_each watched live ------------------------------------------------------

FOR_EACH = """name: many
steps:
  - id: items
    for_each: "range(ITEMS) | list"
    prompt: "Item {{ item }}"
    mock: "done {{ item }}"
"""
# Each frame's gap in the page, and its long tasks (over 50 ms of the main thread at
# once); kept in sessionStorage when the page reloads itself at the run's end.
PROBE = """
const kept = JSON.parse(sessionStorage.getItem("probe") || '{"frames": [], "long": []}');
window.__probe = kept;
(function frame(last) { requestAnimationFrame((now) => {
  if (last) kept.frames.push(now - last); frame(now); }); })(0);
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) kept.long.push(entry.duration);
}).observe({ type: "longtask" });
addEventListener("pagehide", () => sessionStorage.setItem("probe", JSON.stringify(kept)));
"""


def cpu_seconds(pid: int) -> float:
    """The process's user and system CPU so far, in 10 ms ticks (Linux: /proc/PID/stat;
    it counts the threads that have ended, like each run's history writer)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loop_cpu_seconds(pid: int) -> float:
    """The main thread's CPU so far, to the nanosecond (/proc/PID/schedstat): the event
    loop's, where the engine runs and every event is handled."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def wait_for_end(base: str, run_id: str) -> None:
    """Poll the run's document until it has ended (the same few requests whoever watches)."""
    import httpx

    while (
        httpx.get(f"{base}/api/runs/{run_id}", headers=AUTH, timeout=30).json()["status"]
        == "running"
    ):
        time.sleep(0.25)


def watched(base: str, pid: int, watcher: str, browser: Any) -> dict[str, Any]:
    """One run of the for_each: the server's CPU from its start to its end, with nobody
    watching, an httpx SSE client, or Chromium on the run page (with its frame probe)."""
    figures: dict[str, Any] = {}
    page = None
    if watcher == "browser":
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"{base}/?token={TOKEN}")
        page.add_init_script(PROBE)
    cpu, loop_cpu = cpu_seconds(pid), loop_cpu_seconds(pid)
    began = time.perf_counter()
    run_id = start_run(base, "many.yaml")
    reader = None
    if watcher == "httpx":
        records: list[dict[str, Any]] = []
        reader = threading.Thread(target=lambda: records.extend(follow(base, run_id)))
        reader.start()
    elif page is not None:
        page.goto(f"{base}/runs/{run_id}/steps/items")  # its panel lists the items
    wait_for_end(base, run_id)
    if reader is not None:
        reader.join()
        figures["records"] = len(records)
    if page is not None:
        page.wait_for_selector("#run-status.status-succeeded", timeout=60_000)
        frames, long_tasks = page.evaluate("[window.__probe.frames, window.__probe.long]")
        page.close()
        frames.sort()
        figures |= {
            "frames": len(frames),
            "frame_p50_ms": median(frames),
            "frame_p99_ms": frames[int(len(frames) * 0.99)] if frames else None,
            "frame_max_ms": frames[-1] if frames else None,
            "long_tasks": len(long_tasks),
            "long_task_ms": sum(long_tasks),
        }
    time.sleep(0.2)  # the run's last writes
    return figures | {
        "cpu_s": cpu_seconds(pid) - cpu,
        "loop_cpu_s": loop_cpu_seconds(pid) - loop_cpu,
        "wall_s": time.perf_counter() - began,
    }


def for_each_watched(items: int, repeats: int, latency: float) -> dict[str, list[dict[str, Any]]]:
    """`repeats` rounds of the three watchers, in turn (so that the machine's load is
    shared alike); the browser only where Playwright and Chromium are found."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    results: dict[str, list[dict[str, Any]]] = {"none": [], "httpx": [], "browser": []}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        (folder / "many.yaml").write_text(FOR_EACH.replace("ITEMS", str(items)), encoding="utf-8")
        browser = None
        if chromium:
            try:
                from playwright.sync_api import sync_playwright
            except ImportError:
                chromium = None
            else:
                playwright = stack.enter_context(sync_playwright())
                browser = playwright.chromium.launch(executable_path=chromium)
                stack.callback(browser.close)
        base, pid = stack.enter_context(ui_server(folder, latency))
        watched(base, pid, "none", None)  # warm-up: imports, the first page
        for _ in range(repeats):
            for watcher in results:
                if watcher != "browser" or browser is not None:
                    results[watcher].append(watched(base, pid, watcher, browser))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--items", type=int, default=1000, help="the watched for_each's items")
    parser.add_argument("--watch-runs", type=int, default=7, help="rounds of the watchers")
    parser.add_argument("--latency", type=float, default=0.01, help="the mock's reply, s")
    parser.add_argument("--only", choices=["pages", "events", "watch"])
    parser.add_argument("--json", metavar="FIGURES.json")
    args = parser.parse_args()
    data: dict[str, Any] = {}
    if args.only in (None, "pages"):
        data["pages"] = pages(args.runs)
        rows = [
            (name, f"{first:.1f}", f"{warm:.1f}", warm < 100)
            for name, (first, warm) in data["pages"].items()
        ]
        print(table(["page", "first request, ms", f"median of {args.runs}, ms", "< 100 ms"], rows))
    if args.only in (None, "events"):
        delays = data["event_delays_ms"] = sorted(event_delays())
        # Records that arrive while a listener joins are sent at once on joining; skip the
        # first step's, whose delay is how long the POST took to answer.
        steady = delays[: int(len(delays) * 0.95)] or delays
        print()
        print(
            table(
                ["events", "records", "median, ms", "95th percentile, ms", "< 100 ms"],
                [
                    (
                        "engine event -> SSE client",
                        len(delays),
                        f"{median(delays):.1f}",
                        f"{steady[-1]:.1f}",
                        median(delays) < 100,
                    )
                ],
            )
        )
    if args.only in (None, "watch"):
        data["watched"] = watched_runs = for_each_watched(args.items, args.watch_runs, args.latency)
        print()
        print(watch_tables(watched_runs, args.items))
    write_figures(args.json, "ui", data)


def watch_tables(runs: dict[str, list[dict[str, Any]]], items: int) -> str:
    """The server's CPU by watcher (the medians) against nobody watching, and the page's
    frames while Chromium watched."""
    alone = median([r["cpu_s"] for r in runs["none"]])
    loop_alone = median([r["loop_cpu_s"] for r in runs["none"]])
    rows = []
    for watcher, label in [
        ("none", "nobody"),
        ("httpx", "an httpx SSE client"),
        ("browser", "Chromium on the step's page"),
    ]:
        if not runs[watcher]:
            continue

        def of(key: str, watcher: str = watcher) -> float:
            return median([r[key] for r in runs[watcher]])

        extra = of("loop_cpu_s") - loop_alone
        rows.append(
            (
                label,
                len(runs[watcher]),
                f"{of('wall_s'):.2f}",
                f"{of('cpu_s'):.2f}",
                f"{of('loop_cpu_s'):.3f}",
                f"{extra * 1000:+.0f}",
                f"{extra / alone:+.1%}",
                "" if watcher == "none" else extra / alone < 0.10,
            )
        )
    text = table(
        [
            f"{items:,}-item for_each watched by",
            "runs",
            "wall, s",
            "server CPU, s",
            "event loop CPU, s",
            "watching, ms",
            "of the run's CPU",
            "< 10 %",
        ],
        rows,
    )
    if runs["browser"]:
        frames = [
            (
                f"run {index + 1}",
                r["frames"],
                f"{r['frame_p50_ms']:.1f}",
                f"{r['frame_p99_ms']:.1f}",
                f"{r['frame_max_ms']:.1f}",
                r["long_tasks"],
                f"{r['long_task_ms']:.0f}",
            )
            for index, r in enumerate(runs["browser"])
        ]
        text += "\n\n" + table(
            [
                "Chromium, run page",
                "frames",
                "frame p50, ms",
                "p99, ms",
                "longest, ms",
                "long tasks",
                "their total, ms",
            ],
            frames,
        )
    return text


if __name__ == "__main__":
    main()
