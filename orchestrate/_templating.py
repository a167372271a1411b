"""Templates and expressions: what they can do, and the calls that check and run them.

Prompts, `with:` values and `outputs` are Jinja2 templates; `when:` and `for_each:` are
bare Jinja2 expressions. Both are compiled once (cached by source) and run many times.

What a template can do, and what it cannot:

- It runs in Jinja2's immutable sandbox with strict undefined variables: reading a name
  or key that does not exist is an error, never an empty string.
- Values keep their types: a template that is exactly one ``{{ expression }}`` evaluates
  to the expression's value (a list stays a list). Inside text, strings are inserted as
  they are and every other value as compact JSON (``{"a": 1}``, ``[1, 2]``, ``true``,
  ``null``). The ``~`` operator, the ``string`` and ``join`` filters, ``%s`` (in ``%``
  and the ``format`` filter) and ``str.format`` follow the same rule; ``tojson`` is
  plain JSON (no HTML escaping, keys in their order) and ``pprint`` indented JSON.
  A value with no JSON form (a function, a method, a ``namespace``, ``loop``, NaN) is a
  :class:`TemplateError` there and as a typed value: no Python repr reaches a prompt.
- For mappings, keys win over methods: ``steps.a.output.items`` is the ``items`` key of
  a JSON reply, not ``dict.items``.
- Names starting with ``_`` (``''.__class__``) are refused before anything runs;
  anything the sandbox refuses while rendering becomes a :class:`TemplateError`.
- Limits stop template bombs before they allocate: one value built inside a template
  holds at most ``MAX_SIZE`` characters or items, a number at most ``MAX_INT_DIGITS``
  digits; one render runs at most ``MAX_STEPS`` loop iterations and calls, produces at
  most ``MAX_RANGE`` numbers with ``range()``, builds at most ``MAX_BUILT`` characters
  in total and returns at most ``MAX_OUTPUT`` characters. They bound the obvious bombs
  (``'x' * 10**10``, nested loops, doubling in a loop, padding and format widths,
  exponential macros); they are not a CPU-time limit.
- A slow template does not hold up the run: :func:`run_templates` renders on the event
  loop while that is quick (``INLINE_SECONDS``), else again from the start in a worker
  thread, which stops at its next loop iteration or call once nobody waits for it (a
  step's ``timeout``, Ctrl-C). Rendering has no side effects, so starting over is safe.

This module is the front, and does not import Jinja2: ``orchestrate --help`` does not pay
for it. The work happens behind it, in modules imported on first use:
:mod:`orchestrate._template_ast` checks a source before anything runs, and
:mod:`orchestrate._sandbox` compiles and renders it, guarded by the limits above.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, TypeVar

import attrs

from orchestrate import _template_cache
from orchestrate._template_base import (
    _WATCH,
    GLOBALS,
    INLINE_SECONDS,
    MAX_BUILT,
    MAX_INT_DIGITS,
    MAX_OUTPUT,
    MAX_RANGE,
    MAX_SIZE,
    MAX_STEPS,
    Checked,
    Comparison,
    Problem,
    Reference,
    RenderMoved,
    RenderWatch,
    current_watch,
)

__all__ = [
    "GLOBALS",
    "INLINE_SECONDS",
    "MAX_BUILT",
    "MAX_INT_DIGITS",
    "MAX_OUTPUT",
    "MAX_RANGE",
    "MAX_SIZE",
    "MAX_STEPS",
    "Comparison",
    "Expression",
    "Problem",
    "Reference",
    "RenderMoved",
    "RenderWatch",
    "Template",
    "current_watch",
    "is_truthy",
    "parse_expression",
    "parse_template",
    "run_templates",
]


@attrs.frozen
class Template:
    """A compiled template: parse once with :func:`parse_template`, render many times."""

    source: str
    references: frozenset[Reference]
    variables: frozenset[str]  # undeclared names it reads; GLOBALS are not listed
    _typed: bool = attrs.field(eq=False, repr=False)  # exactly one {{ expression }}
    comparisons: tuple[Comparison, ...] = ()

    def render(self, context: Mapping[str, Any]) -> str:
        """The template as text; values other than strings are inserted as JSON."""
        return _sandbox().render_template(self.source, context, typed=self._typed)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The expression's value if the template is one ``{{ expression }}``, else text."""
        if not self._typed:
            return self.render(context)
        return _sandbox().evaluate_template(self.source, context)


@attrs.frozen
class Expression:
    """A compiled bare expression (``when:``, ``for_each:``), from :func:`parse_expression`."""

    source: str
    references: frozenset[Reference]
    variables: frozenset[str]
    comparisons: tuple[Comparison, ...] = ()

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The expression's value, made of plain JSON types (a range becomes a list)."""
        return _sandbox().evaluate_expression(self.source, context)


def is_truthy(value: Any) -> bool:
    """Judge a ``when:`` result by Python truthiness, as Jinja's ``{% if %}`` does.

    ``None``, ``False``, ``0``, ``""``, ``[]`` and ``{}`` are false; every other value is
    true, including the string ``"false"``: compare explicitly (``inputs.x == "yes"``)
    when a value is text.
    """
    return bool(value)


@functools.lru_cache(maxsize=1024)
def parse_template(source: str) -> Template | Problem:
    """Check a template, or return the first syntax error or unsafe access in it."""
    checked = _checked("template", source)
    if isinstance(checked, Problem):
        return checked
    return Template(
        source, checked.references, checked.variables, checked.typed, checked.comparisons
    )


@functools.lru_cache(maxsize=1024)
def parse_expression(source: str) -> Expression | Problem:
    """Check a bare expression, or return its first syntax error or unsafe access."""
    checked = _checked("expression", source)
    if isinstance(checked, Problem):
        return checked
    return Expression(source, checked.references, checked.variables, checked.comparisons)


def _checked(kind: str, source: str) -> Checked | Problem:
    """What checking finds, from the cache on disk when an earlier process checked it."""
    checked = _template_cache.load(kind, source)
    if checked is not None:
        return checked
    checker = _template_ast()
    found = (
        checker.check_template(source) if kind == "template" else checker.check_expression(source)
    )
    if isinstance(found, Checked):
        _template_cache.save(kind, source, found)
    return found


# --- rendering off the event loop ----------------------------------------------------

_T = TypeVar("_T")


async def run_templates(work: Callable[[], _T], timeout: float | None = None) -> _T:
    """Call `work`, which renders templates, without blocking the event loop for long.

    It runs here for up to INLINE_SECONDS; past that, it starts over in a daemon thread,
    and TimeoutError after `timeout` seconds. A timeout or cancelling the caller (Ctrl-C)
    stops the thread's renders at their next loop iteration or call. `work` must have no
    side effects but rendering.
    """
    token = _WATCH.set(RenderWatch(deadline=time.perf_counter() + INLINE_SECONDS))
    try:
        return work()
    except RenderMoved:
        pass
    finally:
        _WATCH.reset(token)
    import asyncio  # here: `validate` and `--help` do not pay for it

    from orchestrate._threads import in_daemon_thread

    stop = threading.Event()
    token = _WATCH.set(RenderWatch(stop=stop))  # the thread runs in a copy of this context
    try:
        async with asyncio.timeout(timeout):  # only here: a timer costs, even unused
            result: _T = await in_daemon_thread(work, {})
        return result
    finally:
        _WATCH.reset(token)
        stop.set()


# The two modules that import Jinja2, imported on first use rather than with this one.


@functools.cache
def _template_ast() -> ModuleType:
    from orchestrate import _template_ast

    return _template_ast


@functools.cache
def _sandbox() -> ModuleType:
    from orchestrate import _sandbox

    return _sandbox
