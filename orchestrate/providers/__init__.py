"""Model providers behind one protocol, and the pool a run gets them from."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from orchestrate._errors import ConfigError
from orchestrate._spec import ModelSettings, ProviderSpec
from orchestrate.providers._base import LLMRequest, LLMResponse, Provider

__all__ = [
    "BUILTIN_PROVIDERS",
    "DEFAULT_MODEL",
    "LLMRequest",
    "LLMResponse",
    "Provider",
    "ProviderPool",
    "resolve_model",
    "resolve_provider_name",
]

BUILTIN_PROVIDERS = ("openai", "anthropic", "mock")
DEFAULT_MODEL = "gpt-4o-mini"


def resolve_model(settings: ModelSettings, env: Mapping[str, str] = os.environ) -> str:
    """The model a step uses: its own or `defaults`, else ORCHESTRATE_MODEL, else ours."""
    return settings.model or env.get("ORCHESTRATE_MODEL") or DEFAULT_MODEL


def resolve_provider_name(settings: ModelSettings, model: str) -> str:
    """`provider:` when set; otherwise a `claude-*` model means Anthropic, anything else OpenAI."""
    if settings.provider:
        return settings.provider
    return "anthropic" if model.startswith("claude") else "openai"


class ProviderPool:
    """Creates each provider a run needs once, and closes them all at the end.

    With `mock=True` every name answers with the mock provider, offline.
    """

    def __init__(
        self,
        endpoints: Mapping[str, ProviderSpec] | None = None,
        *,
        mock: bool = False,
        mock_latency: float = 0.0,
        env: Mapping[str, str] | None = None,
        concurrency: int = 8,
    ) -> None:
        self._endpoints = dict(endpoints or {})
        self._mock = mock
        self._mock_latency = mock_latency
        self._env = os.environ if env is None else env
        self._concurrency = concurrency
        self._providers: dict[str, Provider] = {}

    @property
    def mock(self) -> bool:
        return self._mock

    def check(self, names: Iterable[str]) -> None:
        """Fail before the first request when a provider cannot work (e.g. no API key)."""
        for name in sorted(set(names)):
            self.get(name)

    def get(self, name: str) -> Provider:
        if self._mock:
            name = "mock"
        if name not in self._providers:
            self._providers[name] = self._create(name)
        return self._providers[name]

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()

    def _create(self, name: str) -> Provider:
        if name == "mock":
            from orchestrate.providers._mock import MockProvider

            return MockProvider(latency=self._mock_latency or self._latency_from_env())
        if name == "openai":
            spec = ProviderSpec(
                base_url=self._env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
                api_key_env="OPENAI_API_KEY",
            )
            return self._http_provider(name, spec, key_required="OPENAI_BASE_URL" not in self._env)
        if name == "anthropic":
            spec = ProviderSpec(
                type="anthropic",
                base_url=self._env.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com",
                api_key_env="ANTHROPIC_API_KEY",
            )
            return self._http_provider(name, spec, key_required=True)
        if name in self._endpoints:
            return self._http_provider(name, self._endpoints[name], key_required=False)
        raise ConfigError(
            f"unknown provider {name!r}",
            hint="use openai, anthropic, mock or a name from the workflow's `providers:`",
        )

    def _latency_from_env(self) -> float:
        """ORCHESTRATE_MOCK_LATENCY: seconds the mock takes per answer, for demos."""
        raw = self._env.get("ORCHESTRATE_MOCK_LATENCY", "0")
        try:
            latency = float(raw)
        except ValueError:
            latency = -1.0
        if latency < 0:
            raise ConfigError(f"ORCHESTRATE_MOCK_LATENCY must be a number of seconds, got {raw!r}")
        return latency

    def _http_provider(self, name: str, spec: ProviderSpec, *, key_required: bool) -> Provider:
        api_key = self._env.get(spec.api_key_env) if spec.api_key_env else None
        if key_required and not api_key:
            raise ConfigError(
                f"provider {name!r} needs an API key: the environment variable "
                f"{spec.api_key_env} is not set",
                hint=f"export {spec.api_key_env}=... or run with --mock",
            )
        if spec.type == "anthropic":
            from orchestrate.providers._anthropic import AnthropicProvider

            return AnthropicProvider(
                name=name, base_url=spec.base_url, api_key=api_key, headers=spec.headers,
                concurrency=self._concurrency, api_key_env=spec.api_key_env,
            )
        from orchestrate.providers._openai import OpenAIProvider

        return OpenAIProvider(
            name=name, base_url=spec.base_url, api_key=api_key, headers=spec.headers,
            concurrency=self._concurrency, api_key_env=spec.api_key_env,
        )
