"""Function steps: importing `module:callable` and calling it, sync or async."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from orchestrate._errors import FunctionError, StepTimeout
from orchestrate._hints import did_you_mean
from orchestrate._threads import in_daemon_thread


@attrs.frozen
class FunctionCall:
    function: str  # "package.module:callable"
    kwargs: dict[str, Any]

    def fingerprint_data(self) -> dict[str, Any]:
        return {"function": self.function, "with": self.kwargs}


# (the folder of the workflow that names it, "module:callable"): the same name in two
# folders can be two different functions.
FunctionKey = tuple[str, str]


def function_key(folder: Path | None, spec: str) -> FunctionKey:
    return (str(folder) if folder else "", spec)


class FunctionNotFound(Exception):
    """The module or the callable of a function step cannot be imported."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def import_function(spec: str, folder: Path | None) -> Callable[..., Any]:
    """Import `module:callable`, looking in the workflow's folder first, then sys.path."""
    module_name, _, attribute = spec.partition(":")
    added = folder is not None and str(folder) not in sys.path
    if added:
        sys.path.insert(0, str(folder))
    _forget_if_imported_from_elsewhere(module_name, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FunctionNotFound(f"cannot import module {module_name!r}: {exc}") from None
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # the module's own code failed
        raise FunctionNotFound(f"importing {module_name!r} failed: {exc!r}") from None
    finally:
        if added:
            sys.path.remove(str(folder))
    target: Any = module
    for part in attribute.split("."):
        owner, target = target, getattr(target, part, None)
        if target is None:
            names = [name for name in dir(owner) if not name.startswith("_")]
            raise FunctionNotFound(
                f"module {module_name!r} has no {attribute!r}", hint=did_you_mean(part, names)
            )
    if not callable(target):
        raise FunctionNotFound(f"{spec!r} is not callable")
    return target


def _forget_if_imported_from_elsewhere(name: str, folder: Path | None) -> None:
    """Let this workflow's folder have its own `tools.py` even if another folder's was
    imported first: Python keeps one module per name, so the old one is dropped from
    sys.modules (functions already taken from it keep working)."""
    top = name.partition(".")[0]
    cached = sys.modules.get(top)
    if folder is None or cached is None:
        return
    local = folder / f"{top}.py", folder / top / "__init__.py"
    origin = Path(getattr(cached, "__file__", "") or "").resolve()
    if any(path.exists() for path in local) and origin not in {p.resolve() for p in local}:
        for loaded in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
            del sys.modules[loaded]


async def call_function(
    call: FunctionCall, function: Callable[..., Any], timeout: float | None
) -> Any:
    """Call with `with` as keyword arguments; the result must be JSON-serialisable."""
    try:
        async with asyncio.timeout(timeout):
            if inspect.iscoroutinefunction(function):
                result = await function(**call.kwargs)
            else:
                result = await in_daemon_thread(function, call.kwargs)
    except TimeoutError:
        raise StepTimeout(f"{call.function} did not return within {timeout:g} s") from None
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # a function's exit is a failure
        error = FunctionError(f"{call.function} raised {type(exc).__name__}: {exc}")
        error.details = "".join(traceback.format_exception(exc))
        raise error from None
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise FunctionError(
            f"{call.function} returned a value that is not JSON-serialisable ({exc})"
        ) from None
    return result
