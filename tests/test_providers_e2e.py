"""End to end over real HTTP: `orchestrate run` in a subprocess against a local fake server.

The server is bench/fake_openai.py, run in a thread of the test process on 127.0.0.1 and a
free port; the CLI is a real `python -m orchestrate` subprocess pointed at it with
OPENAI_BASE_URL. No respx, no network beyond the loopback interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
FAKE_KEY = "sk-e2e-Zq81vT0pW3xYk6Lm"


def _load_fake_openai() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fake_openai", REPO / "bench" / "fake_openai.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fake_openai", module)
    spec.loader.exec_module(module)
    return module


fake_openai = _load_fake_openai()


@pytest.fixture
def server() -> Iterator[Any]:
    """A fake OpenAI-compatible server on 127.0.0.1, answering at once."""
    with fake_openai.serve_in_thread(latency=0.0) as running:
        yield running


@pytest.fixture
def orchestrate(tmp_path: Path, server: Any) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `python -m orchestrate ARGS` in the test folder with the server as OpenAI."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environment = {**os.environ, "OPENAI_BASE_URL": server.base_url, **(env or {})}
        environment.pop("COLUMNS", None)
        return subprocess.run(
            [sys.executable, "-m", "orchestrate", *args],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


FLOW = """
name: e2e
inputs:
  name: {type: string, default: Ada}
defaults:
  model: gpt-4o-mini
  retries: 0
steps:
  - id: greet
    system: You are friendly.
    prompt: Say hello to {{ inputs.name }}.
  - id: facts
    prompt: 'Two facts about {{ inputs.name }}, after: {{ steps.greet.output }}'
    output: json
    schema:
      type: object
      required: [facts]
      properties:
        facts: {type: array, items: {type: string}}
"""
GREETING = "Fake reply to: Say hello to Ada."


def _events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_run_without_streaming(write_flow, orchestrate, server) -> None:
    """A plain run makes one non-streaming request per step and prints the JSON result."""
    flow = write_flow(FLOW)
    done = orchestrate("run", str(flow), "--json")
    assert (done.returncode, "Traceback" in done.stderr) == (0, False), done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded"
    assert result["outputs"] == {"greet": GREETING, "facts": {"facts": ["mock"]}}
    greet = result["steps"][0]
    assert (greet["provider"], greet["model"], greet["attempts"]) == ("openai", "gpt-4o-mini", 1)
    assert greet["usage"] == {"input_tokens": 9, "output_tokens": 7}
    bodies = [r["body"] for r in server.requests]
    assert [b.get("stream", False) for b in bodies] == [False, False]
    assert bodies[0]["messages"] == [
        {"role": "system", "content": "You are friendly."},
        {"role": "user", "content": "Say hello to Ada."},
    ]
    assert bodies[1]["response_format"]["type"] == "json_schema"
    assert "authorization" not in server.requests[0]["headers"]


def test_run_streaming_with_events(write_flow, orchestrate, server) -> None:
    """`--events - --events-tokens` streams: token events add up to each step's output."""
    flow = write_flow(FLOW)
    done = orchestrate("run", str(flow), "--events", "-", "--events-tokens")
    assert (done.returncode, "Traceback" in done.stderr) == (0, False), done.stderr
    events = _events(done.stdout)
    tokens = [e for e in events if e["event"] == "token" and e["step_id"] == "greet"]
    assert len(tokens) > 1
    assert "".join(t["text"] for t in tokens) == GREETING
    finished = events[-1]
    assert (finished["event"], finished["status"]) == ("run_finished", "succeeded")
    assert finished["outputs"]["greet"] == GREETING
    assert finished["steps"][0]["usage"] == {"input_tokens": 9, "output_tokens": 7}
    bodies = [r["body"] for r in server.requests]
    assert all(b["stream"] and b["stream_options"] == {"include_usage": True} for b in bodies)


def test_retry_after_a_server_error(write_flow, orchestrate, server) -> None:
    """A 503 is retried (after its Retry-After of 0 s) and the step records two attempts."""
    flow = write_flow("""
        steps:
          - id: only
            prompt: Hello
            retries: 1
    """)
    server.fail_next(fake_openai.Failure(503, "overloaded", headers={"retry-after": "0"}))
    done = orchestrate("run", str(flow), "--json")
    assert done.returncode == 0, done.stderr
    step = json.loads(done.stdout)["steps"][0]
    outcome = (step["status"], step["attempts"], step["output"])
    assert outcome == ("succeeded", 2, "Fake reply to: Hello")


# --- secrets ------------------------------------------------------------------------------

SECRET_FLOW = """
steps:
  - id: first
    prompt: Who am I?
    on_error: continue
  - id: second
    prompt: Hello there
"""


@pytest.mark.parametrize(
    "mode",
    ["json", "streaming text"],
)
def test_key_never_appears_in_any_output(
    mode: str, write_flow, orchestrate, server, tmp_path: Path
) -> None:
    """A 401 whose body echoes the Authorization header leaks the key nowhere."""
    flow = write_flow(SECRET_FLOW)
    home = tmp_path / "home"
    events = tmp_path / "events.jsonl"
    server.fail_next(fake_openai.Failure(401, "Incorrect API key provided: {authorization}"))
    args = ["run", str(flow), "--max-concurrency", "1", "--events", str(events)]
    args += ["--json"] if mode == "json" else ["--events-tokens"]
    done = orchestrate(*args, env={"OPENAI_API_KEY": FAKE_KEY, "ORCHESTRATE_HOME": str(home)})

    assert f"Bearer {FAKE_KEY}" == server.requests[0]["headers"]["authorization"]
    assert done.returncode == 0, done.stderr
    outputs = {
        "stdout": done.stdout,
        "stderr": done.stderr,
        "events": events.read_text(encoding="utf-8"),
    }
    outputs |= {
        str(path): path.read_bytes().decode("utf-8", "replace")
        for path in home.rglob("*")
        if path.is_file()
    }
    leaks = [name for name, text in outputs.items() if FAKE_KEY in text or FAKE_KEY[8:] in text]
    assert leaks == []
    failed = next(
        e
        for e in _events(outputs["events"])
        if e["event"] == "step_finished" and e["step_id"] == "first"
    )
    assert failed["status"] == "failed"
    assert "HTTP 401" in failed["error"]["message"]
    assert "Incorrect API key provided" in failed["error"]["message"]
    if mode == "json":
        result = json.loads(done.stdout)
        assert [s["status"] for s in result["steps"]] == ["failed", "succeeded"]


# --- connections --------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_calls_reuse_connections(stream: bool, write_flow, server) -> None:
    """Twenty calls at concurrency 4 use at most 4 connections, streamed or not."""
    from orchestrate._api import prepare, run_prepared
    from orchestrate._engine import RunOptions

    flow = write_flow("""
        inputs:
          items: {type: array}
        steps:
          - id: each
            for_each: inputs.items
            prompt: 'Rewrite {{ item }}'
    """)
    prepared = prepare(flow, {"items": [f"item {i}" for i in range(20)]})
    options = RunOptions(max_concurrency=4, stream=stream)
    result = asyncio.run(
        run_prepared(prepared, options=options, env={"OPENAI_BASE_URL": server.base_url})
    )
    assert result.status == "succeeded"
    assert [f"Fake reply to: Rewrite item {i}" for i in range(20)] == result.outputs["each"]
    assert (server.count, server.connections <= 4) == (20, True)


def test_pool_clients_share_one_tls_context() -> None:
    """Every client of a pool gets the same TLS context (building one loads the CA bundle)."""
    from orchestrate.providers._http import ClientPool

    pool = ClientPool(concurrency=32)
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(pool.lease()) for _ in range(pool.size)]
    contexts = {id(client._transport._pool._ssl_context) for client in clients}
    assert (pool.size, len({id(c) for c in clients}), len(contexts)) == (8, 8, 1)
    asyncio.run(pool.aclose())


def test_fake_server_script_prints_its_port() -> None:
    """`python bench/fake_openai.py` listens on a free loopback port and says which."""
    command = [sys.executable, str(REPO / "bench" / "fake_openai.py"), "--exit-after", "5"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        process.terminate()
    assert line.startswith("listening on http://127.0.0.1:")
    assert line.strip().endswith("/v1")


def test_fake_server_fills_a_schema_without_orchestrate_installed(tmp_path: Path) -> None:
    """Run by a Python that cannot import orchestrate (no site-packages), the fake server
    still answers a json_schema request with a minimal valid instance, never `{}`."""
    schema = {
        "type": "object",
        "required": ["category", "urgency"],
        "properties": {"category": {"enum": ["billing", "bug"]}, "urgency": {"type": "string"}},
    }
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    script = (
        f"import json, sys; sys.path.insert(0, {str(REPO / 'bench')!r}); "
        f"import fake_openai; print(fake_openai.echo_reply(json.loads(sys.argv[1])))"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", script, json.dumps(body)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"category": "billing", "urgency": "mock"}
