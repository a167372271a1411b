"""Templates and expressions: typed values, JSON in text, references, sandbox and limits."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import pytest

from orchestrate._errors import TemplateError
from orchestrate._templating import (
    GLOBALS,
    Expression,
    Problem,
    Reference,
    Template,
    is_truthy,
    parse_expression,
    parse_template,
)

CONTEXT: dict[str, Any] = {
    "inputs": {"article": "Some text", "language": "French", "count": 3, "tags": ["a", "b"]},
    "steps": {
        "summarize": {"output": "A summary", "status": "succeeded"},
        "keywords": {
            "output": {"keywords": ["x", "y"], "title": "T", "items": [1, 2]},
            "status": "succeeded",
        },
        "skipped": {"output": None, "status": "skipped"},
    },
}


UNTOUCHED = copy.deepcopy(CONTEXT)


def template(source: str) -> Template:
    parsed = parse_template(source)
    assert isinstance(parsed, Template), parsed
    return parsed


def expression(source: str) -> Expression:
    parsed = parse_expression(source)
    assert isinstance(parsed, Expression), parsed
    return parsed


def render(source: str, **extra: Any) -> str:
    return template(source).render({**CONTEXT, **extra})


def failure(source: str, **extra: Any) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        template(source).evaluate({**CONTEXT, **extra})
    assert type(caught.value) is TemplateError  # never a Jinja2 exception
    return caught.value


# --- values keep their types ---------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ inputs.count }}", 3),
        ("{{ inputs.tags }}", ["a", "b"]),
        ("{{ steps.keywords.output }}", {"keywords": ["x", "y"], "title": "T", "items": [1, 2]}),
        ("{{ steps.skipped.output }}", None),
        ("{{ inputs.count > 2 }}", True),
        ("{{ inputs.count / 2 }}", 1.5),
        ("{{ inputs.article }}", "Some text"),
        ("{{ range(3) }}", [0, 1, 2]),
        ("{{ (1, 'a') }}", [1, "a"]),
        ("{{ inputs.tags | map('upper') }}", ["A", "B"]),
        ("{{ {'n': inputs.count} }}", {"n": 3}),
        ("{{ inputs.count }} ", "3 "),
        (" {{ inputs.count }}", " 3"),
        ("{{ inputs.count }}\n", "3\n"),
        ("{{ inputs.count }}{{ inputs.count }}", "33"),
        ("count: {{ inputs.tags }}", 'count: ["a", "b"]'),
        ("plain text", "plain text"),
        ("", ""),
    ],
)
def test_evaluate_keeps_the_type_of_a_lone_expression(source: str, expected: Any) -> None:
    """One {{ expression }} and nothing else gives its value; anything more gives text."""
    actual = template(source).evaluate(CONTEXT)
    assert expected == actual
    assert type(expected) is type(actual)


def test_evaluate_returns_a_copy_of_the_context_data() -> None:
    """Changing an evaluated value does not change the step output it came from."""
    context = {"steps": {"a": {"output": {"list": [1]}}}}
    value = template("{{ steps.a.output }}").evaluate(context)
    value["list"].append(2)
    expected = {"list": [1]}
    assert expected == context["steps"]["a"]["output"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ steps.keywords.output.keywords }}", '["x", "y"]'),
        ("{{ {'a': 1} }}", '{"a": 1}'),
        ("{{ true }}", "true"),
        ("{{ none }}", "null"),
        ("{{ steps.skipped.output }}", "null"),
        ("{{ 1.5 }}", "1.5"),
        ("{{ ['é'] }}", '["é"]'),
        ("Lang: {{ inputs.language }}", "Lang: French"),
        ("{{ 'a' ~ none ~ [1] ~ true }}", "anull[1]true"),
        ("{{ inputs.tags ~ '' }}", '["a", "b"]'),
        ("{{ '<b>' | tojson }}", '"<b>"'),
        ("{{ {'b': 1, 'a': [2]} | tojson }}", '{"b": 1, "a": [2]}'),
        ("{{ inputs.tags | join(', ') }}", "a, b"),
        ("{% for t in inputs.tags %}{{ loop.index }}={{ t }};{% endfor %}", "1=a;2=b;"),
        (
            "{% for t in inputs.tags %}{{ t }}{% if not loop.last %}, {% endif %}{% endfor %}",
            "a, b",
        ),
        ("{{ steps.keywords.output.items }}", "[1, 2]"),
        ("{{ dict(a=1) }}", '{"a": 1}'),
        (
            "{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}"
            "{% endfor %}{{ ns.n }}",
            "6",
        ),
        ("{{ '%s-%03d' | format('a', 7) }}", "a-007"),
        ("{{ '%(x)s!' % {'x': inputs.language} }}", "French!"),
        ("{{ '{}!'.format(inputs.language) }}", "French!"),
        ("{{ 'ab'.center(6, '.') }}", "..ab.."),
        ("{{ [[1], [2]] | sum(start=[]) }}", "[1, 2]"),
        ("{% macro hi(name) %}Hi {{ name }}{% endmacro %}{{ hi('Ann') }}", "Hi Ann"),
        ("{{ missing | default('d') }}", "d"),
        ("{{ missing is defined }}", "false"),
        ("{{ steps.skipped.output.title | default('none') }}", "none"),
        ("last line\n", "last line\n"),
    ],
)
def test_render_inserts_strings_as_they_are_and_other_values_as_json(
    source: str, expected: str
) -> None:
    """Text gets strings raw and every other value as compact JSON, never Python's repr."""
    assert expected == render(source)


JSONISH: dict[str, Any] = {"o": {"a": [1, True, None]}, "l": [True, None, 1.5]}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ o | string }}", '{"a": [1, true, null]}'),
        ("{{ l | string }}", "[true, null, 1.5]"),
        ("{{ none | string }}", "null"),
        ("{{ l | join(',') }}", "true,null,1.5"),
        ("{{ [o, 'x'] | join(' ') }}", '{"a": [1, true, null]} x'),
        ("{{ '%s' % l }}", "[true, null, 1.5]"),
        ("{{ '%s' % o }}", '{"a": [1, true, null]}'),
        ("{{ '%s and %s' % (o, true) }}", '{"a": [1, true, null]} and true'),
        ("{{ '%(v)s' % {'v': none} }}", "null"),
        ("{{ '%5s|%03d|%.1f%%' % (true, 7, 2.25) }}", " true|007|2.2%"),
        ("{{ o | pprint }}", '{\n  "a": [\n    1,\n    true,\n    null\n  ]\n}'),
        ("{{ 'x {}'.format(o) }}", 'x {"a": [1, true, null]}'),
        ("{{ '{} {!s} {:>5}'.format(none, l, true) }}", "null [true, null, 1.5]  true"),
        ("{{ '{0[a]} {1:d}'.format(o, 3) }}", "[1, true, null] 3"),
        ("{{ '{a}'.format_map(o) }}", "[1, true, null]"),
        ("{{ '%s' | format(o) }}", '{"a": [1, true, null]}'),
        ("{{ '%s-%s' | format(l, false) }}", "[true, null, 1.5]-false"),
    ],
)
def test_filters_and_formatting_insert_json_not_repr(source: str, expected: str) -> None:
    """string, join, %, pprint, format and str.format print non-strings as JSON, not repr."""
    assert expected == render(source, **JSONISH)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ s | string }}", "hé 'q'"),
        ("{{ [s, s] | join('/') }}", "hé 'q'/hé 'q'"),
        ("{{ '%s' % s }}", "hé 'q'"),
        ("{{ '%s|%s' % (s, s) }}", "hé 'q'|hé 'q'"),
        ("{{ '<{}>'.format(s) }}", "<hé 'q'>"),
        ("{{ '{!s}'.format(s) }}", "hé 'q'"),
        ("{{ '%s' | format(s) }}", "hé 'q'"),
    ],
)
def test_filters_and_formatting_pass_strings_through(source: str, expected: str) -> None:
    """Strings go into text as they are: no quotes, no escapes."""
    assert expected == render(source, s="hé 'q'")


@pytest.mark.parametrize(
    ("source", "extra", "message"),
    [
        ("{{ big | string }}", {"big": [0] * 2_000_000}, "cannot be inserted"),
        ("{{ '%s' % big }}", {"big": [0] * 2_000_000}, "cannot be inserted"),
        ("{{ items | join(',') }}", {"items": [[0] * 20] * 10**5}, "join would build"),
        ("{{ '{}'.format(big) }}", {"big": [0] * 2_000_000}, "str.format() would build"),
        ("{{ big | pprint }}", {"big": [0] * 500_000}, "pprint would build"),
    ],
)
def test_json_text_conversions_keep_the_size_guards(source: str, extra: dict, message: str) -> None:
    """Converting a huge value to JSON text is refused like any other bomb."""
    error = failure(source, **extra)
    assert message in error.message
    assert "limits" in (error.hint or "")


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


def test_globals_are_few() -> None:
    """Templates get range, dict and namespace besides their context, nothing more."""
    assert frozenset({"dict", "namespace", "range"}) == GLOBALS


# --- the sandbox ---------------------------------------------------------------------


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
    ("source", "extra"),
    [
        ("{{ x | attr(name) }}", {"x": "", "name": "__class__"}),
        ("{{ x[name] }}", {"x": "", "name": "__class__"}),
        ("{{ '{0.__class__}'.format(1) }}", {}),
        ("{{ inputs.clear() }}", {}),
        ("{{ inputs.tags.append(1) }}", {}),
    ],
)
def test_unsafe_access_at_render_time_is_a_template_error(source: str, extra: dict) -> None:
    """What the sandbox refuses while rendering becomes a TemplateError, data untouched."""
    error = failure(source, **extra)
    assert error.message.startswith("unsafe template: ")
    assert UNTOUCHED == CONTEXT


def test_dict_global_cannot_reach_unbound_methods() -> None:
    """dict is a function, so dict.clear(inputs) cannot empty a context mapping."""
    expected = "'dict' has no attribute 'clear'"
    assert expected == failure("{{ dict.clear(inputs) }}").message
    assert UNTOUCHED == CONTEXT


# --- template bombs ------------------------------------------------------------------

DOUBLING = "{% set ns = namespace(v=V) %}{% for i in range(64) %}{% set ns.v = OP %}{% endfor %}"


def doubling(start: str, operation: str) -> str:
    return DOUBLING.replace("V", start).replace("OP", operation)


@pytest.mark.parametrize(
    ("source", "extra", "message"),
    [
        ("{{ 'x' * n }}", {"n": 10**10}, "'*' would build a value of 10,000,000,000"),
        ("{{ n * [0] }}", {"n": 10**10}, "'*' would build"),
        ("{{ 3 ** n }}", {"n": 10**9}, "'**' would compute a number of more than 1,000 digits"),
        (doubling("7", "ns.v * ns.v"), {}, "'*' would compute a number"),
        (doubling("'ab'", "ns.v + ns.v"), {}, "'+' would build"),
        (doubling("[0]", "ns.v + ns.v"), {}, "'+' would build"),
        (doubling("'ab'", "ns.v ~ ns.v"), {}, "'~' would build"),
        (doubling("[0]", "[ns.v, ns.v]"), {}, "a literal would build"),
        (doubling("{}", "{'a': ns.v, 'b': ns.v}"), {}, "a literal would build"),
        (
            "{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}",
            {"n": 99_999},
            "range() would produce more than 100,000 numbers",
        ),
        ("{{ range(n) | list }}", {"n": 10**9}, "range() would produce"),
        (
            "{% for i in x %}{% for j in x %}{% endfor %}{% endfor %}",
            {"x": [0] * 99_999},
            "more than 100,000 loop iterations and calls",
        ),
        (
            "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
            "{{ f(64) }}",
            {},
            "loop iterations and calls",
        ),
        (
            "{% for i in range(99999) %}{{ s }}{% endfor %}",
            {"s": "x" * 999_999},
            "the rendered text is longer than 10,000,000 characters",
        ),
        (
            "{% for i in range(99999) %}{% set s = 'x' * 999999 %}{% endfor %}",
            {},
            "builds more than 50,000,000 characters",
        ),
        (
            "{% set t %}{% for i in range(99999) %}" + "z" * 10**5 + "{% endfor %}{% endset %}",
            {},
            "builds more than 50,000,000 characters",
        ),
        (
            "{% set t %}{% for i in range(99999) %}{{ s }}{% endfor %}{% endset %}",
            {"s": "x" * 999_999},
            "builds more than",
        ),
        ("{{ '%*s' % (n, 'x') }}", {"n": 10**10}, "'%' would build"),
        ("{{ fmt % 'x' }}", {"fmt": "%999999999s"}, "'%' would build"),
        ("{{ fmt | format('x') }}", {"fmt": "%.999999999f"}, "'%' would build"),
        ("{{ fmt.format('x') }}", {"fmt": "{:>999999999}"}, "str.format() would build"),
        ("{{ fmt.format(n, 'x') }}", {"fmt": "{1:>{0}}", "n": 10**10}, "str.format() would"),
        (
            "{{ fmt.format_map({'a': s}) }}",
            {"fmt": "{a}" * 10**4, "s": "x" * 10**5},
            "str.format_map() would build",
        ),
        ("{{ 'x'.center(n) }}", {"n": 10**10}, "str.center() would build"),
        ("{{ 'x'.zfill(n) }}", {"n": 10**10}, "str.zfill() would build"),
        ("{{ t.expandtabs(n) }}", {"t": "\t", "n": 10**10}, "str.expandtabs() would build"),
        ("{{ s.replace('x', s) }}", {"s": "x" * 10**5}, "str.replace() would build"),
        ("{{ s.join(items) }}", {"s": "y" * 10**4, "items": ["a"] * 10**5}, "str.join() would"),
        ("{{ s.translate({120: s}) }}", {"s": "x" * 10**5}, "str.translate() would build"),
        ("{{ {}.fromkeys(range(99999), s) }}", {"s": "x" * 10**5}, "fromkeys() would build"),
        ("{{ 'x' | center(n) }}", {"n": 10**10}, "center would build"),
        ("{{ s | indent(n) }}", {"s": "a\n" * 10, "n": 10**10}, "indent would build"),
        ("{{ s | replace('x', s) }}", {"s": "x" * 10**5}, "replace would build"),
        ("{{ items | join(s) }}", {"s": "y" * 10**4, "items": ["a"] * 10**5}, "join would build"),
        (
            "{{ s | wordwrap(1, wrapstring=w) }}",
            {"s": "a " * 10**4, "w": "-" * 10**5},
            "wordwrap would build",
        ),
        ("{{ [1] | batch(n, 'x') | list }}", {"n": 10**10}, "batch would build"),
        ("{{ [1] | slice(n) | list }}", {"n": 10**10}, "slice would build"),
        ("{{ inputs | tojson(n) }}", {"n": 10**10}, "tojson would build"),
    ],
)
def test_render_time_guard_stops_a_bomb(source: str, extra: dict, message: str) -> None:
    """Each bomb fails fast with a clear message instead of hanging or exhausting memory."""
    error = failure(source, **extra)
    assert message in error.message
    assert "limits" in (error.hint or "")


def test_sum_of_lists_stays_linear() -> None:
    """Flattening with sum(start=[]) extends in place instead of copying quadratically."""
    expected = "50000"
    assert expected == render("{{ range(50000) | batch(1) | sum(start=[]) | length }}")


def test_budgets_are_per_render() -> None:
    """Each render gets a fresh budget, so a template near a limit renders every time."""
    parsed = template("{% for i in range(60000) %}{% endfor %}ok")
    expected = ["ok", "ok", "ok"]
    assert expected == [parsed.render(CONTEXT) for _ in range(3)]


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


def test_evident_bomb_in_an_expression_is_a_static_problem() -> None:
    """parse_expression applies the same constant checks."""
    actual = parse_expression("'x' * 10**10")
    assert isinstance(actual, Problem)
    assert "'*' would build" in actual.message


# --- failures: strict, located, friendly ---------------------------------------------


@pytest.mark.parametrize(
    ("source", "message", "hint"),
    [
        ("{{ missing }}", "'missing' is undefined", "available: dict, inputs, namespace"),
        ("{{ step.keywords }}", "'step' is undefined", "did you mean 'steps'?"),
        (
            "{{ steps.keywords.output.titel }}",
            "'steps.keywords.output' has no key 'titel'",
            "did you mean 'title'?",
        ),
        (
            "{{ steps.skipped.output.title }}",
            "'steps.skipped.output' is null, so it has no 'title'",
            "a skipped or failed step has output null: test its status, or use `| default`",
        ),
        ("{{ inputs.tags[5] }}", "'inputs.tags' has no item 5", "it has 2 items"),
        (
            "{{ steps.nope.output }}",
            "'steps' has no key 'nope'",
            "available: keywords, skipped, summarize",
        ),
        ("{{ inputs.language.nope }}", "'inputs.language' has no attribute 'nope'", None),
        ("{% for x in missing %}{% endfor %}", "'missing' is undefined", None),
        ("{{ [steps.keywords.output.titel] }}", "'steps.keywords.output' has no key 'titel'", None),
        ("{{ missing ~ 'x' }}", "'missing' is undefined", None),
        ("first\n{{ inputs.nope }}", "line 2: 'inputs' has no key 'nope'", None),
    ],
)
def test_undefined_values_fail_with_what_was_undefined(
    source: str, message: str, hint: str | None
) -> None:
    """Undefined names and keys raise, naming the expression and suggesting a fix."""
    error = failure(source)
    assert message == error.message
    if hint is not None:
        assert (error.hint or "").startswith(hint)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ inputs.count / zero }}", "ZeroDivisionError: division by zero"),
        ("{{ inputs.count + 'a' }}", "TypeError: unsupported operand type(s) for +"),
        ("a\nb\n{{ inputs.count + 'a' }}", "line 3: TypeError: unsupported operand"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "the template recurses too deeply"),
    ],
)
def test_other_failures_are_template_errors(source: str, message: str) -> None:
    """Python errors inside a template become a TemplateError with the template line."""
    assert failure(source, zero=0).message.startswith(message)


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


# --- expressions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('steps.keywords.status == "succeeded"', True),
        ('steps.skipped.status == "succeeded" or steps.keywords.status == "succeeded"', True),
        ('steps.skipped.status == "succeeded" and inputs.count > 1', False),
        ("inputs.count > 3", False),
        ('inputs.language != "English"', True),
        ('"a" in inputs.tags', True),
        ("not steps.skipped.output", True),
        ("steps.skipped.output is none", True),
        ("steps.keywords.output.keywords", ["x", "y"]),
        ("steps.keywords.output.items", [1, 2]),
        ("inputs.tags | length", 2),
        ("inputs.tags | map('upper')", ["A", "B"]),
        ("range(3)", [0, 1, 2]),
        ("inputs.count * 2 + 1", 7),
        ("inputs.count if inputs.count > 2 else 0", 3),
        ("inputs.count > 1\n  and inputs.count < 5", True),
    ],
)
def test_expression_evaluates_to_a_plain_value(source: str, expected: Any) -> None:
    """when: and for_each: expressions give JSON-typed values (a range becomes a list)."""
    actual = expression(source).evaluate(CONTEXT)
    assert expected == actual
    assert type(expected) is type(actual)


def test_expression_with_an_undefined_value_fails() -> None:
    """An expression reading a missing key raises instead of being false."""
    with pytest.raises(TemplateError) as caught:
        expression("steps.skipped.output.ok").evaluate(CONTEXT)
    expected = "'steps.skipped.output' is null, so it has no 'ok'"
    assert expected == caught.value.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        (0, False),
        ("", False),
        ([], False),
        ({}, False),
        (True, True),
        (1, True),
        ([0], True),
        ("0", True),
        ("false", True),
    ],
)
def test_is_truthy_follows_python_truthiness(value: Any, expected: bool) -> None:
    """when: results are judged like Jinja's {% if %}; the string "false" is true."""
    assert expected == is_truthy(value)


# --- caching and start-up ------------------------------------------------------------


def test_parsing_is_cached_by_source() -> None:
    """The same source gives the same compiled object, so for_each items reuse it."""
    assert parse_template("{{ item }}!") is parse_template("{{ item }}!")
    assert parse_expression("item > 1") is parse_expression("item > 1")


def test_importing_the_module_does_not_import_jinja2() -> None:
    """Jinja2 is imported on first use, so the CLI starts without it."""
    code = "import sys, orchestrate._templating; print('jinja2' in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    expected = "False"
    assert expected == completed.stdout.strip()


def attrs_without_hint(problem: Problem) -> Problem:
    return Problem(problem.message, problem.line)
