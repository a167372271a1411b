"""OpenAI chat completions, and every server that speaks the same API.

``POST {base_url}/chat/completions``. Ollama, vLLM, llama.cpp, LM Studio and OpenRouter
work through ``base_url``; without an API key no Authorization header is sent.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import attrs

from orchestrate._result import Usage
from orchestrate.providers._base import LLMRequest, LLMResponse, TokenCallback
from orchestrate.providers._http import (
    HTTPProvider,
    TransientError,
    malformed_reply,
    message_in,
    text_or_none,
    token_count,
)
from orchestrate.providers._sse import ServerSentEvent

__all__ = ["JSON_INSTRUCTION", "OpenAIProvider", "uses_max_completion_tokens"]

# OpenAI rejects `response_format: json_object` unless "JSON" appears in the messages.
JSON_INSTRUCTION = "Reply with a single JSON object."

# Reasoning models take `max_completion_tokens` and reject `max_tokens`.
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")
_WARNINGS = {
    "length": "the reply was cut off at max_tokens",
    "content_filter": "the reply was cut off by the provider's content filter",
}


def uses_max_completion_tokens(model: str) -> bool:
    """True for o-series and gpt-5 models (``o3-mini``, ``openai/gpt-5``, ...)."""
    return bool(_REASONING_MODEL.match(model.rsplit("/", 1)[-1].lower()))


class OpenAIProvider(HTTPProvider):
    """The OpenAI chat completions API (streaming or not), with structured outputs."""

    path: ClassVar[str] = "/chat/completions"
    default_key_env: ClassVar[str] = "OPENAI_API_KEY"

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return headers

    def _body(self, request: LLMRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model, "messages": list(request.messages)}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            key = (
                "max_completion_tokens"
                if uses_max_completion_tokens(request.model)
                else ("max_tokens")
            )
            body[key] = request.max_tokens
        response_format = _response_format(request)
        if response_format is not None:
            body["response_format"] = response_format
        if response_format == {"type": "json_object"}:
            body["messages"] = _mention_json(body["messages"])
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _parse_body(self, data: Any) -> LLMResponse:
        self._raise_error_object(data)
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise TransientError("the reply has no choices")
        message = choices[0].get("message") or {}
        if not isinstance(message, dict):
            raise TransientError("the reply's message is not an object")
        self._raise_refusal(_text(message.get("refusal"), "refusal"))
        return _response(
            text=_text(message.get("content"), "content"),
            usage=_usage(data.get("usage")),
            model=text_or_none(data.get("model")),
            response_id=text_or_none(data.get("id")),
            finish_reason=text_or_none(choices[0].get("finish_reason")),
        )

    async def _parse_stream(
        self, events: AsyncIterator[ServerSentEvent], on_token: TokenCallback | None
    ) -> LLMResponse:
        stream = _Stream()
        async for event in events:
            if event.data.strip() == "[DONE]":
                stream.done = True
                break
            chunk = _chunk(event)
            self._raise_error_object(chunk)
            with malformed_reply("a chunk of the stream"):
                content = stream.add(chunk)
            if content and on_token is not None:
                on_token(content)
        if not stream.done and stream.finish_reason is None:
            raise TransientError("the stream ended before [DONE] and without a finish_reason")
        self._raise_refusal("".join(stream.refusal))
        return stream.response()

    def _raise_error_object(self, data: Any) -> None:
        if isinstance(data, dict) and data.get("error"):
            raise self._error(message_in(data) or "the reply reported an error")

    def _raise_refusal(self, refusal: str | None) -> None:
        if refusal:
            raise self._error(f"the model refused: {refusal}")


@attrs.define
class _Stream:
    """What the chunks of one streamed reply add up to."""

    text: list[str] = attrs.Factory(list)
    refusal: list[str] = attrs.Factory(list)
    usage: Usage | None = None
    model: str | None = None
    response_id: str | None = None
    finish_reason: str | None = None
    done: bool = False

    def add(self, chunk: dict[str, Any]) -> str:
        """Take in one chunk; the text it adds (for `on_token`, which the caller calls)."""
        self.model = self.model or text_or_none(chunk.get("model"))
        self.response_id = self.response_id or text_or_none(chunk.get("id"))
        self.usage = _usage(chunk.get("usage")) or self.usage
        choices = chunk.get("choices") or ()
        if not isinstance(choices, list | tuple):
            raise TransientError("the stream sent choices that are not a list")
        added = ""
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                added += self._add_choice(choice)
        return added

    def _add_choice(self, choice: dict[str, Any]) -> str:
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise TransientError("the stream sent a delta that is not an object")
        content = _text(delta.get("content"), "content")
        if content:
            self.text.append(content)
        refusal = _text(delta.get("refusal"), "refusal")
        if refusal:
            self.refusal.append(refusal)
        self.finish_reason = text_or_none(choice.get("finish_reason")) or self.finish_reason
        return content

    def response(self) -> LLMResponse:
        return _response(
            text="".join(self.text),
            usage=self.usage,
            model=self.model,
            response_id=self.response_id,
            finish_reason=self.finish_reason,
        )


def _response_format(request: LLMRequest) -> dict[str, Any] | None:
    if request.schema is not None:
        strict = fits_strict_mode(request.schema)
        schema = {"name": "output", "schema": request.schema, "strict": strict}
        return {"type": "json_schema", "json_schema": schema}
    if request.json_mode:
        return {"type": "json_object"}
    return None


def fits_strict_mode(schema: Any) -> bool:
    """Whether OpenAI's strict structured outputs accept the schema.

    Strict mode wants every object closed (`additionalProperties: false`) with all its
    properties required; it answers 400 otherwise. A schema that does not fit is sent
    with `strict: false`, as guidance, and the engine checks the reply against it.
    """
    if isinstance(schema, list):
        return all(fits_strict_mode(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    properties = schema.get("properties")
    if schema.get("type") == "object" or properties is not None:
        closed = schema.get("additionalProperties") is False
        if not closed or set(schema.get("required", ())) != set(properties or ()):
            return False
    return all(
        fits_strict_mode(value)
        for key, value in schema.items()
        if key not in ("enum", "const", "default", "examples", "required")
    )


def _mention_json(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The messages, with :data:`JSON_INSTRUCTION` in the system prompt unless one of them
    already says "json" (in any case). A leading system message is extended rather than
    joined by a second one, which some chat templates of compatible servers reject."""
    if any("json" in str(message.get("content") or "").lower() for message in messages):
        return messages
    if messages and messages[0].get("role") == "system":
        content = "\n\n".join(
            part for part in (messages[0].get("content"), JSON_INSTRUCTION) if part
        )
        return [{**messages[0], "content": content}, *messages[1:]]
    return [{"role": "system", "content": JSON_INSTRUCTION}, *messages]


def _chunk(event: ServerSentEvent) -> dict[str, Any]:
    try:
        data = event.json()
    except ValueError:
        raise TransientError("the stream sent a chunk that is not valid JSON") from None
    if not isinstance(data, dict):
        raise TransientError("the stream sent a chunk that is not a JSON object")
    return data


def _text(value: Any, field: str) -> str:
    """A message's `content` (or `refusal`): a string, null, or a list of parts.

    Some compatible servers send content as parts, ``[{"type": "text", "text": ...}]``
    or plain strings; the text parts are joined and other parts (images...) skipped.
    Any other shape is a malformed reply, retried.
    """
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list):
        parts = []
        for part in value:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") in ("text", "output_text"):
                text = part.get("text")
                if text is not None and not isinstance(text, str):
                    break
                parts.append(text or "")
            elif not isinstance(part, dict):
                break
        else:
            return "".join(parts)
    raise TransientError(f"the reply's {field} has an unexpected shape")


def _usage(data: Any) -> Usage | None:
    """Token counts; one that is not a number (``"lots"``) counts as missing."""
    if not isinstance(data, dict):
        return None
    details = data.get("prompt_tokens_details")
    cached = token_count(details.get("cached_tokens")) if isinstance(details, dict) else None
    return Usage(
        input_tokens=token_count(data.get("prompt_tokens")) or 0,
        output_tokens=token_count(data.get("completion_tokens")) or 0,
        cached_input_tokens=cached or 0,  # part of prompt_tokens, priced lower
    )


def _response(*, finish_reason: str | None, **fields: Any) -> LLMResponse:
    warning = _WARNINGS.get(finish_reason or "")
    return LLMResponse(
        finish_reason=finish_reason, warnings=(warning,) if warning else (), **fields
    )
