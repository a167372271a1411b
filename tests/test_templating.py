"""The templating front: typed values, text, expressions, caching, and a start without Jinja2."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from typing import Any

import pytest

from orchestrate._errors import TemplateError
from orchestrate._templating import (
    Expression,
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


# --- text and lookups render without Jinja2 --------------------------------------------

PLAIN_CONTEXT: dict[str, Any] = {
    "inputs": {"name": "Ann", "count": 3, "ratio": 0.25, "big": 10**30, "flag": True},
    "steps": {
        "a": {"output": "Hello", "status": "succeeded"},
        "b": {"output": {"title": "T", "items": ["x", "y"], "n": None, "items2": []}},
        "c": {"output": None, "status": "skipped"},
        "d": {"output": "x" * 20, "status": "succeeded"},
    },
    "item": "it",
}


@pytest.mark.parametrize(
    ("source", "plain"),
    [
        ("plain text", True),
        ("", True),
        ("last line\n", True),
        ("Summarize: {{ steps.a.output }}", True),
        ("{{ steps.a.output }}{{ steps.a.output }}", True),
        ("{{ inputs.count }} items at {{ inputs.ratio }}", True),
        ("{{ inputs.flag }} / {{ steps.c.output }} / {{ steps.b.output.n }}", True),
        ("{{ steps.b.output.title }} {{ steps.b.output['title'] }}", True),
        ("{{ steps.b.output.items[0] }}{{ steps.b.output.items[-1] }}", True),
        ("{{ steps['a'].output }}", True),
        ("{{ item }}!", True),
        ("{{- steps.a.output -}}  \n", True),
        ("{% raw %}{{ not a lookup }}{% endraw %}", True),
        # what the sandbox renders: JSON, a missing key, an index out of range, big numbers
        ("{{ steps.b.output }}", False),
        ("{{ steps.b.output.items }}", False),
        ("{{ steps.b.output.items2 }}", False),
        ("{{ steps.b.output.items[5] | default('none') }}", False),
        ("{{ inputs.big }}", False),
        ("{{ steps.a.output | upper }}", False),
    ],
)
def test_plain_templates_render_as_the_sandbox_does(source: str, plain: bool) -> None:
    """Text and lookups of strings and numbers skip Jinja2 with the sandbox's exact result."""
    from orchestrate import _sandbox, _templating

    parsed = template(source)
    typed = parsed.evaluate(PLAIN_CONTEXT)
    assert parsed.render(PLAIN_CONTEXT) == _sandbox.render_template(
        source, PLAIN_CONTEXT, typed=single_expression_of(source)
    )
    if single_expression_of(source):
        assert typed == _sandbox.evaluate_template(source, PLAIN_CONTEXT)
        assert type(typed) is type(_sandbox.evaluate_template(source, PLAIN_CONTEXT))
    parts = parsed._parts
    plain_text = None if parts is None else _templating._plain_text(parts, PLAIN_CONTEXT)
    assert (plain_text is not None) is plain


def single_expression_of(source: str) -> bool:
    return template(source)._typed


@pytest.mark.parametrize(
    ("source", "context"),
    [
        ("Hi {{ inputs.nme }}", {"inputs": {"name": "Ann"}}),
        ("{{ steps.a.output.missing }}", {"steps": {"a": {"output": {}}}}),
        ("{{ steps.a.output.items[3] }}", {"steps": {"a": {"output": {"items": []}}}}),
        ("{{ inputs.text.upper }}", {"inputs": {"text": "abc"}}),
        ("{{ loop }}", {}),
        ("{{ self }}", {"self": "hi"}),
        ("{{ self.x }}", {"self": {"x": "hi"}}),
    ],
)
def test_a_plain_lookup_that_fails_gives_the_sandboxs_error(
    source: str, context: dict[str, Any]
) -> None:
    """A lookup that finds nothing falls back to the sandbox, and fails as it does."""
    from orchestrate import _sandbox

    with pytest.raises(TemplateError) as caught:
        template(source).render(context)
    with pytest.raises(TemplateError) as direct:
        _sandbox.render_template(source, context, typed=template(source)._typed)
    assert str(caught.value) == str(direct.value)
    assert caught.value.hint == direct.value.hint


def test_a_plain_template_longer_than_the_limit_fails_as_in_the_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The output limit holds on the way that skips Jinja2 too."""
    from orchestrate import _sandbox, _templating

    monkeypatch.setattr(_templating, "MAX_OUTPUT", 10)
    monkeypatch.setattr(_sandbox, "MAX_OUTPUT", 10)
    context = {"steps": {"a": {"output": "x" * 6}}}
    assert template("{{ steps.a.output }}").render(context) == "x" * 6
    with pytest.raises(TemplateError, match="longer than 10 characters"):
        template("{{ steps.a.output }}{{ steps.a.output }}").render(context)


def test_a_run_of_plain_templates_imports_no_jinja2(tmp_path: Any) -> None:
    """A workflow of text and lookups checked before runs without importing Jinja2."""
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: plain\ninputs:\n  topic: {type: string}\nsteps:\n"
        "  - id: outline\n    prompt: 'Outline {{ inputs.topic }}'\n"
        "  - id: draft\n    prompt: 'Draft from {{ steps.outline.output }}'\n"
        "outputs:\n  draft: '{{ steps.draft.output }}'\n"
    )
    code = (
        "import sys, json; from orchestrate import run_workflow; "
        f"result = run_workflow({str(flow)!r}, {{'topic': 'tea'}}, mock=True); "
        "print(json.dumps(['jinja2' in sys.modules, result.outputs]))"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        for _ in range(2)  # the first checks the templates and fills the cache
    ]
    imported, outputs = json.loads(runs[1].stdout)
    assert imported is False
    assert "Outline tea" in outputs["draft"]
    assert json.loads(runs[0].stdout) == [True, outputs]


def test_importing_jinja2_at_the_first_render_does_not_move_it_to_a_thread(
    tmp_path: Any,
) -> None:
    """With the templates cached, the first render imports Jinja2 on the event loop; that
    time is not the render's, so a quick render stays on the loop."""
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: items\nsteps:\n  - id: each\n    for_each: range(3)\n    prompt: 'Item {{ item }}'\n"
    )
    code = (
        "import sys, json; from orchestrate import _templating, _threads, run_workflow\n"
        "_templating.INLINE_SECONDS = 0.005  # well under the import, well over the render\n"
        "moved = []\n"
        "real = _threads.in_daemon_thread\n"
        "async def spy(*args, **kwargs):\n"
        "    moved.append(1)\n"
        "    return await real(*args, **kwargs)\n"
        "_threads.in_daemon_thread = spy\n"
        f"result = run_workflow({str(flow)!r}, mock=True)\n"
        "print(json.dumps([len(moved), result.status]))\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        for _ in range(2)  # the first fills the template cache
    ]
    assert json.loads(runs[1].stdout) == [0, "succeeded"]
