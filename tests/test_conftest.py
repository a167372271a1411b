"""The shared test helpers themselves: a helper that cannot fail would hide broken tests."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.conftest import wait_for_line

# Says one line on stderr, then stays silent for longer than any test should wait.
QUIET_AFTER_ONE_LINE = "import sys, time; print('first line', file=sys.stderr); time.sleep(60)"


def python(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-u", "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_wait_for_line_returns_at_the_line() -> None:
    """The line it waits for ends the wait, and the process goes on running."""
    process = python(QUIET_AFTER_ONE_LINE)
    wait_for_line(process, "first", timeout=30)
    assert process.poll() is None
    process.kill()
    process.communicate()


@pytest.mark.parametrize(
    "code", [QUIET_AFTER_ONE_LINE, "print('first line')"], ids=["silent-process", "exited-process"]
)
def test_wait_for_line_fails_the_test_when_the_line_never_comes(code: str) -> None:
    """A line that never comes fails the test, by the deadline, showing what was read."""
    process = python(code)
    start = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="no line with 'never said'") as failure:
        wait_for_line(process, "never said", timeout=0.5)
    assert time.monotonic() - start < 10
    assert process.poll() is not None
    if code is QUIET_AFTER_ONE_LINE:
        assert "first line" in str(failure.value)
