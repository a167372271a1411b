"""The one small interface between the engine and every model provider."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs

from orchestrate._result import Usage
from orchestrate._spec import Price

TokenCallback = Callable[[str], None]
# (attempt about to start, seconds of wait before it, why the last attempt failed)
RetryCallback = Callable[[int, float, str], None]


@attrs.frozen(kw_only=True)
class LLMRequest:
    """Everything a provider needs for one step's (or one item's) call."""

    model: str
    messages: tuple[dict[str, str], ...]  # {"role": ..., "content": ...}; system first if any
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float = 600.0  # seconds per attempt
    retries: int = 2  # retries on transient failures, after the first attempt
    schema: dict[str, Any] | None = None  # JSON Schema for structured output
    json_mode: bool = False  # output: json (with or without a schema)
    stream: bool = False  # stream tokens to on_token
    step_id: str = ""
    provider: str | None = None  # the provider name that answers: `mock` under --mock
    mock_text: str | None = None  # the step's rendered `mock:` text, for the mock only
    cache: bool | None = None  # the step's `cache` setting (None: as `run --cache` says)

    def fingerprint_data(self) -> dict[str, Any]:
        """What makes two requests the same for the cache and for resume."""
        return {
            "model": self.model,
            "messages": list(self.messages),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "schema": self.schema,
            "json_mode": self.json_mode,
        }


# Finish reasons that mean "cut off at max_tokens": OpenAI (and compatible servers) say
# "length", Anthropic says "max_tokens".
_CUT_OFF_REASONS = frozenset({"length", "max_tokens"})


@attrs.frozen(kw_only=True)
class LLMResponse:
    text: str
    usage: Usage | None = None
    attempts: int = 1
    model: str | None = None  # the exact model id the provider reports
    response_id: str | None = None
    finish_reason: str | None = None
    warnings: tuple[str, ...] = ()
    cached: bool = False  # answered from the response cache (or a fixture), not the provider
    cost_usd: float | None = None  # set by the metering wrapper (orchestrate._cost)
    price: Price | None = None  # the price cost_usd was computed with

    @property
    def truncated(self) -> bool:
        """The reply was cut off at ``max_tokens``: its end is missing."""
        return self.finish_reason in _CUT_OFF_REASONS


class Provider(Protocol):
    """A model provider. Transient failures are retried inside `complete`.

    `complete` raises :class:`orchestrate._errors.ProviderError` (or `StepTimeout`) when
    the call fails for good; the message never contains an API key.
    """

    name: str

    async def complete(
        self,
        request: LLMRequest,
        *,
        on_token: TokenCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> LLMResponse: ...

    async def aclose(self) -> None: ...
