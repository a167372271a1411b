"""Fixtures every test gets: a private data directory and an environment without keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# The variables that would make a test depend on the machine it runs on.
_ENVIRONMENT = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "ORCHESTRATE_MOCK",
    "ORCHESTRATE_USE_MOCK",
    "ORCHESTRATE_MODEL",
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point ORCHESTRATE_HOME at a temporary folder and drop keys and mock switches."""
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORCHESTRATE_HOME", str(tmp_path / "home"))
    yield


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
