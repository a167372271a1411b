"""The names a Python module defines, read from its source: `validate` never runs code.

Only a plain source file that is found the way `import` would find it (the workflow's
folder first, then sys.path) is read; anything else (a built-in or compiled module, a
module defined by an import hook, names made at run time) gives None: "cannot say".
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

# Source that makes names an AST cannot see: `from x import *`, a module `__getattr__`,
# writing to globals().
_DYNAMIC = ("import *", "__getattr__", "globals()", "setattr(", "exec(", "__dict__")


def defined_names(module: str, folder: Path | None) -> frozenset[str] | None:
    """The top-level names `module` defines, or None when its source cannot tell."""
    source = _source_file(module, folder)
    if source is None:
        return None
    try:
        stat = source.stat()
    except OSError:
        return None
    return _names_in(source, stat.st_mtime_ns, stat.st_size)


def _source_file(module: str, folder: Path | None) -> Path | None:
    """Where `import module` would read `module` from, if that is a .py file."""
    parts = module.split(".")
    roots = [folder] if folder is not None else []
    roots += [Path(entry or ".") for entry in sys.path if isinstance(entry, str)]
    for root in roots:
        found, source = _module_at(root, parts[0])
        if not found:
            continue
        if len(parts) == 1 or source is None:
            return source
        if source.name != "__init__.py":
            return None  # `a.b` where `a` is a module: importing it fails and says why
        return _module_at(source.parent.joinpath(*parts[1:-1]), parts[-1])[1]
    return None


def _module_at(root: Path, name: str) -> tuple[bool, Path | None]:
    """Whether `root` holds module `name` (a package, a .py or a compiled module), and
    its source file when it has one."""
    try:
        for source in (root / name / "__init__.py", root / f"{name}.py"):
            if source.is_file():
                return True, source
        compiled = any(root.glob(f"{name}.*.so")) or any(root.glob(f"{name}*.pyd"))
    except OSError:
        return False, None
    return compiled, None


@functools.lru_cache(maxsize=256)
def _names_in(path: Path, mtime_ns: int, size: int) -> frozenset[str] | None:
    """Top-level names of a source file (cached per version of the file)."""
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, str(path))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError):
        return None  # importing it would fail and say why
    if any(marker in text for marker in _DYNAMIC):
        return None
    names = _bound_names(tree) | {"__name__", "__file__", "__doc__", "__spec__"}
    if path.name == "__init__.py":  # `pkg:sub` may name a submodule
        names |= {child.stem for child in path.parent.iterdir() if child.stem.isidentifier()}
    return frozenset(names)


def _bound_names(tree: ast.Module) -> set[str]:
    """Names bound at module level: anywhere outside function and class bodies (so
    inside `if`, `try`, `with` and loops too), plus those declared `global` in functions."""
    names = {name for node in ast.walk(tree) if isinstance(node, ast.Global) for name in node.names}
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            pending += node.decorator_list
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            names.add(node.name)
        pending += ast.iter_child_nodes(node)
    return names
