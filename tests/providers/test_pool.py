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
    endpoints = {
        "router": ProviderSpec(
            base_url="https://openrouter.ai/api/v1", api_key_env="OPENROUTER_API_KEY"
        )
    }
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
        (
            ModelSettings(),
            {"ORCHESTRATE_MODEL": "claude-sonnet-4-5"},
            ("claude-sonnet-4-5", "anthropic"),
        ),
        (
            ModelSettings(model="claude-3-5-haiku-latest"),
            {},
            ("claude-3-5-haiku-latest", "anthropic"),
        ),
        (ModelSettings(model="claude-x", provider="local"), {}, ("claude-x", "local")),
        (ModelSettings(model="llama3"), {"ORCHESTRATE_MODEL": "gpt-4o"}, ("llama3", "openai")),
    ],
)
def test_model_and_provider_resolution(
    settings: ModelSettings, env: dict, expected: tuple[str, str]
) -> None:
    """The model falls back to ORCHESTRATE_MODEL then gpt-4o-mini; claude-* means Anthropic."""
    model = resolve_model(settings, env)
    assert (model, resolve_provider_name(settings, model)) == expected


# --- keys and headers HTTP cannot send ----------------------------------------------------

BAD_KEYS = [
    "sk-qa-secret-123\u00a0",  # a no-break space from a copy-paste
    "sk-qa-s\u00e9cret-123",
    "sk-qa-secret-123\u200b",  # zero-width space
    "sk-qa-\tsecret-123",
    "sk-qa-secret\n-123",
    "\u201csk-qa-secret-123\u201d",  # curly quotes
]


@pytest.mark.parametrize("key", BAD_KEYS)
@pytest.mark.parametrize(
    ("name", "variable"), [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")]
)
def test_key_http_cannot_send_is_refused(key: str, name: str, variable: str) -> None:
    """A non-ASCII or non-printable key is a ConfigError naming the variable, not the key."""
    with pytest.raises(ConfigError) as caught:
        ProviderPool(env={variable: key}).check([name])
    error = caught.value
    assert variable in error.message
    assert "stray space" in (error.hint or "")
    for text in (error.message, error.hint or "", str(error), repr(error), error.format()):
        assert "secret" not in text


def test_bad_key_of_a_named_endpoint_is_refused() -> None:
    """The check also covers a `providers:` entry's api_key_env, on a custom server."""
    endpoints = {
        "local": ProviderSpec(base_url="http://127.0.0.1:8000/v1", api_key_env="LOCAL_KEY")
    }
    with pytest.raises(ConfigError, match="LOCAL_KEY holds characters"):
        ProviderPool(endpoints, env={"LOCAL_KEY": "caf\u00e9"}).get("local")


@pytest.mark.parametrize("padded", [f"{KEY}\n", f"  {KEY}\t", f"\r\n{KEY}\r\n", f" {KEY} "])
def test_key_whitespace_is_stripped(padded: str) -> None:
    """Spaces, tabs and newlines pasted around a key are dropped."""
    provider = ProviderPool(env={"OPENAI_API_KEY": padded}).get("openai")
    assert provider._api_key == KEY


def test_blank_key_counts_as_missing() -> None:
    """A key of only whitespace is missing, and reported as empty."""
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is empty"):
        ProviderPool(env={"OPENAI_API_KEY": " \n"}).check(["openai"])


LOCAL = "http://127.0.0.1:8000/v1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "the environment variable LOCAL_KEY is not set"),
        ({"LOCAL_KEY": ""}, "the environment variable LOCAL_KEY is empty"),
        ({"LOCAL_KEY": " \t\n"}, "the environment variable LOCAL_KEY is empty"),
    ],
)
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_named_key_variable_is_needed_on_any_server(env: dict, message: str, kind: str) -> None:
    """An endpoint naming `api_key_env` needs that variable set and not blank, even on a
    custom base_url that would need no key."""
    endpoints = {"local": ProviderSpec(type=kind, base_url=LOCAL, api_key_env="LOCAL_KEY")}
    with pytest.raises(ConfigError) as caught:
        ProviderPool(endpoints, env=env).check(["local"])
    assert message in caught.value.message
    assert "LOCAL_KEY" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("endpoint", "env", "key"),
    [
        (ProviderSpec(base_url=LOCAL), {}, None),
        (ProviderSpec(base_url=LOCAL, api_key_env="LOCAL_KEY"), {"LOCAL_KEY": KEY}, KEY),
    ],
)
def test_only_an_endpoint_naming_no_key_goes_without(
    endpoint: ProviderSpec, env: dict, key: str | None
) -> None:
    """A custom server without `api_key_env` gets no key (Ollama); a named, set one is used."""
    provider = ProviderPool({"local": endpoint}, env=env).get("local")
    assert provider._api_key == key


def test_a_hosted_endpoint_naming_no_key_variable() -> None:
    """A `providers:` entry on a hosted API without `api_key_env` says to add one."""
    endpoints = {"router": ProviderSpec(base_url="https://openrouter.ai/api/v1")}
    with pytest.raises(ConfigError, match="names no api_key_env") as caught:
        ProviderPool(endpoints, env={}).check(["router"])
    assert "api_key_env" in (caught.value.hint or "")


@pytest.mark.parametrize(
    "value", ["Bearer t\u00f6ken-42", "tok\u00a0en-42", "tok\nen-42", "x\r\nX-Injected: 1"]
)
def test_header_value_http_cannot_send_is_refused(value: str) -> None:
    """A `headers:` value that is not printable ASCII is refused, naming the header only."""
    endpoints = {
        "proxy": ProviderSpec(base_url="http://127.0.0.1:9000/v1", headers={"X-Proxy-Auth": value})
    }
    with pytest.raises(ConfigError) as caught:
        ProviderPool(endpoints, env={}).check(["proxy"])
    assert "X-Proxy-Auth" in caught.value.message
    assert "en-42" not in caught.value.message
    assert "Injected" not in caught.value.message


def test_header_name_http_cannot_send_is_refused() -> None:
    """A header name with a space or non-ASCII character is refused."""
    endpoints = {
        "proxy": ProviderSpec(base_url="http://127.0.0.1:9000/v1", headers={"X Token": "abc"})
    }
    with pytest.raises(ConfigError, match="not a valid HTTP header name"):
        ProviderPool(endpoints, env={}).check(["proxy"])


def test_header_values_can_come_from_the_environment() -> None:
    """`${NAME}` in a header value is read from the environment and treated as a secret."""
    secret = "azure-secret-value-123"
    endpoints = {
        "azure": ProviderSpec(
            base_url="http://127.0.0.1:9/v1", headers={"api-key": "${AZURE_KEY}", "X-Team": "ml"}
        )
    }
    provider = ProviderPool(endpoints, env={"AZURE_KEY": f" {secret}\n"}).get("azure")
    assert provider._extra_headers == {"api-key": secret, "X-Team": "ml"}
    assert secret in provider._secrets


def test_run_secrets_are_every_value_a_run_must_not_show() -> None:
    """Keys of kinds and endpoints, `${NAME}` header variables whatever NAME is, literal
    credential headers and key-like variables; pasted whitespace trimmed, short ones left."""
    endpoints = {
        "azure": ProviderSpec(
            base_url="http://127.0.0.1:9/v1",
            api_key_env="GATEWAY",
            headers={
                "api-key": "${AZURE_CRED}",
                "X-Team": "ml-platform",
                "X-Auth": "literal-credential",
            },
        ),
    }
    env = {
        "AZURE_CRED": " azure-cred-value\n",
        "GATEWAY": "gateway-value",
        "OPENAI_API_KEY": "openai-key-value",
        "BILLING_TOKEN": "billing-token-value",
        "HOME": "/home/someone",
        "SHORT_KEY": "short",
    }
    expected = (
        "billing-token-value",
        "literal-credential",
        "azure-cred-value",
        "openai-key-value",
        "gateway-value",
    )
    assert expected == ProviderPool(endpoints, env=env).secrets


def test_a_header_variable_that_is_not_set() -> None:
    """A header naming an unset variable is a ConfigError before the run, naming it."""
    endpoints = {
        "azure": ProviderSpec(base_url="http://127.0.0.1:9/v1", headers={"api-key": "${AZURE_KEY}"})
    }
    with pytest.raises(ConfigError, match="needs the environment variable AZURE_KEY"):
        ProviderPool(endpoints, env={}).check(["azure"])
