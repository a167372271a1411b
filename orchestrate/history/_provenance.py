"""Where a recorded run came from: its files, its git commit, its versions, its steps.

    run_record()        the `runs` row of a run that starts: file, sha256, git commit,
                        orchestrate and Python versions, each sub-workflow's sha256, user
                        and host
    git_commit()        HEAD of the repository holding a folder, read without git
    definition_hash()   what a step says in the file; resume reuses unchanged steps only

All of it reads files: the recorder calls it on the history's writer thread.
"""

from __future__ import annotations

import hashlib
import re
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrate._loader import file_sha256
from orchestrate.history._store import RunRecord

if TYPE_CHECKING:
    from orchestrate._events import RunStarted
    from orchestrate._prepared import PreparedRun
    from orchestrate._spec import AnyStep


def run_record(
    event: RunStarted, prepared: PreparedRun, mode: str, env: Mapping[str, str]
) -> RunRecord:
    """The run as it starts, with where it came from and who ran it where."""
    from orchestrate._version import __version__

    path = prepared.workflow.path
    provenance = {
        "orchestrate": __version__,
        "python": sys.version.split()[0],
        "workflows": {str(child): file_sha256(child) for child in prepared.children},
    }
    return RunRecord(
        run_id=event.run_id,
        workflow=event.workflow,
        file=event.file,
        file_path=str(path.resolve()) if path else None,
        file_sha256=file_sha256(path),
        git_commit=git_commit(path.resolve().parent) if path else None,
        mode=mode,
        started_at=event.started_at,
        started=event.time,
        inputs=event.inputs,
        resumed_from=event.resumed_from,
        provenance=provenance,
        user_name=user_name(env),
        host_name=socket.gethostname() or None,
    )


def user_name(env: Mapping[str, str]) -> str | None:
    """Who runs orchestrate: `$ORCHESTRATE_USER`, else the login name (None if unknown)."""
    if env.get("ORCHESTRATE_USER"):
        return env["ORCHESTRATE_USER"]
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no $USER (a container's uid)
        return None


def git_commit(folder: Path) -> str | None:
    """HEAD of the git repository holding `folder`, read from `.git` (no git needed)."""
    try:
        for candidate in (folder, *folder.parents):
            dotgit = candidate / ".git"
            if dotgit.is_dir():
                return _read_head(dotgit)
            if dotgit.is_file():  # a worktree or submodule: "gitdir: PATH"
                text = dotgit.read_text(encoding="utf-8").strip()
                if text.startswith("gitdir:"):
                    return _read_head((candidate / text[7:].strip()).resolve())
                return None
    except (OSError, ValueError):
        return None
    return None


_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def _read_head(gitdir: Path) -> str | None:
    head = (gitdir / "HEAD").read_text(encoding="utf-8").strip()
    if _SHA.match(head):
        return head
    if not head.startswith("ref:"):
        return None
    ref = head[4:].strip()
    common = gitdir
    if (gitdir / "commondir").is_file():
        common = (gitdir / (gitdir / "commondir").read_text(encoding="utf-8").strip()).resolve()
    for folder in (gitdir, common):
        loose = folder / ref
        if loose.is_file():
            value = loose.read_text(encoding="utf-8").strip()
            return value if _SHA.match(value) else None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            sha, _, name = line.partition(" ")
            if name == ref and _SHA.match(sha):
                return sha
    return None  # a branch without commits yet


def definition_hash(step: AnyStep) -> str:
    """What the step says in the file; resume reuses a step only when it is unchanged.

    The repr of the frozen attrs class: every field, in a fixed order, mappings in file
    order. A change of Python or orchestrate may change it; then the step just runs again.
    """
    return hashlib.sha256(repr(step).encode()).hexdigest()
