"""Ctrl-C during a run: exit 130, the run recorded as cancelled, finished work kept."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable

import pytest

from tests.conftest import (
    FAST_THEN_SLOW,
    SLOW,
    SLOW_TEMPLATE,
    start_orchestrate,
    wait_for_line,
)

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
    assert {s["id"]: s["status"] for s in doc["steps"]} == {
        "fast": "succeeded",
        "slow": "cancelled",
    }
    assert doc["steps"][0]["output"] == "quick answer"


def test_sigint_does_not_wait_for_a_slow_sync_function(write_flow: Callable) -> None:
    """Ctrl-C during a blocking Python function exits at once, not when it returns."""
    write_flow(
        """
        import time

        def block():
            time.sleep(60)
            return "never"
        """,
        "blocking.py",
    )
    flow = write_flow("""
        steps:
          - id: slow
            function: blocking:block
        """)
    code, doc = interrupt(flow, "slow started")
    assert code == 130
    assert doc["steps"][0]["status"] == "cancelled"


def test_sigterm_cancels_like_ctrl_c(
    write_flow: Callable, cli: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
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


# What a step blocks, and whether the run can still say how it ended (print its JSON).
BLOCKING_STEPS = [
    pytest.param(
        f"""
        steps:
          - id: slow
            prompt: "{SLOW_TEMPLATE}"
        """,
        "",
        True,
        id="slow-template",
    ),
    pytest.param(
        """
        steps:
          - id: slow
            function: spin:spin
        """,
        """
        async def spin():
            n = 0
            while True:  # computes without ever awaiting: the event loop is blocked
                n += 1
        """,
        True,
        id="cpu-bound-async-function",
    ),
    pytest.param(
        """
        steps:
          - id: slow
            function: spin:spin
        """,
        """
        async def spin():
            while True:
                try:
                    while True:
                        pass
                except KeyboardInterrupt:
                    pass  # swallows even the watchdog's interrupt: only exiting ends it
        """,
        False,
        id="async-function-swallowing-interrupts",
    ),
]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize(("flow_text", "module", "documented"), BLOCKING_STEPS)
def test_a_signal_ends_the_run_within_a_second_whatever_the_step_does(
    write_flow: Callable, flow_text: str, module: str, documented: bool, signum: int, code: int
) -> None:
    """A step blocking the event loop or rendering a slow template cannot delay Ctrl-C or
    SIGTERM: each exits with its own code within a second."""
    write_flow(module, "spin.py")
    flow = write_flow(flow_text)
    process = start_orchestrate("run", flow, "--mock", "--json")
    wait_for_line(process, "slow started")
    time.sleep(0.3)  # well into the step
    sent = time.perf_counter()
    process.send_signal(signum)
    try:
        stdout, _ = process.communicate(timeout=10)
    finally:
        process.kill()  # a no-op once it has exited
    elapsed = time.perf_counter() - sent
    assert process.returncode == code
    assert elapsed < 2.0  # measured: about 0.1 s, 0.45 s and 0.85 s
    if documented:
        assert json.loads(stdout)["status"] == "cancelled"
