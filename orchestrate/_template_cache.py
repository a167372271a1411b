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

import functools
import hashlib
import marshal
import os
import stat
import sys
import threading
from pathlib import Path
from types import CodeType

from orchestrate._template_base import Checked, Comparison, Reference
from orchestrate._version import __version__

CACHE_DIR_ENV = "ORCHESTRATE_CACHE_DIR"
_FORMAT = 2  # the layout of an entry; bump it when that changes
# What generates the code an entry holds: an edit or upgrade of any of them is a new folder.
_OURS = ("_sandbox.py", "_template_ast.py", "_template_base.py", "_template_cache.py")
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
        data = (folder / _name(kind, source)).read_bytes()
        checked = _decode(data, kind, source)
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
        partial.unlink(missing_ok=True)


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
    root = _root(configured, xdg)
    if root is None:
        return None
    folder = root / "templates" / _version_tag()
    try:
        new = not folder.is_dir()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        templates = folder.parent.stat()
    except OSError:
        return None
    if not _private(templates):
        return None
    if new:
        _remove_stale_versions(folder)
    return folder


def _remove_stale_versions(current: Path) -> None:
    """Remove the folders of other versions that nothing has written to for a while: an
    upgrade leaves its predecessor's behind, and another installed version may still be
    in use (it writes again, or starts over)."""
    import shutil
    import time

    stale_before = time.time() - STALE_AFTER_DAYS * 86_400
    for folder in current.parent.iterdir():
        try:
            stale = folder != current and folder.stat().st_mtime < stale_before
        except OSError:
            continue
        if stale and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def _root(configured: str | None, xdg: str) -> Path | None:
    if configured is not None:
        return Path(configured).expanduser() if configured.strip() else None
    if sys.platform.startswith("linux"):
        # platformdirs' rule for Linux, without the 5 ms its import would add to every
        # command (it is imported only where the history needs it)
        return (Path(xdg.strip()) if xdg.strip() else Path.home() / ".cache") / "orchestrate"
    import platformdirs

    return Path(platformdirs.user_cache_dir("orchestrate", appauthor=False))


def _private(status: os.stat_result) -> bool:
    """Owned by this user and writable by nobody else, as code we run must be."""
    owner = getattr(os, "getuid", None)
    if owner is not None and status.st_uid != owner():
        return False
    return not status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _version_tag() -> str:
    here = Path(__file__).parent
    makers = [here / name for name in _OURS]
    jinja = _module_file("jinja2")
    if jinja is not None:
        makers += [jinja.parent / "compiler.py", jinja.parent / "runtime.py"]
    stamps = []
    for path in makers:
        try:
            status = path.stat()
        except OSError:
            continue
        stamps.append(f"{path.name}:{status.st_mtime_ns}:{status.st_size}")
    material = "|".join([sys.version, __version__, str(_FORMAT), *stamps])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _module_file(name: str) -> Path | None:
    """Where a module's file is, without importing it."""
    from importlib.util import find_spec

    spec = find_spec(name)
    return Path(spec.origin) if spec is not None and spec.origin else None
