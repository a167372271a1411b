"""Reading templates before they run: references, variables, unsafe access and syntax."""

from __future__ import annotations

import pytest

from orchestrate._templating import (
    Problem,
    Reference,
    Template,
    parse_expression,
    parse_template,
)
from tests.test_templating import expression, template

# --- what a template refers to -------------------------------------------------------


def ref(root: str, name: str, *path: str | int) -> Reference:
    return Reference(root, name, tuple(path))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ steps.a.output.title }}", {ref("steps", "a", "output", "title")}),
        ("{{ inputs.article }}", {ref("inputs", "article")}),
        ("{{ steps.a }}", {ref("steps", "a")}),
        ("{% for x in steps.b.output %}{{ x }}{% endfor %}", {ref("steps", "b", "output")}),
        ("{{ steps['c'].output[0] }}", {ref("steps", "c", "output", 0)}),
        ("{{ steps.a.output[-1] }}", {ref("steps", "a", "output", -1)}),
        ("{{ steps.a.output['my key'] }}", {ref("steps", "a", "output", "my key")}),
        ("{{ steps.a.output.title | upper }}", {ref("steps", "a", "output", "title")}),
        ("{{ (steps.a.output | first).title }}", {ref("steps", "a", "output")}),
        ("{{ steps.a.output[1:3] }}", {ref("steps", "a", "output")}),
        (
            "{{ steps.a.output[inputs.key].name }}",
            {ref("steps", "a", "output"), ref("inputs", "key")},
        ),
        (
            "{{ steps.a.output | join(inputs.sep) }}",
            {ref("steps", "a", "output"), ref("inputs", "sep")},
        ),
        ("{% if steps.a.status == 'failed' %}x{% endif %}", {ref("steps", "a", "status")}),
        (
            "{{ steps.a.output if inputs.flag else steps.b.output }}",
            {ref("steps", "a", "output"), ref("inputs", "flag"), ref("steps", "b", "output")},
        ),
        ("{% set x = steps.a.output %}{{ x.title }}", {ref("steps", "a", "output")}),
        ("{% macro m() %}{{ inputs.y }}{% endmacro %}{{ m() }}", {ref("inputs", "y")}),
        (
            "{{ steps.a.output.x ~ steps.a.output.y }}",
            {ref("steps", "a", "output", "x"), ref("steps", "a", "output", "y")},
        ),
        ("{{ steps }}{{ inputs }}", set()),
        ("{{ steps[name].output }}", set()),
        ("{{ item.title }}{{ index }}", set()),
    ],
)
def test_references_are_read_from_the_syntax_tree(source: str, expected: set[Reference]) -> None:
    """Every inputs.X and steps.Y access is found, with the constant path after it."""
    assert expected == set(template(source).references)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            'steps.a.status == "succeeded" or steps.b.status == "succeeded"',
            {ref("steps", "a", "status"), ref("steps", "b", "status")},
        ),
        ("steps.k.output.keywords", {ref("steps", "k", "output", "keywords")}),
        ("inputs.x > 3 and item", {ref("inputs", "x")}),
    ],
)
def test_expression_references(source: str, expected: set[Reference]) -> None:
    """Expressions report their references like templates do."""
    assert expected == set(expression(source).references)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ inputs.a }}{{ item }}{{ index }}", {"inputs", "item", "index"}),
        ("{% for x in steps.a.output %}{{ x }}{{ loop.index }}{% endfor %}", {"steps"}),
        ("{% set y = 1 %}{{ y }}{{ range(2) }}{{ namespace() }}{{ dict() }}", set()),
        ("{{ lipsum() }}", {"lipsum"}),
    ],
)
def test_variables_are_the_undeclared_names(source: str, expected: set[str]) -> None:
    """Names a template reads from its context; locals and GLOBALS are not listed."""
    assert expected == set(template(source).variables)


def test_expression_variables() -> None:
    """An expression lists the context names it reads."""
    assert {"item", "index"} == set(expression("item.x > index").variables)


# --- what a template must not do -----------------------------------------------------


@pytest.mark.parametrize(
    ("source", "name", "line"),
    [
        ("{{ ''.__class__.__mro__ }}", "__class__", 1),
        ("{{ x['__globals__'] }}", "__globals__", 1),
        ("{{ x['__cla' ~ 'ss__'] }}", "__class__", 1),
        ("{{ x | attr('__class__') }}", "__class__", 1),
        ("{{ x._private }}", "_private", 1),
        ("{{ namespace.mro() }}", "mro", 1),
        ("{% set ns = namespace() %}{% set ns._x = 1 %}", "_x", 1),
        ("first line\n{{ x.__dict__ }}", "__dict__", 2),
    ],
)
def test_private_access_is_a_static_problem(source: str, name: str, line: int) -> None:
    """Names starting with '_' (and internal ones) are refused before anything runs."""
    expected = Problem(f"access to {name!r} is not allowed in templates", line)
    actual = parse_template(source)
    assert isinstance(actual, Problem)
    assert expected == attrs_without_hint(actual)
    assert "private" in (actual.hint or "")


@pytest.mark.parametrize("source", ["x.__class__", "inputs['_x']", "x | attr('__dict__')"])
def test_private_access_in_an_expression_is_a_static_problem(source: str) -> None:
    """Expressions are checked like templates, their outermost node included."""
    actual = parse_expression(source)
    assert isinstance(actual, Problem)
    assert actual.message.startswith("access to '_")


@pytest.mark.parametrize(
    ("source", "tag"),
    [
        ("{% include 'other.txt' %}", "include"),
        ("{% extends 'base' %}", "extends"),
        ("{% import 'm' as m %}", "import"),
        ("{% from 'm' import x %}", "fromimport"),
    ],
)
def test_loading_other_templates_is_a_static_problem(source: str, tag: str) -> None:
    """Workflow templates cannot include, extend or import other templates."""
    actual = parse_template(source)
    assert isinstance(actual, Problem)
    assert actual.message.startswith(f"{{% {tag} %}} is not supported")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'x' * 10**10 }}", "'*' would build a value of 10,000,000,000"),
        ("{{ ('x' * 999999) * 999999 }}", "'*' would build"),
        ("{{ 2 ** (10**6) }}", "'**' would compute a number"),
        ("{{ range(10**12) }}", "range() would produce"),
        ("{% for i in range(10**6) %}{% endfor %}", "range() would produce"),
        ("{{ '%999999999s' % 'x' }}", "'%' would build"),
        ("{{ ('a' * 999999) ~ ('b' * 999999) }}", "'~' would build"),
        ("line\n{{ 'x' * 10**10 }}", "'*' would build"),
    ],
)
def test_evident_bomb_is_a_static_problem(source: str, message: str) -> None:
    """A bomb made of constants is found by parse_template, before any run."""
    actual = parse_template(source)
    assert isinstance(actual, Problem)
    assert message in actual.message
    assert source.count("\n") + 1 == actual.line


@pytest.mark.parametrize(
    ("source", "name", "line"),
    [
        ("{{ range }}", "range", 1),
        ("text\n{{ dict }} more", "dict", 2),
        ("{% for x in [1] %}{{ namespace }}{% endfor %}", "namespace", 1),
    ],
)
def test_a_global_given_as_a_value_is_a_static_problem(source: str, name: str, line: int) -> None:
    """`{{ range }}` can never be JSON data: parse_template refuses it before any run."""
    actual = parse_template(source)
    assert (
        Problem(f"{name!r} is a function, which is not JSON data", line, f"call it: {name}(...)")
        == actual
    )
    assert isinstance(parse_expression(name), Problem)


@pytest.mark.parametrize(
    "source",
    [
        "{{ range(3) }}",
        "{% set range = 3 %}{{ range }}",
        "{% for dict in [1] %}{{ dict }}{% endfor %}",
        "{{ range is defined }}",
        "{{ [1] | map('string') }}",
    ],
)
def test_a_global_called_or_shadowed_is_fine(source: str) -> None:
    """Only a global output as it is, and not reassigned, is refused statically."""
    assert isinstance(parse_template(source), Template)


def test_evident_bomb_in_an_expression_is_a_static_problem() -> None:
    """parse_expression applies the same constant checks."""
    actual = parse_expression("'x' * 10**10")
    assert isinstance(actual, Problem)
    assert "'*' would build" in actual.message


# --- syntax errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message", "line", "hint"),
    [
        ("{{ x }", "unexpected '}'", 1, None),
        ("a\nb\n{% for x in y %}", "Unexpected end of template.", 3, None),
        ("{% endfor %}", "Encountered unknown tag 'endfor'.", 1, None),
        ("line\n{{ x | uper }}", "No filter named 'uper'.", 2, "did you mean 'upper'?"),
        ("{{ x is nosuchtest }}", "No test named 'nosuchtest'.", 1, None),
    ],
)
def test_template_syntax_errors_are_problems_with_a_line(
    source: str, message: str, line: int, hint: str | None
) -> None:
    """A template that does not parse (or names an unknown filter) is a located Problem."""
    actual = parse_template(source)
    assert isinstance(actual, Problem)
    assert actual.message.startswith(message)
    assert (line, hint) == (actual.line, actual.hint)


@pytest.mark.parametrize(
    ("source", "message", "line", "hint"),
    [
        ("steps.a.status ==", "unexpected end of the expression", 1, None),
        ("inputs.x inputs.y", "unexpected 'inputs' after the expression", 1, None),
        ("inputs.x and\n\n(", "unexpected end of the expression", 3, None),
        ("", "the expression is empty", 1, None),
        ("inputs.x | uper", "No filter named 'uper'.", 1, "did you mean 'upper'?"),
        (
            "{{ inputs.x }}",
            "expected token ':', got '}'",
            1,
            "write `when:` and `for_each:` as bare expressions, without {{ }}",
        ),
    ],
)
def test_expression_syntax_errors_are_problems_with_a_line(
    source: str, message: str, line: int, hint: str | None
) -> None:
    """An expression that does not parse, or has more after it, is a located Problem."""
    assert Problem(message, line, hint) == parse_expression(source)


def attrs_without_hint(problem: Problem) -> Problem:
    return Problem(problem.message, problem.line)
