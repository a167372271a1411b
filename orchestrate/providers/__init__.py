"""Model providers behind one protocol, and the pool a run gets them from."""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from orchestrate._errors import ConfigError
from orchestrate._secrets import is_secret_header, longest_first, secret_env_values
from orchestrate._settings import MOCK_LATENCY
from orchestrate._spec import ModelSettings, ProviderSpec, ProviderType
from orchestrate.providers._registry import (
    KINDS,
    MOCK,
    ProviderKind,
    builtin_provider_names,
    kind_names,
)

if TYPE_CHECKING:
    from orchestrate.providers._base import LLMRequest, LLMResponse, Provider
    from orchestrate.providers._limits import RateLimiter

__all__ = [
    "DEFAULT_MODEL",
    "KINDS",
    "MOCK",
    "LLMRequest",
    "LLMResponse",
    "Provider",
    "ProviderKind",
    "ProviderPool",
    "builtin_provider_names",
    "kind_names",
    "resolve_model",
    "resolve_provider_name",
    "run_secrets",
]

# Imported on first use: `validate` reads the table of kinds and never a request, and
# these classes bring the run's result types with them (some 9 ms of its start-up).
_BASE_NAMES = frozenset({"LLMRequest", "LLMResponse", "Provider"})


def __getattr__(name: str) -> Any:
    if name in _BASE_NAMES:
        from orchestrate.providers import _base

        return getattr(_base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEFAULT_MODEL = "gpt-4o-mini"
# Hosted APIs that always want a key: a missing one is reported before the first request.
# Any other server (Ollama, vLLM, llama.cpp, a proxy) gets no Authorization header instead.
_HOSTS_NEEDING_KEYS = frozenset(
    {
        "api.openai.com",
        "api.anthropic.com",
        "openrouter.ai",
        "api.groq.com",
        "api.together.xyz",
        "api.mistral.ai",
        "api.deepseek.com",
        "api.fireworks.ai",
    }
)


def _needs_key(base_url: str) -> bool:
    from urllib.parse import urlsplit

    return (urlsplit(base_url).hostname or "") in _HOSTS_NEEDING_KEYS


def resolve_model(settings: ModelSettings, env: Mapping[str, str] = os.environ) -> str:
    """The model a step uses: its own or `defaults`, else ORCHESTRATE_MODEL, else ours."""
    return settings.model or env.get("ORCHESTRATE_MODEL") or DEFAULT_MODEL


def resolve_provider_name(settings: ModelSettings, model: str) -> str:
    """`provider:` when set; otherwise a `claude-*` model means Anthropic, anything else OpenAI."""
    if settings.provider:
        return settings.provider
    return "anthropic" if model.startswith("claude") else "openai"


def run_secrets(endpoints: Mapping[str, ProviderSpec], env: Mapping[str, str]) -> tuple[str, ...]:
    """What a run must never show or store: the values of key-like environment variables
    (`*_KEY`, `*_TOKEN`...), of every provider's `api_key_env`, and of every variable a
    `headers:` value reads through `${NAME}`, whatever NAME is; and the value of a
    credential header written in the workflow itself. Longest first."""
    names = {kind.api_key_env for kind in KINDS.values()}
    literal = []
    for spec in endpoints.values():
        names.update([spec.api_key_env] if spec.api_key_env else [])
        for header, value in spec.headers.items():
            referenced = _ENV_REFERENCE.findall(value) if isinstance(value, str) else []
            names.update(referenced)
            if not referenced and isinstance(value, str) and is_secret_header(header):
                literal.append(value)
    pasted = {name: value.strip(_PASTED_WHITESPACE) for name, value in env.items()}
    return longest_first(
        [*secret_env_values(pasted, names), *(value for value in literal if len(value) >= 8)]
    )


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
        wrap: Callable[[str, Callable[[], Provider]], Provider] | None = None,
    ) -> None:
        self._endpoints = dict(endpoints or {})
        self._wrap = wrap
        self._mock = mock
        self._mock_latency = mock_latency
        self._env = os.environ if env is None else env
        self._concurrency = concurrency
        self._providers: dict[str, Provider] = {}
        self._limiters: dict[str, RateLimiter] = {}

    @functools.cached_property
    def secrets(self) -> tuple[str, ...]:
        """The values errors and the history must never show (see :func:`run_secrets`)."""
        return run_secrets(self._endpoints, self._env)

    def check(self, names: Iterable[str]) -> None:
        """Fail before the first request when a provider cannot work (e.g. no API key)."""
        for name in sorted(set(names)):
            self.get(name)

    def get(self, name: str) -> Provider:
        if self._mock:
            name = MOCK
        if name not in self._providers:
            create = functools.partial(self._create, name)
            # `wrap(name, create)` may put a provider around (cache, --record) or instead of
            # (--replay) the one `create()` makes.
            self._providers[name] = self._wrap(name, create) if self._wrap else create()
        return self._providers[name]

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()

    def _create(self, name: str) -> Provider:
        if name == MOCK:
            from orchestrate.providers._mock import MockProvider

            return MockProvider(latency=self._mock_latency or self._latency_from_env())
        endpoint = self._endpoints.get(name)
        if endpoint is not None and endpoint.base_url is None:  # a built-in's rate limits
            builtin = self._builtin(name)
            endpoint = attrs.evolve(
                endpoint,
                base_url=builtin.base_url,
                type=builtin.type,
                api_key_env=endpoint.api_key_env or builtin.api_key_env,
            )
        if endpoint is not None:  # a key variable the workflow names is one it needs
            provider = self._provider_of_kind(
                name, endpoint, key_required=endpoint.api_key_env is not None
            )
        else:
            endpoint = self._builtin(name)
            provider = self._provider_of_kind(name, endpoint, key_required=False)
        self._limit(name, provider, endpoint)
        return provider

    def _limit(self, name: str, provider: Provider, spec: ProviderSpec) -> None:
        """Give an HTTP provider its rate limiter: `rpm`, `tpm`, and AIMD on 429s."""
        if not hasattr(provider, "limiter"):
            return
        from orchestrate.providers._limits import RateLimiter

        limiter = RateLimiter(name, concurrency=self._concurrency, rpm=spec.rpm, tpm=spec.tpm)
        provider.limiter = limiter
        self._limiters[name] = limiter

    def rate_waits(self) -> list[tuple[str, int, float]]:
        """(provider, calls waiting, seconds a new call would wait) where calls wait on a
        rate limit: for the live display."""
        return [
            (name, limiter.waiting, limiter.seconds_to_wait())
            for name, limiter in self._limiters.items()
            if limiter.waiting
        ]

    def _builtin(self, name: str) -> ProviderSpec:
        """The provider named after a kind, configured from the environment."""
        kind = KINDS.get(name)
        if kind is None:
            raise ConfigError(
                f"unknown provider {name!r}",
                hint=f"use {', '.join(builtin_provider_names())} or a name from the "
                "workflow's `providers:`",
            )
        return ProviderSpec(
            type=ProviderType(name), base_url=kind.base_url(self._env), api_key_env=kind.api_key_env
        )

    def _latency_from_env(self) -> float:
        """ORCHESTRATE_MOCK_LATENCY: seconds the mock takes per answer, for demos."""
        raw = self._env.get("ORCHESTRATE_MOCK_LATENCY", "0")
        try:
            latency = float(raw)
        except ValueError:
            latency = math.nan
        if latency not in MOCK_LATENCY:  # NaN included
            raise ConfigError(
                f"ORCHESTRATE_MOCK_LATENCY must be a number of seconds from "
                f"{MOCK_LATENCY.low} to {MOCK_LATENCY.high}, got {raw!r}"
            )
        return latency

    def _provider_of_kind(self, name: str, spec: ProviderSpec, *, key_required: bool) -> Provider:
        """A provider of `spec`'s kind. Without a key (its variable unset or empty) it
        fails here, before any request, when `key_required` or its host always wants one."""
        assert spec.base_url is not None  # _create gives a built-in's entry its URL
        api_key = self._api_key(spec.api_key_env)
        headers, secrets = self._expand_headers(name, spec.headers)
        _check_headers(name, headers)
        if not api_key and (key_required or _needs_key(spec.base_url)):
            raise self._missing_key(name, spec.api_key_env)
        provider_class = KINDS[spec.type].load()
        return provider_class(
            name=name,
            base_url=spec.base_url,
            api_key=api_key,
            headers=headers,
            concurrency=self._concurrency,
            api_key_env=spec.api_key_env,
            secrets=secrets,
        )

    def _missing_key(self, provider: str, variable: str | None) -> ConfigError:
        """The error for a provider without its key: it names the variable, and tells an
        empty one from one that is not set."""
        if variable is None:  # a hosted API behind a `providers:` entry without a key
            return ConfigError(
                f"provider {provider!r} needs an API key, and names no api_key_env",
                hint="add `api_key_env: NAME` to the entry and export NAME=...",
            )
        state = "is empty" if self._env.get(variable) is not None else "is not set"
        return ConfigError(
            f"provider {provider!r} needs an API key: the environment variable {variable} {state}",
            hint=f"export {variable}=... or run with --mock",
        )

    def _expand_headers(
        self, provider: str, headers: Mapping[str, str]
    ) -> tuple[dict[str, str], list[str]]:
        """`${NAME}` in a header value is the environment variable NAME, so a workflow can
        send a secret header (Azure's `api-key`) without holding it; such values are
        redacted from every message like keys are."""
        secrets: list[str] = []
        expanded = {
            header: self._expand(provider, header, value, secrets)
            for header, value in headers.items()
        }
        return expanded, secrets

    def _expand(self, provider: str, header: str, value: str, secrets: list[str]) -> str:
        def variable(match: re.Match[str]) -> str:
            name = match.group(1)
            found = self._env.get(name, "").strip(_PASTED_WHITESPACE)
            if not found:
                raise ConfigError(
                    f"provider {provider!r}: header {header!r} needs the environment "
                    f"variable {name}, which is not set",
                    hint=f"export {name}=... or run with --mock",
                )
            secrets.append(found)
            return found

        return _ENV_REFERENCE.sub(variable, value) if isinstance(value, str) else value

    def _api_key(self, variable: str | None) -> str | None:
        """The key in `variable`, without the whitespace a paste adds around it.

        A key HTTP cannot carry in a header (non-ASCII, a control character) is refused
        here, before any request: httpx would fail with an error whose repr holds the key.
        """
        raw = self._env.get(variable) if variable else None
        if raw is None:
            return None
        key = raw.strip(_PASTED_WHITESPACE)
        if key and not _header_safe(key):
            raise ConfigError(
                f"{variable} holds characters that cannot be sent in an HTTP header",
                hint="check it for a stray space, quote or non-ASCII character",
            )
        return key or None


# What a copy-paste puts around a key by accident; a no-break space is reported instead.
_PASTED_WHITESPACE = " \t\r\n\f\v"


def _header_safe(text: str) -> bool:
    """Whether HTTP can send `text` in a header: printable ASCII only."""
    return text.isascii() and text.isprintable()


def _check_headers(provider: str, headers: Mapping[str, object]) -> None:
    """Refuse a `headers:` entry HTTP cannot send, naming the header but never its value."""
    for header, value in headers.items():
        if (
            not isinstance(header, str)
            or not header
            or not _header_safe(header)
            or (any(c in header for c in ' :"(),/;<=>?@[\\]{}'))
        ):
            raise ConfigError(
                f"provider {provider!r}: {header!r} is not a valid HTTP header name",
                hint="use letters, digits and '-' in header names",
            )
        if not isinstance(value, str) or not _header_safe(value):
            raise ConfigError(
                f"provider {provider!r}: the value of header {header!r} holds characters "
                "that cannot be sent in an HTTP header",
                hint="check it for a stray space, quote or non-ASCII character",
            )
