"""Checked and compiled templates kept on disk, as Python keeps bytecode in ``__pycache__``.

Checking a template runs Jinja's parser and code generator, and its first render
compiles the generated Python: about half a millisecond a template, paid again by every
``orchestrate`` process. What a successful check finds (references, variables,
comparisons, whether it is typed) and the compiled code are written here once, in one
small file per template, and read back by later processes, which then import no Jinja2
at all to check a workflow.

- Where: ``$ORCHESTRATE_CACHE_DIR/templates``, else the user cache folder
  (``~/.cache/orchestrate`` on Linux). ``ORCHESTRATE_CACHE_DIR`` set but empty turns the
  cache off.
- Validity: entries sit in a folder named after the Python version, orchestrate's
  version and the modification times of the modules that generate the code (ours and
  Jinja's), so an upgrade or an edit starts a new folder; an entry also holds its source,
  compared on reading; a new folder removes those of other versions unwritten for 30
  days. Problems are never cached: a template that fails its check is checked again, so
  its error is always current and located.
- Safety: the cache holds code this process runs, like ``__pycache__``: the folder is
  created private (0700) and not used if another user owns it or others may write to it.
  A file that cannot be read or decoded is a miss; a folder that cannot be written to
  turns writing off for the process. The cache never fails a run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import marshal
import os
import re
import stat
import sys
import threading
from pathlib import Path
from types import CodeType
from typing import BinaryIO

from orchestrate._template_base import Checked, Comparison, Reference
from orchestrate._version import __version__

CACHE_DIR_ENV = "ORCHESTRATE_CACHE_DIR"
_FORMAT = 2  # the layout of an entry; bump it when that changes
# What generates the code an entry holds: an edit or upgrade of any of them is a new folder.
_OURS = ("_sandbox.py", "_template_ast.py", "_template_base.py", "_template_cache.py")
_THEIRS = {  # Jinja's modules that parse, check and generate, and what the code runs on
    "jinja2": (
        "__init__",
        "compiler",
        "runtime",
        "sandbox",
        "nodes",
        "parser",
        "lexer",
        "filters",
        "tests",
        "optimizer",
        "idtracking",
        "environment",
    ),
    "markupsafe": ("__init__",),
}
_VERSION_LINE = re.compile(r"^__version__ = .*$", re.MULTILINE)
_VERSION_NAME = re.compile(r"[0-9a-f]{16}")  # a folder of entries: _version_tag()
STALE_AFTER_DAYS = 30  # another version's folder unwritten this long is removed
_MAX_WAITING = 1024  # codes checked and never rendered (validate in a long-lived process)

# (kind, source) -> the code of a template checked in this process, until its first
# render takes it, so that the render compiles nothing.
_waiting: dict[tuple[str, str], CodeType] = {}
_unwritable: set[Path] = set()  # folders a write failed in: not tried again


def load(kind: str, source: str) -> Checked | None:
    """What an earlier check of the template (kind "template") or expression found, with
    its compiled code, or None if no usable entry is on disk."""
    folder = _folder()
    if folder is None:
        return None
    try:
        with _open_entry(folder / _name(kind, source)) as entry:
            if not _private(os.fstat(entry.fileno())):
                return None
            checked = _decode(entry.read(), kind, source)
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if checked is not None and checked.code is not None:
        _wait(kind, source, checked.code)
    return checked


def save(kind: str, source: str, checked: Checked) -> None:
    """Keep a successful check and its code on disk, and the code for the first render."""
    if checked.code is None:
        return
    _wait(kind, source, checked.code)
    folder = _folder()
    if folder is None or folder in _unwritable:
        return
    target = folder / _name(kind, source)
    # one partial file per writer: threads of a web view may save the same entry at once
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(_encode(kind, source, checked))
        os.replace(partial, target)  # readers see the whole entry or none
    except OSError:
        _unwritable.add(folder)  # a full disk or a read-only folder: stop trying
        with contextlib.suppress(OSError):  # the cache never fails a run
            partial.unlink()


def _open_entry(path: Path) -> BinaryIO:
    """An entry opened to read, never through a symbolic link."""
    return os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb")


def take_code(kind: str, source: str) -> CodeType | None:
    """The compiled code of a template checked in this process, once: its first render
    builds the template from it."""
    return _waiting.pop((kind, source), None)


def _wait(kind: str, source: str, code: CodeType) -> None:
    if len(_waiting) >= _MAX_WAITING:
        _waiting.clear()
    _waiting[kind, source] = code


def _name(kind: str, source: str) -> str:
    # surrogatepass: a YAML escape such as "\ud800" gives a str plain UTF-8 refuses
    return hashlib.sha256(f"{kind}\0{source}".encode("utf-8", "surrogatepass")).hexdigest()


def _encode(kind: str, source: str, checked: Checked) -> bytes:
    references = tuple(_reference_data(reference) for reference in checked.references)
    comparisons = tuple(
        (_reference_data(c.reference), c.operator, c.constant) for c in checked.comparisons
    )
    entry = (
        _FORMAT,
        kind,
        source,
        references,
        tuple(checked.variables),
        comparisons,
        checked.typed,
        checked.code,
        checked.parts,
    )
    return marshal.dumps(entry)


def _decode(data: bytes, kind: str, source: str) -> Checked | None:
    entry = marshal.loads(data)
    if not (isinstance(entry, tuple) and len(entry) == 9 and entry[:3] == (_FORMAT, kind, source)):
        return None
    _, _, _, references, variables, comparisons, typed, code, parts = entry
    if not isinstance(code, CodeType):
        return None
    return Checked(
        frozenset(Reference(root, name, path) for root, name, path in references),
        frozenset(variables),
        tuple(
            Comparison(Reference(*reference), operator, constant)
            for reference, operator, constant in comparisons
        ),
        typed,
        code,
        parts,
    )


def _reference_data(reference: Reference) -> tuple[str, str, tuple[str | int, ...]]:
    return (reference.root, reference.name, reference.path)


def _folder() -> Path | None:
    """This version's folder of entries, created private; None if the cache is off or the
    folder is not safe to run code from."""
    return _folder_in(os.environ.get(CACHE_DIR_ENV), os.environ.get("XDG_CACHE_HOME", ""))


@functools.lru_cache(maxsize=8)
def _folder_in(configured: str | None, xdg: str) -> Path | None:
    try:
        root = _root(configured, xdg)
    except RuntimeError:  # no home folder to find (HOME unset, a uid with no account)
        return None
    if root is None:
        return None
    templates = root / "templates"
    folder = templates / _version_tag()
    try:
        new = not folder.is_dir()
        for level in (root, templates, folder):
            # one at a time: mkdir(parents=True) gives the folders above the last the
            # umask's mode (0775 with umask 002)
            level.mkdir(mode=0o700, parents=level is root, exist_ok=True)
        safe = _private(root.lstat()) and _private(templates.lstat())
    except OSError:
        return None
    if not safe:
        return None
    if new:
        _remove_stale_versions(folder)
    return folder


def _remove_stale_versions(current: Path) -> None:
    """Remove the folders of other versions that nothing has written to for a while: an
    upgrade leaves its predecessor's behind, and another installed version may still be
    in use (it writes again, or starts over). Only folders named as a version's are
    removed, never a symbolic link."""
    import shutil
    import time

    stale_before = time.time() - STALE_AFTER_DAYS * 86_400
    try:
        for folder in current.parent.iterdir():
            if folder == current or not _VERSION_NAME.fullmatch(folder.name):
                continue
            status = folder.lstat()
            if stat.S_ISDIR(status.st_mode) and status.st_mtime < stale_before:
                shutil.rmtree(folder, ignore_errors=True)
    except OSError:
        pass  # what is left is only disk space


def _root(configured: str | None, xdg: str) -> Path | None:
    """Where the cache lives, as an absolute path: a function step that changes the
    working folder does not move it."""
    if configured is not None:
        return Path(configured).expanduser().absolute() if configured.strip() else None
    if sys.platform.startswith("linux"):
        # platformdirs' rule for Linux, without the 5 ms its import would add to every
        # command (it is imported only where the history needs it)
        base = Path(xdg.strip()).absolute() if xdg.strip() else Path.home() / ".cache"
        return base / "orchestrate"
    import platformdirs

    return Path(platformdirs.user_cache_dir("orchestrate", appauthor=False))


def _private(status: os.stat_result) -> bool:
    """A real folder or file (no symbolic link) owned by this user and writable by nobody
    else, as code we run must be: nobody else can put or rename anything in it."""
    owner = getattr(os, "getuid", None)
    if owner is not None and status.st_uid != owner():
        return False
    if stat.S_ISLNK(status.st_mode):
        return False
    return not status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _version_tag() -> str:
    here = Path(__file__).parent
    makers = [here / name for name in _OURS]
    for package, modules in _THEIRS.items():
        found = _module_file(package)
        if found is not None:
            makers += [found.parent / f"{module}.py" for module in modules]
    stamps = []
    for path in makers:
        try:
            status = path.stat()
            # and the version: some stores give every file the same time
            version = (
                _VERSION_LINE.search(path.read_text("utf-8"))
                if path.name == "__init__.py"
                else None
            )
        except (OSError, UnicodeDecodeError):
            continue
        where = f"{path.parent.name}/{path.name}"
        stamps.append(f"{where}:{status.st_mtime_ns}:{status.st_size}:{version and version[0]}")
    material = "|".join([sys.version, __version__, str(_FORMAT), *stamps])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _module_file(name: str) -> Path | None:
    """Where a module's file is, without importing it."""
    from importlib.util import find_spec

    spec = find_spec(name)
    return Path(spec.origin) if spec is not None and spec.origin else None
