"""Keeping secrets out of what orchestrate writes: errors, logs and the run history.

One marker, `[REDACTED]`, wherever a secret was removed:

    secret_env_values()   the values of key-like environment variables (`*_KEY`, ...)
    is_secret_header()    whether a header carries a credential (`api-key`, `Cookie`...)
    redact_values()       removes known secret values from a text
    redact()              the same, and anything shaped like a key: bearer tokens,
                          API-key headers, `sk-` keys, the user and password of a URL
    redact_url()          a URL without its user and password (`http://[REDACTED]@host/`)
    StreamRedactor        removes known secret values from text that arrives in chunks

Redact the whole text first, then shorten it: a key cut in half no longer matches.
Provider and step errors go through :func:`redact` (docs/security.md); the history, the
response cache and `--record` fixtures remove known values only (:func:`redact_values`),
since a step's output is given back to `--resume` as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

REDACTED = "[REDACTED]"
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD)$", re.IGNORECASE)
_SECRET_HEADER = re.compile(r"auth|key|token|secret|password|cookie", re.IGNORECASE)
_SECRET_PATTERNS = (
    re.compile(
        r"(?i)(\b(?:authorization|x-api-key|api[-_]?key)[\"']?\s*[:=]\s*[\"']?(?:bearer\s+)?)"
        r"[^\s\"',;&}]+"
    ),
    re.compile(r"(?i)(bearer\s+)[^\s\"',;&]+"),
    re.compile(r"()\bsk-[A-Za-z0-9_\-*]{6,}"),
)
# `scheme://user:password@`: httpx sends it as Basic auth, so it is a credential. Up to
# the authority's last `@`, as urllib and httpx read it (a password may hold a raw `@`).
_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s\"'<>]+@")


def secret_env_values(
    env: Mapping[str, str], names: Iterable[str] = (), *, min_length: int = 8
) -> tuple[str, ...]:
    """The values of `names` and of every variable named like a key (`*_KEY`, `*_TOKEN`,
    `*_SECRET`, `*_PASSWORD`), longest first; shorter ones would match too much."""
    wanted = set(names)
    values = {
        value
        for name, value in env.items()
        if (name in wanted or _SECRET_NAME.search(name)) and len(value) >= min_length
    }
    return longest_first(values)


def is_secret_header(name: str) -> bool:
    """Whether an HTTP header named `name` carries a credential (`api-key`, `Cookie`...)."""
    return bool(_SECRET_HEADER.search(name))


def longest_first(values: Iterable[str]) -> tuple[str, ...]:
    """Distinct values, longest first (so a secret that contains another is removed whole),
    then in alphabetical order."""
    return tuple(sorted(set(values), key=lambda value: (-len(value), value)))


def redact_values(text: str, secrets: Iterable[str]) -> str:
    """`text` with each of `secrets` (give them longest first) replaced by the marker."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the given secrets, bearer tokens, API-key headers, ``sk-`` keys or
    the user and password of a URL."""
    text = redact_url(redact_values(text, secrets))
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def redact_url(url: str) -> str:
    """`url` (or a text holding URLs) with each user and password replaced by the marker;
    a URL without them is returned unchanged."""
    return _URL_USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", url)


class StreamRedactor:
    """Known secret values out of text streamed in chunks (`--events-tokens`, the live
    view's preview), also when a secret straddles two chunks.

    :meth:`feed` gives back what is safe to show at once, holding back the end of the text
    that could still become a secret (at most the longest secret's length); :meth:`flush`
    gives the rest when the stream ends. The text given back, joined, is the whole text
    through :func:`redact_values`. Shapes (`sk-...`, bearer tokens) are not looked for:
    model text is not rewritten because it looks like a key.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = longest_first(secrets)
        self.pending = ""

    def feed(self, text: str) -> str:
        self.pending += text
        cut = self._safe_end(self.pending)
        ready, self.pending = self.pending[:cut], self.pending[cut:]
        return redact_values(ready, self.secrets)

    def flush(self) -> str:
        ready, self.pending = self.pending, ""
        return redact_values(ready, self.secrets)

    def _safe_end(self, text: str) -> int:
        """Where `text` can be cut: before any end that may begin a secret, and not
        through a secret found whole."""
        cut = len(text)
        for secret in self.secrets:
            for size in range(min(len(secret) - 1, len(text)), 0, -1):
                if secret.startswith(text[-size:]):
                    cut = min(cut, len(text) - size)
                    break
        moved = True
        while moved:
            moved = False
            for secret in self.secrets:
                start = text.find(secret, max(0, cut - len(secret) + 1))
                if -1 < start < cut < start + len(secret):
                    cut, moved = start, True
        return cut
