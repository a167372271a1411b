"""Shared fixtures for the provider tests: no network, no real sleeping."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from orchestrate.providers._anthropic import AnthropicProvider
from orchestrate.providers._http import HTTPProvider
from orchestrate.providers._openai import OpenAIProvider

API_KEY = "sk-test-7f3a9c1e5b2d4f60"


class Sleeps:
    """An injected `sleep` that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Retries:
    """An `on_retry` callback that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float, str]] = []

    def __call__(self, attempt: int, delay: float, reason: str) -> None:
        self.calls.append((attempt, delay, reason))


async def _chunks(chunks: list[bytes], hang: bool) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
    if hang:
        await asyncio.Event().wait()  # the server stops sending but keeps the connection


def stream_response(
    chunks: list[bytes | str],
    *,
    status: int = 200,
    hang: bool = False,
    content_type: str = "text/event-stream",
) -> httpx.Response:
    """A fresh streaming response whose body arrives in exactly these chunks."""
    raw = [c.encode() if isinstance(c, str) else c for c in chunks]
    return httpx.Response(
        status, headers={"content-type": content_type}, content=_chunks(raw, hang)
    )


def split_every(text: str, size: int) -> list[bytes]:
    """`text` as UTF-8 in chunks of `size` bytes (a character may be cut in two)."""
    raw = text.encode()
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def sse_lines(*payloads: Any, event: str | None = None) -> str:
    """SSE text for these payloads (dicts become JSON), one `data:` event each."""
    out = []
    for payload in payloads:
        data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        prefix = f"event: {event}\n" if event else ""
        out.append(f"{prefix}data: {data}\n\n")
    return "".join(out)


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def retries() -> Retries:
    return Retries()


@pytest.fixture
def sse() -> Callable[..., httpx.Response]:
    return stream_response


@pytest.fixture
def make_provider(sleeps: Sleeps) -> Callable[..., HTTPProvider]:
    """Build a provider with instant sleeps and jitter fixed at one half."""

    def make(kind: str = "openai", **overrides: Any) -> HTTPProvider:
        cls = {"openai": OpenAIProvider, "anthropic": AnthropicProvider}[kind]
        base = {"openai": "https://api.test/v1", "anthropic": "https://claude.test"}[kind]
        options: dict[str, Any] = {
            "name": kind,
            "base_url": base,
            "api_key": API_KEY,
            "headers": {},
            "concurrency": 8,
            "sleep": sleeps,
            "rand": lambda: 0.5,
            "clock": lambda: 1e9,
        }
        return cls(**{**options, **overrides})

    return make
