"""The registry of provider kinds: what it holds, and that a new kind needs nothing else."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

import orchestrate
from orchestrate._schema import workflow_schema
from orchestrate._validate import validate_file
from orchestrate.providers import (
    KINDS,
    LLMRequest,
    LLMResponse,
    ProviderKind,
    builtin_provider_names,
    kind_names,
)
from orchestrate.providers._anthropic import AnthropicProvider
from orchestrate.providers._base import RetryCallback, TokenCallback
from orchestrate.providers._openai import OpenAIProvider


class ToyProvider:
    """A provider of the toy kind: answers with the prompt reversed, where it lives and
    the provider name the request carries."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str | None,
        headers: Mapping[str, str],
        concurrency: int,
        api_key_env: str | None,
        secrets: Sequence[str],
    ) -> None:
        self.name = name
        self.base_url = base_url

    async def complete(
        self,
        request: LLMRequest,
        *,
        on_token: TokenCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> LLMResponse:
        prompt = request.messages[-1]["content"]
        text = f"{prompt[::-1]} from {self.base_url} for {request.provider}"
        return LLMResponse(text=text, model=request.model)

    async def aclose(self) -> None:
        pass


TOY = ProviderKind(
    name="toy",
    class_path=f"{__name__}:ToyProvider",
    default_base_url="toy://default",
    api_key_env="TOY_API_KEY",
    base_url_env="TOY_BASE_URL",
)


@pytest.fixture
def toy_kind() -> Iterator[ProviderKind]:
    """The toy kind in the registry for one test; the registry is restored after it."""
    saved = dict(KINDS)
    KINDS[TOY.name] = TOY
    try:
        yield TOY
    finally:
        KINDS.clear()
        KINDS.update(saved)


def test_builtin_kinds() -> None:
    """openai and anthropic are the kinds; the mock is a name but not a kind."""
    assert kind_names() == ("openai", "anthropic")
    assert builtin_provider_names() == ("openai", "anthropic", "mock")
    assert KINDS["openai"].load() is OpenAIProvider
    assert KINDS["anthropic"].load() is AnthropicProvider


@pytest.mark.parametrize(
    ("kind", "env", "expected"),
    [
        ("openai", {}, "https://api.openai.com/v1"),
        ("openai", {"OPENAI_BASE_URL": ""}, "https://api.openai.com/v1"),
        ("openai", {"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"}, "http://127.0.0.1:11434/v1"),
        ("anthropic", {}, "https://api.anthropic.com"),
        ("anthropic", {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9000"}, "http://127.0.0.1:9000"),
    ],
)
def test_base_url_from_the_environment(kind: str, env: dict[str, str], expected: str) -> None:
    """The base-URL variable replaces the default; an empty one does not."""
    assert KINDS[kind].base_url(env) == expected


def test_reading_the_registry_imports_no_http_client() -> None:
    """`validate` asks the registry, so the registry must not import httpx."""
    code = (
        "import sys, orchestrate.providers._registry as r; r.kind_names(); "
        "print('httpx' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


TOY_FLOW = """
    providers:
      mine:
        type: toy
        base_url: toy://mine
    steps:
      - id: builtin
        provider: toy
        prompt: abc
      - id: declared
        provider: mine
        prompt: xyz
    """


def test_a_new_kind_runs_end_to_end(toy_kind: ProviderKind, write_flow: Callable) -> None:
    """A registry entry alone makes a kind usable by name and as `type:`, from run_workflow."""
    flow = write_flow(TOY_FLOW)
    result = orchestrate.run_workflow(flow, mock=False)
    assert result.status == "succeeded", result.error
    assert result.outputs == {
        "builtin": "cba from toy://default for toy",
        "declared": "zyx from toy://mine for mine",
    }
    assert [step.provider for step in result.steps] == ["toy", "mine"]


def test_a_new_kind_follows_its_base_url_variable(
    toy_kind: ProviderKind, write_flow: Callable
) -> None:
    """The built-in provider of a new kind reads its base URL from its own variable."""
    flow = write_flow("steps: [{id: a, provider: toy, prompt: abc}]")
    result = orchestrate.run_workflow(flow, mock=False, env={"TOY_BASE_URL": "toy://env"})
    assert result.outputs == {"a": "cba from toy://env for toy"}


def test_a_new_kind_is_known_to_validation_and_schema(
    toy_kind: ProviderKind, write_flow: Callable
) -> None:
    """The validator and the JSON Schema accept the new kind without being told."""
    assert validate_file(write_flow(TOY_FLOW)).valid
    schema = workflow_schema()
    provider = schema["properties"]["providers"]["additionalProperties"]
    assert provider["properties"]["type"]["enum"] == ["openai", "anthropic", "toy"]


def test_without_the_entry_the_kind_is_unknown(write_flow: Callable) -> None:
    """The same workflow is invalid once the registry no longer holds the kind."""
    report = validate_file(write_flow(TOY_FLOW))
    assert not report.valid
    assert {d.message for d in report.diagnostics} == {
        "expected one of openai, anthropic, got 'toy'",
        "unknown provider 'toy'",
        "unknown provider 'mine'",
    }


def test_a_new_kind_has_its_own_cache_endpoint(
    toy_kind: ProviderKind, write_flow: Callable, tmp_path: Path
) -> None:
    """The response cache keeps a new kind's answers under its name and base URL."""
    flow = write_flow(TOY_FLOW)
    database = tmp_path / "history.db"
    history = orchestrate.HistoryOptions(cache=True, database=database)
    orchestrate.run_workflow(flow, mock=False, history=history)
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT provider, request FROM responses ORDER BY provider").fetchall()
    assert [(endpoint, json.loads(request)["model"]) for endpoint, request in rows] == [
        ("mine toy://mine", "gpt-4o-mini"),
        ("toy toy://default", "gpt-4o-mini"),
    ]
