"""Private files: the history and fixtures are the owner's alone, whatever the umask."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrate._errors import OrchestrateError
from orchestrate._files import (
    create_private_file,
    open_output,
    private_folder,
    replace_private_file,
)
from orchestrate.history._recording import Fixture
from orchestrate.history._sqlite import SQLiteStore

UMASKS = [0o022, 0o000, 0o277]


@pytest.fixture(params=UMASKS, ids=[f"umask-{u:03o}" for u in UMASKS])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under each umask, then put the old one back."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_helpers_make_owner_only_files_and_folders(tmp_path: Path, umask: int) -> None:
    """A created folder is 0700, a created file 0600; an existing file is left alone."""
    folder = tmp_path / "a" / "b"
    private_folder(folder)
    create_private_file(folder / "db")
    replace_private_file(folder / "fixture.json", "{}")
    assert (mode(folder), mode(folder / "db"), mode(folder / "fixture.json")) == (
        0o700,
        0o600,
        0o600,
    )
    (folder / "db").chmod(0o640)
    create_private_file(folder / "db")
    assert mode(folder / "db") == 0o640


def test_history_database_and_its_wal_files_are_private(tmp_path: Path, umask: int) -> None:
    """history.db, -wal and -shm are 0600 and a new ORCHESTRATE_HOME folder 0700."""
    path = tmp_path / "home" / "history.db"
    store = SQLiteStore.open(path)
    try:
        store.db.execute("SELECT count(*) FROM runs").fetchall()  # -wal and -shm are open
        files = sorted(p.name for p in path.parent.iterdir())
        assert files == ["history.db", "history.db-shm", "history.db-wal"]
        assert {p.name: mode(p) for p in path.parent.iterdir()} == dict.fromkeys(files, 0o600)
        assert mode(path.parent) == 0o700
    finally:
        store.close()


def test_a_fixture_is_written_private(tmp_path: Path, umask: int) -> None:
    """--record writes its fixture 0600, also when it replaces a world-readable one."""
    path = tmp_path / "fixture.json"
    path.write_text('{"version": 1, "responses": {}}')
    path.chmod(0o644)
    Fixture(path).save()
    assert mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [".fixture.json.lock", "fixture.json"]


def test_an_events_file_is_written_private(
    tmp_path: Path, umask: int, write_flow: Any, cli: Any
) -> None:
    """`run --events FILE` writes FILE 0600, new or replacing a world-readable one."""
    flow = write_flow("steps:\n  - {id: a, prompt: hi, mock: hello}\n")
    new, old = tmp_path / "new.jsonl", tmp_path / "old.jsonl"
    old.write_text("earlier run\n")
    old.chmod(0o644)
    for path in (new, old):
        result = cli("run", flow, "--mock", "--no-history", "--events", path)
        assert result.exit_code == 0, result.stderr
        assert mode(path) == 0o600
    assert "earlier run" not in old.read_text()


def test_events_to_a_device_leave_its_mode_alone(write_flow: Any, cli: Any) -> None:
    """`--events /dev/null` writes to the device without trying to change its mode."""
    before = mode(Path(os.devnull))
    flow = write_flow("steps:\n  - {id: a, prompt: hi, mock: hello}\n")
    result = cli("run", flow, "--mock", "--no-history", "--events", os.devnull)
    assert result.exit_code == 0, result.stderr
    assert mode(Path(os.devnull)) == before


def test_an_output_of_dash_is_the_stdout_given() -> None:
    """open_output("-") writes to the stream it is given as stdout, and leaves it open."""
    stdout = io.StringIO()
    with open_output("-", stdout=stdout, private=True) as out:
        out.write("row\n")
    assert (stdout.getvalue(), stdout.closed) == ("row\n", False)


@pytest.mark.parametrize(("private", "expected"), [(True, 0o600), (False, 0o644)])
def test_an_output_file_is_private_only_when_asked(
    tmp_path: Path, private: bool, expected: int
) -> None:
    """A private output is 0600; another follows the umask (022 here)."""
    old = os.umask(0o022)
    try:
        with open_output(str(tmp_path / "out"), stdout=io.StringIO(), private=private) as out:
            out.write("a\n")
    finally:
        os.umask(old)
    assert mode(tmp_path / "out") == expected
    assert (tmp_path / "out").read_text() == "a\n"


@pytest.mark.parametrize("private", [True, False])
@pytest.mark.parametrize(
    ("what", "message"),
    [(None, "cannot write {}: "), ("events to {}", "cannot write events to {}: ")],
)
@pytest.mark.parametrize(
    ("target", "reason"),
    [("no-folder/out", "No such file or directory"), ("/dev/full", "No space left on device")],
    ids=["opening", "writing"],
)
def test_an_output_that_cannot_be_written_is_named(
    tmp_path: Path, private: bool, what: str | None, message: str, target: str, reason: str
) -> None:
    """Opening, or writing to, an output that fails is an error naming it, as the caller
    asks (its name, or `what`), with the reason."""
    target = str(tmp_path / target)  # /dev/full stays itself
    named = what.format(target) if what else None
    with (
        pytest.raises(OrchestrateError) as caught,
        open_output(target, stdout=io.StringIO(), private=private, what=named) as out,
    ):
        out.write("x")
    assert caught.value.message == message.format(target) + reason
