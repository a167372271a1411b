"""Files only their owner may read: the run history, `--record` fixtures, `--events` files.

They hold prompts, answers and inputs, so they are created 0600 in folders created 0700,
whatever the umask. An existing folder or database keeps its mode: it may be shared on
purpose (docs/security.md). And :func:`open_output`: where a command writes, a file or
stdout.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from orchestrate._errors import OrchestrateError

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


def private_folder(path: Path) -> None:
    """Create `path` (with its parents) if it is missing; the folder itself is 0700."""
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_FOLDER)


def create_private_file(path: Path) -> None:
    """Create `path` empty and 0600 unless it exists. SQLite gives a database's -wal and
    -shm files the database's own mode, so creating it first covers them too."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
        os.chmod(path, PRIVATE_FILE)  # the umask may have taken the owner's bits as well


def replace_private_file(path: Path, text: str) -> None:
    """Write `text` (UTF-8) over `path` as a 0600 file, through a new temporary file in the
    same folder (mkstemp: a name nobody can guess, O_EXCL, so no planted link is
    followed) renamed over it, so a crash leaves the old file whole."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, PRIVATE_FILE)  # mkstemp's 0600 is narrowed by the umask
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def open_private_file(path: Path) -> IO[str]:
    """`path` opened to write text (UTF-8) from empty. A regular file is 0600, whether
    it is new or replaces one (as a fixture does); a device or pipe (`/dev/stderr`, a
    FIFO) is written as it is, its mode left alone."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        if stat.S_ISREG(os.fstat(handle).st_mode):
            os.chmod(path, PRIVATE_FILE)  # the umask, or an older file's mode
        return os.fdopen(handle, "w", encoding="utf-8")
    except BaseException:
        os.close(handle)
        raise


@contextlib.contextmanager
def open_output(
    target: str, *, stdout: IO[str], private: bool, what: str | None = None
) -> Iterator[IO[str]]:
    """Where a command writes `target`: `stdout` for `-`, else the file opened to write
    text (UTF-8) from empty, private as :func:`open_private_file` makes it or else as the
    umask says (then with newline="", so a CSV writer's line ends stay as written).

    An OSError while the file is open (opening, writing, closing) is an OrchestrateError
    "cannot write WHAT: reason"; `what` is the file's name unless given.
    """
    if target == "-":
        yield stdout
        return
    try:
        opened = (
            open_private_file(Path(target))
            if private
            else open(target, "w", encoding="utf-8", newline="")  # noqa: SIM115
        )
        with opened as stream:
            yield stream
    except OSError as exc:
        raise OrchestrateError(f"cannot write {what or target}: {exc.strerror}") from None
