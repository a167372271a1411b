"""Reading templates before they run: syntax, what they refer to, and what they must not do.

Every check here works on the Jinja2 syntax tree, so `validate` finds a private access,
a template load or an evident bomb (``'x' * 10**10``) without running anything. The
front, :mod:`orchestrate._templating`, imports this module on first use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
)

from orchestrate._errors import TemplateError
from orchestrate._sandbox import (
    ENVIRONMENT,
    UNSAFE_HINT,
    NotConstant,
    constant_key,
    did_you_mean,
    fold,
    generate_code,
    range_size,
    single_expression,
)
from orchestrate._template_base import (
    GLOBALS,
    Checked,
    Comparison,
    PlainParts,
    Problem,
    Reference,
)

_ROOTS = frozenset({"inputs", "steps", "outputs"})  # `outputs`: in checks
_JINJA_NAMES = frozenset({"self"})  # what Jinja binds at a template's top level
_INTERNAL = (  # attributes that are not private by name but are by nature
    {"mro"}
    | UNSAFE_GENERATOR_ATTRIBUTES
    | UNSAFE_COROUTINE_ATTRIBUTES
    | UNSAFE_ASYNC_GENERATOR_ATTRIBUTES
)


def check_template(source: str) -> Checked | Problem:
    """A template, or the first syntax error or unsafe access in it.

    Checking generates and compiles the code (generating finds unknown filters and
    tests); the front keeps that code on disk for later processes and for the first
    render (orchestrate._template_cache).
    """
    try:
        tree = ENVIRONMENT.parse(source)
    except TemplateSyntaxError as exc:
        return _syntax_problem(exc)
    problem = _unsafe_problem(tree) or _bare_global(tree)
    if problem is not None:
        return problem
    references = _references(tree)
    comparisons = _comparisons(tree)  # before generating, which folds constants
    typed = single_expression(tree) is not None
    parts = _plain_parts(tree)
    try:
        variables, code = generate_code("template", tree)
    except TemplateSyntaxError as exc:
        return _syntax_problem(exc)
    return Checked(references, variables, comparisons, typed, code, parts)


def check_expression(source: str) -> Checked | Problem:
    """A bare expression, or its first syntax error or unsafe access."""
    try:
        expression = ENVIRONMENT.parse_expression(source)
    except TemplateSyntaxError as exc:
        if not source.strip():
            return Problem("the expression is empty", 1)
        return _syntax_problem(exc, expression=True, braces=source.lstrip().startswith("{{"))
    problem = _unsafe_problem(expression) or _bare_global(expression)
    if problem is not None:
        return problem
    references = _references(expression)
    comparisons = _comparisons(expression)
    try:
        variables, code = generate_code("expression", expression)
    except TemplateSyntaxError as exc:
        return _syntax_problem(exc)
    return Checked(references, variables, comparisons, code=code)


def _syntax_problem(
    exc: TemplateSyntaxError, *, expression: bool = False, braces: bool = False
) -> Problem:
    message = exc.message or str(exc)
    if expression:
        message = message.replace("'end of template'", "end of the expression")
    hint = None
    if braces:
        hint = "write `when:` and `for_each:` as bare expressions, without {{ }}"
    elif found := re.match(r"No (filter|test) named '([^']*)'", message):
        known = ENVIRONMENT.filters if found[1] == "filter" else ENVIRONMENT.tests
        names = [name for name in known if "-" not in name]
        hint = did_you_mean(found[2], names, listing=False)
    return Problem(message, exc.lineno or 1, hint)


# --- what a template refers to -------------------------------------------------------


def _references(tree: nodes.Node) -> frozenset[Reference]:
    found: set[Reference] = set()
    _collect_references(tree, found)
    return frozenset(found)


def _collect_references(node: nodes.Node, found: set[Reference]) -> None:
    if not isinstance(node, (nodes.Getattr, nodes.Getitem)):
        for child in node.iter_child_nodes():
            _collect_references(child, found)
        return
    # Take the whole chain at once (steps.a.output.title, not also steps.a), then look
    # inside what it is built on: the base and any subscript expressions.
    base, parts, subscripts = _unwind(node)
    if (
        isinstance(base, nodes.Name)
        and base.name in _ROOTS
        and base.ctx == "load"
        and parts
        and isinstance(parts[0], str)
    ):
        path: list[str | int] = []
        for part in parts[1:]:
            if part is None:
                break
            path.append(part)
        found.add(Reference(base.name, parts[0], tuple(path)))
    for child in (base, *subscripts):
        _collect_references(child, found)


def _comparisons(tree: nodes.Node) -> tuple[Comparison, ...]:
    """Every comparison of a whole reference with a constant, in source order."""
    found: list[Comparison] = []
    compares = [tree] if isinstance(tree, nodes.Compare) else []
    for compare in [*compares, *tree.find_all(nodes.Compare)]:
        left = compare.expr
        for operand in compare.ops:  # `a < b < c` is a < b and b < c
            pair = _reference_and_constant(left, operand.expr)
            if pair is not None and operand.op in _ORDERINGS:
                found.append(Comparison(pair[0], operand.op, pair[1]))
            left = operand.expr
    return tuple(found)


_ORDERINGS = frozenset({"eq", "ne", "gt", "gteq", "lt", "lteq"})


def _reference_and_constant(left: nodes.Expr, right: nodes.Expr) -> tuple[Reference, Any] | None:
    for one, other in ((left, right), (right, left)):
        reference, constant = _whole_reference(one), _literal(other)
        if reference is not None and constant is not _NO_LITERAL:
            return reference, constant
    return None


def _whole_reference(node: nodes.Expr) -> Reference | None:
    """``steps.a.output.title`` as a Reference, when every part of it is a constant."""
    base, parts, _ = _unwind(node)
    if not (isinstance(base, nodes.Name) and base.name in _ROOTS and parts):
        return None
    if not isinstance(parts[0], str) or None in parts:
        return None
    return Reference(base.name, parts[0], tuple(p for p in parts[1:] if p is not None))


_NO_LITERAL = object()


def _literal(node: nodes.Expr) -> Any:
    """The value of a literal (``"5"``, ``5``, ``-5``, ``true``, ``none``), else _NO_LITERAL."""
    sign = 1
    if isinstance(node, nodes.Neg):
        node, sign = node.node, -1
    if not isinstance(node, nodes.Const):
        return _NO_LITERAL
    if sign == 1:
        return node.value
    is_number = isinstance(node.value, int | float) and not isinstance(node.value, bool)
    return -node.value if is_number else _NO_LITERAL


def _plain_parts(tree: nodes.Template) -> PlainParts | None:
    """The template as literal text and constant lookups (``steps.a.output.title[0]``),
    or None if anything else is in it: a filter, a test, an operator, a tag."""
    parts: list[str | tuple[str | int, ...]] = []
    for output in tree.body:
        if not isinstance(output, nodes.Output):
            return None
        for node in output.nodes:
            if isinstance(node, nodes.TemplateData):
                parts.append(node.data)
                continue
            base, keys, _ = _unwind(node)
            if not (isinstance(base, nodes.Name) and base.ctx == "load") or None in keys:
                return None
            if base.name in _JINJA_NAMES:  # Jinja's own, whatever the context says
                return None
            parts.append((base.name, *keys))  # type: ignore[arg-type]  # no None: checked
    return tuple(parts)


def _unwind(node: nodes.Expr) -> tuple[nodes.Expr, list[str | int | None], list[nodes.Expr]]:
    """The base of an access chain, its keys (None where not constant) and subscripts."""
    parts: list[str | int | None] = []
    subscripts: list[nodes.Expr] = []
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
        else:
            parts.append(constant_key(node.arg))
            subscripts.append(node.arg)
        node = node.node
    parts.reverse()
    return node, parts, subscripts


# --- what a template must not do -----------------------------------------------------


def _unsafe_problem(tree: nodes.Node) -> Problem | None:
    """The first private access, template loading or evident bomb in the tree."""
    kinds = (nodes.Getattr, nodes.Getitem, nodes.NSRef, nodes.Filter, nodes.Call)
    loads = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
    wanted = (*kinds, *loads, nodes.BinExpr, nodes.Concat)
    for node in _post_order(tree):
        if not isinstance(node, wanted):
            continue
        if isinstance(node, loads):
            tag = type(node).__name__.lower()
            message = f"{{% {tag} %}} is not supported: a workflow template cannot load others"
            return Problem(message, node.lineno)
        problem = _private_access(node) or _evident_bomb(node)
        if problem is not None:
            return problem
    return None


def _bare_global(tree: nodes.Node) -> Problem | None:
    """A global function given as a value (``{{ range }}``): never JSON data, so refused
    before the run, as it would be at render time. Only where it is the whole output."""
    outputs: list[nodes.Node]
    if isinstance(tree, nodes.Template):
        outputs = [child for output in tree.find_all(nodes.Output) for child in output.nodes]
    else:
        outputs = [tree]
    assigned = {name.name for name in tree.find_all(nodes.Name) if name.ctx != "load"}
    for node in outputs:
        if isinstance(node, nodes.Name) and node.name in GLOBALS - assigned:
            message = f"{node.name!r} is a function, which is not JSON data"
            return Problem(message, node.lineno, f"call it: {node.name}(...)")
    return None


def _post_order(node: nodes.Node) -> Iterator[nodes.Node]:
    # Children first, left to right: ''.__class__.__mro__ reports __class__, and an
    # inner bomb is reported before the expression around it.
    for child in node.iter_child_nodes():
        yield from _post_order(child)
    yield node


def _private_access(node: nodes.Node) -> Problem | None:
    if isinstance(node, (nodes.Getattr, nodes.NSRef)):
        name: object = node.attr
    elif isinstance(node, nodes.Getitem):
        name = constant_key(node.arg)
    elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
        name = constant_key(node.args[0])
    else:
        return None
    if isinstance(name, str) and (name.startswith("_") or name in _INTERNAL):
        return Problem(f"access to {name!r} is not allowed in templates", node.lineno, UNSAFE_HINT)
    return None


def _evident_bomb(node: nodes.Node) -> Problem | None:
    """Run the render-time guards on constant operands, so `'x' * 10**10` fails validation."""
    try:
        if isinstance(node, nodes.Call):
            if isinstance(node.node, nodes.Name) and node.node.name == "range":
                range_size(*(fold(arg) for arg in node.args))
        elif isinstance(node, (nodes.BinExpr, nodes.Concat)):
            fold(node)
    except TemplateError as exc:
        return Problem(exc.message, node.lineno, exc.hint)
    except NotConstant:
        pass
    return None
