"""Many LLM calls through the real OpenAI provider against a local fake server (issue #4).

A ``for_each`` over N items, each item one chat completion, run through the Python API
with ``OPENAI_BASE_URL`` pointing at ``bench/fake_openai.py`` (20 ms a reply, in its own
process so that its CPU is not counted). Each run is a fresh interpreter; the figures are
medians. For each N, concurrency and mode (JSON reply or SSE stream):

- wall time of the run, and its ratio to the latency-bound ideal N / concurrency * 20 ms;
- CPU seconds of the client process per request (``time.process_time``), which includes
  the engine's own work; the ``mock`` rows give that engine-only share for comparison;
- TCP connections the server saw (keep-alive: at most the concurrency).

Baselines: ``bare httpx`` sends the same requests with httpx alone, sharded the same way
(the floor for this client); ``mock`` runs the same workflow on the mock provider (the
engine's own share).

Targets: wall within 1.5x of the ideal at concurrency 32; CPU under 1 ms a request at 128.
``--unsharded`` adds runs with one httpx client holding every connection, to show why
the client pool is sharded (encode/httpcore#1035). 5,000-call runs are behind ``--large``.

    python bench/bench_providers.py [--runs 3] [--large] [--unsharded] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from _common import REPO, machine, median, table, write_figures

LATENCY = 0.020
WALL_TARGET = 1.5  # x the ideal, at concurrency 32
CPU_TARGET_MS = 1.0  # per request, at concurrency 128
WORKFLOW = (
    "name: many-calls\n"
    "inputs:\n"
    "  items: {type: array}\n"
    "defaults:\n"
    "  model: gpt-4o-mini\n"
    "  retries: 0\n"
    "steps:\n"
    "  - id: each\n"
    "    for_each: inputs.items\n"
    "    prompt: 'Item {{ index }}: rewrite {{ item }} in plain words.'\n"
)


# --- one run, in a child interpreter ------------------------------------------------------


def measure(calls: int, concurrency: int, stream: bool, mode: str, folder: Path) -> dict:
    """Run the for_each once in this process; wall and CPU seconds of the run alone."""
    import asyncio
    import time

    if mode == "httpx":
        return asyncio.run(bare_httpx(calls, concurrency, stream))

    from orchestrate._api import prepare, run_prepared
    from orchestrate._engine import RunOptions
    from orchestrate.providers import _http

    if mode == "unsharded":  # one client holds every connection
        _http.ClientPool.__init__.__kwdefaults__["per_client"] = 1_000_000
    path = folder / "many-calls.yaml"
    path.write_text(WORKFLOW, encoding="utf-8")
    prepared = prepare(path, {"items": [f"item number {i}" for i in range(calls)]})
    options = RunOptions(max_concurrency=concurrency, stream=stream)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = asyncio.run(
        run_prepared(prepared, mock=mode == "mock", options=options, mock_latency=LATENCY)
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if result.status != "succeeded":
        raise SystemExit(f"the run {result.status}: {result.error}")
    return {"wall_s": wall, "cpu_s": cpu}


async def bare_httpx(calls: int, concurrency: int, stream: bool) -> dict:
    """The floor: the same requests with httpx alone, sharded as ClientPool shards them."""
    import math
    import time

    import httpx

    from orchestrate.providers._http import CONNECTIONS_PER_CLIENT

    url = os.environ["OPENAI_BASE_URL"] + "/chat/completions"
    per_client = CONNECTIONS_PER_CLIENT
    limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
    ssl_context = httpx.create_ssl_context()
    clients = [
        httpx.AsyncClient(limits=limits, timeout=None, verify=ssl_context)
        for _ in range(math.ceil(concurrency / per_client))
    ]
    limit = asyncio.Semaphore(concurrency)

    async def call(index: int) -> None:
        body = {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "user", "content": f"Item {index}: rewrite item number {index}."}
            ],
        }
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        async with limit:
            client = clients[index % len(clients)]
            async with client.stream("POST", url, json=body) as response:
                if stream:
                    async for _ in response.aiter_lines():
                        pass
                else:
                    json.loads(await response.aread())

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(call(i) for i in range(calls)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    for client in clients:
        await client.aclose()
    return {"wall_s": wall, "cpu_s": cpu}


def run_child(
    base_url: str, folder: Path, calls: int, concurrency: int, stream: bool, mode: str
) -> dict[str, Any]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "ANTHROPIC_", "ORCHESTRATE_"))
    }
    env.update(OPENAI_BASE_URL=base_url, ORCHESTRATE_HOME=str(folder / "home"))
    before = server_stats(base_url)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        mode,
        "--calls",
        str(calls),
        "--concurrency",
        str(concurrency),
        "--folder",
        str(folder),
        *(["--stream"] if stream else []),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=REPO, env=env, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} {calls}x{concurrency} failed:\n{done.stderr}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    after = server_stats(base_url)
    figures["requests"] = after["requests"] - before["requests"]
    figures["connections"] = after["connections"] - before["connections"] - 1  # the /stats GET
    return figures


def server_stats(base_url: str) -> dict[str, int]:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=10) as reply:
        return json.loads(reply.read())


def start_server(latency: float, *options: str) -> tuple[subprocess.Popen[str], str]:
    """The fake server in its own process (its CPU is not ours), with more of its command
    line `options`; its base URL."""
    server = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("fake_openai.py")),
            "--port",
            "0",
            "--latency-ms",
            str(latency * 1000),
            "--exit-after",
            "3600",
            *options,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline().strip()
    if not line.startswith("listening on "):
        server.kill()
        raise SystemExit(f"the fake server did not start: {line!r}")
    return server, line.removeprefix("listening on ")


# --- the report ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration")
    parser.add_argument("--large", action="store_true", help="add the 5,000-call runs")
    parser.add_argument(
        "--unsharded",
        action="store_true",
        help="add runs with one unsharded httpx client, for comparison",
    )
    parser.add_argument(
        "--no-baselines",
        action="store_true",
        help="skip the bare-httpx and engine-only (mock) rows",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        figures = measure(args.calls, args.concurrency, args.stream, args.child, Path(args.folder))
        print(json.dumps(figures))
        return

    modes = ["openai"] + (["unsharded"] if args.unsharded else [])
    modes += [] if args.no_baselines else ["httpx", "mock"]
    configs = [
        (calls, concurrency, stream, mode)
        for calls in [1000, *([5000] if args.large else [])]
        for concurrency in (32, 128)
        for mode in modes
        for stream in ((False, True) if mode != "mock" else (False,))
    ]
    load_before = machine()["load_average"]
    server, base_url = start_server(LATENCY)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-providers-") as folder:
            for calls, concurrency, stream, mode in configs:
                runs = [
                    run_child(base_url, Path(folder), calls, concurrency, stream, mode)
                    for _ in range(args.runs)
                ]
                results.append(
                    {
                        "calls": calls,
                        "concurrency": concurrency,
                        "stream": stream,
                        "mode": mode,
                        "runs": runs,
                        **{
                            k: median([r[k] for r in runs])
                            for k in ("wall_s", "cpu_s", "requests", "connections")
                        },
                    }
                )
                print(".", end="", file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait(10)
    print(file=sys.stderr)

    rows = []
    for r in results:
        ideal = r["calls"] / r["concurrency"] * LATENCY
        ratio = r["wall_s"] / ideal
        cpu_ms = r["cpu_s"] / r["calls"] * 1000
        r.update(ideal_s=ideal, ratio=ratio, cpu_ms_per_request=cpu_ms)
        checks = []
        if r["mode"] == "openai" and r["concurrency"] == 32:
            checks.append(("wall", ratio < WALL_TARGET))
        if r["mode"] == "openai" and r["concurrency"] == 128:
            checks.append(("CPU", cpu_ms < CPU_TARGET_MS))
        r["checks"] = dict(checks)
        label = {
            "openai": "orchestrate, OpenAIProvider",
            "unsharded": "orchestrate, one httpx client",
            "httpx": "bare httpx, same shards",
            "mock": "orchestrate, mock (no HTTP)",
        }[r["mode"]]
        rows.append(
            [
                r["calls"],
                r["concurrency"],
                label,
                "-" if r["mode"] == "mock" else ("SSE" if r["stream"] else "JSON"),
                f"{r['wall_s']:.3f}",
                f"{ideal:.3f}",
                f"{ratio:.2f}x",
                f"{r['cpu_s']:.2f}",
                f"{cpu_ms:.3f}",
                "-" if r["mode"] == "mock" else r["connections"],
                ", ".join(f"{what} {'met' if ok else 'MISSED'}" for what, ok in checks),
            ]
        )
    sniffio = importlib.util.find_spec("sniffio") is not None
    print(
        f"\n{args.runs} runs each, medians; fake server at {LATENCY * 1000:g} ms in its own "
        f"process (load average before: {load_before}); sniffio installed: "
        f"{'yes' if sniffio else 'no'}\n"
    )
    print(
        table(
            [
                "calls",
                "concurrency",
                "client",
                "reply",
                "wall s",
                "ideal s",
                "wall/ideal",
                "CPU s",
                "CPU ms/request",
                "connections",
                "targets",
            ],
            rows,
        )
    )
    print(
        f"\nTargets: wall < {WALL_TARGET}x ideal at concurrency 32; "
        f"CPU < {CPU_TARGET_MS:g} ms a request at 128."
    )
    write_figures(
        args.json,
        "providers",
        {
            "runs": args.runs,
            "latency_s": LATENCY,
            "load_average_before": load_before,
            "sniffio_installed": sniffio,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
