"""The Jinja2 sandbox that runs templates, and the guards that keep a template in bounds.

:mod:`orchestrate._templating` says what templates can do; this module makes it so, and
is imported only once a template is parsed or run (never for ``orchestrate --help``).

- Rendering: a template is compiled once per source. A template that is exactly one
  ``{{ expression }}``, and every bare expression, compiles to an assignment, so that
  its value comes back as it is instead of as text.
- Guards: one render has a budget (:class:`_Run`) of steps, ``range()`` numbers and
  characters built; the sandbox's hooks (operators, calls, ``str.format``, the filters
  that can grow text) claim sizes from it before building anything, and the compiled
  tree is rewritten (:func:`_guard_tree`) so that loops, ``~`` and literals are counted
  too. :func:`fold` runs the same guards on constant operands, for static checks.
- Errors: whatever fails while rendering becomes a :class:`TemplateError` that says
  what was undefined, where, and what was meant.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import functools
import inspect
import io
import json
import math
import re
import string
from collections.abc import Callable, Iterator, Mapping, MappingView, Set
from types import CodeType
from typing import Any, NoReturn

import attrs
import jinja2
from jinja2 import TemplateRuntimeError, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import make_attrgetter
from jinja2.idtracking import VAR_LOAD_RESOLVE
from jinja2.lexer import describe_token
from jinja2.parser import Parser
from jinja2.runtime import LoopContext, Macro, StrictUndefined
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
    SecurityError,
)
from jinja2.utils import Namespace, missing
from markupsafe import Markup

from orchestrate._errors import TemplateError
from orchestrate._hints import plural
from orchestrate._template_base import (
    GLOBALS,
    MAX_BUILT,
    MAX_INT_DIGITS,
    MAX_OUTPUT,
    MAX_RANGE,
    MAX_SIZE,
    MAX_STEPS,
    RenderMoved,
    RenderWatch,
    current_watch,
)
from orchestrate._template_cache import take_code

UNSAFE_HINT = (
    "templates may read inputs, steps and their values, but not private ('_') or"
    " internal attributes"
)
_VALUE = "orchestrate_value"  # the variable a typed template or expression assigns
_NOT_JSON_HINT = (
    "a template gives text, numbers, true/false, null, lists and mappings: call a function"
    " or method with (), and read what you need from loop or namespace (loop.index)"
)
_LIMIT_HINT = "limits keep a template from hanging the run or exhausting memory"
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
# One whole %-field: (key in parentheses or "", width, precision, conversion).
_PERCENT_FIELD = re.compile(r"%(\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.?)", re.DOTALL)
_DIGITS = re.compile(r"\d+")
_LOG10_2 = math.log10(2)


# --- rendering -----------------------------------------------------------------------


def render_template(source: str, context: Mapping[str, Any], *, typed: bool) -> str:
    """A template as text; `typed` if it is exactly one ``{{ expression }}``."""
    with _running(source, context, expression=False):
        compiled = _compile_template(source)
        if typed:
            return _checked_output(_insert(_value_of(compiled, context)))
        return _render_text(compiled, context)


def evaluate_template(source: str, context: Mapping[str, Any]) -> Any:
    """The value of a template that is exactly one ``{{ expression }}``."""
    with _running(source, context, expression=False):
        return _plain(_value_of(_compile_template(source), context))


def evaluate_expression(source: str, context: Mapping[str, Any]) -> Any:
    """The value of a bare expression, made of plain JSON types."""
    with _running(source, context, expression=True):
        return _plain(_value_of(_compile_expression(source), context))


@functools.lru_cache(maxsize=1024)
def _compile_template(source: str) -> jinja2.Template:
    """The compiled form of a template that parse_template accepted."""
    code = take_code("template", source)
    if code is None:  # checked in a way that kept no code (or long ago): start again
        code = generate_code("template", ENVIRONMENT.parse(source))[1]
    return ENVIRONMENT.from_code(code)


@functools.lru_cache(maxsize=1024)
def _compile_expression(source: str) -> jinja2.Template:
    """The compiled form of an expression that parse_expression accepted."""
    code = take_code("expression", source)
    if code is None:
        code = generate_code("expression", ENVIRONMENT.parse_expression(source))[1]
    return ENVIRONMENT.from_code(code)


def generate_code(kind: str, tree: nodes.Node) -> tuple[frozenset[str], CodeType]:
    """The variables a template (kind "template") or expression reads from the context,
    and its compiled code; this takes over its parsed `tree`.

    Jinja's code generation is how jinja2.meta finds those variables, and it fails on an
    unknown filter or test (TemplateSyntaxError): checking does it once, on the tree a run
    compiles, and keeps the code (see orchestrate._template_cache).
    """
    if kind == "template":
        assert isinstance(tree, nodes.Template)
        runnable = ENVIRONMENT.runnable_template(tree)
    else:
        assert isinstance(tree, nodes.Expr)
        runnable = ENVIRONMENT.value_template(tree)
    code = io.StringIO()
    generator = _TrackingGenerator(ENVIRONMENT, code)
    generator.visit(runnable)
    return frozenset(generator.undeclared), ENVIRONMENT.compile_generated(code.getvalue())


class _TrackingGenerator(CodeGenerator):
    """Jinja's code generator, noting each variable read from the context (as
    jinja2.meta.TrackingCodeGenerator does, but keeping the code)."""

    def __init__(self, environment: jinja2.Environment, code: io.StringIO) -> None:
        # name and filename None, as Environment.from_string generates
        super().__init__(environment, None, None, code, optimized=environment.optimized)
        self.undeclared: set[str] = set()

    def enter_frame(self, frame: Frame) -> None:
        super().enter_frame(frame)
        for action, param in frame.symbols.loads.values():
            if action == VAR_LOAD_RESOLVE and param not in self.environment.globals:
                self.undeclared.add(param)


def single_expression(tree: nodes.Template) -> nodes.Expr | None:
    """The expression if the template is exactly one ``{{ expression }}``, else None."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    children = tree.body[0].nodes
    if len(children) != 1 or isinstance(children[0], nodes.TemplateData):
        return None
    return children[0]


# --- errors --------------------------------------------------------------------------


@contextlib.contextmanager
def _running(source: str, context: Mapping[str, Any], *, expression: bool) -> Iterator[_Run]:
    """One render: a fresh budget, and every failure turned into a TemplateError."""
    run = _Run(current_watch())
    token = _RUN.set(run)
    try:
        yield run
    except RenderMoved:
        raise
    except Exception as exc:
        raise _template_error(exc, run, source, context, expression) from exc
    finally:
        _RUN.reset(token)


def _template_error(
    exc: Exception, run: _Run, source: str, context: Mapping[str, Any], expression: bool
) -> TemplateError:
    line = _error_line(exc)
    hint = None
    if isinstance(exc, TemplateError):  # a guard refused
        message, hint = exc.message, exc.hint
    elif isinstance(exc, SecurityError):
        message, hint = f"unsafe template: {exc.message}", UNSAFE_HINT
    elif isinstance(exc, UndefinedError):
        message, hint = _undefined_message(exc, run, source, line, context, expression)
    elif isinstance(exc, RecursionError):
        message = "the template recurses too deeply"
    elif isinstance(exc, MemoryError):
        message = "the template ran out of memory"
    elif isinstance(exc, TemplateRuntimeError):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    if line is not None and "\n" in source.strip():  # only worth saying in a long text
        message = f"line {line}: {message}"
    return TemplateError(message, hint=hint)


def _error_line(exc: BaseException) -> int | None:
    """The template line of the innermost template frame in the traceback."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        template = tb.tb_frame.f_globals.get("__jinja_template__")
        if template is not None:
            line = template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line


def _undefined_message(
    exc: Exception,
    run: _Run,
    source: str,
    line: int | None,
    context: Mapping[str, Any],
    expression: bool,
) -> tuple[str, str | None]:
    if run.undefined is None or run.undefined[2] is not None:
        return str(exc), None
    name, owner, _ = run.undefined
    if owner is missing:
        return f"{name!r} is undefined", did_you_mean(name, [*context, *GLOBALS])
    where = _owner_text(source, line, name, expression)
    subject = repr(where) if where else "the value"
    if owner is None:
        hint = "a skipped or failed step has output null: test its status, or use `| default`"
        return f"{subject} is null, so it has no {name!r}", hint
    if isinstance(owner, Mapping):
        return f"{subject} has no key {name!r}", did_you_mean(name, [str(k) for k in owner])
    if isinstance(owner, (list, tuple, str)) and isinstance(name, int):
        return f"{subject} has no item {name}", f"it has {plural(len(owner), 'item')}"
    return f"{subject} has no attribute {name!r}", None


def _owner_text(source: str, line: int | None, name: Any, expression: bool) -> str | None:
    """``steps.a.output`` for the access that failed, when the source says so unambiguously."""
    tree = ENVIRONMENT.parse_expression(source) if expression else ENVIRONMENT.parse(source)
    owners = set()
    accesses = (nodes.Getattr, nodes.Getitem)
    for node in (tree, *tree.find_all(accesses)):  # an expression's root counts too
        if not isinstance(node, accesses):
            continue
        key = node.attr if isinstance(node, nodes.Getattr) else constant_key(node.arg)
        if key == name and (line is None or node.lineno == line):
            owners.add(_dotted(node.node))
    return owners.pop() if len(owners) == 1 else None


def _dotted(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Name):
        return node.name
    if not isinstance(node, (nodes.Getattr, nodes.Getitem)):
        return None
    base = _dotted(node.node)
    key = node.attr if isinstance(node, nodes.Getattr) else constant_key(node.arg)
    if base is None or key is None:
        return None
    if isinstance(key, str) and key.isidentifier():
        return f"{base}.{key}"
    return f"{base}[{key!r}]"


def did_you_mean(name: Any, options: Any, *, listing: bool = True) -> str | None:
    """A close match, else (with `listing`) the first few options."""
    names = sorted({str(option) for option in options})
    close = difflib.get_close_matches(str(name), names, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    if not names or not listing:
        return None
    shown = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
    return f"available: {shown}"


def constant_key(node: nodes.Expr) -> str | int | None:
    """The subscript as a str or int when the source fixes it (``["x"]``, ``[-1]``)."""
    try:
        value = node.as_const()
    except nodes.Impossible:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return value


# --- guards (pure Python: the sandbox calls them, and so does fold) ------------------


@attrs.define
class _Run:
    """What one render has spent so far, and the last undefined value that failed."""

    watch: RenderWatch | None = None  # where run_templates lets this render go on
    steps: int = 0
    numbers: int = 0
    built: int = 0
    undefined: tuple[Any, Any, str | None] | None = None  # (name, owner, jinja's hint)
    # Sizes of containers built so far (kept alive with them, so ids stay theirs):
    # `[v, v]` in a loop then costs two lookups, not a walk through all of v.
    sizes: dict[int, tuple[Any, int]] = attrs.Factory(dict)

    def step(self) -> None:
        if self.watch is not None:  # a slow render moves off the event loop, or stops
            self.watch.check()
        self.steps += 1
        if self.steps > MAX_STEPS:
            _refuse(f"the template runs more than {MAX_STEPS:,} loop iterations and calls")

    def count(self, numbers: int) -> None:
        self.numbers += numbers
        if self.numbers > MAX_RANGE:
            _refuse(f"range() would produce more than {MAX_RANGE:,} numbers in one template")

    def build(self, size: int) -> None:
        self.built += size
        if self.built > MAX_BUILT:
            _refuse(f"the template builds more than {MAX_BUILT:,} characters in all")


_RUN: contextvars.ContextVar[_Run] = contextvars.ContextVar("orchestrate_template_run")


def _current() -> _Run:
    # Outside a render (constant folding while compiling) spending is not tracked.
    run = _RUN.get(None)
    return run if run is not None else _Run()


def _refuse(message: str) -> NoReturn:
    raise TemplateError(message, hint=_LIMIT_HINT)


def _claim(what: str, size: int, cost: int | None = None) -> None:
    """Refuse a value of `size` before it is built, else charge it (or `cost`) to the render."""
    if size > MAX_SIZE:
        _refuse(
            f"{what} would build a value of {size:,} characters or items (at most {MAX_SIZE:,})"
        )
    _current().build(size if cost is None else cost)


def _built(what: str, value: Any) -> Any:
    size = _size(value)
    _claim(what, size)
    _remember(value, size)
    return value


def _remember(value: Any, size: int) -> None:
    if isinstance(value, (list, tuple, dict)):
        _current().sizes[id(value)] = (value, size)


def _size(value: Any, limit: int = MAX_SIZE) -> int:
    """Characters of strings plus items of containers, counted deeply; stops past `limit`.

    Counting deeply matters: ``[s] * n`` is small to build but huge to print.
    """
    known = _current().sizes
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, int):
            total += 0 if isinstance(item, bool) else int(item.bit_length() * _LOG10_2)
        elif isinstance(item, (Mapping, list, tuple, Set)):
            entry = known.get(id(item))
            if entry is not None and entry[0] is item:
                total += entry[1]
                continue
            total += len(item)
            if total <= limit:
                stack.extend([*item.keys(), *item.values()] if isinstance(item, Mapping) else item)
    return total


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) else 0


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda left, right: left + right,
    "*": lambda left, right: left * right,
    "**": lambda left, right: left**right,
    "%": lambda left, right: left % right,
}


def _binop(operator: str, left: Any, right: Any) -> Any:
    """An intercepted operator, refused before it computes something too big."""
    if operator == "%" and isinstance(left, str):
        return _percent_format(left, right)
    size = _binop_size(operator, left, right)
    if size is not None:
        _claim(f"'{operator}'", size)
    result = _BINOPS[operator](left, right)
    if size is not None:
        _remember(result, size)
    return result


def _binop_size(operator: str, left: Any, right: Any) -> int | None:
    """The size of a sequence result; for numbers, refuse too many digits instead."""
    if isinstance(left, int) and isinstance(right, int):
        _check_digits(operator, left, right)
    elif operator == "+" and isinstance(left, (str, list, tuple)):
        return _size(left) + _size(right)
    elif operator == "*":
        for sequence, times in ((left, right), (right, left)):
            if isinstance(sequence, (str, list, tuple)) and isinstance(times, int):
                return _size(sequence) * max(times, 0)
    return None


def _check_digits(operator: str, left: int, right: int) -> None:
    if operator == "*":
        too_big = _digits(left) + _digits(right) > MAX_INT_DIGITS
    elif operator == "**" and right > 0 and abs(left) > 1:
        # A base of 2 or more has at least 0.3 digits per unit of exponent, so the first
        # test keeps the float product from overflowing.
        too_big = right > MAX_INT_DIGITS * 4 or math.log10(abs(left)) * right > MAX_INT_DIGITS
    else:
        return
    if too_big:
        _refuse(f"'{operator}' would compute a number of more than {MAX_INT_DIGITS:,} digits")


def _digits(number: int) -> float:
    return abs(number).bit_length() * _LOG10_2


def _concat(parts: list[Any]) -> str:
    """``a ~ b``: text joined, with values other than strings as JSON."""
    texts = [_text(part) for part in parts]
    _claim("'~'", sum(map(len, texts)))
    return "".join(texts)


def _percent_format(template: str, values: Any) -> str:
    """``template % values`` (and the ``format`` filter) with bounded widths.

    ``%s`` prints a value as it is inserted (JSON unless a string); ``%d``, ``%f`` and
    the rest get the value itself.
    """
    values = _percent_values(template, values)
    specs = _PERCENT_SPEC.findall(template)
    if isinstance(values, Mapping):
        items = list(values.values())
    else:
        items = list(values) if isinstance(values, tuple) else [values]
    widths = [number for spec in specs for number in spec if number]
    _claim("'%'", _formatted_size(template, len(specs), widths, items))
    return template % values


def _percent_values(template: str, values: Any) -> Any:
    """The operand of ``template % values`` with each value that a ``%s`` prints as text."""
    keyed: set[str] = set()  # keys printed by %(key)s
    args = list(values) if isinstance(values, tuple) else [values]
    index = 0
    for key, width, precision, kind in _PERCENT_FIELD.findall(template):
        if kind == "%":
            continue
        if key:  # %(key)s
            if kind == "s":
                keyed.add(key[1:-1])
            continue
        index += (width == "*") + (precision == "*")  # a width or precision taken from values
        if kind == "s" and index < len(args):
            args[index] = _text(args[index])
        index += 1
    if keyed and isinstance(values, Mapping):
        return {key: _text(v) if key in keyed else v for key, v in values.items()}
    return tuple(args) if isinstance(values, tuple) else args[0]


def _formats_as_text(value: Any, spec: str) -> bool:
    """Whether ``str.format`` prints `value` as inserted text: not for numbers, nor for a
    spec that asks for a number (``{:d}``); so ``{}`` and ``{:>9}`` give JSON."""
    finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    if isinstance(value, str) or (finite and not isinstance(value, bool)):  # not nan: no JSON
        return False
    kind = spec[-1:]
    return kind == "s" or not (kind.isalpha() or kind == "%")


def _formatted_size(template: str, fields: int, widths: list[str], values: list[Any]) -> int:
    """An upper bound on a formatted string: every field may hold the biggest value."""
    if "*" in widths or "{" in widths:  # a width taken from the values
        widths = [str(value) for value in values if isinstance(value, int)]
    largest = max((_size(value) for value in values), default=0)
    padding = 0
    for width in widths:
        if len(width) > len(str(MAX_SIZE)):
            return MAX_SIZE + 1  # no need to parse a thousand-digit width
        padding += int(width)
    return len(template) + fields * largest + padding


def _str_format_size(template: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    fields = 0
    widths: list[str] = []
    for _, name, spec, _ in string.Formatter().parse(template):
        if name is not None:
            fields += 1
            widths.extend(["{"] if "{" in (spec or "") else _DIGITS.findall(spec or ""))
    return _formatted_size(template, fields, widths, [*args, *kwargs.values()])


def _replaced_size(text: str, old: Any, new: Any, count: Any) -> int:
    if not isinstance(old, str) or not isinstance(new, str):
        return len(text)  # str.replace will raise its own TypeError
    hits = len(text) + 1 if old == "" else text.count(old)
    if isinstance(count, int) and count >= 0:  # None or -1: every match
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def _argument(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str, default: Any = None
) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _str_method_size(
    text: str, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> int | None:
    """How big a str method's result can be, for the methods that can grow text."""
    if name in ("center", "ljust", "rjust", "zfill"):
        return max(len(text), _as_int(_argument(args, kwargs, 0, "width")))
    if name == "expandtabs":
        return len(text) + text.count("\t") * _as_int(_argument(args, kwargs, 0, "tabsize", 8))
    if name == "replace":
        old, new = _argument(args, kwargs, 0, "old"), _argument(args, kwargs, 1, "new")
        return _replaced_size(text, old, new, _argument(args, kwargs, 2, "count", -1))
    if name == "join" and args and isinstance(args[0], list):
        return sum(map(_size, args[0])) + len(text) * max(len(args[0]) - 1, 0)
    if name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        return len(text) * max(longest, 1)
    return None  # the others stay within their text; their result is checked after


def _range(*args: Any) -> range:
    """``range()`` drawn from a budget for the whole render, not per call."""
    numbers = range(*args)
    _current().count(range_size(*args))
    return numbers


def range_size(*args: Any) -> int:
    try:
        size = len(range(*args))
    except OverflowError:  # more numbers than fit a C integer
        size = MAX_RANGE + 1
    except TypeError as exc:
        raise NotConstant from exc
    if size > MAX_RANGE:
        _refuse(f"range() would produce more than {MAX_RANGE:,} numbers in one template")
    return size


def _dict(*args: Any, **kwargs: Any) -> dict[Any, Any]:
    """``dict(...)``: a function, so templates cannot reach the type's unbound methods."""
    return dict(*args, **kwargs)


class _Accumulator(list[Any]):
    """A ``start`` for the ``sum`` filter that extends in place: summing n lists stays linear."""

    def __add__(self, other: Any) -> _Accumulator:
        before = len(self)
        self.extend(other)
        _claim("sum", len(self), cost=len(self) - before)  # what was added, not the total
        return self


# --- text and values -----------------------------------------------------------------


def _insert(value: Any) -> str:
    """How a value appears in text (the environment's ``finalize``)."""
    text = _text(value, MAX_OUTPUT)
    _current().build(len(text))
    return text


def _text(value: Any, limit: int = MAX_SIZE) -> str:
    """A value as text: a string as it is, any other value as compact JSON.

    The one conversion behind ``{{ }}``, ``~``, ``string``, ``join``, ``%s`` and
    ``str.format``, so that no Python repr (``True``, ``None``, ``{'a': 1}``) reaches text.
    """
    return value if isinstance(value, str) else _json_text(value, limit)


def _json_text(value: Any, limit: int) -> str:
    if _size(value, limit) > limit:
        _refuse(f"a value of more than {limit:,} characters or items cannot be inserted")
    return _dumps(value)


def _dumps(value: Any, indent: Any = None) -> str:
    return json.dumps(_json_data(value), ensure_ascii=False, indent=indent)


def _plain(value: Any) -> Any:
    """A typed value as JSON data, so nothing lazy, undefined or Python-only leaves."""
    if _size(value, MAX_OUTPUT) > MAX_OUTPUT:
        _refuse(f"the value has more than {MAX_OUTPUT:,} characters or items")
    return _json_data(value)


def _json_data(value: Any) -> Any:
    """A copy of what a template gives in JSON types, or a TemplateError if it has none.

    The one conversion of rendered values, behind typed values and text alike: a
    function, a method, a ``namespace`` or a ``loop`` is refused here, so that its Python
    repr never reaches a prompt, an output or a function's arguments.
    """
    if isinstance(value, str):
        return str(value)  # a Markup becomes a plain str
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _not_json(value)
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, Mapping):
        return {_json_key(key): _json_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, Set, range, MappingView)) or _is_builtin_iterator(value):
        return [_json_data(item) for item in value]
    _not_json(value)


def _json_key(key: Any) -> str:
    """A mapping key as JSON has it: ``{1: 2}`` is ``{"1": 2}``, as in the run's result."""
    if isinstance(key, str):
        return str(key)
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(_json_data(key))
    _not_json(key, "a mapping with a key that is ")


def _not_json(value: Any, prefix: str = "") -> NoReturn:
    raise TemplateError(
        f"the template gives {prefix}{_kind(value)}, which is not JSON data",
        hint=_NOT_JSON_HINT,
    )


def _kind(value: Any) -> str:
    """What a value that has no JSON form is, as a template writer knows it."""
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, type):
        return "a class"
    if isinstance(value, LoopContext):
        return "a loop object"
    if isinstance(value, Namespace):
        return "a namespace"
    if isinstance(value, Macro):
        return "a macro"
    if callable(value):
        owner = getattr(value, "__self__", None)  # a builtin function's is its module
        return "a method" if owner is not None and not inspect.ismodule(owner) else "a function"
    return f"a {type(value).__name__}"


def _is_builtin_iterator(value: Any) -> bool:
    # Generators and map/reversed objects from filters; not Jinja's own `loop`.
    return isinstance(value, Iterator) and type(value).__module__ == "builtins"


def _checked_output(text: str) -> str:
    if len(text) > MAX_OUTPUT:
        _refuse(f"the rendered text is longer than {MAX_OUTPUT:,} characters")
    return text


def _render_text(compiled: jinja2.Template, context: Mapping[str, Any]) -> str:
    # Count while streaming, so a runaway loop stops at the limit, not at the end.
    chunks, total = [], 0
    for chunk in compiled.root_render_func(compiled.new_context(dict(context))):
        total += len(chunk)
        if total > MAX_OUTPUT:
            _refuse(f"the rendered text is longer than {MAX_OUTPUT:,} characters")
        chunks.append(chunk)
    return "".join(chunks)


def _value_of(compiled: jinja2.Template, context: Mapping[str, Any]) -> Any:
    jinja_context = compiled.new_context(dict(context))
    for _ in compiled.root_render_func(jinja_context):
        pass
    return jinja_context.vars[_VALUE]


# --- filters that can build more than they are given ---------------------------------


def _guarded_filters(filters: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """The filters that can build more than they are given, each checked first."""
    checks: dict[str, Callable[..., tuple[Any, ...]]] = {
        "batch": _check_batch,
        "center": _check_center,
        "indent": _check_indent,
        "join": _check_join,
        "replace": _check_replace,
        "slice": _check_slice,
        "wordwrap": _check_wordwrap,
    }
    guarded = {name: _guard_filter(filters[name], check) for name, check in checks.items()}
    guarded["sum"] = _guard_sum(filters["sum"])
    guarded["format"] = _format_filter
    guarded["tojson"] = _tojson_filter
    guarded["pprint"] = _pprint_filter
    guarded["string"] = _string_filter
    return guarded


def _guard_filter(
    original: Callable[..., Any], check: Callable[..., tuple[Any, ...]]
) -> Callable[..., Any]:
    """`check` takes the user's arguments and returns those to pass on (maybe listed)."""
    lead = 1 if getattr(original, "jinja_pass_arg", None) is not None else 0

    def guarded(*args: Any, **kwargs: Any) -> Any:
        return original(*args[:lead], *check(*args[lead:], **kwargs))

    # Keeps `jinja_pass_arg`, so Jinja still passes the environment or eval context.
    return functools.update_wrapper(guarded, original)


def _check_center(value: Any, width: Any = 80) -> tuple[Any, ...]:
    _claim("center", max(len(str(value)), _as_int(width)))
    return value, width


def _check_indent(
    s: Any, width: Any = 4, first: bool = False, blank: bool = False
) -> tuple[Any, ...]:
    text = str(s)
    pad = len(width) if isinstance(width, str) else _as_int(width)
    _claim("indent", len(text) + (len(text.splitlines()) + 1) * pad)
    return s, width, first, blank


def _check_wordwrap(
    s: Any,
    width: Any = 79,
    break_long_words: bool = True,
    wrapstring: Any = None,
    break_on_hyphens: bool = True,
) -> tuple[Any, ...]:
    text = str(s)
    wrap = str(wrapstring) if wrapstring else "\n"
    breaks = len(text) // max(_as_int(width), 1) + len(text.split()) + text.count("-") + 1
    _claim("wordwrap", len(text) + breaks * len(wrap))
    return s, width, break_long_words, wrapstring, break_on_hyphens


def _check_replace(s: Any, old: Any, new: Any, count: Any = None) -> tuple[Any, ...]:
    _claim("replace", _replaced_size(str(s), str(old), str(new), count))
    return s, old, new, count


def _check_join(value: Any, d: Any = "", attribute: Any = None) -> tuple[Any, ...]:
    items = list(value)
    if attribute is not None:
        getter = make_attrgetter(ENVIRONMENT, attribute)
        items = [getter(item) for item in items]
    separators = len(str(d)) * max(len(items) - 1, 0)
    _claim("join", sum(map(_size, items)) + separators, cost=0)  # before building the texts
    texts = [_text(item) for item in items]  # JSON for what is not a string
    _claim("join", sum(map(len, texts)) + separators)
    return texts, d


def _check_batch(value: Any, linecount: Any, fill_with: Any = None) -> tuple[Any, ...]:
    items = list(value)
    filler = 0 if fill_with is None else (_as_int(linecount) - 1) * max(_size(fill_with), 1)
    _claim("batch", len(items) + filler)
    return items, linecount, fill_with


def _check_slice(value: Any, slices: Any, fill_with: Any = None) -> tuple[Any, ...]:
    items = list(value)
    each = 1 if fill_with is None else 1 + max(_size(fill_with), 1)
    _claim("slice", len(items) + _as_int(slices) * each)
    return items, slices, fill_with


def _guard_sum(original: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
        if not isinstance(start, (list, tuple)):
            return original(environment, iterable, attribute, start)
        return type(start)(original(environment, iterable, attribute, _Accumulator(start)))

    return functools.update_wrapper(guarded, original)


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    """``"%s"|format(x)`` with the same width checks as the ``%`` operator."""
    if args and kwargs:
        raise TypeError("format takes positional or keyword arguments, not both")
    return _percent_format(_text(value), kwargs or args)


def _string_filter(value: Any) -> str:
    """``string``: the text the value is inserted as (JSON unless it is a string)."""
    if isinstance(value, str):
        return value
    text = _text(value)
    _claim("string", len(text))
    return text


def _pprint_filter(value: Any) -> str:
    """``pprint``: indented JSON rather than Python's repr."""
    _claim("pprint", _size(value) * 3)  # as tojson(2) counts
    return _dumps(value, indent=2)


def _tojson_filter(value: Any, indent: Any = None) -> str:
    """Plain JSON, as values are inserted (Jinja's own escapes <, > and & for HTML)."""
    pad = len(indent) if isinstance(indent, str) else _as_int(indent)
    _claim("tojson", _size(value) * (1 + pad))
    return _dumps(value, indent=indent)


# --- the compiled tree, guarded ------------------------------------------------------

# Private filters that the compiled code calls around what the sandbox's own hooks cannot
# see. Users cannot name them (a filter name in a template has no "-"), and being
# `pass_context` they are never folded into constants while compiling.
_GUARD_ITER = "orchestrate-iter"  # the iterable of a {% for %}: counts iterations
_GUARD_TEXT = "orchestrate-text"  # text inside a loop or macro: counted by `finalize`
_GUARD_CONCAT = "orchestrate-concat"  # `a ~ b`: JSON for non-strings, and a size check
_GUARD_VALUE = "orchestrate-value"  # a list, tuple or dict literal built from variables


def _guard_iter(context: Any, iterable: Any) -> Iterator[Any]:
    run = _current()
    for item in iterable:
        run.step()
        yield item


def _guard_text(context: Any, text: str) -> str:
    return text


def _guard_concat(context: Any, parts: tuple[Any, ...]) -> str:
    return _concat(list(parts))


def _guard_value(context: Any, value: Any) -> Any:
    return _built("a literal", value)


def _guard_tree(node: nodes.Node, repeating: bool = False) -> nodes.Node:
    """Wrap loops, ``~``, literals and repeated text in the private guard filters.

    Done on the tree rather than in a CodeGenerator subclass: Jinja forbids custom node
    types, and it folds constant ``~`` with ``str()`` before any visitor could see it.
    """
    inside = repeating or isinstance(node, (nodes.For, nodes.Macro, nodes.CallBlock))
    for field, value in node.iter_fields():
        if isinstance(value, nodes.Node):
            setattr(node, field, _guard_tree(value, inside))
        elif isinstance(value, list):
            value[:] = [_guard_tree(v, inside) if isinstance(v, nodes.Node) else v for v in value]
    return _guarded_node(node, repeating)


def _guarded_node(node: nodes.Node, repeating: bool) -> nodes.Node:
    if isinstance(node, nodes.For):
        # jinja2 types For.iter as a Node; the parser always puts an expression there.
        node.iter = _guard(node.iter, _GUARD_ITER)  # type: ignore[arg-type]
    elif isinstance(node, nodes.Concat):
        return _guard(nodes.Tuple(node.nodes, "load", lineno=node.lineno), _GUARD_CONCAT)
    elif isinstance(node, (nodes.List, nodes.Tuple, nodes.Dict)):
        if getattr(node, "ctx", "load") == "load" and not _is_constant(node):
            return _guard(node, _GUARD_VALUE)
    elif isinstance(node, nodes.Output) and repeating:
        node.nodes = [
            _guard(nodes.Const(child.data, lineno=child.lineno), _GUARD_TEXT)
            if isinstance(child, nodes.TemplateData)
            else child
            for child in node.nodes
        ]
    return node


def _guard(node: nodes.Expr, name: str) -> nodes.Expr:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


def _is_constant(node: nodes.Expr) -> bool:
    try:
        node.as_const()
    except nodes.Impossible:
        return False
    return True


class NotConstant(Exception):
    """The expression depends on the context (or fails): leave it to render time."""


def fold(node: nodes.Expr) -> Any:
    """The value of a constant expression, with the guards the sandbox applies."""
    if isinstance(node, nodes.BinExpr) and node.operator in _BINOPS:
        left, right = fold(node.left), fold(node.right)
        try:
            return _binop(node.operator, left, right)
        except TemplateError:
            raise
        except Exception as exc:  # a type error etc.: the render reports it in context
            raise NotConstant from exc
    if isinstance(node, nodes.Concat):
        return _concat([fold(part) for part in node.nodes])
    try:
        return node.as_const()
    except nodes.Impossible as exc:
        raise NotConstant from exc


# --- the environment -----------------------------------------------------------------


class _Formatter(SandboxedFormatter):
    """``str.format`` fields as inserted text: ``{}`` and ``{!s}`` give JSON."""

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion == "s":
            return _text(value)
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        if _formats_as_text(value, format_spec):
            value = _text(value)
        return super().format_field(value, format_spec)


class _EscapeFormatter(_Formatter, SandboxedEscapeFormatter):
    """The same for a Markup template, escaping as Jinja's own does."""


class _Undefined(StrictUndefined):
    """Strict, and remembers what was undefined for the error message."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        # Read only when the undefined value fails: remember what for the message.
        failed = (self._undefined_name, self._undefined_obj, self._undefined_hint)
        _current().undefined = failed
        return super()._undefined_message


class _Environment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with every hook that can build something guarded."""

    intercepted_binops = frozenset(_BINOPS)

    def parse_expression(self, source: str) -> nodes.Expr:
        """What Environment.compile_expression does, keeping the tree for our own checks."""
        parser = Parser(self, source, state="variable")
        expression = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            message = f"unexpected {describe_token(token)!r} after the expression"
            raise TemplateSyntaxError(message, token.lineno)
        expression.set_environment(self)
        return expression

    def runnable_template(self, tree: nodes.Template) -> nodes.Template:
        """The guarded tree a template runs as: one assigning its value if it is exactly
        one ``{{ expression }}``."""
        expression = single_expression(tree)
        return self.guard(tree) if expression is None else self.value_template(expression)

    def value_template(self, expression: nodes.Expr) -> nodes.Template:
        """A guarded template that assigns the value, as compile_expression builds it, so
        the value comes back as it is instead of as text."""
        line = expression.lineno or 1
        target = nodes.Name(_VALUE, "store", lineno=line)
        tree = nodes.Template([nodes.Assign(target, expression, lineno=line)], lineno=1)
        return self.guard(tree)

    def compile_generated(self, code: str) -> CodeType:
        """Compile code generated from a tree, as from_string does after generating it."""
        return self._compile(code, "<template>")

    def from_code(self, code: CodeType) -> jinja2.Template:
        """The template whose compiled code this is."""
        return self.template_class.from_code(self, code, self.make_globals(None), None)

    def guard(self, tree: nodes.Template) -> nodes.Template:
        _guard_tree(tree)  # in place: a Template is never replaced, only what it holds
        tree.set_environment(self)
        return tree

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return _binop(operator, left, right)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _current().step()
        owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
        if isinstance(owner, str):
            if name == "join" and args:  # measure the items, then join that list
                args = (list(args[0]), *args[1:])
            size = _str_method_size(owner, name, args, kwargs)
            if size is not None:
                _claim(f"str.{name}()", size)
        result = super().call(context, obj, *args, **kwargs)
        return _built(f"{name}()" if name else "a call", result)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # Jinja's own wrapper, with a formatter that prints values as JSON text.
        if super().wrap_str_format(value) is None:
            return None
        template, name = value.__self__, value.__name__
        formatter = (
            _EscapeFormatter(self, escape=template.escape)
            if isinstance(template, Markup)
            else _Formatter(self)
        )

        def checked(*args: Any, **kwargs: Any) -> str:
            if name == "format_map":
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one positional argument")
                if isinstance(args[0], Mapping):
                    size = _str_format_size(template, (), args[0])
                else:
                    size = _str_format_size(template, args, {})
                kwargs, args = args[0], ()
            else:
                size = _str_format_size(template, args, kwargs)
            _claim(f"str.{name}()", size)
            return type(template)(formatter.vformat(template, args, kwargs))

        return functools.update_wrapper(checked, value)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # A JSON reply's "items" key beats dict.items.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _new_environment() -> _Environment:
    env = _Environment(
        undefined=_Undefined, autoescape=False, keep_trailing_newline=True, finalize=_insert
    )
    env.globals.clear()
    env.globals.update(dict=_dict, namespace=Namespace, range=_range)
    env.filters.update(_guarded_filters(env.filters))
    guards: dict[str, Callable[..., Any]] = {
        _GUARD_ITER: _guard_iter,
        _GUARD_TEXT: _guard_text,
        _GUARD_CONCAT: _guard_concat,
        _GUARD_VALUE: _guard_value,
    }
    env.filters.update({name: jinja2.pass_context(guard) for name, guard in guards.items()})
    return env


ENVIRONMENT = _new_environment()
