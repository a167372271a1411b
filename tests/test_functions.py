"""Function steps: importing `module:callable` and calling it, sync or async."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from orchestrate._errors import FunctionError, StepTimeout
from orchestrate._functions import FunctionCall, FunctionNotFound, call_function, import_function


def blocking_double(n: int) -> int:
    time.sleep(0.01)
    return n * 2


def blocking_raise(n: int) -> int:
    raise ValueError(f"bad {n}")


async def async_double(n: int) -> int:
    await asyncio.sleep(0)
    return n * 2


def too_slow() -> None:
    time.sleep(5)


def not_json() -> object:
    return object()


def run(function: object, timeout: float | None = None, **kwargs: object) -> object:
    call = FunctionCall(f"tests.test_functions:{function.__name__}", kwargs)  # type: ignore[attr-defined]
    return asyncio.run(call_function(call, function, timeout))  # type: ignore[arg-type]


@pytest.mark.parametrize("function", [blocking_double, async_double])
def test_sync_and_async_functions_return_their_value(function: object) -> None:
    """A sync function runs in a thread, an async one on the loop; both give their value."""
    assert run(function, n=21) == 42


def test_a_raising_function_is_a_function_error_with_its_traceback() -> None:
    """The exception's type and message make the error; its traceback is kept for -v."""
    with pytest.raises(FunctionError) as caught:
        run(blocking_raise, n=3)
    assert caught.value.message == "tests.test_functions:blocking_raise raised ValueError: bad 3"
    assert "Traceback (most recent call last)" in (caught.value.details or "")


def test_timeout_applies_to_blocking_functions() -> None:
    """A blocking function over its timeout fails the step without waiting for it."""
    start = time.perf_counter()
    with pytest.raises(StepTimeout):
        run(too_slow, timeout=0.05)
    assert time.perf_counter() - start < 2


def test_result_must_be_json() -> None:
    """A value that JSON cannot hold is a FunctionError."""
    with pytest.raises(FunctionError, match="not JSON-serialisable"):
        run(not_json)


def test_import_from_the_workflow_folder_first(tmp_path: Path) -> None:
    """`module:callable` is looked up in the given folder before sys.path."""
    (tmp_path / "localtools.py").write_text("def hello():\n    return 'hi'\n")
    assert import_function("localtools:hello", tmp_path)() == "hi"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("json:no_such_thing", "module 'json' has no 'no_such_thing'"),
        ("json:__doc__", "'json:__doc__' is not callable"),
    ],
)
def test_import_problems_are_named(spec: str, message: str) -> None:
    """A missing module, a missing name and a non-callable are each reported plainly."""
    with pytest.raises(FunctionNotFound) as caught:
        import_function(spec, None)
    assert str(caught.value).startswith(message)


def test_a_missing_callable_gets_a_did_you_mean(tmp_path: Path) -> None:
    """At run time a misspelt callable is matched against the imported module's names."""
    (tmp_path / "runtime_names.py").write_text("globals()['count_words'] = len\n")
    with pytest.raises(FunctionNotFound) as caught:
        import_function("runtime_names:count_wrds", tmp_path)
    assert (str(caught.value), caught.value.hint) == (
        "module 'runtime_names' has no 'count_wrds'",
        "did you mean 'count_words'?",
    )
