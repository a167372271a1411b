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
from orchestrate.providers._http import HTTPProvider, TransientError, message_in
from orchestrate.providers._sse import ServerSentEvent

__all__ = ["ANTHROPIC_VERSION", "DEFAULT_MAX_TOKENS", "AnthropicProvider", "json_instruction"]

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # the API requires max_tokens
# Error events that mean the same as an HTTP 529 or 5xx: worth another attempt.
_TRANSIENT_ERRORS = frozenset({"overloaded_error", "api_error"})
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
        text = "".join(
            block.get("text", "") for block in data["content"] if block.get("type") == "text"
        )
        return self._response(
            text=text, usage=_usage(data.get("usage")), model=data.get("model"),
            response_id=data.get("id"), finish_reason=data.get("stop_reason"),
        )

    async def _parse_stream(
        self, events: AsyncIterator[ServerSentEvent], on_token: TokenCallback | None
    ) -> LLMResponse:
        stream = _Stream(on_token)
        async for event in events:
            data = _event_data(event)
            self._raise_error_object(data)
            stream.add(data)
            if stream.done:
                break
        if not stream.done:
            raise TransientError("the stream ended before message_stop")
        return self._response(
            text="".join(stream.text), usage=stream.usage(), model=stream.model,
            response_id=stream.response_id, finish_reason=stream.stop_reason,
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

    on_token: TokenCallback | None
    text: list[str] = attrs.Factory(list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    model: str | None = None
    response_id: str | None = None
    stop_reason: str | None = None
    done: bool = False

    def add(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "message_start":
            self._start(data.get("message") or {})
        elif kind == "content_block_delta":
            self._delta(data.get("delta") or {})
        elif kind == "message_delta":
            self.stop_reason = (data.get("delta") or {}).get("stop_reason") or self.stop_reason
            self._count(data.get("usage"))
        elif kind == "message_stop":
            self.done = True

    def usage(self) -> Usage | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return Usage(self.input_tokens or 0, self.output_tokens or 0)

    def _start(self, message: dict[str, Any]) -> None:
        self.model = message.get("model")
        self.response_id = message.get("id")
        self._count(message.get("usage"))

    def _delta(self, delta: dict[str, Any]) -> None:
        text = delta.get("text") if delta.get("type") == "text_delta" else None
        if text:
            self.text.append(text)
            if self.on_token is not None:
                self.on_token(text)

    def _count(self, usage: Any) -> None:
        """Usage counts are cumulative: the latest value of each wins."""
        if not isinstance(usage, dict):
            return
        if usage.get("input_tokens") is not None:
            self.input_tokens = int(usage["input_tokens"])
        if usage.get("output_tokens") is not None:
            self.output_tokens = int(usage["output_tokens"])


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


def _usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    return Usage(int(data.get("input_tokens") or 0), int(data.get("output_tokens") or 0))
