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
