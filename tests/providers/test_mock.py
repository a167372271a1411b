"""The mock provider: deterministic answers, minimal schema instances, latency, streaming."""

from __future__ import annotations

import asyncio
from typing import Any

import jsonschema
import pytest

from orchestrate._errors import StepTimeout
from orchestrate._instances import minimal_instance
from orchestrate.providers._base import LLMRequest
from orchestrate.providers._mock import MockProvider

TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                "next": {"$ref": "#/$defs/node"},
            },
            "required": ["name"],
        }
    },
    "$ref": "#/$defs/node",
}


@pytest.mark.parametrize(
    "schema",
    [
        {
            "type": "object",
            "properties": {
                "a": {"type": "string", "minLength": 6},
                "n": {"type": "integer", "minimum": 3},
            },
            "required": ["a", "n"],
        },
        {"type": "array", "items": {"enum": ["x", "y"]}, "minItems": 2},
        {"anyOf": [{"type": "null"}, {"type": "number", "exclusiveMinimum": 1}]},
        {"$defs": {"a/b": {"const": 7}}, "$ref": "#/$defs/a~1b"},
        TREE,
    ],
)
def test_minimal_instances_are_valid(schema: dict[str, Any]) -> None:
    """Each instance satisfies its schema, recursive schemas included."""
    jsonschema.validate(minimal_instance(schema, schema), schema)


def test_optional_fields_and_lists_are_filled_near_the_top() -> None:
    """Near the top an instance shows every field and one list item, to exercise for_each."""
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
    }
    assert minimal_instance(schema, schema) == {"tags": ["mock"]}


def request(**fields: Any) -> LLMRequest:
    return LLMRequest(
        model="m", messages=({"role": "user", "content": "Tell me a joke"},), **fields
    )


def test_mock_text_wins_and_usage_is_estimated() -> None:
    """A step's rendered `mock:` text is the answer; usage counts about 4 chars a token."""
    response = asyncio.run(MockProvider().complete(request(mock_text="twelve chars")))
    assert (response.text, response.usage.input_tokens, response.usage.output_tokens) == (
        "twelve chars",
        4,
        3,
    )


def test_streaming_sends_the_text_in_pieces() -> None:
    """With stream and on_token, the pieces add up to the answer."""
    pieces: list[str] = []
    response = asyncio.run(
        MockProvider().complete(request(mock_text="a b  c", stream=True), on_token=pieces.append)
    )
    assert len(pieces) == 3
    assert "".join(pieces) == response.text == "a b  c"


def test_latency_longer_than_the_timeout_times_out() -> None:
    """A simulated latency over the step's timeout fails like a slow provider."""
    with pytest.raises(StepTimeout):
        asyncio.run(MockProvider(latency=1).complete(request(timeout=0.01)))
