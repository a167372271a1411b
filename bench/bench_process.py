"""Whole-process speed: `orchestrate run` as a user starts it, against a bare httpx loop (#15).

The other benchmarks time the engine through the Python API after ``prepare()``; this one
times what a user of the command line waits for, start-up included. For each workload it
runs, paired and interleaved run by run (the order rotating, so that drift in the machine's
load hits every mode alike):

- **bare**: a small httpx script in a fresh interpreter (this file with a hidden
  ``--bare`` flag) making the same calls, with the same dependencies and concurrency
  (sharded clients of 4 connections sharing one TLS context, as orchestrate's pool, for the
  parallel workloads);
- **orchestrate**: ``orchestrate run FLOW`` with ``OPENAI_BASE_URL`` pointing at the fake
  server, ``ORCHESTRATE_HOME`` in a temporary folder, stdout and stderr to files (not a
  terminal, so no live display), with the history on;
- **no history**: the same with ``--no-history``.

Bytecode is cached (a first round, not counted, writes it), as in an installed package.
Workloads (each on its own `fake_openai.py` process, so the server's CPU is not the
client's): a 3-step chain and a 100-step chain at 0 ms, 50 parallel steps and a join at
200 ms (``--max-concurrency 50``), a ``for_each`` of 1,000 items at 20 ms
(``--max-concurrency 32``). Plus ``orchestrate --help`` and ``orchestrate validate`` of the
20-step chain (as `bench_startup.py`). Peak RSS is each child's own (``os.wait4``).

    python bench/bench_process.py [--runs 15] [--only chain3,chain100,fanout,for_each]
                                  [--json FIGURES.json]
"""

from __future__ import annotations

import sys

CONNECTIONS_PER_CLIENT = 4  # as orchestrate's ClientPool


# --- the bare httpx baseline (runs in its own interpreter) --------------------------------


def bare(kind: str, base_url: str, count: int, concurrency: int) -> None:
    """The same calls as the workflow of `kind`, with httpx alone."""
    import asyncio

    import httpx

    url = base_url.rstrip("/") + "/chat/completions"

    async def ask(client: httpx.AsyncClient, prompt: str) -> str:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}
        response = await client.post(url, json=body)
        response.raise_for_status()
        return response.json()["choices"][0]["message"]["content"]

    async def chain() -> None:
        async with httpx.AsyncClient(timeout=None) as client:
            reply = await ask(client, "Start the chain.")
            for n in range(1, count):
                reply = await ask(client, f"Step {n} continues: {reply}")

    async def parallel(prompts: list[str], join: bool) -> None:
        shards = max(1, -(-concurrency // CONNECTIONS_PER_CLIENT))
        limits = httpx.Limits(
            max_connections=CONNECTIONS_PER_CLIENT, max_keepalive_connections=CONNECTIONS_PER_CLIENT
        )
        tls = httpx.create_ssl_context()  # one for all: each would load the CA bundle (20 ms)
        clients = [
            httpx.AsyncClient(limits=limits, timeout=None, verify=tls) for _ in range(shards)
        ]
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int, prompt: str) -> str:
            async with gate:
                return await ask(clients[index % shards], prompt)

        replies = await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
        if join:
            await ask(clients[0], "Join: " + " | ".join(replies))
        for client in clients:
            await client.aclose()

    if kind == "chain":
        asyncio.run(chain())
    elif kind == "fanout":
        asyncio.run(parallel([f"Question {n}: say something." for n in range(count)], True))
    else:
        asyncio.run(parallel([f"Item {n}" for n in range(count)], False))


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--bare":
    bare(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    sys.exit(0)


# --- the harness --------------------------------------------------------------------------

import argparse  # noqa: E402  (the bare child above imports only what it uses)
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

from _common import machine, median, orchestrate_command, table, write_figures  # noqa: E402

HERE = Path(__file__).resolve().parent
MODES = ("bare", "history", "no_history")
TARGETS = {"chain3": 1.30, "chain100": 1.30, "fanout": 1.15, "for_each": 1.15}
HISTORY_TARGET = 1.10  # history on / --no-history
RSS_TARGET_MB = 60  # the for_each, history on
STARTUP_TARGET = 0.16  # seconds, --help and validate


@dataclass
class Workload:
    name: str
    title: str
    latency_ms: int
    kind: str  # for the bare child: chain | fanout | for_each
    count: int
    concurrency: int
    yaml: str
    base_url: str = ""
    times: dict[str, list[float]] = field(default_factory=dict)
    rss: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)


def chain_yaml(steps: int) -> str:
    lines = [
        "name: chain",
        "defaults:",
        "  model: gpt-4o-mini",
        "steps:",
        "  - id: s000",
        "    prompt: Start the chain.",
    ]
    for n in range(1, steps):
        lines += [
            f"  - id: s{n:03d}",
            f"    prompt: 'Step {n} continues: {{{{ steps.s{n - 1:03d}.output }}}}'",
        ]
    return "\n".join(lines) + "\n"


def fanout_yaml(width: int) -> str:
    lines = ["name: fanout", "defaults:", "  model: gpt-4o-mini", "steps:"]
    for n in range(width):
        lines += [f"  - id: q{n:02d}", f"    prompt: 'Question {n}: say something.'"]
    joined = " | ".join(f"{{{{ steps.q{n:02d}.output }}}}" for n in range(width))
    lines += ["  - id: join", f"    prompt: 'Join: {joined}'"]
    return "\n".join(lines) + "\n"


def for_each_yaml(items: int) -> str:
    return (
        f"name: for_each\ndefaults:\n  model: gpt-4o-mini\nsteps:\n  - id: each\n"
        f"    for_each: range({items})\n    prompt: 'Item {{{{ item }}}}'\n"
    )


def workloads() -> list[Workload]:
    return [
        Workload("chain3", "3-step chain, 0 ms", 0, "chain", 3, 1, chain_yaml(3)),
        Workload("chain100", "100-step chain, 0 ms", 0, "chain", 100, 1, chain_yaml(100)),
        Workload(
            "fanout", "50 parallel steps + join, 200 ms", 200, "fanout", 50, 50, fanout_yaml(50)
        ),
        Workload(
            "for_each",
            "`for_each` of 1,000 items, 20 ms, concurrency 32",
            20,
            "for_each",
            1000,
            32,
            for_each_yaml(1000),
        ),
    ]


def start_server(latency_ms: int) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable,
        str(HERE / "fake_openai.py"),
        "--port",
        "0",
        "--latency-ms",
        str(latency_ms),
        "--exit-after",
        "3600",
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    line = server.stdout.readline()
    if "listening on" not in line:
        server.kill()
        raise SystemExit(f"the fake server did not start: {line!r}")
    return server, line.split("listening on", 1)[1].strip()


def timed(command: Sequence[str], env: dict[str, str], folder: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one child process; it must exit 0."""
    with open(folder / "stdout", "wb") as out, open(folder / "stderr", "wb") as err:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=folder)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        detail = (folder / "stderr").read_text(errors="replace")[-2000:]
        raise SystemExit(f"{' '.join(command)} exited {child.returncode}:\n{detail}")
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, cpu, usage.ru_maxrss / 1024  # Linux: kilobytes


def command_for(load: Workload, mode: str, flow: Path) -> list[str]:
    if mode == "bare":
        return [
            sys.executable,
            str(HERE / "bench_process.py"),
            "--bare",
            load.kind,
            load.base_url,
            str(load.count),
            str(load.concurrency),
        ]
    program = (
        [sys.executable, "-m", "orchestrate"] if mode == "baseline" else (orchestrate_command())
    )
    command = [*program, "run", str(flow), "--max-concurrency", str(max(load.concurrency, 8))]
    return command + (["--no-history"] if mode == "no_history" else [])


def child_env(home: Path, base_url: str = "", source: str = "") -> dict[str, str]:
    """A clean environment with bytecode and templates cached (in the benchmark's folder,
    warm after the warm-up run), as for a user running a workflow again; `source` puts
    another checkout of orchestrate first on the path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PYTHONDONTWRITEBYTECODE"
        and not k.startswith(("OPENAI_", "ANTHROPIC_", "ORCHESTRATE_"))
    }
    env["PYTHONPYCACHEPREFIX"] = str(home.parent / "pycache")
    env["ORCHESTRATE_CACHE_DIR"] = str(home.parent / "cache")
    env["ORCHESTRATE_HOME"] = str(home)
    if base_url:
        env["OPENAI_BASE_URL"] = base_url
    if source:
        env["PYTHONPATH"] = source
    return env


def measure(
    loads: list[Workload], runs: int, folder: Path, baseline: str = ""
) -> dict[str, list[float]]:
    """Every workload x mode, `runs` times, interleaved; plus --help and validate.

    A first round, not counted, writes the bytecode cache."""
    modes = (*MODES, "baseline") if baseline else MODES
    flows = {}
    for load in loads:
        flows[load.name] = folder / f"{load.name}.yaml"
        flows[load.name].write_text(load.yaml, encoding="utf-8")
        load.times = {mode: [] for mode in modes}
        load.rss = {mode: [] for mode in modes}
        load.cpu = {mode: [] for mode in modes}
    validate_flow = folder / "validate.yaml"
    validate_flow.write_text(chain_yaml(20), encoding="utf-8")
    startup: dict[str, list[float]] = {"help": [], "validate": []}
    plain_env = child_env(folder / "home-startup")
    for run in range(-1, runs):
        startup["help"].append(timed([*orchestrate_command(), "--help"], plain_env, folder)[0])
        startup["validate"].append(
            timed([*orchestrate_command(), "validate", str(validate_flow)], plain_env, folder)[0]
        )
        for load in loads:
            shift = run % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                home = folder / f"home-{load.name}-{mode}"
                env = child_env(home, load.base_url, baseline if mode == "baseline" else "")
                seconds, cpu, rss = timed(command_for(load, mode, flows[load.name]), env, folder)
                load.times[mode].append(seconds)
                load.cpu[mode].append(cpu)
                load.rss[mode].append(rss)
        if run < 0:  # the warm-up round
            for figures in (
                startup,
                *(load.times for load in loads),
                *(load.cpu for load in loads),
                *(load.rss for load in loads),
            ):
                for values in figures.values():
                    values.clear()
        print(f"run {run + 1}/{runs} done" if run >= 0 else "warm-up done", file=sys.stderr)
    return startup


def report(loads: list[Workload], startup: dict[str, list[float]], runs: int) -> str:
    rows: list[list[object]] = []
    for name, values in startup.items():
        label = "`--help`" if name == "help" else "`validate` (20 steps)"
        seconds = median(values)
        rows.append(
            [
                label,
                "-",
                f"{seconds:.3f} s",
                "-",
                "-",
                "-",
                "-",
                "-",
                "met" if seconds <= STARTUP_TARGET else "**missed**",
            ]
        )
    for load in loads:
        base = median(load.times["bare"])
        on, off = median(load.times["history"]), median(load.times["no_history"])
        ratio, off_ratio, cost = on / base, off / base, on / off
        rss = max(load.rss["history"])
        verdicts = [ratio <= TARGETS[load.name], cost <= HISTORY_TARGET]
        if load.name == "for_each":
            verdicts.append(rss <= RSS_TARGET_MB)
        rows.append(
            [
                load.title,
                f"{base:.3f} s",
                f"{on:.3f} s",
                f"{ratio:.2f}x",
                f"{off:.3f} s",
                f"{off_ratio:.2f}x",
                f"{cost - 1:+.1%}",
                f"{rss:.0f} MB (bare {max(load.rss['bare']):.0f})",
                "met" if all(verdicts) else "**missed**",
            ]
        )
    headers = [
        "workload",
        "bare httpx",
        "orchestrate",
        "ratio",
        "--no-history",
        "ratio",
        "history cost",
        "peak RSS",
        "targets",
    ]
    load_avg = machine()["load_average"]
    return (
        f"Medians of {runs} runs, interleaved; load average {load_avg}\n\n"
        + table(headers, rows)
        + "\n\nWall time per mode, medians (ratio to bare httpx):\n\n"
        + mode_table(loads, "times")
        + "\n\nCPU time (user + system) of the same processes, steadier than wall time "
        "on a busy machine:\n\n" + mode_table(loads, "cpu")
    )


def mode_table(loads: list[Workload], measure: str) -> str:
    """Seconds per mode (`measure` is "times" or "cpu"), with the ratio to bare httpx."""
    columns = [getattr(load, measure) for load in loads]
    modes = list(columns[0]) if columns else list(MODES)
    rows = []
    for load, figures in zip(loads, columns, strict=True):
        base = median(figures["bare"])
        rows.append(
            [
                load.title,
                *(
                    f"{median(figures[mode]):.3f} s ({median(figures[mode]) / base:.2f}x)"
                    for mode in modes
                ),
            ]
        )
    return table(["workload", *(mode.replace("_", " ") for mode in modes)], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--only", help="comma-separated workloads: chain3,chain100,fanout,for_each")
    parser.add_argument("--json", dest="json_path", help="also write the figures to this file")
    parser.add_argument(
        "--baseline",
        metavar="SOURCE",
        default="",
        help="also run `python -m orchestrate` from this checkout (history on),"
        " for an A/B comparison",
    )
    args = parser.parse_args()
    loads = workloads()
    if args.only:
        wanted = set(args.only.split(","))
        loads = [load for load in loads if load.name in wanted]
    print(f"machine: {machine()}", file=sys.stderr)
    servers = {}
    try:
        for load in loads:
            if load.latency_ms not in servers:
                servers[load.latency_ms] = start_server(load.latency_ms)
            load.base_url = servers[load.latency_ms][1]
        with tempfile.TemporaryDirectory(prefix="bench-process-") as tmp:
            startup = measure(loads, args.runs, Path(tmp), args.baseline)
    finally:
        for server, _ in servers.values():
            server.kill()
            server.wait()
    print(report(loads, startup, args.runs))
    write_figures(
        args.json_path,
        "process",
        {
            "runs": args.runs,
            "startup": startup,
            "workloads": {
                load.name: {"times": load.times, "cpu": load.cpu, "rss_mb": load.rss}
                for load in loads
            },
        },
    )


if __name__ == "__main__":
    main()
