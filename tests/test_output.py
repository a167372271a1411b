"""Parsing a model's reply for `output: json`, with and without a schema."""

from __future__ import annotations

import pytest

from orchestrate._errors import InvalidOutput
from orchestrate._output import parse_json_reply

SCHEMA = {
    "type": "object",
    "properties": {"keywords": {"type": "array", "items": {"type": "string"}}},
    "required": ["keywords"],
}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("[1, 2]", [1, 2]),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('```\n{"a": 1}\n```', {"a": 1}),
        ('  ```json\n{"a": [true, null]}\n```  \n', {"a": [True, None]}),
        ("42", 42),
    ],
)
def test_json_replies_parse_with_or_without_a_fence(reply: str, expected: object) -> None:
    """A reply is JSON as it is or inside a ```json fence."""
    assert parse_json_reply(reply, None) == expected


@pytest.mark.parametrize("reply", ["Sure! Here it is", '{"a": 1', "```json\n{oops}\n```"])
def test_invalid_json_is_an_invalid_output(reply: str) -> None:
    """Text that is not JSON fails with a message saying where the JSON broke."""
    with pytest.raises(InvalidOutput, match="the reply is not valid JSON"):
        parse_json_reply(reply, None)


FENCED = '```json\n{"a": 1}\n```'


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (f"Sure!\n{FENCED}\nHope this helps", {"a": 1}),
        (f"Here you go:\n\n{FENCED}", {"a": 1}),
        (f"{FENCED}\n\nLet me know if you need more.", {"a": 1}),
        ("Sure:\n```\n[1, 2]\n```\nDone.", [1, 2]),
        ('Run:\n```sh\nls {a,b}\n```\nthen\n```json\n{"b": 2}\n```', {"b": 2}),
        ('```json\n{"code": "```py\\nx = 1\\n```"}\n```', {"code": "```py\nx = 1\n```"}),
        ('Here is the result: {"a": [1, 2]}. Done.', {"a": [1, 2]}),
        ('The list (as asked):\n[{"a": 1}, {"b": [2]}]\nCheers', [{"a": 1}, {"b": [2]}]),
    ],
)
def test_json_is_found_in_prose(reply: str, expected: object) -> None:
    """One fenced block, or one bare object or array, is taken from the prose around it."""
    assert parse_json_reply(reply, None) == expected


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (
            'One:\n```json\n{"a": 1}\n```\nTwo:\n```json\n{"a": 2}\n```',
            "the reply holds 2 JSON code blocks, not one",
        ),
        ('Either {"a": 1} or {"a": 2}', "Extra data at line 1 column 17"),
        ('Option [1] is {"a": 1}', "Extra data at line 1 column 12"),
        (
            'Intro\n```json\n{"a": 1,}\n```\nOutro',
            "Expecting property name enclosed in double quotes at line 3 column 9",
        ),
        ('Broken: {"a": 1 "b": [1, 2]}', "Expecting ',' delimiter at line 1 column 17"),
        ("[" * 100_000, "it is nested too deeply"),
    ],
)
def test_ambiguous_or_broken_json_in_prose_fails(reply: str, problem: str) -> None:
    """Two candidates, or a broken one, fail saying why; no part of broken JSON is taken."""
    with pytest.raises(InvalidOutput) as caught:
        parse_json_reply(reply, None)
    assert problem in caught.value.message


def test_schema_mismatch_names_the_place() -> None:
    """A reply that does not match the schema fails with the JSON path of the problem."""
    with pytest.raises(InvalidOutput) as caught:
        parse_json_reply('{"keywords": ["a", 3]}', SCHEMA)
    assert caught.value.message == (
        "the reply does not match the schema at $.keywords[1]: 3 is not of type 'string'"
    )


def test_schema_match_returns_the_value() -> None:
    """A reply that matches the schema is returned parsed."""
    assert parse_json_reply('{"keywords": ["a"]}', SCHEMA) == {"keywords": ["a"]}


@pytest.mark.parametrize("reply", ["NaN", "[1, Infinity]", '{"a": -Infinity}'])
def test_nan_and_infinity_are_not_json(reply: str) -> None:
    """Python's JSON extensions (NaN, Infinity, -Infinity) are refused as invalid JSON."""
    with pytest.raises(InvalidOutput, match="the reply is not valid JSON"):
        parse_json_reply(reply, None)


def test_a_remote_ref_is_never_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    """A schema's `$ref` to a URL fails the output instead of making a request."""
    import urllib.request

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the schema's $ref was fetched")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    schema = {"$ref": "https://example.com/schema.json"}
    with pytest.raises(InvalidOutput) as caught:
        parse_json_reply('{"a": 1}', schema)
    assert caught.value.message == (
        "the step's schema cannot be used: remote $ref 'https://example.com/schema.json': "
        "orchestrate never fetches schemas"
    )


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#/$defs/nope"},
        {"properties": {"a": {"type": "string", "pattern": "("}}},
        {"type": "object", "patternProperties": {"[": {"type": "integer"}}},
        {"$defs": {"loop": {"$ref": "#/$defs/loop"}}, "$ref": "#/$defs/loop"},
    ],
    ids=["unresolvable-ref", "bad-pattern", "bad-pattern-property", "ref-loop"],
)
def test_an_unusable_schema_is_an_invalid_output(schema: dict) -> None:
    """A schema that cannot be applied fails the step's output; nothing else escapes."""
    with pytest.raises(InvalidOutput, match=r"^the step's schema cannot be used: "):
        parse_json_reply('{"a": "b"}', schema)


def test_local_refs_with_escapes_resolve() -> None:
    """`#/$defs/...` pointers, `~1` (/) and `~0` (~) escapes included, still work."""
    schema = {
        "$defs": {"a/b": {"type": "object", "required": ["x"]}, "c~d": {"type": "integer"}},
        "allOf": [{"$ref": "#/$defs/a~1b"}],
        "properties": {"x": {"$ref": "#/$defs/c~0d"}},
    }
    assert parse_json_reply('{"x": 1}', schema) == {"x": 1}
    with pytest.raises(InvalidOutput, match="does not match the schema"):
        parse_json_reply('{"x": "no"}', schema)
