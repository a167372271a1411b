"""The sandbox at work: values as text, what it refuses, template bombs and failures."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrate._errors import TemplateError
from orchestrate._sandbox import ENVIRONMENT
from orchestrate._templating import GLOBALS, Problem, parse_template
from tests.test_templating import CONTEXT, UNTOUCHED, failure, render, template

# --- values as text ------------------------------------------------------------------

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


NOT_JSON = [
    pytest.param("{{ namespace(d=1) }}", "a namespace", {}, id="namespace"),
    pytest.param("{{ [range] }}", "a function", {}, id="function-in-a-list"),
    pytest.param("{{ {'f': dict} }}", "a function", {}, id="function-in-a-mapping"),
    pytest.param("{{ (1, namespace) }}", "a class", {}, id="class"),
    pytest.param("{{ inputs.article.upper }}", "a method", {}, id="bound-method"),
    pytest.param("{{ steps.keywords.output.get }}", "a method", {}, id="mapping-method"),
    pytest.param("{% macro m() %}{% endmacro %}{{ m }}", "a macro", {}, id="macro"),
    pytest.param("{{ x | float }}", "the number nan", {"x": "nan"}, id="nan"),
    pytest.param("{{ x | float }}", "the number inf", {"x": "inf"}, id="infinity"),
    pytest.param("{{ {(1, 2): 3} }}", "a mapping with a key that is a tuple", {}, id="tuple-key"),
    pytest.param("{{ self }}", "a TemplateReference", {}, id="self"),
]


@pytest.mark.parametrize(("source", "kind", "extra"), NOT_JSON)
def test_a_value_without_json_form_is_a_template_error(source: str, kind: str, extra: dict) -> None:
    """A typed template that gives a function, method, namespace... fails; no repr comes back."""
    error = failure(source, **extra)
    assert f"the template gives {kind}, which is not JSON data" == error.message
    assert "call a function" in (error.hint or "")


@pytest.mark.parametrize(("source", "kind", "extra"), NOT_JSON)
@pytest.mark.parametrize(
    "around",
    [
        "text {}",
        "{} | string",
        "'x' ~ {}",
        "[{}] | join",
        "'%s' % ({},)",
        "'{{}}'.format({})",
        "{} | tojson",
        "{} | pprint",
    ],
)
def test_text_never_holds_a_python_repr(source: str, kind: str, extra: dict, around: str) -> None:
    """Inserting such a value into text (by any route) fails, when checked or when rendered,
    instead of printing its repr."""
    inner = source.removeprefix("{{ ").removesuffix(" }}")
    if "{%" in source:
        text = source.replace("{{ m }}", "x {{ m }}")
    elif around == "text {}":
        text = f"text {source}"
    else:
        text = "{{ " + around.format(f"({inner})") + " }}"
    parsed = parse_template(text)  # constants are folded, and fail, before any run
    if isinstance(parsed, Problem):
        message = parsed.message
    else:
        with pytest.raises(TemplateError) as caught:
            parsed.render({**CONTEXT, **extra})
        message = caught.value.message
    assert f"the template gives {kind}, which is not JSON data" == message


@pytest.mark.parametrize(
    ("source", "typed", "text"),
    [
        ("{{ range(3) }}", [0, 1, 2], "[0, 1, 2]"),
        ("{{ {1: 2, none: true} }}", {"1": 2, "null": True}, '{"1": 2, "null": true}'),
        ("{{ inputs.tags | reverse }}", ["b", "a"], '["b", "a"]'),
        ("{{ dict(a=1).items() }}", [["a", 1]], '[["a", 1]]'),
    ],
)
def test_values_with_a_json_form_are_converted(source: str, typed: Any, text: str) -> None:
    """A range, an iterator or a non-string key becomes what JSON would make of it."""
    assert typed == template(source).evaluate(CONTEXT)
    assert f"x {text}" == render(f"x {source}")


# --- what the sandbox refuses --------------------------------------------------------


def test_globals_are_few() -> None:
    """Templates get range, dict and namespace besides their context, nothing more."""
    expected = frozenset({"dict", "namespace", "range"})
    assert expected == GLOBALS
    assert expected == set(ENVIRONMENT.globals)


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
