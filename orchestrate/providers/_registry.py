"""Every kind of provider orchestrate speaks, in one table the rest of the package asks.

A kind is an API (`openai`, `anthropic`). Its entry names the class that speaks it and
the defaults of the built-in provider of the same name, which is configured from the
environment. The loader, the validator, the JSON Schema, the pool and the response
cache all read this table, so adding a kind is one entry here (see docs/providers.md,
"Adding a provider").

Classes are named by import path and imported on first use: `orchestrate validate`
reads this table and must not pay for httpx.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from orchestrate.providers._base import Provider

MOCK = "mock"  # the offline provider: a name every workflow may use, not a kind


class ProviderClass(Protocol):
    """How the pool makes a provider of a kind; `secrets` are redacted from its errors."""

    def __call__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str | None,
        headers: Mapping[str, str],
        concurrency: int,
        api_key_env: str | None,
        secrets: Sequence[str],
    ) -> Provider: ...


@attrs.frozen(kw_only=True)
class ProviderKind:
    """One API: the class that speaks it, and its built-in provider's configuration."""

    name: str
    class_path: str  # "package.module:Class", imported by `load()`
    default_base_url: str
    api_key_env: str  # the variable holding the built-in provider's key
    base_url_env: str  # the variable that replaces `default_base_url`

    def base_url(self, env: Mapping[str, str]) -> str:
        """The built-in provider's base URL: the environment's, else the default."""
        return env.get(self.base_url_env) or self.default_base_url

    def load(self) -> ProviderClass:
        module, _, attribute = self.class_path.partition(":")
        provider_class: ProviderClass = getattr(importlib.import_module(module), attribute)
        return provider_class


KINDS: dict[str, ProviderKind] = {
    kind.name: kind
    for kind in (
        ProviderKind(
            name="openai",
            class_path="orchestrate.providers._openai:OpenAIProvider",
            default_base_url="https://api.openai.com/v1",
            api_key_env="OPENAI_API_KEY",
            base_url_env="OPENAI_BASE_URL",
        ),
        ProviderKind(
            name="anthropic",
            class_path="orchestrate.providers._anthropic:AnthropicProvider",
            default_base_url="https://api.anthropic.com",
            api_key_env="ANTHROPIC_API_KEY",
            base_url_env="ANTHROPIC_BASE_URL",
        ),
    )
}


def kind_names() -> tuple[str, ...]:
    """The values `type:` of a `providers:` entry accepts."""
    return tuple(KINDS)


def builtin_provider_names() -> tuple[str, ...]:
    """The names a step can use without declaring them: every kind, and the mock."""
    return (*KINDS, MOCK)
