"""What every template module shares: the limits, the names templates may use, what a
check finds in a template, and the watch that lets a render move off the event loop.

Plain definitions, no Jinja2: the front (:mod:`orchestrate._templating`) and the two
modules behind it (:mod:`orchestrate._template_ast`, :mod:`orchestrate._sandbox`) import
them from here, so the front depends on those two and never the other way round.
"""

from __future__ import annotations

import contextvars
import threading
import time
from types import CodeType

import attrs

from orchestrate._errors import TemplateError

MAX_SIZE = 1_000_000  # characters (or items, counted deeply) in one value a template builds
MAX_INT_DIGITS = 1_000  # digits in one number a template computes
MAX_STEPS = 100_000  # loop iterations and calls in one render
MAX_RANGE = 100_000  # numbers produced by range() in one render
MAX_BUILT = 50_000_000  # characters built and inserted in one render, all values together
MAX_OUTPUT = 10_000_000  # characters of rendered text (or of a typed value)
# How long renders may hold the event loop before they start over in a worker thread:
# long enough that a usual template never pays for a thread, short enough not to stall
# streaming, progress and Ctrl-C.
INLINE_SECONDS = 0.02

#: Names every template can use besides its context. Kept small on purpose: no
#: ``lipsum`` (a size bomb), no ``cycler``/``joiner``. ``dict`` is a function, not the
#: type, so ``dict.clear(steps)`` cannot reach an unbound method.
GLOBALS = frozenset({"dict", "namespace", "range"})


@attrs.frozen
class Reference:
    """One use of ``inputs.NAME`` or ``steps.ID`` and the constant path that follows.

    ``steps.a.output.title[0]`` is ``Reference("steps", "a", ("output", "title", 0))``;
    the path stops at the first part that is not a constant (``steps.a.output[i]``).
    A bare ``inputs`` or ``steps``, or ``steps[name]``, gives no reference: the validator
    decides what to make of those.
    """

    root: str
    name: str
    path: tuple[str | int, ...] = ()


@attrs.frozen
class Comparison:
    """``REFERENCE OP CONSTANT`` (either way round), e.g. ``steps.a.output.score > "5"``.

    Only whole references are listed (every part constant, no filter), so the validator
    can compare the type the workflow gives the reference with the constant's.
    """

    reference: Reference
    operator: str  # Jinja's name: eq, ne, gt, gteq, lt, lteq
    constant: str | int | float | bool | None


@attrs.frozen
class Problem:
    """A static problem in a template or expression; ``line`` is 1-based in its source."""

    message: str
    line: int
    hint: str | None = None


#: A template that is only text and ``{{ steps.a.output }}``-like lookups: each part is
#: literal text (a str) or a lookup path (a tuple: the variable, then each key or index).
PlainParts = tuple[str | tuple[str | int, ...], ...]


@attrs.frozen
class Checked:
    """What checking a template or expression finds in it (the front builds a
    :class:`~orchestrate._templating.Template` or ``Expression`` from it)."""

    references: frozenset[Reference]
    variables: frozenset[str]  # undeclared names it reads; GLOBALS are not listed
    comparisons: tuple[Comparison, ...] = ()
    typed: bool = False  # a template that is exactly one {{ expression }}
    code: CodeType | None = attrs.field(default=None, eq=False, repr=False)  # what runs
    # The template as literal text and constant lookups, if that is all it is (see
    # orchestrate._templating: such a template renders without Jinja2).
    parts: PlainParts | None = attrs.field(default=None, eq=False, repr=False)


class RenderMoved(Exception):
    """Renders ran past INLINE_SECONDS on the event loop: run them again in a thread."""


@attrs.define
class RenderWatch:
    """How long the renders in :func:`run_templates` may go on: the sandbox checks it at
    every loop iteration and call."""

    deadline: float | None = None  # on the event loop: past this perf_counter, move
    stop: threading.Event | None = None  # in a thread: set once nobody waits for it

    def check(self) -> None:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise RenderMoved
        if self.stop is not None and self.stop.is_set():
            raise TemplateError("the template was stopped: the step timed out or was cancelled")


_WATCH: contextvars.ContextVar[RenderWatch | None] = contextvars.ContextVar(
    "orchestrate_render_watch", default=None
)


def current_watch() -> RenderWatch | None:
    """The watch of the renders under way here; None outside run_templates."""
    return _WATCH.get()
