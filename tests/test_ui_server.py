"""`orchestrate ui` as a process: its address, its port, its warnings, Ctrl-C."""

from __future__ import annotations

import re
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from orchestrate.ui._server import address, can_open_browser, choose_token
from tests.conftest import start_orchestrate, wait_for_line

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT is POSIX")

SLOW_FLOW = """\
name: slow
steps:
  - id: slow
    function: slow:wait_long
"""
SLOW_PY = """\
import asyncio

async def wait_long():
    await asyncio.sleep(60)
"""


def test_port_0_picks_a_free_port_and_prints_the_token_address(tmp_path: Path) -> None:
    """The address line names the chosen port and the token; the page answers with it;
    Ctrl-C ends the server with exit 0."""
    process = start_orchestrate("ui", tmp_path, "--port", "0", "--no-open")
    assert process.stderr is not None
    line = process.stderr.readline()
    match = re.fullmatch(r"orchestrate ui: (http://127\.0\.0\.1:(\d+))/\?token=(\S+)\n", line)
    assert match, line
    base, port, token = match.groups()
    assert int(port) != 0
    response = httpx.get(f"{base}/api/workflows", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert httpx.get(f"{base}/api/workflows").status_code == 401
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=15)
    assert process.returncode == 0


def test_a_busy_port_is_a_clear_error(tmp_path: Path, cli) -> None:
    """Exit 2 and a message naming the address when the port is taken."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("ui", tmp_path, "--port", str(port), "--no-open")
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--port 0" in result.stderr


def test_a_missing_path_is_an_error(tmp_path: Path, cli) -> None:
    """A PATH that does not exist is named, exit 2, before anything listens."""
    result = cli("ui", tmp_path / "nope", "--no-open")
    assert result.exit_code == 2
    assert "no such file or folder" in result.stderr


def test_other_hosts_get_a_warning(tmp_path: Path) -> None:
    """--host 0.0.0.0 warns that anyone with the token can run workflows."""
    process = start_orchestrate("ui", tmp_path, "--host", "0.0.0.0", "--port", "0", "--no-open")
    wait_for_line(process, "warning: listening on 0.0.0.0: anyone who can reach this machine")
    wait_for_line(process, "orchestrate ui: http://")
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=15)
    assert process.returncode == 0


def test_ctrl_c_cancels_the_runs_in_flight(tmp_path: Path, monkeypatch) -> None:
    """A run started from the server is recorded as cancelled when Ctrl-C stops it."""
    (tmp_path / "slow.yaml").write_text(SLOW_FLOW)
    (tmp_path / "slow.py").write_text(SLOW_PY)
    monkeypatch.setenv("ORCHESTRATE_UI_TOKEN", "fixed-token")
    process = start_orchestrate("ui", tmp_path, "--port", "0", "--no-open")
    assert process.stderr is not None
    base = process.stderr.readline().split()[-1].split("/?")[0]
    auth = {"authorization": "Bearer fixed-token"}
    response = httpx.post(f"{base}/api/runs", headers=auth, json={"workflow": "slow.yaml"})
    run_id = response.json()["run_id"]
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=15)
    assert process.returncode == 0
    assert time.monotonic() - started < 5
    from orchestrate.history import open_store

    with open_store() as store:
        assert store.document(run_id)["status"] == "cancelled"


def test_the_token_comes_from_the_environment_or_chance() -> None:
    """ORCHESTRATE_UI_TOKEN fixes it; otherwise each start gets a new long random one."""
    assert choose_token({"ORCHESTRATE_UI_TOKEN": "abc"}) == "abc"
    first, second = choose_token({}), choose_token({})
    assert first != second and len(first) >= 40


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({"CI": "true", "DISPLAY": ":0"}, "linux", False),
        ({}, "linux", False),
        ({"DISPLAY": ":0"}, "linux", True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
        ({}, "darwin", True),
    ],
)
def test_a_browser_opens_only_where_there_is_a_screen(
    env: dict, platform: str, expected: bool, monkeypatch
) -> None:
    """No browser under CI, nor on a Linux without DISPLAY or WAYLAND_DISPLAY."""
    monkeypatch.setattr(sys, "platform", platform)
    assert can_open_browser(env) is expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:8765/?token=t"),
        ("0.0.0.0", "http://127.0.0.1:8765/?token=t"),
        ("::1", "http://[::1]:8765/?token=t"),
    ],
)
def test_the_printed_address(host: str, expected: str) -> None:
    """The address to open, for every kind of --host."""
    assert address(host, 8765, "t") == expected


def test_db_picks_the_history_it_shows_and_records_into(tmp_path: Path, cli, monkeypatch) -> None:
    """`ui --db URL`: the app and the runs it starts get that history, as if from
    $ORCHESTRATE_DATABASE_URL; without --db the environment is passed on as it is."""
    import orchestrate.ui

    seen = []
    monkeypatch.setattr(orchestrate.ui, "serve", lambda paths, **kw: seen.append(kw["env"]))
    url = "postgresql://ada@db.example/history"
    assert cli("ui", tmp_path, "--no-open", "--db", url).exit_code == 0
    assert cli("ui", tmp_path, "--no-open").exit_code == 0
    assert seen[0]["ORCHESTRATE_DATABASE_URL"] == url
    assert seen[1].get("ORCHESTRATE_DATABASE_URL") is None
