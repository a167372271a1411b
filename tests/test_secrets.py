"""Keeping secrets out of what orchestrate writes: one marker, known values and key shapes."""

from __future__ import annotations

import pytest

from orchestrate._secrets import (
    REDACTED,
    StreamRedactor,
    longest_first,
    redact,
    redact_url,
    redact_values,
    secret_env_values,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key abc-secret-1 echoed", "key [REDACTED] echoed"),
        ("Authorization: Bearer tok_123456", "Authorization: Bearer [REDACTED]"),
        ('{"x-api-key": "ant-12345"}', '{"x-api-key": "[REDACTED]"}'),
        (
            "Incorrect API key provided: sk-proj-abc***********xyz.",
            "Incorrect API key provided: [REDACTED].",
        ),
        ("api_key=zzz999&x=1", "api_key=[REDACTED]&x=1"),
        ("nothing secret here", "nothing secret here"),
        ("POST http://bob:pw-1@gw.local/v1 failed", "POST http://[REDACTED]@gw.local/v1 failed"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    """Keys, bearer tokens and API-key headers are removed from text."""
    assert expected == redact(text, ("abc-secret-1",))


@pytest.mark.parametrize(
    ("env", "names", "expected"),
    [
        ({"OPENAI_API_KEY": "sk-0123456789"}, (), ("sk-0123456789",)),
        (
            {"GITHUB_TOKEN": "ghp_abcdefgh", "MY_SECRET": "s3cr3t-value-long"},
            (),
            ("s3cr3t-value-long", "ghp_abcdefgh"),
        ),
        ({"DB_PASSWORD": "hunter22", "DB_PASSWD": "hunter2345"}, (), ("hunter2345", "hunter22")),
        ({"SERVICE_CRED": "credential-1"}, ("SERVICE_CRED",), ("credential-1",)),
        ({"OPENAI_API_KEY": "short"}, (), ()),
        ({"HOME": "/home/someone", "KEYBOARD": "us-international"}, (), ()),
    ],
)
def test_secret_env_values(
    env: dict[str, str], names: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    """Key-like variables and named ones count, longest first; short values are ignored."""
    assert expected == secret_env_values(env, names)


def test_redact_values_removes_only_known_values() -> None:
    """The history's redaction: the known value goes, a key-shaped text stays as it is."""
    text = "token abcdefgh-123 and Bearer sk-someone-elses"
    assert f"token {REDACTED} and Bearer sk-someone-elses" == redact_values(text, ("abcdefgh-123",))


def test_a_secret_containing_another_is_removed_whole() -> None:
    """Longest first: a secret that contains a shorter one leaves no tail behind."""
    secrets = secret_env_values({"A_KEY": "abcdefgh", "B_KEY": "abcdefgh-longer"})
    assert f"x {REDACTED} y {REDACTED}" == redact_values("x abcdefgh-longer y abcdefgh", secrets)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("http://localhost:11434/v1", "http://localhost:11434/v1"),
        ("http://host/v1/@me?next=a@b", "http://host/v1/@me?next=a@b"),
        ("http://user:pass@host/v1", "http://[REDACTED]@host/v1"),
        ("http://token@host", "http://[REDACTED]@host"),
        ("https://u:p@ss@host:8443/v1", "https://[REDACTED]@host:8443/v1"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    """Only a URL's user and password go; a URL without them is left exactly as it was."""
    assert expected == redact_url(url)


STREAM_SECRETS = longest_first(["abcdefgh", "abcdefgh-longer", "ghij-klmnop"])


def stream_through(chunks: list[str]) -> str:
    redactor = StreamRedactor(STREAM_SECRETS)
    return "".join([*(redactor.feed(chunk) for chunk in chunks), redactor.flush()])


@pytest.mark.parametrize(
    "text",
    [
        "key abcdefgh-longer and abcdefgh, then ghij-klmnop end",
        "abcdefghij-klmnop",  # two secrets overlapping: as redact_values does it (longest first)
        "abcdefgh",
        "no secret at all, just text",
        "abcdefg",  # a secret's prefix only, at the end: given back at the flush
    ],
)
def test_a_stream_is_redacted_wherever_its_chunks_split(text: str) -> None:
    """Streamed text split at every place (and into single characters) comes out as the
    whole text redacted: a secret straddling chunks is removed, nothing else is lost."""
    expected = redact_values(text, STREAM_SECRETS)
    for cut in range(len(text) + 1):
        assert stream_through([text[:cut], text[cut:]]) == expected, cut
    assert stream_through(list(text)) == expected


def test_a_stream_holds_back_only_a_possible_secret() -> None:
    """Text that cannot start a secret is given at once; a possible start waits for more."""
    redactor = StreamRedactor(STREAM_SECRETS)
    assert redactor.feed("hello ") == "hello "
    assert redactor.feed("world abc") == "world "
    assert redactor.feed("xyz") == "abcxyz"
    assert StreamRedactor(()).feed("abc") == "abc"
