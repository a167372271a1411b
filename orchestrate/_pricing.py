"""Model prices: the table shipped in `orchestrate/pricing.toml`, and a workflow's own.

    PriceTable      the shipped list prices, by model, with their date and sources
    Pricing         who prices a call: `providers.NAME.pricing` first, then the table;
                    the mock is free

A model's name finds its price as written, then lower-cased without a `vendor/` prefix
(OpenRouter's `openai/gpt-4o`), then without a dated snapshot or `-latest` suffix
(`gpt-4o-2024-08-06`, `claude-3-5-sonnet-20241022`, `claude-3-5-haiku-latest`), each
also through the table's `aliases`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from orchestrate._spec import Price, ProviderSpec
from orchestrate.providers import MOCK

__all__ = ["FREE", "PriceTable", "Pricing", "base_names", "shipped_table"]

FREE = Price(input=0.0, output=0.0)
# `-2024-08-06` (OpenAI), `-20241022` (Anthropic), `@20241022` (Vertex), `-latest`.
_SNAPSHOT = re.compile(r"(?:[-@]\d{4}-\d{2}-\d{2}|[-@]\d{8}|-latest)$")


def base_names(model: str) -> list[str]:
    """The names a model's price is looked up under, most exact first."""
    names = [model]
    plain = model.rsplit("/", 1)[-1].lower()
    names.append(plain)
    undated = _SNAPSHOT.sub("", plain)
    names.append(undated)
    return list(dict.fromkeys(names))


@attrs.frozen
class PriceTable:
    """List prices by model (aliases included), the day they were read, and from where."""

    prices: dict[str, Price]
    as_of: str
    sources: tuple[str, ...] = ()

    @classmethod
    def from_toml(cls, data: Mapping[str, Any]) -> PriceTable:
        prices: dict[str, Price] = {}
        for model, entry in data["models"].items():
            fields = {k: v for k, v in entry.items() if k != "aliases"}
            price = Price(**fields)
            for name in (model, *entry.get("aliases", ())):
                prices[name.lower()] = price
        return cls(prices, str(data["as_of"]), tuple(data.get("sources", ())))

    def find(self, model: str) -> Price | None:
        for name in base_names(model):
            price = self.prices.get(name) or self.prices.get(name.lower())
            if price is not None:
                return price
        return None


@functools.cache
def shipped_table() -> PriceTable:
    """The table in orchestrate/pricing.toml (read once). A plain path, as the UI's
    templates: importlib.resources' files() costs a run some 3 ms (zipfile, readers)."""
    import tomllib

    text = (Path(__file__).parent / "pricing.toml").read_text(encoding="utf-8")
    return PriceTable.from_toml(tomllib.loads(text))


class Pricing:
    """The price of a model at a provider: the workflow's `pricing` for that provider
    wins, then the shipped table; the mock costs nothing; None when nobody knows."""

    def __init__(
        self, endpoints: Mapping[str, ProviderSpec] | None = None, table: PriceTable | None = None
    ) -> None:
        self.overrides = {
            name: spec.pricing for name, spec in (endpoints or {}).items() if spec.pricing
        }
        self.table = table or shipped_table()

    def price(self, provider: str | None, model: str) -> Price | None:
        if provider == MOCK:
            return FREE
        own = self.overrides.get(provider or "")
        if own:
            for name in base_names(model):
                if name in own:
                    return own[name]
        return self.table.find(model)
