"""Rate limits: token buckets on a fake clock, AIMD on 429s, pauses from headers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from orchestrate.providers._base import LLMRequest
from orchestrate.providers._limits import (
    CUT_EVERY,
    RATE_CUT,
    RATE_GROWTH,
    RateLimiter,
    TokenBucket,
    estimate_tokens,
)

URL = "https://api.test/v1/chat/completions"
REPLY = {
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1},
}


class Clock:
    """A fake monotonic clock; its sleep moves time on instead of waiting."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds
        await asyncio.sleep(0)


def limiter(clock: Clock, **options: Any) -> RateLimiter:
    return RateLimiter(
        "openai", clock=clock, sleep=clock.sleep, wall=lambda: 1e9, **{"concurrency": 8, **options}
    )


def test_bucket_refills_at_its_rate() -> None:
    """A bucket of 60 a minute holds one second's worth and refills one a second."""
    clock = Clock()
    bucket = TokenBucket(60, clock)
    assert bucket.delay(1) == 0
    bucket.take(1)
    assert bucket.delay(1) == pytest.approx(1.0)
    clock.now += 0.5
    assert bucket.delay(1) == pytest.approx(0.5)


def test_bucket_debt_is_waited_out() -> None:
    """Taking more than there is (a reply longer than reserved) makes later calls wait."""
    clock = Clock()
    bucket = TokenBucket(600, clock)  # 10 a second
    bucket.take(30)  # 10 there, 20 owed
    assert bucket.delay(1) == pytest.approx(2.1)


@pytest.mark.anyio
async def test_rpm_spaces_calls_evenly() -> None:
    """rpm: 120 lets two calls through a second, then each waits half a second."""
    clock = Clock()
    limits = limiter(clock, rpm=120)
    for _ in range(5):
        await limits.acquire()
        limits.release()
    assert clock.slept == [0.5, 0.5, 0.5]
    assert clock.now == pytest.approx(101.5)


@pytest.mark.anyio
async def test_tpm_reserves_the_estimate_and_settles_on_usage() -> None:
    """tpm: a call reserves its estimate; a reply that used more puts the budget in debt."""
    clock = Clock()
    limits = limiter(clock, tpm=6000)  # 100 a second
    await limits.acquire(50)
    limits.release()
    limits.spent(50, 250)  # 200 more than reserved
    await limits.acquire(50)
    assert clock.slept == [pytest.approx(2.0)]  # 100 - 50 - 200 = -150: 200 short of 50


@pytest.mark.anyio
async def test_429_halves_concurrency_once_a_burst_and_success_grows_it_back() -> None:
    """AIMD: a burst of 429s halves the limit once; successes add 1/limit each."""
    clock = Clock()
    limits = limiter(clock, concurrency=8)
    for _ in range(5):
        limits.observe(429, {})
    assert limits.limit == 4
    clock.now += CUT_EVERY
    limits.observe(429, {})
    assert limits.limit == 2
    for _ in range(2):
        limits.observe(200, {})
    assert limits.limit == pytest.approx(2.9, abs=0.1)
    for _ in range(200):
        limits.observe(200, {})
    assert limits.limit == 8


@pytest.mark.anyio
async def test_429_paces_calls_at_the_rate_the_provider_just_allowed() -> None:
    """A 429 after 20 replies in the last second paces calls evenly at 95% of 20 a second
    (no burst), and each reply grows that pace a little."""
    clock = Clock()
    limits = limiter(clock, concurrency=32)
    for _ in range(20):
        limits.observe(200, {})
        clock.now += 0.04  # 20 replies over 0.8 s
    limits.observe(429, {})
    assert limits.learned is not None
    assert limits.learned.rate == pytest.approx(20 * RATE_CUT)
    for _ in range(3):
        await limits.acquire()
        limits.release()
    assert clock.slept == [pytest.approx(1 / (20 * RATE_CUT), abs=1e-5)] * 2  # evenly
    limits.observe(200, {})
    assert limits.learned.rate == pytest.approx(20 * RATE_CUT + RATE_GROWTH)


def test_a_later_429_cuts_the_learned_pace_again() -> None:
    """A second 429 (a second later) paces at 95% of the lower of the replies and the
    pace already learned, so a per-minute limit is found in a few cuts."""
    clock = Clock()
    limits = limiter(clock)
    for _ in range(10):
        limits.observe(200, {})
    limits.observe(429, {})
    clock.now += CUT_EVERY + 0.5  # the replies have left the last second
    limits.observe(429, {})  # no reply to learn from: the pace stays
    assert limits.learned is not None and limits.learned.rate == pytest.approx(9.5)
    clock.now += CUT_EVERY
    for _ in range(30):
        limits.observe(200, {})
    limits.observe(429, {})  # 30 replies, but the pace learned is lower
    assert limits.learned.rate == pytest.approx((9.5 + 30 * RATE_GROWTH) * RATE_CUT)
    assert len(limits.replies) <= 30  # only the last second's replies are kept


@pytest.mark.anyio
async def test_concurrency_limit_makes_calls_wait_for_a_slot() -> None:
    """With the limit cut to 1, a second call waits until the first is released."""
    clock = Clock()
    limits = limiter(clock, concurrency=2)
    limits.observe(429, {})
    await limits.acquire()
    second = asyncio.create_task(limits.acquire())
    await asyncio.sleep(0)
    assert not second.done() and limits.waiting == 1
    limits.release()
    await second
    assert limits.in_flight == 1 and limits.waiting == 0


@pytest.mark.anyio
async def test_retry_after_pauses_every_new_call() -> None:
    """A 429 with Retry-After: 3 holds back every new call for 3 s, not just its own."""
    clock = Clock()
    limits = limiter(clock)
    limits.observe(429, {}, retry_after=3.0)
    assert limits.seconds_to_wait() == pytest.approx(3.0)
    await limits.acquire()
    assert clock.slept == [3.0]


@pytest.mark.parametrize(
    ("headers", "pause"),
    [
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"}, 1.5),
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m2s"}, 62.0),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20ms"}, 0.02),
        (
            {
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": "2001-09-09T01:46:44Z",
            },
            4.0,
        ),
        ({"x-ratelimit-remaining-requests": "10", "x-ratelimit-reset-requests": "5s"}, 0.0),
    ],
)
def test_headers_saying_the_budget_is_spent_pause_early(
    headers: dict[str, str], pause: float
) -> None:
    """OpenAI and Anthropic rate-limit headers at zero pause calls until their reset."""
    clock = Clock()
    limits = limiter(clock)
    limits.observe(200, headers)
    assert limits.seconds_to_wait() == pytest.approx(pause)


def test_estimate_counts_prompt_and_reply() -> None:
    """The tpm reservation: a quarter of the prompt's characters plus max_tokens."""
    assert estimate_tokens([{"role": "user", "content": "x" * 400}], 50) == 151


@pytest.mark.anyio
async def test_a_429_slows_every_call_of_the_provider(
    make_provider: Callable, respx_mock: respx.MockRouter
) -> None:
    """Through the HTTP provider: a 429 cuts the shared limit and its Retry-After pauses
    the provider; the retry then succeeds."""
    clock = Clock()
    provider = make_provider()
    provider.limiter = limiter(clock)
    respx_mock.post(URL).mock(
        side_effect=[
            httpx.Response(
                429, json={"error": {"message": "slow down"}}, headers={"retry-after": "2"}
            ),
            httpx.Response(200, json=REPLY),
        ]
    )
    request = LLMRequest(model="m", messages=({"role": "user", "content": "hi"},))
    response = await provider.complete(request)
    assert response.text == "hi" and response.attempts == 2
    assert provider.limiter.rate_limited == 1
    assert provider.limiter.limit == pytest.approx(4.25)  # halved, then one success
    assert clock.slept == [2.0]  # the pause, on top of the retry's own wait
    assert provider.limiter.in_flight == 0
    await provider.aclose()


@pytest.mark.anyio
async def test_a_reply_s_rate_limit_headers_pause_the_provider_whatever_their_case(
    make_provider: Callable, respx_mock: respx.MockRouter
) -> None:
    """Through the HTTP provider: a 200 whose headers (in any case) say the budget is
    spent pauses the next call until the reset, and no Retry-After is read from it."""
    clock = Clock()
    provider = make_provider()
    provider.limiter = limiter(clock)
    spent = {"X-RateLimit-Remaining-Requests": "0", "X-RateLimit-Reset-Requests": "3s"}
    respx_mock.post(URL).mock(
        return_value=httpx.Response(200, json=REPLY, headers={**spent, "Retry-After": "9"})
    )
    request = LLMRequest(model="m", messages=({"role": "user", "content": "hi"},))
    assert (await provider.complete(request)).text == "hi"
    assert provider.limiter.paused_until == pytest.approx(clock.now + 3.0)
    await provider.aclose()
