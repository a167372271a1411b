"""Ctrl-C during a run: exit 130, the run recorded as cancelled, finished work kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT is POSIX")
def test_sigint_cancels_cleanly(write_flow: Callable) -> None:
    """SIGINT mid-run: exit 130, status cancelled, the finished step's output kept."""
    write_flow("""
        import asyncio

        async def wait_long():
            await asyncio.sleep(60)
            return "never"
        """, "slow.py")
    flow = write_flow("""
        steps:
          - id: fast
            prompt: x
            mock: quick answer
          - id: slow
            function: slow:wait_long
            needs: [fast]
        """)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "run", str(flow), "--mock", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    for line in process.stderr:
        if "slow started" in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 130
    doc = json.loads(stdout)
    assert doc["status"] == "cancelled"
    assert doc["error"]["type"] == "cancelled"
    assert {s["id"]: s["status"] for s in doc["steps"]} == {"fast": "succeeded",
                                                             "slow": "cancelled"}
    assert doc["steps"][0]["output"] == "quick answer"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT is POSIX")
def test_sigint_does_not_wait_for_a_slow_sync_function(write_flow: Callable) -> None:
    """Ctrl-C during a blocking Python function exits at once, not when it returns."""
    write_flow("""
        import time

        def block():
            time.sleep(60)
            return "never"
        """, "blocking.py")
    flow = write_flow("""
        steps:
          - id: slow
            function: blocking:block
        """)
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrate", "run", str(flow), "--mock", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "slow started" in line:
            break
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=20)
    assert process.returncode == 130
    assert json.loads(stdout)["steps"][0]["status"] == "cancelled"
