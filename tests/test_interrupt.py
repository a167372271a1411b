"""Ctrl-C during a run: exit 130, the run recorded as cancelled, finished work kept."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable

import pytest

from tests.conftest import FAST_THEN_SLOW, SLOW, start_orchestrate, wait_for_line

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT is POSIX")


def interrupt(flow: object, when: str) -> tuple[int, dict]:
    """Run FLOW with --mock --json, send SIGINT once stderr shows `when`."""
    process = start_orchestrate("run", flow, "--mock", "--json")
    wait_for_line(process, when)
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=30)
    return process.returncode, json.loads(stdout)


def test_sigint_cancels_cleanly(write_flow: Callable) -> None:
    """SIGINT mid-run: exit 130, status cancelled, the finished step's output kept."""
    write_flow(SLOW, "slow.py")
    flow = write_flow(FAST_THEN_SLOW)
    code, doc = interrupt(flow, "slow started")
    assert code == 130
    assert doc["status"] == "cancelled"
    assert doc["error"]["type"] == "cancelled"
    assert {s["id"]: s["status"] for s in doc["steps"]} == {"fast": "succeeded",
                                                             "slow": "cancelled"}
    assert doc["steps"][0]["output"] == "quick answer"


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
    code, doc = interrupt(flow, "slow started")
    assert code == 130
    assert doc["steps"][0]["status"] == "cancelled"


def test_sigterm_cancels_like_ctrl_c(write_flow: Callable, cli: Callable,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM mid-run (CI cancel, `timeout`, `docker stop`): exit 143, 'orchestrate:
    terminated' on stderr, and the run recorded as cancelled, not left running."""
    monkeypatch.setenv("ORCHESTRATE_MOCK_LATENCY", "30")
    flow = write_flow("""
        steps:
          - id: slow
            prompt: x
        """)
    process = start_orchestrate("run", flow, "--mock", "--json")
    wait_for_line(process, "slow started")
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 143
    assert "orchestrate: terminated" in stderr
    run_id = json.loads(stdout)["run_id"]
    shown = cli("runs", "show", run_id, "--json")
    assert shown.exit_code == 0
    recorded = json.loads(shown.stdout)
    assert recorded["status"] == "cancelled"
    assert recorded["steps"][0]["status"] == "cancelled"
