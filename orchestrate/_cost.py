"""What model calls cost, and a budget they cannot pass (SPEC 10, docs/cost.md).

    cost_of()           usage x price, cached and cache-write tokens at their own prices
    Budget              a USD limit shared by every call of a run (or of a batch's rows)
    MeteredProvider     a provider wrapper: reserves the worst case on the budget before
                        each call, prices the reply, settles the reservation

The engine knows no prices: the pool's providers are wrapped (see :func:`metered`), and
each :class:`~orchestrate.providers.LLMResponse` comes back with `cost_usd` and the
`price` used. A reply from the response cache or a `--replay` fixture costs 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from orchestrate._errors import ConfigError, StepError
from orchestrate._result import Usage, tidy_usd
from orchestrate._spec import Price

if TYPE_CHECKING:
    from orchestrate._pricing import Pricing
    from orchestrate.providers import LLMRequest, LLMResponse, Provider
    from orchestrate.providers._base import RetryCallback, TokenCallback

__all__ = [
    "UNKNOWN_PRICE",
    "Budget",
    "BudgetExceeded",
    "MeteredProvider",
    "Reservation",
    "cost_of",
    "format_usd",
    "metered",
    "unknown_price_note",
    "worst_case_cost",
]

PER_TOKEN = 1e-6  # prices are per million tokens
# A step without max_tokens, at a model whose max_output nobody states: what a budget
# reserves for its reply.
FALLBACK_MAX_OUTPUT = 128_000
# What a message adds to the prompt beyond its text (role, separators), generously.
MESSAGE_OVERHEAD_TOKENS = 8


def cost_of(usage: Usage, price: Price) -> float:
    """USD for `usage` at `price`: cache reads at `cached_input`, cache writes at
    `cache_write`, the other prompt tokens at `input`, the reply at `output`."""
    plain = max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, 0)
    cached = price.input if price.cached_input is None else price.cached_input
    writes = price.input if price.cache_write is None else price.cache_write
    return tidy_usd(
        PER_TOKEN
        * (
            plain * price.input
            + usage.cached_input_tokens * cached
            + usage.cache_write_tokens * writes
            + usage.output_tokens * price.output
        )
    )


def format_usd(amount: float | None) -> str:
    """`$12.35`, `$0.0123`, `$0.000014` (a small amount keeps two significant digits,
    never shown as $0); `?` for an unknown cost."""
    if amount is None:
        return "?"
    if amount == 0:
        return "$0"
    if amount >= 1:
        return f"${amount:,.2f}"
    digits = max(4, 1 - math.floor(math.log10(amount)))
    whole, decimals = f"{amount:.{digits}f}".split(".")
    return f"${whole}.{decimals.rstrip('0').ljust(2, '0')}"


UNKNOWN_PRICE = "no price known for model"  # how the note of an unknown price starts


def unknown_price_note(provider: str | None, model: str) -> str:
    where = f" at provider {provider!r}" if provider else ""
    return (
        f"{UNKNOWN_PRICE} {model!r}{where}: cost_usd is null "
        "(set providers.NAME.pricing, see docs/cost.md)"
    )


def prompt_token_bound(request: LLMRequest) -> int:
    """At most how many tokens the request's prompt is: every token is at least one byte
    of UTF-8, so the byte count (plus each message's overhead, and the schema sent along)
    bounds it from above, whatever the tokenizer."""
    text = "".join(str(m.get("content") or "") for m in request.messages)
    schema = str(request.schema or "")
    overhead = MESSAGE_OVERHEAD_TOKENS * (len(request.messages) + 2)
    return len(text.encode()) + len(schema.encode()) + overhead


def worst_case_cost(request: LLMRequest, price: Price) -> float:
    """The most a call can cost: the prompt's bound, none of it cached, and a full reply."""
    reply = request.max_tokens or price.max_output or FALLBACK_MAX_OUTPUT
    prompt = prompt_token_bound(request)
    input_price = max(price.input, price.cache_write or 0.0)
    return PER_TOKEN * (prompt * input_price + reply * price.output)


class BudgetExceeded(StepError):
    """A call was not made: its worst case would have passed the budget."""

    error_type = "budget"


@attrs.define(eq=False)
class Reservation:
    amount: float
    settled: bool = False


class Budget:
    """A limit in USD on what the calls of a run (or a batch: share one object) spend.

    Before a call, :meth:`reserve` holds its worst case; when the reply comes,
    :meth:`settle` swaps the hold for the real cost (or :meth:`release` drops it if the
    call failed). `spent + reserved` never passes `limit`, so the real spend never does.

    Atomic under concurrency without a lock: the engine is asyncio on one thread, and
    :meth:`reserve` checks and holds without an `await` in between, so no other call can
    reserve between the check and the hold. (A batch that runs rows on several threads
    would need a lock here; one event loop, as the engine has, needs none.)
    """

    def __init__(self, limit: float) -> None:
        if limit < 0:
            raise ValueError("a budget is 0 or more")
        self.limit = limit
        self.spent = 0.0
        self.reserved = 0.0

    def reserve(self, amount: float, what: str = "this call") -> Reservation:
        """Hold `amount`, or raise BudgetExceeded when the hold would pass the limit."""
        if self.spent + self.reserved + amount > self.limit:
            in_flight = (
                f" ({format_usd(self.reserved)} held by calls in flight)" if self.reserved else ""
            )
            raise BudgetExceeded(
                f"the budget of {format_usd(self.limit)} would be passed: {what} may cost up "
                f"to {format_usd(amount)}, and {format_usd(self.spent)} is spent so far"
                f"{in_flight}",
                hint="raise --max-cost (or defaults.max_cost), or lower max_tokens",
            )
        self.reserved += amount
        return Reservation(amount)

    def settle(self, reservation: Reservation, cost: float) -> None:
        """The call is done and cost `cost`."""
        if not reservation.settled:
            reservation.settled = True
            self.reserved -= reservation.amount
            self.spent += cost

    def release(self, reservation: Reservation) -> None:
        """The call failed before a reply: providers do not bill an error."""
        self.settle(reservation, 0.0)


class MeteredProvider:
    """Prices every reply of `inner`; with a budget, reserves each call's worst case first
    and refuses (BudgetExceeded, no request sent) a call that could pass it."""

    def __init__(self, inner: Provider, pricing: Pricing, budget: Budget | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.pricing = pricing
        self.budget = budget

    async def complete(
        self,
        request: LLMRequest,
        *,
        on_token: TokenCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> LLMResponse:
        provider = request.provider or self.name
        price = self.pricing.price(provider, request.model)
        budget = self.budget
        if budget is None:
            response = await self.inner.complete(request, on_token=on_token, on_retry=on_retry)
            return self._priced(response, provider, request.model, price)
        if price is None:  # checked before the run (check_prices); never guessed
            raise BudgetExceeded(unknown_price_note(provider, request.model))
        # No await between the check and the hold: see Budget.
        reservation = budget.reserve(worst_case_cost(request, price), f"a call to {request.model}")
        try:
            response = await self.inner.complete(request, on_token=on_token, on_retry=on_retry)
        except BaseException:
            budget.release(reservation)
            raise
        priced = self._priced(response, provider, request.model, price)
        # A reply without usage is charged its whole reservation: the worst case.
        cost = priced.cost_usd
        budget.settle(reservation, reservation.amount if cost is None else cost)
        return priced

    @staticmethod
    def _priced(
        response: LLMResponse, provider: str, model: str, price: Price | None
    ) -> LLMResponse:
        cost = _reply_cost(response, price)
        warnings = response.warnings
        if price is None:
            warnings = (*warnings, unknown_price_note(provider, model))
        return attrs.evolve(response, cost_usd=cost, price=price, warnings=warnings)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _reply_cost(response: LLMResponse, price: Price | None) -> float | None:
    if response.cached:
        return 0.0
    if price is None or response.usage is None:
        return None
    return cost_of(response.usage, price)


def metered(
    pricing: Pricing,
    budget: Budget | None,
    wrap: Callable[[str, Callable[[], Provider]], Provider] | None,
) -> Callable[[str, Callable[[], Provider]], Provider]:
    """A ProviderPool `wrap` that meters each provider right around the real one, so
    the response cache and `--replay` (which answer without it) cost nothing."""

    def wrap_metered(name: str, create: Callable[[], Provider]) -> Provider:
        def create_metered() -> Provider:
            return MeteredProvider(create(), pricing, budget)

        return wrap(name, create_metered) if wrap is not None else create_metered()

    return wrap_metered


def check_prices(targets: set[tuple[str, str]], pricing: Pricing) -> None:
    """With a budget, every (provider, model) the run may call needs a price: exit 2
    before any call, naming those without."""
    unknown = sorted((p, m) for p, m in targets if pricing.price(p, m) is None)
    if unknown:
        names = ", ".join(f"{m!r} (provider {p!r})" for p, m in unknown)
        raise ConfigError(
            f"--max-cost needs a price for every model, and none is known for {names}",
            hint="price it in the workflow: providers: {NAME: {pricing: {MODEL: {input: ..., "
            "output: ...}}}} (see docs/cost.md)",
        )
