"""The OpenAI chat completions provider: request shape, replies, streams."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from orchestrate._errors import ProviderError
from orchestrate._result import Usage
from orchestrate.providers._base import LLMRequest, LLMResponse
from orchestrate.providers._openai import (
    JSON_INSTRUCTION,
    OpenAIProvider,
    fits_strict_mode,
    uses_max_completion_tokens,
)

from .conftest import split_every, sse_lines

pytestmark = pytest.mark.anyio

URL = "https://api.test/v1/chat/completions"
MESSAGES = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"})
SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer"}},
    "required": ["n"],
    "additionalProperties": False,
}


def request(**fields: Any) -> LLMRequest:
    return LLMRequest(**{"model": "gpt-4o-mini", "messages": MESSAGES, **fields})


def reply(content: str | None = "Hello!", finish_reason: str = "stop", **message: Any) -> dict:
    """A chat.completion object as the API documents it."""
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": content, "refusal": None, **message},
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


def chunk(content: str | None = None, finish_reason: str | None = None, **delta: Any) -> dict:
    """A chat.completion.chunk with one choice (usage null, as with include_usage)."""
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "usage": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


USAGE_CHUNK = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion.chunk",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}
STREAM = sse_lines(
    chunk("", role="assistant"),
    chunk("Hel"),
    chunk(None),
    chunk("lo — ü"),
    chunk("🎉"),
    chunk(None, finish_reason="stop"),
    USAGE_CHUNK,
    "[DONE]",
)
EXPECTED = LLMResponse(
    text="Hello — ü🎉",
    usage=Usage(12, 3),
    attempts=1,
    model="gpt-4o-mini-2024-07-18",
    response_id="chatcmpl-abc123",
    finish_reason="stop",
)


async def sent(route: respx.Route) -> tuple[dict[str, Any], httpx.Headers]:
    call = route.calls.last.request
    return json.loads(call.content), call.headers


# --- the request --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "extra"),
    [
        ({}, {}),
        ({"temperature": 0.2}, {"temperature": 0.2}),
        ({"temperature": 0.0}, {"temperature": 0.0}),
        ({"max_tokens": 100}, {"max_tokens": 100}),
        ({"max_tokens": 100, "model": "o1-mini"}, {"max_completion_tokens": 100}),
        ({"max_tokens": 100, "model": "o3"}, {"max_completion_tokens": 100}),
        ({"max_tokens": 100, "model": "o4-mini"}, {"max_completion_tokens": 100}),
        ({"max_tokens": 100, "model": "gpt-5-mini"}, {"max_completion_tokens": 100}),
        ({"max_tokens": 100, "model": "openai/gpt-5"}, {"max_completion_tokens": 100}),
        (
            {"schema": SCHEMA, "json_mode": True},
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": SCHEMA, "strict": True},
                }
            },
        ),
        ({"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}),
    ],
)
async def test_request_body(
    fields: dict[str, Any], extra: dict[str, Any], make_provider, sse, respx_mock
) -> None:
    """The body holds model and messages plus only the options the step sets."""
    route = respx_mock.post(URL).mock(
        side_effect=lambda _: (
            sse([STREAM]) if fields.get("stream") else httpx.Response(200, json=reply())
        )
    )
    req = request(**fields)
    await make_provider().complete(req)
    body, _ = await sent(route)
    assert {"model": req.model, "messages": list(MESSAGES), **extra} == body


SYSTEM, USER = MESSAGES


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (MESSAGES, [{"role": "system", "content": f"Be brief.\n\n{JSON_INSTRUCTION}"}, USER]),
        ((USER,), [{"role": "system", "content": JSON_INSTRUCTION}, USER]),
        (
            ({"role": "system", "content": ""}, USER),
            [{"role": "system", "content": JSON_INSTRUCTION}, USER],
        ),
        (
            ({"role": "user", "content": "List three colours as Json."},),
            [{"role": "user", "content": "List three colours as Json."}],
        ),
        (
            ({"role": "system", "content": "Answer in JSON."}, USER),
            [{"role": "system", "content": "Answer in JSON."}, USER],
        ),
    ],
)
async def test_json_object_mode_mentions_json(
    messages: tuple[dict[str, str], ...],
    expected: list[dict[str, str]],
    make_provider,
    respx_mock,
) -> None:
    """`json_object` mode gets the word JSON in the system prompt when no message has it."""
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=reply("{}")))
    await make_provider().complete(request(messages=messages, json_mode=True))
    body, _ = await sent(route)
    assert {
        "model": "gpt-4o-mini",
        "messages": expected,
        "response_format": {"type": "json_object"},
    } == body


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("o1", True),
        ("o1-preview", True),
        ("o3-mini", True),
        ("o4-mini", True),
        ("gpt-5", True),
        ("gpt-5-nano", True),
        ("openrouter/openai/o3", True),
        ("gpt-4o", False),
        ("gpt-4.1", False),
        ("llama3.1", False),
        ("omni-model", False),
    ],
)
def test_reasoning_model_names(model: str, expected: bool) -> None:
    """o-series and gpt-5 names take max_completion_tokens, others max_tokens."""
    assert expected == uses_max_completion_tokens(model)


async def test_headers_with_key(api_key: str, make_provider, respx_mock) -> None:
    """With a key: a Bearer header, JSON content type and the extra headers."""
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=reply()))
    provider = make_provider(headers={"HTTP-Referer": "https://example.org"})
    await provider.complete(request())
    _, headers = await sent(route)
    assert f"Bearer {api_key}" == headers["authorization"]
    assert headers["content-type"] == "application/json"
    assert headers["http-referer"] == "https://example.org"


async def test_no_key_sends_no_authorization(make_provider, respx_mock) -> None:
    """A custom base_url without a key (Ollama, llama.cpp) sends no Authorization header."""
    url = "http://localhost:11434/v1/chat/completions"
    route = respx_mock.post(url).mock(return_value=httpx.Response(200, json=reply()))
    await make_provider(base_url="http://localhost:11434/v1/", api_key=None).complete(request())
    _, headers = await sent(route)
    assert "authorization" not in headers


def test_constructed_like_the_pool_does() -> None:
    """The keywords ProviderPool uses build a provider."""
    provider = OpenAIProvider(
        name="local", base_url="http://x/v1", api_key=None, headers={}, concurrency=32
    )
    built = (provider.name, provider.url, provider._pool.size)
    assert built == ("local", "http://x/v1/chat/completions", 8)


# --- non-streaming replies ----------------------------------------------------------------


async def test_reply(make_provider, respx_mock) -> None:
    """Text, usage, model id, response id and finish reason come from the reply."""
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=reply("Hello — ü🎉")))
    assert await make_provider().complete(request()) == EXPECTED


async def test_cut_off_reply_warns(make_provider, respx_mock) -> None:
    """finish_reason "length" marks the reply truncated and adds a warning."""
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=reply("Hel", "length")))
    result = await make_provider().complete(request(max_tokens=1))
    assert result.finish_reason == "length"
    assert result.warnings == ("the reply was cut off at max_tokens",)
    assert result.truncated


@pytest.mark.parametrize(
    ("finish_reason", "truncated"),
    [
        ("length", True),
        ("max_tokens", True),
        ("stop", False),
        ("end_turn", False),
        ("content_filter", False),
        (None, False),
    ],
)
def test_truncated_means_cut_off_at_max_tokens(finish_reason: str | None, truncated: bool) -> None:
    """Only OpenAI's "length" and Anthropic's "max_tokens" mark a reply truncated."""
    assert LLMResponse(text="x", finish_reason=finish_reason).truncated is truncated


async def test_refusal_fails(make_provider, respx_mock) -> None:
    """A refusal in the message is a ProviderError quoting it."""
    body = reply(None, refusal="I can't help with that.")
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(ProviderError) as caught:
        await make_provider().complete(request())
    assert caught.value.message == "openai: the model refused: I can't help with that."


async def test_error_object_in_200_fails(make_provider, respx_mock) -> None:
    """A 200 carrying an error object fails with its message."""
    body = {"error": {"message": "model overloaded upstream", "code": 502}}
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(ProviderError, match="openai: model overloaded upstream"):
        await make_provider().complete(request())


async def test_reply_without_choices_is_retried(make_provider, retries, respx_mock) -> None:
    """A JSON reply with no choices is malformed and retried."""
    respx_mock.post(URL).mock(
        side_effect=[httpx.Response(200, json={"choices": []}), httpx.Response(200, json=reply())]
    )
    result = await make_provider().complete(request(), on_retry=retries)
    assert (result.attempts, retries.calls[0][2]) == (2, "the reply has no choices")


# --- streaming ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([STREAM], id="whole"),
        pytest.param(split_every(STREAM, 1), id="byte-by-byte"),
        pytest.param(split_every(STREAM, 7), id="7-byte-chunks"),
        pytest.param(split_every(STREAM.replace("\n", "\r\n"), 5), id="crlf-5-byte-chunks"),
    ],
)
async def test_stream(chunks: list[bytes], make_provider, sse, respx_mock) -> None:
    """Tokens reach on_token as they come, empty deltas skipped, usage from the last chunk."""
    respx_mock.post(URL).mock(side_effect=lambda _: sse(chunks))
    tokens: list[str] = []
    result = await make_provider().complete(request(stream=True), on_token=tokens.append)
    assert tokens == ["Hel", "lo — ü", "🎉"]
    assert result == EXPECTED


async def test_stream_stops_at_done(make_provider, sse, respx_mock) -> None:
    """Nothing after [DONE] is read into the reply."""
    body = sse_lines(chunk("a"), "[DONE]", chunk("junk after done"))
    respx_mock.post(URL).mock(side_effect=lambda _: sse([body]))
    result = await make_provider().complete(request(stream=True))
    assert (result.text, result.usage, result.finish_reason) == ("a", None, None)


async def test_stream_with_finish_reason_but_no_done(make_provider, sse, respx_mock) -> None:
    """A server that omits [DONE] but sent a finish_reason is complete."""
    body = sse_lines(chunk("ok"), chunk(None, finish_reason="length"))
    respx_mock.post(URL).mock(side_effect=lambda _: sse([body]))
    result = await make_provider().complete(request(stream=True))
    assert (result.text, result.warnings) == ("ok", ("the reply was cut off at max_tokens",))


async def test_truncated_stream_is_retried(make_provider, sse, sleeps, retries, respx_mock):
    """A stream that ends without [DONE] or finish_reason is retried with a fresh body."""
    cut = sse_lines(chunk("Hel"))
    respx_mock.post(URL).mock(side_effect=[sse([cut]), sse([STREAM])])
    result = await make_provider().complete(request(stream=True), on_retry=retries)
    assert (result.text, result.attempts, sleeps.calls) == ("Hello — ü🎉", 2, [0.25])
    reason = "the stream ended before [DONE] and without a finish_reason"
    assert [(2, 0.25, reason)] == retries.calls


async def test_truncated_stream_every_time_fails(make_provider, sse, respx_mock) -> None:
    """A stream truncated on every attempt is an error, never a success."""
    route = respx_mock.post(URL).mock(side_effect=lambda _: sse([sse_lines(chunk("Hel"))]))
    with pytest.raises(ProviderError, match=r"ended before \[DONE\].*gave up after 3 attempts"):
        await make_provider().complete(request(stream=True))
    assert route.call_count == 3


async def test_stream_cut_mid_event_is_retried(make_provider, sse, respx_mock) -> None:
    """A connection that drops inside a JSON chunk is retried."""
    cut = STREAM[: STREAM.index("lo —") + 2]
    respx_mock.post(URL).mock(side_effect=[sse([cut]), sse([STREAM])])
    assert (await make_provider().complete(request(stream=True))).attempts == 2


async def test_error_object_in_stream_fails(make_provider, sse, respx_mock) -> None:
    """An {"error": ...} event inside a 200 stream fails with its message, not retried."""
    body = sse_lines(
        chunk("a"), {"error": {"message": "The server had an error", "type": "server_error"}}
    )
    route = respx_mock.post(URL).mock(side_effect=lambda _: sse([body]))
    with pytest.raises(ProviderError, match="openai: The server had an error"):
        await make_provider().complete(request(stream=True))
    assert route.call_count == 1


async def test_streamed_refusal_fails(make_provider, sse, respx_mock) -> None:
    """Refusal deltas are collected and reported as a refusal."""
    body = sse_lines(
        chunk(None, refusal="I can't"),
        chunk(None, refusal=" do that."),
        chunk(None, finish_reason="stop"),
        "[DONE]",
    )
    respx_mock.post(URL).mock(side_effect=lambda _: sse([body]))
    with pytest.raises(ProviderError, match=r"the model refused: I can't do that\.$"):
        await make_provider().complete(request(stream=True))


async def test_server_ignoring_stream_flag(make_provider, respx_mock) -> None:
    """A JSON reply to a streaming request is parsed and its text sent to on_token."""
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=reply("Hello — ü🎉")))
    tokens: list[str] = []
    result = await make_provider().complete(request(stream=True), on_token=tokens.append)
    assert (result, tokens) == (EXPECTED, ["Hello — ü🎉"])


async def test_stream_error_status_reads_the_body(make_provider, respx_mock) -> None:
    """An error status on a streaming request still reports the provider's message."""
    body = {"error": {"message": "Unknown model gpt-x", "type": "invalid_request_error"}}
    respx_mock.post(URL).mock(return_value=httpx.Response(404, json=body))
    with pytest.raises(ProviderError, match="Unknown model gpt-x") as caught:
        await make_provider().complete(request(stream=True))
    assert caught.value.hint == "check the model name and the provider's base_url"


async def test_stream_chunk_that_is_not_an_object_is_retried(make_provider, sse, respx_mock):
    """A data line holding JSON that is not an object is treated as a broken stream."""
    respx_mock.post(URL).mock(side_effect=[sse([sse_lines("[1, 2]")]), sse([STREAM])])
    assert (await make_provider().complete(request(stream=True))).attempts == 2


CLOSED = {
    "type": "object",
    "properties": {"a": {"type": "string"}},
    "required": ["a"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("schema", "strict"),
    [
        (CLOSED, True),
        ({"type": "array", "items": CLOSED}, True),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}, False),
        ({**CLOSED, "required": []}, False),
        ({**CLOSED, "properties": {"a": {"type": "object", "properties": {}}}}, False),
        (
            {
                "type": "object",
                "properties": {"keywords": {"type": "array", "items": {"type": "string"}}},
                "required": ["keywords"],
            },
            False,
        ),
        ({"anyOf": [CLOSED, {"type": "null"}]}, True),
        ({"type": "string", "enum": ["a", "b"]}, True),
    ],
)
def test_strict_mode_only_for_schemas_it_accepts(schema: dict[str, Any], strict: bool) -> None:
    """Closed objects with every property required go strict; others go as guidance."""
    assert fits_strict_mode(schema) is strict


@pytest.mark.parametrize("padded", ["sk-pasted-key-0001\n", " sk-pasted-key-0001\r\n\t"])
async def test_pool_strips_whitespace_around_the_key(padded: str, respx_mock) -> None:
    """A key pasted with a trailing newline is sent as `Bearer <key>`, stripped."""
    from orchestrate.providers import ProviderPool

    route = respx_mock.post("https://api.openai.com/v1/chat/completions").mock(
        return_value=httpx.Response(200, json=reply())
    )
    pool = ProviderPool(env={"OPENAI_API_KEY": padded})
    try:
        await pool.get("openai").complete(request())
    finally:
        await pool.aclose()
    _, headers = await sent(route)
    assert headers["authorization"] == "Bearer sk-pasted-key-0001"


# --- odd replies from compatible servers --------------------------------------------------

BAD_COUNTS = ["lots", None, True, [12], {"n": 12}, 1.5, -3, "12"]


@pytest.mark.parametrize("bad", BAD_COUNTS)
async def test_usage_count_that_is_not_an_int_is_ignored(bad: Any, make_provider, respx_mock):
    """A usage field that is not an int counts as 0; the reply still succeeds at once."""
    body = {**reply(), "usage": {"prompt_tokens": bad, "completion_tokens": 3}}
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=body))
    result = await make_provider().complete(request())
    assert (result.text, result.usage, result.attempts) == ("Hello!", Usage(0, 3), 1)


@pytest.mark.parametrize("usage", ["lots", [1, 2], 7])
async def test_usage_that_is_not_an_object_is_ignored(usage: Any, make_provider, respx_mock):
    """A `usage` that is not an object means no usage."""
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json={**reply(), "usage": usage}))
    result = await make_provider().complete(request())
    assert (result.text, result.usage) == ("Hello!", None)


@pytest.mark.parametrize("bad", BAD_COUNTS)
async def test_streamed_usage_count_that_is_not_an_int_is_ignored(
    bad: Any, make_provider, sse, respx_mock
) -> None:
    """The same in a stream's usage chunk."""
    usage = {**USAGE_CHUNK, "usage": {"prompt_tokens": 12, "completion_tokens": bad}}
    body = sse_lines(chunk("Hi"), chunk(None, finish_reason="stop"), usage, "[DONE]")
    respx_mock.post(URL).mock(side_effect=lambda _: sse([body]))
    result = await make_provider().complete(request(stream=True))
    assert (result.text, result.usage, result.attempts) == ("Hi", Usage(12, 0), 1)


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "ab"),
        (["a", "b"], "ab"),
        ([{"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "a"}], "a"),
        ([{"text": "a"}, "b", {"type": "output_text", "text": "c"}], "abc"),
        ([{"type": "text", "text": None}], ""),
        ([], ""),
        (None, ""),
        ("", ""),
    ],
)
async def test_content_parts_are_joined(content: Any, text: str, make_provider, respx_mock):
    """Content as a list of parts (or strings) is the joined text; null content is ""."""
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=reply(content)))
    result = await make_provider().complete(request())
    assert (result.text, result.attempts) == (text, 1)


async def test_refusal_with_content_parts_fails(make_provider, respx_mock) -> None:
    """A refusal still fails when the content is a list of parts."""
    body = reply([{"type": "text", "text": ""}], refusal="No.")
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(ProviderError, match=r"the model refused: No\."):
        await make_provider().complete(request())


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({**reply(), "choices": {"0": reply()["choices"][0]}}, id="choices-object"),
        pytest.param({**reply(), "choices": "lots"}, id="choices-string"),
        pytest.param({**reply(), "choices": [{"message": "Hello!"}]}, id="message-string"),
        pytest.param(reply(42), id="content-number"),
        pytest.param(reply({"text": "a"}), id="content-object"),
        pytest.param(reply([1, 2]), id="content-list-of-numbers"),
        pytest.param(reply([{"type": "text", "text": 5}]), id="text-part-number"),
        pytest.param(reply(None, refusal=5), id="refusal-number"),
    ],
)
async def test_malformed_reply_is_retried(body: dict, make_provider, retries, respx_mock):
    """Any other unexpected shape is retried like a 5xx, never an internal error."""
    respx_mock.post(URL).mock(
        side_effect=[httpx.Response(200, json=body), httpx.Response(200, json=reply())]
    )
    result = await make_provider().complete(request(), on_retry=retries)
    assert (result.text, result.attempts, len(retries.calls)) == ("Hello!", 2, 1)


async def test_malformed_reply_every_time_fails(make_provider, respx_mock) -> None:
    """A server that always sends an odd shape ends in a ProviderError after the retries."""
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=reply(42)))
    with pytest.raises(ProviderError, match=r"unexpected shape \(gave up after 3 attempts\)"):
        await make_provider().complete(request())


async def test_odd_ids_and_finish_reason_are_ignored(make_provider, respx_mock) -> None:
    """A model, id or finish_reason that is not a string is dropped, not an error."""
    body = reply()
    body.update(model=["m"], id=7)
    body["choices"][0]["finish_reason"] = {"why": "stop"}
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=body))
    result = await make_provider().complete(request())
    assert (result.text, result.model, result.response_id, result.finish_reason) == (
        "Hello!",
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({**chunk(), "choices": 5}, id="choices-number"),
        pytest.param({**chunk(), "choices": [{"index": 0, "delta": "Hi"}]}, id="delta-string"),
        pytest.param(chunk(content=7), id="content-number"),
        pytest.param(chunk(refusal={"no": 1}), id="refusal-object"),
    ],
)
async def test_malformed_stream_chunk_is_retried(
    bad: dict, make_provider, sse, retries, respx_mock
) -> None:
    """A chunk of an unexpected shape is retried; the retry's tokens are all on_token gets."""
    body = sse_lines(chunk("Hi"), chunk(None, finish_reason="stop"), "[DONE]")
    broken = sse_lines(bad, "[DONE]")
    respx_mock.post(URL).mock(side_effect=[sse([broken]), sse([body])])
    tokens: list[str] = []
    result = await make_provider().complete(
        request(stream=True), on_token=tokens.append, on_retry=retries
    )
    assert (result.text, result.attempts, tokens) == ("Hi", 2, ["Hi"])


async def test_streamed_content_parts_are_joined(make_provider, sse, respx_mock) -> None:
    """A delta whose content is a list of parts streams their text."""
    body = sse_lines(
        chunk([{"type": "text", "text": "H"}, "i"]), chunk(None, finish_reason="stop"), "[DONE]"
    )
    respx_mock.post(URL).mock(side_effect=lambda _: sse([body]))
    tokens: list[str] = []
    result = await make_provider().complete(request(stream=True), on_token=tokens.append)
    assert (result.text, tokens) == ("Hi", ["Hi"])
