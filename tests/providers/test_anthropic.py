"""The Anthropic Messages provider: request shape, replies, event streams, retries."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from orchestrate._errors import ProviderError
from orchestrate._result import Usage
from orchestrate.providers._anthropic import AnthropicProvider, json_instruction
from orchestrate.providers._base import LLMRequest, LLMResponse

from .conftest import split_every

pytestmark = pytest.mark.anyio

URL = "https://claude.test/v1/messages"
MODEL = "claude-sonnet-4-5"
MESSAGES = (
    {"role": "system", "content": "Be brief."},
    {"role": "system", "content": "Answer in English."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Again"},
)
TURNS = [m for m in MESSAGES if m["role"] != "system"]
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def request(**fields: Any) -> LLMRequest:
    return LLMRequest(**{"model": MODEL, "messages": MESSAGES, **fields})


def message(text: str = "Hello — ü🎉", stop_reason: str = "end_turn") -> dict[str, Any]:
    """A Messages API reply as documented."""
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "content": [{"type": "text", "text": text}],
        "usage": {"input_tokens": 25, "output_tokens": 15},
    }


def events(*pairs: tuple[str, dict[str, Any]]) -> str:
    return "".join(
        f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n" for name, data in pairs
    )


def delta(text: str) -> tuple[str, dict[str, Any]]:
    return (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


START = (
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-sonnet-4-5-20250929",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 1},
        },
    },
)
BLOCK_START = (
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
)
PING = ("ping", {"type": "ping"})
BLOCK_STOP = ("content_block_stop", {"type": "content_block_stop", "index": 0})
MESSAGE_DELTA = (
    "message_delta",
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 15},
    },
)
STOP = ("message_stop", {"type": "message_stop"})
HEAD = (START, BLOCK_START, PING, delta("Hello"), delta(""), delta(" — ü"), delta("🎉"))
STREAM = events(*HEAD, BLOCK_STOP, MESSAGE_DELTA, STOP)
EXPECTED = LLMResponse(
    text="Hello — ü🎉",
    usage=Usage(25, 15),
    attempts=1,
    model="claude-sonnet-4-5-20250929",
    response_id="msg_01XFDUDYJgAACzvnptvVoYEL",
    finish_reason="end_turn",
)


def error_event(kind: str, text: str) -> str:
    return events(("error", {"type": "error", "error": {"type": kind, "message": text}}))


def error_body(status: int, kind: str, text: str) -> httpx.Response:
    return httpx.Response(status, json={"type": "error", "error": {"type": kind, "message": text}})


# --- the request --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"max_tokens": 4096, "system": "Be brief.\n\nAnswer in English."}),
        (
            {"max_tokens": 50, "temperature": 0.0},
            {"max_tokens": 50, "temperature": 0.0, "system": "Be brief.\n\nAnswer in English."},
        ),
        (
            {"stream": True},
            {"max_tokens": 4096, "stream": True, "system": "Be brief.\n\nAnswer in English."},
        ),
        (
            {"json_mode": True},
            {
                "max_tokens": 4096,
                "system": "Be brief.\n\nAnswer in English.\n\n" + json_instruction(None),
            },
        ),
        (
            {"schema": SCHEMA, "json_mode": True},
            {
                "max_tokens": 4096,
                "system": "Be brief.\n\nAnswer in English.\n\n" + json_instruction(SCHEMA),
            },
        ),
    ],
)
async def test_request_body(
    fields: dict[str, Any], expected: dict[str, Any], make_provider, sse, respx_mock
) -> None:
    """System messages go to top-level `system`; max_tokens is always sent."""
    route = respx_mock.post(URL).mock(
        side_effect=lambda _: (
            sse([STREAM]) if fields.get("stream") else httpx.Response(200, json=message())
        )
    )
    await make_provider("anthropic").complete(request(**fields))
    body = json.loads(route.calls.last.request.content)
    assert {"model": MODEL, "messages": TURNS, **expected} == body


async def test_no_system_message_sends_no_system(make_provider, respx_mock) -> None:
    """Without system messages or JSON output there is no `system` field."""
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=message()))
    await make_provider("anthropic").complete(request(messages=tuple(TURNS)))
    assert "system" not in json.loads(route.calls.last.request.content)


def test_json_instruction_includes_the_schema() -> None:
    """The schema instruction asks for JSON only and quotes the schema."""
    text = json_instruction(SCHEMA)
    assert text.startswith("Answer with a single JSON value only")
    assert json.dumps(SCHEMA, indent=2) in text


async def test_headers(api_key: str, make_provider, respx_mock) -> None:
    """x-api-key, anthropic-version and content-type are sent; no Authorization."""
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=message()))
    await make_provider("anthropic", headers={"anthropic-beta": "x"}).complete(request())
    headers = route.calls.last.request.headers
    assert (api_key, "2023-06-01", "application/json", "x") == (
        headers["x-api-key"],
        headers["anthropic-version"],
        headers["content-type"],
        headers["anthropic-beta"],
    )
    assert "authorization" not in headers


def test_constructed_like_the_pool_does() -> None:
    """The keywords ProviderPool uses build a provider."""
    provider = AnthropicProvider(
        name="anthropic",
        base_url="https://api.anthropic.com/",
        api_key="k" * 20,
        headers={},
        concurrency=8,
    )
    assert provider.url == "https://api.anthropic.com/v1/messages"


# --- non-streaming replies ----------------------------------------------------------------


async def test_reply(make_provider, respx_mock) -> None:
    """Text, usage, ids and stop reason come from the message."""
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=message()))
    assert await make_provider("anthropic").complete(request()) == EXPECTED


async def test_reply_joins_text_blocks(make_provider, respx_mock) -> None:
    """Several text blocks are joined; other block types are skipped."""
    body = message()
    body["content"] = [
        {"type": "text", "text": "a"},
        {"type": "thinking", "thinking": "hm"},
        {"type": "text", "text": "b"},
    ]
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=body))
    assert (await make_provider("anthropic").complete(request())).text == "ab"


async def test_max_tokens_warns(make_provider, respx_mock) -> None:
    """stop_reason max_tokens marks the reply truncated and adds a warning."""
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=message("Hel", "max_tokens")))
    result = await make_provider("anthropic").complete(request())
    assert result.warnings == ("the reply was cut off at max_tokens",)
    assert result.truncated


async def test_refusal_fails(make_provider, respx_mock) -> None:
    """stop_reason refusal is a ProviderError."""
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=message("", "refusal")))
    with pytest.raises(ProviderError, match="anthropic: the model refused"):
        await make_provider("anthropic").complete(request())


async def test_invalid_json_is_retried(make_provider, retries, respx_mock) -> None:
    """A 200 whose body is not JSON is retried."""
    respx_mock.post(URL).mock(
        side_effect=[httpx.Response(200, text="<html>"), httpx.Response(200, json=message())]
    )
    result = await make_provider("anthropic").complete(request(), on_retry=retries)
    assert (result.attempts, retries.calls[0][2]) == (2, "the reply is not valid JSON")


# --- streaming ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([STREAM], id="whole"),
        pytest.param(split_every(STREAM, 1), id="byte-by-byte"),
        pytest.param(split_every(STREAM, 3), id="3-byte-chunks"),
        pytest.param(split_every(STREAM.replace("\n", "\r\n"), 11), id="crlf"),
    ],
)
async def test_stream(chunks: list[bytes], make_provider, sse, respx_mock) -> None:
    """text_delta events reach on_token; usage and ids come from start and delta events."""
    respx_mock.post(URL).mock(side_effect=lambda _: sse(chunks))
    tokens: list[str] = []
    result = await make_provider("anthropic").complete(request(stream=True), on_token=tokens.append)
    assert tokens == ["Hello", " — ü", "🎉"]
    assert result == EXPECTED


async def test_stream_without_message_stop_is_retried(
    make_provider, sse, sleeps, retries, respx_mock
) -> None:
    """A stream that ends before message_stop is truncated and retried."""
    cut = events(*HEAD, BLOCK_STOP, MESSAGE_DELTA)
    respx_mock.post(URL).mock(side_effect=[sse([cut]), sse([STREAM])])
    result = await make_provider("anthropic").complete(request(stream=True), on_retry=retries)
    assert (EXPECTED.text, 2, [0.25]) == (result.text, result.attempts, sleeps.calls)
    assert retries.calls == [(2, 0.25, "the stream ended before message_stop")]


async def test_error_event_fails(make_provider, sse, respx_mock) -> None:
    """An `error` event in the stream is a ProviderError with its message."""
    body = events(START, delta("a")) + error_event("invalid_request_error", "bad thing")
    route = respx_mock.post(URL).mock(side_effect=lambda _: sse([body]))
    with pytest.raises(ProviderError) as caught:
        await make_provider("anthropic").complete(request(stream=True))
    assert caught.value.message == "anthropic: invalid_request_error: bad thing"
    assert route.call_count == 1


async def test_overloaded_error_event_is_retried(make_provider, sse, retries, respx_mock):
    """An overloaded_error event mid-stream is retried like a 529."""
    body = events(START) + error_event("overloaded_error", "Overloaded")
    respx_mock.post(URL).mock(side_effect=[sse([body]), sse([STREAM])])
    result = await make_provider("anthropic").complete(request(stream=True), on_retry=retries)
    assert (result.attempts, retries.calls[0][2]) == (2, "overloaded_error: Overloaded")


# --- statuses -----------------------------------------------------------------------------


async def test_529_is_retried(make_provider, sleeps, retries, respx_mock) -> None:
    """529 overloaded is retried after a backoff."""
    respx_mock.post(URL).mock(
        side_effect=[
            error_body(529, "overloaded_error", "Overloaded"),
            httpx.Response(200, json=message()),
        ]
    )
    result = await make_provider("anthropic").complete(request(), on_retry=retries)
    assert (result.attempts, sleeps.calls) == (2, [0.25])
    assert retries.calls[0][2].endswith("Overloaded")


async def test_400_uses_the_provider_message(make_provider, respx_mock) -> None:
    """A 400 fails at once with Anthropic's own error message."""
    text = "messages: roles must alternate between user and assistant"
    route = respx_mock.post(URL).mock(return_value=error_body(400, "invalid_request_error", text))
    with pytest.raises(ProviderError) as caught:
        await make_provider("anthropic").complete(request())
    assert f"anthropic: HTTP 400 from {URL}: {text}" == caught.value.message
    assert route.call_count == 1


async def test_401_hint_names_anthropic_key(api_key: str, make_provider, respx_mock) -> None:
    """A 401 hints at ANTHROPIC_API_KEY and never shows the key."""
    respx_mock.post(URL).mock(
        return_value=error_body(401, "authentication_error", f"invalid x-api-key {api_key}")
    )
    with pytest.raises(ProviderError) as caught:
        await make_provider("anthropic").complete(request())
    assert caught.value.hint == "the API key was rejected: check ANTHROPIC_API_KEY"
    assert api_key not in caught.value.format()


async def test_retry_after_on_429(make_provider, sleeps, respx_mock) -> None:
    """Anthropic's retry-after header is waited exactly."""
    limited = error_body(429, "rate_limit_error", "slow down")
    limited.headers["retry-after"] = "12"
    respx_mock.post(URL).mock(side_effect=[limited, httpx.Response(200, json=message())])
    await make_provider("anthropic").complete(request())
    assert sleeps.calls == [12.0]


async def test_retry_reason_is_redacted(api_key: str, make_provider, sse, retries, respx_mock):
    """A key echoed in a retried error event never reaches on_retry."""
    body = error_event("overloaded_error", f"busy (key {api_key})")
    respx_mock.post(URL).mock(side_effect=[sse([body]), sse([STREAM])])
    await make_provider("anthropic").complete(request(stream=True), on_retry=retries)
    assert retries.calls[0][2] == "overloaded_error: busy (key [REDACTED])"


# --- odd replies --------------------------------------------------------------------------

BAD_COUNTS = ["lots", None, True, [25], {"n": 25}, 2.5, -1, "25"]


@pytest.mark.parametrize("bad", BAD_COUNTS)
async def test_usage_count_that_is_not_an_int_is_ignored(bad: Any, make_provider, respx_mock):
    """A usage field that is not an int counts as 0; the reply still succeeds at once."""
    body = {**message(), "usage": {"input_tokens": bad, "output_tokens": 15}}
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=body))
    result = await make_provider("anthropic").complete(request())
    assert (result.text, result.usage, result.attempts) == (EXPECTED.text, Usage(0, 15), 1)


@pytest.mark.parametrize("bad", BAD_COUNTS)
async def test_streamed_usage_count_that_is_not_an_int_is_ignored(
    bad: Any, make_provider, sse, respx_mock
) -> None:
    """In a stream, a count that is not an int is skipped and the last good one kept."""
    odd_delta = (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": bad},
        },
    )
    body = events(*HEAD, BLOCK_STOP, odd_delta, STOP)
    respx_mock.post(URL).mock(side_effect=lambda _: sse([body]))
    result = await make_provider("anthropic").complete(request(stream=True))
    assert (result.text, result.usage, result.attempts) == (EXPECTED.text, Usage(25, 1), 1)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({**message(), "content": ["Hello"]}, id="block-string"),
        pytest.param({**message(), "content": [{"type": "text", "text": 5}]}, id="text-number"),
        pytest.param({**message(), "content": {"type": "text", "text": "a"}}, id="content-object"),
    ],
)
async def test_malformed_reply_is_retried(body: dict, make_provider, retries, respx_mock):
    """Any other unexpected shape is retried like a 5xx, never an internal error."""
    respx_mock.post(URL).mock(
        side_effect=[httpx.Response(200, json=body), httpx.Response(200, json=message())]
    )
    result = await make_provider("anthropic").complete(request(), on_retry=retries)
    assert (result.text, result.attempts, len(retries.calls)) == (EXPECTED.text, 2, 1)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(
            ("message_start", {"type": "message_start", "message": "hi"}), id="message-string"
        ),
        pytest.param(
            ("content_block_delta", {"type": "content_block_delta", "delta": [1]}), id="delta-list"
        ),
        pytest.param(
            (
                "content_block_delta",
                {"type": "content_block_delta", "delta": {"type": "text_delta", "text": 5}},
            ),
            id="text-number",
        ),
        pytest.param(
            ("message_delta", {"type": "message_delta", "delta": "end_turn"}),
            id="message-delta-string",
        ),
    ],
)
async def test_malformed_stream_event_is_retried(
    bad: tuple[str, dict], make_provider, sse, retries, respx_mock
) -> None:
    """An event of an unexpected shape is retried; on_token sees the retry's tokens."""
    broken = events(START, bad, STOP)
    respx_mock.post(URL).mock(side_effect=[sse([broken]), sse([STREAM])])
    tokens: list[str] = []
    result = await make_provider("anthropic").complete(
        request(stream=True), on_token=tokens.append, on_retry=retries
    )
    assert (result.text, result.attempts, tokens) == (EXPECTED.text, 2, ["Hello", " — ü", "🎉"])


async def test_odd_ids_and_stop_reason_are_ignored(make_provider, respx_mock) -> None:
    """A model, id or stop_reason that is not a string is dropped, not an error."""
    body = {**message(), "model": 1, "id": ["x"], "stop_reason": {"a": 1}}
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=body))
    result = await make_provider("anthropic").complete(request())
    assert (result.text, result.model, result.response_id, result.finish_reason) == (
        EXPECTED.text,
        None,
        None,
        None,
    )
