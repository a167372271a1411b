"""The Anthropic Messages API, natively: ``POST {base_url}/v1/messages``.

Structured output: the classic Messages API has no ``response_format``. For a step with a
``schema`` (or ``output: json``) we add an instruction to the top-level ``system`` prompt
asking for one JSON value only, matching the schema, which is included verbatim. The
engine still validates the reply, as it does for every provider.
"""

from __future__ import annotations

import json
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

__all__ = ["ANTHROPIC_VERSION", "DEFAULT_MAX_TOKENS", "AnthropicProvider", "json_instruction"]

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # the API requires max_tokens
# Error events that mean the same as an HTTP 529 or 5xx: worth another attempt.
_TRANSIENT_ERRORS = frozenset({"overloaded_error", "api_error"})
_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
_WARNINGS = {"max_tokens": "the reply was cut off at max_tokens"}


def json_instruction(schema: dict[str, Any] | None) -> str:
    """The system-prompt instruction that stands in for ``response_format``."""
    text = "Answer with a single JSON value only: no prose, no Markdown code fences."
    if schema is None:
        return text
    return f"{text} It must validate against this JSON Schema:\n{json.dumps(schema, indent=2)}"


class AnthropicProvider(HTTPProvider):
    """Claude through the Messages API, streaming or not; 529 "overloaded" is retried."""

    path: ClassVar[str] = "/v1/messages"
    default_key_env: ClassVar[str] = "ANTHROPIC_API_KEY"

    def _headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    def _body(self, request: LLMRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": [dict(m) for m in request.messages if m["role"] != "system"],
        }
        system = _system(request)
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stream:
            body["stream"] = True
        return body

    def _parse_body(self, data: Any) -> LLMResponse:
        self._raise_error_object(data)
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise TransientError("the reply has no content")
        text = "".join(_block_text(block) for block in data["content"])
        return self._response(
            text=text,
            usage=_usage(data.get("usage")),
            model=text_or_none(data.get("model")),
            response_id=text_or_none(data.get("id")),
            finish_reason=text_or_none(data.get("stop_reason")),
        )

    async def _parse_stream(
        self, events: AsyncIterator[ServerSentEvent], on_token: TokenCallback | None
    ) -> LLMResponse:
        stream = _Stream()
        async for event in events:
            data = _event_data(event)
            self._raise_error_object(data)
            with malformed_reply(f"the stream's {event.event} event"):
                text = stream.add(data)
            if text and on_token is not None:
                on_token(text)
            if stream.done:
                break
        if not stream.done:
            raise TransientError("the stream ended before message_stop")
        return self._response(
            text="".join(stream.text),
            usage=stream.usage(),
            model=stream.model,
            response_id=stream.response_id,
            finish_reason=stream.stop_reason,
        )

    def _raise_error_object(self, data: Any) -> None:
        """An ``error`` (event or body) with a 200: overloaded is retried, the rest is final."""
        if not isinstance(data, dict) or data.get("type") != "error":
            return
        error = data.get("error") or {}
        message = message_in(data) or "the reply reported an error"
        kind = error.get("type") if isinstance(error, dict) else None
        if kind in _TRANSIENT_ERRORS:
            raise TransientError(f"{kind}: {message}")
        raise self._error(f"{kind}: {message}" if kind else message)

    def _response(self, *, finish_reason: str | None, **fields: Any) -> LLMResponse:
        if finish_reason == "refusal":
            raise self._error(f"the model refused: {fields['text'] or 'no reason given'}")
        warning = _WARNINGS.get(finish_reason or "")
        return LLMResponse(
            finish_reason=finish_reason, warnings=(warning,) if warning else (), **fields
        )


@attrs.define
class _Stream:
    """What the events of one streamed message add up to."""

    text: list[str] = attrs.Factory(list)
    counts: dict[str, int] = attrs.Factory(dict)  # the latest value of each usage field
    model: str | None = None
    response_id: str | None = None
    stop_reason: str | None = None
    done: bool = False

    def add(self, data: dict[str, Any]) -> str:
        """Take in one event; the text it adds (for `on_token`, which the caller calls)."""
        kind = data.get("type")
        if kind == "message_start":
            self._start(_object(data.get("message")))
        elif kind == "content_block_delta":
            return self._delta(_object(data.get("delta")))
        elif kind == "message_delta":
            stop_reason = text_or_none(_object(data.get("delta")).get("stop_reason"))
            self.stop_reason = stop_reason or self.stop_reason
            self._count(data.get("usage"))
        elif kind == "message_stop":
            self.done = True
        return ""

    def usage(self) -> Usage | None:
        return _usage(self.counts) if self.counts else None

    def _start(self, message: dict[str, Any]) -> None:
        self.model = text_or_none(message.get("model"))
        self.response_id = text_or_none(message.get("id"))
        self._count(message.get("usage"))

    def _delta(self, delta: dict[str, Any]) -> str:
        text = delta.get("text") if delta.get("type") == "text_delta" else None
        if text is not None and not isinstance(text, str):
            raise TransientError("the stream sent a text_delta whose text is not a string")
        if text:
            self.text.append(text)
        return text or ""

    def _count(self, usage: Any) -> None:
        """Usage counts are cumulative: the latest value of each wins; a count that is not
        a number is ignored."""
        if not isinstance(usage, dict):
            return
        for field in _USAGE_FIELDS:
            count = token_count(usage.get(field))
            if count is not None:
                self.counts[field] = count


def _system(request: LLMRequest) -> str:
    parts = [m["content"] for m in request.messages if m["role"] == "system"]
    if request.schema is not None or request.json_mode:
        parts.append(json_instruction(request.schema))
    return "\n\n".join(part for part in parts if part)


def _event_data(event: ServerSentEvent) -> dict[str, Any]:
    try:
        data = event.json()
    except ValueError:
        raise TransientError(f"the stream sent a {event.event} event that is not JSON") from None
    if not isinstance(data, dict):
        raise TransientError(f"the stream sent a {event.event} event that is not an object")
    data.setdefault("type", event.event)
    return data


def _object(value: Any) -> dict[str, Any]:
    """An event's nested object (``message``, ``delta``): null is empty, else malformed."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TransientError("the stream sent an event with an unexpected shape")
    return value


def _block_text(block: Any) -> str:
    """The text of one content block; other blocks (tool use, thinking) add nothing."""
    if not isinstance(block, dict):
        raise TransientError("the reply has a content block that is not an object")
    if block.get("type") != "text":
        return ""
    text = block.get("text")
    if text is not None and not isinstance(text, str):
        raise TransientError("the reply has a text block whose text is not a string")
    return text or ""


def _usage(data: Any) -> Usage | None:
    """Token counts; one that is not a number (``"lots"``) counts as missing."""
    if not isinstance(data, dict):
        return None
    uncached, output, read, written = (token_count(data.get(field)) or 0 for field in _USAGE_FIELDS)
    # Anthropic's input_tokens leaves out the tokens read from and written to its prompt
    # cache; ours counts every prompt token, as OpenAI's prompt_tokens does.
    return Usage(
        input_tokens=uncached + read + written,
        output_tokens=output,
        cached_input_tokens=read,
        cache_write_tokens=written,
    )
