"""The provider pool: which provider answers, and which keys must be set before a run."""

from __future__ import annotations

import pytest

from orchestrate._errors import ConfigError
from orchestrate._spec import ModelSettings, ProviderSpec
from orchestrate.providers import ProviderPool, resolve_model, resolve_provider_name
from orchestrate.providers._anthropic import AnthropicProvider
from orchestrate.providers._mock import MockProvider
from orchestrate.providers._openai import OpenAIProvider

KEY = "sk-pool-test-0000"


@pytest.mark.parametrize(
    ("name", "env", "variable"),
    [
        ("openai", {}, "OPENAI_API_KEY"),
        ("anthropic", {}, "ANTHROPIC_API_KEY"),
        ("openai", {"OPENAI_BASE_URL": "https://api.openai.com/v1"}, "OPENAI_API_KEY"),
    ],
)
def test_hosted_apis_need_their_key_before_a_run(name: str, env: dict, variable: str) -> None:
    """A missing key for a hosted API is a ConfigError naming the variable."""
    with pytest.raises(ConfigError) as caught:
        ProviderPool(env=env).check([name])
    assert variable in caught.value.message
    assert KEY not in caught.value.message


@pytest.mark.parametrize(
    "env",
    [
        {"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"},
        {"OPENAI_BASE_URL": "http://gpu-box:8000/v1"},
        {"OPENAI_API_KEY": KEY},
    ],
)
def test_custom_servers_and_set_keys_pass(env: dict) -> None:
    """A custom base URL needs no key (Ollama, vLLM); a set key is enough for OpenAI."""
    provider = ProviderPool(env=env).get("openai")
    assert isinstance(provider, OpenAIProvider)
    assert KEY not in repr(provider)


def test_named_endpoint_with_a_hosted_url_needs_its_key() -> None:
    """An OpenRouter entry with an unset api_key_env is refused before the run."""
    endpoints = {"router": ProviderSpec(base_url="https://openrouter.ai/api/v1",
                                        api_key_env="OPENROUTER_API_KEY")}
    with pytest.raises(ConfigError, match="OPENROUTER_API_KEY"):
        ProviderPool(endpoints, env={}).check(["router"])


def test_named_endpoints_win_over_builtin_names() -> None:
    """`providers: {openai: {base_url: ...}}` redirects the openai provider."""
    endpoints = {"openai": ProviderSpec(base_url="http://127.0.0.1:8080/v1")}
    provider = ProviderPool(endpoints, env={}).get("openai")
    assert isinstance(provider, OpenAIProvider)
    assert provider.base_url == "http://127.0.0.1:8080/v1"


def test_anthropic_type_endpoint() -> None:
    """An endpoint of type anthropic speaks the Messages API."""
    endpoints = {"proxy": ProviderSpec(type="anthropic", base_url="http://127.0.0.1:9000")}
    assert isinstance(ProviderPool(endpoints, env={}).get("proxy"), AnthropicProvider)


def test_mock_answers_for_every_name() -> None:
    """With mock=True any provider name is the mock, and no key is needed."""
    pool = ProviderPool(mock=True, env={})
    assert isinstance(pool.get("anthropic"), MockProvider)
    assert pool.get("openai") is pool.get("anthropic")


def test_unknown_provider() -> None:
    """A name that is neither built in nor declared is a ConfigError."""
    with pytest.raises(ConfigError, match="unknown provider 'nope'"):
        ProviderPool(env={}).get("nope")


@pytest.mark.parametrize(
    ("settings", "env", "expected"),
    [
        (ModelSettings(), {}, ("gpt-4o-mini", "openai")),
        (ModelSettings(), {"ORCHESTRATE_MODEL": "claude-sonnet-4-5"},
         ("claude-sonnet-4-5", "anthropic")),
        (ModelSettings(model="claude-3-5-haiku-latest"), {}, ("claude-3-5-haiku-latest",
                                                               "anthropic")),
        (ModelSettings(model="claude-x", provider="local"), {}, ("claude-x", "local")),
        (ModelSettings(model="llama3"), {"ORCHESTRATE_MODEL": "gpt-4o"}, ("llama3", "openai")),
    ],
)
def test_model_and_provider_resolution(settings: ModelSettings, env: dict,
                                       expected: tuple[str, str]) -> None:
    """The model falls back to ORCHESTRATE_MODEL then gpt-4o-mini; claude-* means Anthropic."""
    model = resolve_model(settings, env)
    assert (model, resolve_provider_name(settings, model)) == expected
