"""Providers around providers: the response cache, `--record` and `--replay`.

Each class implements the :class:`~orchestrate.providers.Provider` protocol around another
provider (or, for replay, none at all), so the engine cannot tell them apart from a real
one. The run puts them in place through ``ProviderPool(wrap=...)``:

    RecordingProvider        writes every response that passes through to a fixture file
    └── CachingProvider      answers identical requests from the history database
        └── the provider     OpenAI, Anthropic, an endpoint, the mock
    ReplayProvider           answers from a fixture file only; needs no key, no network

The cache keeps its answers in the history store (:meth:`~._store.HistoryStore.get_response`
and :meth:`~._store.HistoryStore.put_response`), keyed by :func:`cache_endpoint` and the
request.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrate._errors import InvalidOutput, ProviderError, UsageError
from orchestrate._files import replace_private_file
from orchestrate._result import Usage
from orchestrate._secrets import redact_url, redact_values
from orchestrate.history._store import CachedResponse
from orchestrate.providers import LLMRequest, LLMResponse, Provider
from orchestrate.providers._base import RetryCallback, TokenCallback

if TYPE_CHECKING:
    from orchestrate._prepared import PreparedRun
    from orchestrate.history._store import HistoryStore

FIXTURE_VERSION = 1


def _digest(data: Any) -> str:
    encoded = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


def fixture_key(request: LLMRequest, provider: str) -> str:
    """A fixture's key: the provider the step names, and what the request asks."""
    return _digest({"provider": request.provider or provider, **request.fingerprint_data()})


def response_data(response: LLMResponse) -> dict[str, Any]:
    usage = response.usage.to_dict() if response.usage else None
    return {
        "text": response.text,
        "usage": usage,
        "model": response.model,
        "response_id": response.response_id,
        "finish_reason": response.finish_reason,
    }


def response_from(data: dict[str, Any], *, attempts: int) -> LLMResponse:
    """A stored answer, given again: `cached`, and free (its usage is what it cost when it
    was made)."""
    usage = data.get("usage")
    return LLMResponse(
        text=data["text"],
        usage=Usage(**usage) if usage else None,
        attempts=attempts,
        model=data.get("model"),
        response_id=data.get("response_id"),
        finish_reason=data.get("finish_reason"),
        cached=True,
        cost_usd=0.0,
    )


def _replay_tokens(request: LLMRequest, text: str, on_token: TokenCallback | None) -> None:
    if on_token is not None and request.stream and text:
        on_token(text)


# --- the response cache ----------------------------------------------------------------------


def cache_endpoint(name: str, prepared: PreparedRun, env: Mapping[str, str]) -> str:
    """Who answers for a provider name (as the pool decides), so the cache keeps endpoints
    apart: the same model behind two base URLs is two different models. A URL's user and
    password are left out (it is stored, and part of the key); other URLs are kept as they
    are, so their keys do not change."""
    if name == "mock":
        return "mock"
    from orchestrate._prepared import endpoints_of

    spec = endpoints_of(prepared).get(name)
    if spec is not None and spec.base_url is not None:
        return f"{name} {redact_url(spec.base_url)}"
    from orchestrate.providers import KINDS

    kind = KINDS.get(name)
    return f"{name} {redact_url(kind.base_url(env))}" if kind is not None else name


class CachingProvider:
    """Answers a request from the history's `responses` table when an identical one was
    answered before: same endpoint, model, messages and settings (temperature included).

    Only successful answers are stored, and for `output: json` steps only answers that
    parse, so a failure is never replayed from the cache. A hit costs no call (`attempts`
    0) and carries the usage the answer cost when it was made.
    """

    def __init__(
        self, inner: Provider, *, endpoint: str, store: HistoryStore, everything: bool
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.endpoint = endpoint
        self.store = store
        self.everything = everything

    def wanted(self, request: LLMRequest) -> bool:
        setting = getattr(request, "cache", None)
        return self.everything if setting is None else bool(setting)

    def key(self, request: LLMRequest) -> str:
        return _digest(
            {
                "endpoint": self.endpoint,
                "mock_text": request.mock_text,
                **request.fingerprint_data(),
            }
        )

    async def complete(
        self,
        request: LLMRequest,
        *,
        on_token: TokenCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> LLMResponse:
        if not self.wanted(request):
            return await self.inner.complete(request, on_token=on_token, on_retry=on_retry)
        key = self.key(request)
        hit = self.store.get_response(key)
        if hit is not None:
            _replay_tokens(request, hit["text"], on_token)
            return response_from(hit, attempts=0)
        response = await self.inner.complete(request, on_token=on_token, on_retry=on_retry)
        if _usable(request, response):
            self._put(key, request, response)
        return response

    def _put(self, key: str, request: LLMRequest, response: LLMResponse) -> None:
        self.store.put_response(
            CachedResponse(
                key=key,
                endpoint=self.endpoint,
                model=response.model or request.model,
                request=request.fingerprint_data(),
                response=response_data(response),
                created=time.time(),
            )
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def _usable(request: LLMRequest, response: LLMResponse) -> bool:
    """Worth caching: a JSON step's reply must parse (a re-ask would follow otherwise)."""
    if not request.json_mode:
        return True
    from orchestrate._output import parse_json_reply

    try:
        parse_json_reply(response.text, request.schema)
    except InvalidOutput:
        return False
    return True


# --- fixtures: --record and --replay ----------------------------------------------------------


class Fixture:
    """A JSON file of provider responses keyed by request, meant to be committed.

    ``{"version": 1, "responses": {KEY: {"provider", "step", "request", "response"}}}``,
    keys sorted, so that re-recording gives a small diff. A fixture recorded under
    `--mock` also says ``"mock": true``: its answers are the mock's, and it replays only
    under `--mock`, so that they never pass for a model's.
    """

    def __init__(
        self,
        path: Path,
        responses: dict[str, dict[str, Any]] | None = None,
        *,
        mock: bool = False,
        secrets: Sequence[str] = (),
    ) -> None:
        self.path = path
        self.responses = dict(responses or {})
        self.mock = mock
        self.secrets = tuple(secrets)  # removed from the file when it is saved
        self.recorded: dict[str, dict[str, Any]] = {}  # put since loading: what save() adds

    @property
    def added(self) -> int:
        """How many responses were put since loading."""
        return len(self.recorded)

    @classmethod
    def load(cls, path: Path, *, missing_ok: bool = False, secrets: Sequence[str] = ()) -> Fixture:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if missing_ok:
                return cls(path, secrets=secrets)
            raise UsageError(
                f"no fixture file {path}",
                hint=f"record one with `orchestrate run FLOW --record {path}`",
            ) from None
        except OSError as exc:
            raise UsageError(f"cannot read the fixture {path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{path} is not a fixture file: {exc}") from None
        if (
            not isinstance(data, dict)
            or data.get("version") != FIXTURE_VERSION
            or not isinstance(data.get("responses"), dict)
        ):
            raise UsageError(
                f"{path} is not a fixture file (version {FIXTURE_VERSION})",
                hint="fixtures are written by `orchestrate run --record FILE`",
            )
        return cls(path, data["responses"], mock=data.get("mock") is True, secrets=secrets)

    def check_replay(self, *, mock: bool) -> None:
        """Refuse to replay mock answers in a run without --mock, where they would be
        reported as a model's."""
        if self.mock and not mock:
            raise UsageError(
                f"the fixture {self.path} was recorded under --mock: its answers are the "
                "mock's, not a model's, so it replays only with --mock",
                hint="add --mock to replay it as a mock run, or record the fixture again "
                "without --mock",
            )

    def start_recording(self, *, mock: bool) -> None:
        """Mark the fixture as recorded under --mock or not; one holding answers of the
        other kind is refused, so that a fixture never mixes mock and real answers."""
        if self.responses and self.mock != mock:
            held, now = ("mock", "real") if self.mock else ("real", "mock")
            raise UsageError(
                f"the fixture {self.path} holds {held} answers and this run records {now} "
                "ones: a fixture never mixes the two",
                hint="record into another file, or delete this one to start afresh",
            )
        self.mock = mock

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self.responses.get(key)
        return entry.get("response") if isinstance(entry, dict) else None

    def put(self, key: str, provider: str, request: LLMRequest, response: LLMResponse) -> None:
        self.responses[key] = self.recorded[key] = {
            "provider": provider,
            "step": request.step_id,
            "request": request.fingerprint_data(),
            "response": response_data(response),
        }

    def save(self) -> None:
        """Write the file whole: what it holds now (another run recording into it at the
        same time may have added to it since loading) and the responses put since.

        Runs take turns through a lock file beside it; the text goes to a new private
        temporary file renamed over the fixture, so a crash leaves the old file whole.
        Known secret values are removed from what is written; the keys were made from the
        requests as sent, so replaying the same requests still finds their answers.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _taking_turns(self.path):
                current = Fixture.load(self.path, missing_ok=True).responses
                self.responses = current | self.recorded
                document: dict[str, Any] = {"version": FIXTURE_VERSION}
                if self.mock:
                    document["mock"] = True
                document["responses"] = dict(sorted(self.responses.items()))
                text = json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n"
                replace_private_file(self.path, redact_values(text, self.secrets))
        except OSError as exc:
            raise UsageError(f"cannot write the fixture {self.path}: {exc.strerror}") from None


@contextmanager
def _taking_turns(path: Path) -> Iterator[None]:
    """Hold the lock of `path`: an flock on `.NAME.lock` beside it (left there, as
    removing it would race). Without fcntl (Windows), no lock: only the merge."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock = os.open(
        path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600
    )
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)  # releases the lock


class RecordingProvider:
    """Passes requests on and keeps each successful response in a :class:`Fixture`."""

    def __init__(self, inner: Provider, fixture: Fixture, *, name: str) -> None:
        self.inner = inner
        self.name = name
        self.fixture = fixture

    async def complete(
        self,
        request: LLMRequest,
        *,
        on_token: TokenCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> LLMResponse:
        response = await self.inner.complete(request, on_token=on_token, on_retry=on_retry)
        provider = request.provider or self.name
        self.fixture.put(fixture_key(request, provider), provider, request, response)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class ReplayProvider:
    """Answers only from a fixture: offline, deterministic, no key; a request the fixture
    does not hold is a `provider` failure of the step."""

    def __init__(self, fixture: Fixture, *, name: str) -> None:
        self.fixture = fixture
        self.name = name

    async def complete(
        self,
        request: LLMRequest,
        *,
        on_token: TokenCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> LLMResponse:
        provider = request.provider or self.name
        data = self.fixture.get(fixture_key(request, provider))
        if data is None:
            raise ProviderError(
                f"the fixture {self.fixture.path} has no response for "
                f"this request ({provider}, model {request.model}); record it again with "
                f"--record {self.fixture.path}"
            )
        _replay_tokens(request, data["text"], on_token)
        return response_from(data, attempts=1)

    async def aclose(self) -> None:
        return None
