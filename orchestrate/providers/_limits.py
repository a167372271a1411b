"""Rate limits: every call to a provider waits here for a slot, so that a batch slows
down before the provider says no, and backs off together when it does.

    TokenBucket     `rpm` / `tpm`: a budget refilled continuously, one second's worth of
                    burst; a call takes from it, a reply's real token count settles it
    RateLimiter     one per provider, shared by every row of a batch:
                    - AIMD concurrency: a 429 halves it (once a second at most), each
                      success adds 1/limit, so it grows back by about one a round
                    - a learned rate: a 429 also paces calls, evenly, at 95% of the
                      replies of the last second (the rate the provider just allowed),
                      growing back by 0.2% a second; with short calls even one at a
                      time can pass a requests-a-second limit, and a burst after each
                      Retry-After pause would only meet the next 429
                    - Retry-After, or a rate-limit header saying nothing is left, pauses
                      every new call to the provider until then
                    - waiting: how many calls wait, for the live display

The clock and the sleep are injected, so tests run on a fake clock.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

BURST_SECONDS = 1.0  # a bucket holds this many seconds of its rate
CUT_EVERY = 1.0  # seconds: the 429s of one burst cut the concurrency once
RATE_CUT = 0.95  # a 429 paces calls at this share of the last second's replies
RATE_GROWTH = 0.002  # each reply adds this share of a call a second to the learned rate
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class TokenBucket:
    """`per_minute` units refilled continuously; may go into debt (a reply that used more
    tokens than reserved), which later calls wait out."""

    def __init__(
        self, per_minute: float, clock: Callable[[], float], burst: float = BURST_SECONDS
    ) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst)
        self.level = self.capacity
        self.clock = clock
        self.updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def delay(self, amount: float) -> float:
        """Seconds until `amount` can be taken (at most the capacity is ever asked)."""
        self._refill()
        missing = min(amount, self.capacity) - self.level
        return max(0.0, missing / self.rate)

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount


class RateLimiter:
    """The calls to one provider: rate budgets, adaptive concurrency and pauses."""

    def __init__(
        self,
        name: str,
        *,
        concurrency: int,
        rpm: int | None = None,
        tpm: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.ceiling = max(1, concurrency)
        self.limit = float(self.ceiling)
        self.requests = TokenBucket(rpm, clock) if rpm else None
        self.tokens = TokenBucket(tpm, clock) if tpm else None
        self.clock = clock
        self.sleep = sleep
        self.wall = wall
        self.in_flight = 0
        self.waiting = 0
        self.paused_until = 0.0
        self.last_cut = -CUT_EVERY
        self.rate_limited = 0  # 429s seen
        self.learned: TokenBucket | None = None  # the pace learned from 429s, no burst
        self.replies: deque[float] = deque()  # when the last second's 2xx replies came
        self._freed: list[asyncio.Future[None]] = []

    # --- around each attempt ---------------------------------------------------------------

    async def acquire(self, tokens: int = 0) -> None:
        """Wait for the rate budgets, any pause, and a concurrency slot; then take them."""
        self.waiting += 1
        try:
            while True:
                wait = self._time_to_wait(tokens)
                if wait > 0:
                    await self.sleep(wait)
                elif self.in_flight >= int(self.limit):
                    freed = asyncio.get_running_loop().create_future()
                    self._freed.append(freed)
                    try:
                        await freed
                    finally:
                        if freed in self._freed:
                            self._freed.remove(freed)
                else:
                    break
        finally:
            self.waiting -= 1
        if self.requests:
            self.requests.take(1)
        if self.learned:
            self.learned.take(1)
        if self.tokens and tokens:
            self.tokens.take(tokens)
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._freed and self.in_flight < int(self.limit):
            freed = self._freed.pop(0)
            if not freed.done():
                freed.set_result(None)
                return

    def _time_to_wait(self, tokens: int) -> float:
        waits = [self.paused_until - self.clock()]
        if self.requests:
            waits.append(self.requests.delay(1))
        if self.learned:
            waits.append(self.learned.delay(1))
        if self.tokens and tokens:
            waits.append(self.tokens.delay(tokens))
        return max(waits)

    def seconds_to_wait(self) -> float:
        """For the display: how long a new call would wait for its budget or a pause."""
        return max(0.0, self._time_to_wait(0))

    # --- what the provider said ------------------------------------------------------------

    def spent(self, reserved: int, used: int | None) -> None:
        """A reply's real token count settles what `acquire` reserved."""
        if self.tokens and used is not None:
            self.tokens.take(used - reserved)

    def observe(
        self, status: int, headers: Mapping[str, str], retry_after: float | None = None
    ) -> None:
        """After each attempt: AIMD on the status, pauses from Retry-After and headers."""
        now = self.clock()
        if status == 429:
            self.rate_limited += 1
            if now - self.last_cut >= CUT_EVERY:
                self.limit = max(1.0, self.limit / 2)
                self.last_cut = now
                self._learn_rate(now)
            if retry_after is not None:
                self.pause(retry_after)
        elif 200 <= status < 300:
            self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)
            self.replies.append(now)
            self._recent_replies(now)  # the deque keeps one second, however long the batch
            if self.learned:
                self.learned.rate += RATE_GROWTH
            self._wake()
        exhausted = self._exhausted_for(headers)
        if exhausted:
            self.pause(exhausted)

    def _learn_rate(self, now: float) -> None:
        """Pace calls at RATE_CUT of the replies the provider gave in the last second (or
        of the pace already learned, if lower: a per-minute limit takes a few cuts)."""
        allowed = float(self._recent_replies(now))
        if self.learned is not None:
            allowed = min(allowed, self.learned.rate)
        if allowed >= 1:  # no reply in the last second: the pause and the cut do it
            self.learned = TokenBucket(allowed * RATE_CUT * 60, self.clock, burst=0)

    def _recent_replies(self, now: float) -> int:
        """The 2xx replies of the last second (older ones are dropped)."""
        while self.replies and self.replies[0] <= now - 1.0:
            self.replies.popleft()
        return len(self.replies)

    def pause(self, seconds: float) -> None:
        """No new call to this provider for `seconds`."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def _exhausted_for(self, headers: Mapping[str, str]) -> float | None:
        """Seconds until the provider's budget resets, when its headers say it is spent:
        OpenAI's `x-ratelimit-remaining-*` / `-reset-*`, Anthropic's
        `anthropic-ratelimit-*-remaining` / `-reset`."""
        longest = None
        for kind in ("requests", "tokens"):
            remaining = _int(headers.get(f"x-ratelimit-remaining-{kind}"))
            reset = _duration(headers.get(f"x-ratelimit-reset-{kind}"))
            if remaining is None:
                remaining = _int(headers.get(f"anthropic-ratelimit-{kind}-remaining"))
                reset = _until(headers.get(f"anthropic-ratelimit-{kind}-reset"), self.wall())
            if remaining is not None and reset is not None and remaining <= self.in_flight:
                longest = max(longest or 0.0, reset)
        return longest


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _duration(text: str | None) -> float | None:
    """OpenAI's reset times: `1s`, `6m0s`, `20ms`, `1h2m3.5s`."""
    if not text:
        return None
    parts = _DURATION.findall(text)
    if not parts:
        return None
    return sum(float(number) * _UNIT[unit] for number, unit in parts)


def _until(text: str | None, now: float) -> float | None:
    """Anthropic's reset times are RFC 3339 instants: the seconds from `now` to then."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, moment.timestamp() - now) if moment.tzinfo else None


def estimate_tokens(messages: Any, max_tokens: int | None) -> int:
    """What a call reserves of a `tpm` budget before the reply says: about four characters
    a token of the prompt, plus the reply's `max_tokens`."""
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    return chars // 4 + 1 + (max_tokens or 0)
