"""The offline provider behind `--mock`: deterministic answers, no key, no network."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re

from orchestrate._errors import StepTimeout
from orchestrate._instances import minimal_instance
from orchestrate._result import Usage
from orchestrate.providers._base import LLMRequest, LLMResponse, RetryCallback, TokenCallback


class MockProvider:
    """Answers with the step's `mock:` text, a schema's minimal instance, or an echo.

    `latency` (seconds) simulates a model's response time for the benchmarks; a latency
    longer than the request's `timeout` times out like a real provider would.
    """

    name = "mock"

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency

    async def complete(
        self,
        request: LLMRequest,
        *,
        on_token: TokenCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> LLMResponse:
        text = mock_reply(request)
        if self.latency > request.timeout:
            await asyncio.sleep(request.timeout)
            raise StepTimeout(f"no answer within {request.timeout:g} s")
        if on_token is not None and request.stream:
            await _stream(text, self.latency, on_token)
        elif self.latency:
            await asyncio.sleep(self.latency)
        prompt_chars = sum(len(m["content"]) for m in request.messages)
        return LLMResponse(
            text=text,
            usage=Usage(_tokens(prompt_chars), _tokens(len(text))),
            model=request.model,
            response_id="mock-" + hashlib.sha256(text.encode()).hexdigest()[:12],
            finish_reason="stop",
        )

    async def aclose(self) -> None:
        return None


def _tokens(chars: int) -> int:
    """Roughly four characters a token, as for English text."""
    return math.ceil(chars / 4)


async def _stream(text: str, latency: float, on_token: TokenCallback) -> None:
    pieces = re.findall(r"\S+\s*|\s+", text) or [""]
    pause = latency / len(pieces)
    for piece in pieces:
        if pause:
            await asyncio.sleep(pause)
        on_token(piece)


def mock_reply(request: LLMRequest) -> str:
    if request.mock_text is not None:
        return request.mock_text
    if request.schema is not None:
        return json.dumps(minimal_instance(request.schema, request.schema), ensure_ascii=False)
    echo = _echo(request)
    if request.json_mode:
        return json.dumps({"text": echo}, ensure_ascii=False)
    return echo


def _echo(request: LLMRequest) -> str:
    """A short text that shows which prompt it answers, the same for the same prompt."""
    prompt = request.messages[-1]["content"] if request.messages else ""
    words = " ".join(prompt.split())
    if len(words) > 80:
        words = words[:77].rstrip() + "..."
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    return f"Mock reply {digest} to: {words}"
