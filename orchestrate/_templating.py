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
:mod:`orchestrate._template_cache` keeps what a check found, and the compiled code, for
later processes; a template that is only text and lookups renders here, without Jinja2,
whenever each lookup finds a string or a number (see "rendering without Jinja2").
"""

from __future__ import annotations

import functools
import math
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
    PlainParts,
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
    _parts: PlainParts | None = attrs.field(default=None, eq=False, repr=False)

    def render(self, context: Mapping[str, Any]) -> str:
        """The template as text; values other than strings are inserted as JSON."""
        if self._parts is not None:
            text = _plain_text(self._parts, context)
            if text is not None:
                return text
        return _sandbox().render_template(self.source, context, typed=self._typed)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The expression's value if the template is one ``{{ expression }}``, else text."""
        if not self._typed:
            return self.render(context)
        if self._parts is not None:
            value = _plain_value(self._parts[0], context)
            if value is not _NOT_PLAIN:
                return value
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
        source,
        checked.references,
        checked.variables,
        checked.typed,
        checked.comparisons,
        checked.parts,
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


# --- rendering without Jinja2 ---------------------------------------------------------

# Most prompts are text and lookups (``Summarize {{ steps.fetch.output }}``). When every
# lookup finds a string or a number, the text is what the sandbox would render, and the
# run need not import Jinja2 (16 ms of CPU) or build a render; anything else (a missing
# key, a list or mapping to insert as JSON, an oversized result) renders in the sandbox,
# which gives the same value or the same error as ever.

_NOT_PLAIN = object()  # a lookup the sandbox must do
_JSON_CONSTANTS = {None: "null", True: "true", False: "false"}


def _plain_text(parts: PlainParts, context: Mapping[str, Any]) -> str | None:
    chunks = []
    for part in parts:
        if isinstance(part, str):
            chunks.append(part)
            continue
        value = _plain_value(part, context)
        if isinstance(value, str):
            chunks.append(value)
        elif type(value) is int or type(value) is float:
            chunks.append(repr(value))  # json.dumps writes a finite number so
        elif value is None or type(value) is bool:
            chunks.append(_JSON_CONSTANTS[value])
        else:
            return None
    text = "".join(chunks)
    return text if len(text) <= MAX_OUTPUT else None


def _plain_value(path: str | tuple[str | int, ...], context: Mapping[str, Any]) -> Any:
    """What the lookup finds if it is a JSON scalar the sandbox would give as it is."""
    value: Any = context
    for key in path:
        if type(value) is dict:  # the context, inputs, steps and JSON objects all are
            if key not in value:
                return _NOT_PLAIN
        elif type(value) is list and type(key) is int:
            if not -len(value) <= key < len(value):
                return _NOT_PLAIN
        else:
            return _NOT_PLAIN
        value = value[key]
    if type(value) is str:
        return value if len(value) <= MAX_OUTPUT else _NOT_PLAIN
    if type(value) is int:
        return value if -_MAX_PLAIN_INT < value < _MAX_PLAIN_INT else _NOT_PLAIN
    if type(value) is float:
        return value if math.isfinite(value) else _NOT_PLAIN
    if value is None or type(value) is bool:
        return value
    return _NOT_PLAIN


_MAX_PLAIN_INT = 10**18  # far below MAX_INT_DIGITS and Python's int-to-text limit


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
    started = time.perf_counter()
    from orchestrate import _sandbox

    # A run whose templates were checked by an earlier process imports Jinja2 at its first
    # render (some 16 ms), inside run_templates' time on the event loop: importing is not
    # rendering, and must not move that render to a thread.
    watch = current_watch()
    if watch is not None and watch.deadline is not None:
        watch.deadline += time.perf_counter() - started
    return _sandbox
