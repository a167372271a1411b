"""The one module that speaks HTTP: a sharded client pool, retries, and secret redaction.

A call to :meth:`HTTPProvider.complete` passes through one layer per concern:

    complete()        retry loop: backoff with full jitter, Retry-After, on_retry, give up
    └── _attempt()    one POST on a pooled client, under the step's per-attempt timeout
        ├── _status_error()   HTTP status -> TransientError (retry) or ProviderError (final);
        │                     only the first ERROR_BODY_LIMIT bytes of the body are read
        └── _read()           the subclass's parser: a JSON body or an SSE stream
            └── _capped()     the body's bytes, a final ProviderError past REPLY_LIMIT

Subclasses (OpenAI, Anthropic) only build the request and parse the reply; a parser
raises :class:`TransientError` for a reply that is worth another attempt (a truncated
stream, a 200 whose body is not JSON).

httpx is imported lazily, so importing the providers package stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import random
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from orchestrate._errors import ProviderError, StepError, StepTimeout
from orchestrate._secrets import is_secret_header, longest_first, redact, redact_url
from orchestrate.providers._base import LLMRequest, LLMResponse, RetryCallback, TokenCallback
from orchestrate.providers._limits import RateLimiter, estimate_tokens
from orchestrate.providers._sse import ServerSentEvent, aiter_sse

if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "CONNECTIONS_PER_CLIENT",
    "ERROR_BODY_LIMIT",
    "REPLY_LIMIT",
    "RETRY_AFTER_LIMIT",
    "RETRY_STATUSES",
    "ClientPool",
    "HTTPProvider",
    "TransientError",
    "backoff_cap",
    "error_message",
    "is_plain_http",
    "malformed_reply",
    "message_in",
    "parse_retry_after",
    "text_or_none",
    "token_count",
]

SleepFn = Callable[[float], Awaitable[Any]]
RandomFn = Callable[[], float]

CONNECTIONS_PER_CLIENT = 4
BACKOFF_BASE = 0.5  # seconds before the first retry, at most (full jitter)
BACKOFF_MAX = 8.0
RETRY_AFTER_LIMIT = 60.0  # a longer Retry-After is ignored in favour of our own backoff
RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx (Anthropic's 529 included)
DRAIN_TIMEOUT = 1.0  # seconds to read the end of a stream after its last event
DRAIN_LIMIT = 65_536  # bytes of it, at most
REPLY_LIMIT = 10 * 1024 * 1024  # bytes of one reply, streamed or not (docs/providers.md)
ERROR_BODY_LIMIT = 8192  # bytes of an error body read: more than error_message() shows


class TransientError(Exception):
    """One attempt failed in a way another attempt may fix. Never leaves this package."""

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        timed_out: bool = False,
        hint: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.timed_out = timed_out
        self.hint = hint


# --- the client pool ----------------------------------------------------------------------


class ClientPool:
    """Several small ``httpx.AsyncClient``s instead of one big one.

    httpcore spends CPU in proportion to the connections in a pool on every request
    (encode/httpcore#1035): one client at concurrency 128 took 12.3 s of CPU for 2,000
    requests, sharded clients of 8 connections took 1.4 s, and clients of 4 a fifth less
    again (docs/performance.md). So: ceil(concurrency / 4) clients, each created on first
    use, and each request goes to the least-loaded one.
    """

    def __init__(
        self,
        *,
        concurrency: int = 8,
        per_client: int = CONNECTIONS_PER_CLIENT,
        transport: httpx.AsyncBaseTransport | None = None,
        tls: bool = True,
    ) -> None:
        self.size = max(1, math.ceil(concurrency / per_client))
        self._per_client = per_client
        self._transport = transport
        self._tls = tls  # False: the clients only ever send to a plain http:// URL
        self._clients: list[httpx.AsyncClient | None] = [None] * self.size
        self._load = [0] * self.size
        # One TLS context for every client: building one loads the CA bundle (~25 ms of CPU).
        self._ssl_context: ssl.SSLContext | None = None

    @property
    def created(self) -> int:
        """How many of the clients exist yet."""
        return sum(client is not None for client in self._clients)

    @contextlib.contextmanager
    def lease(self) -> Iterator[httpx.AsyncClient]:
        """The least-loaded client, counted as busy until the block ends."""
        index = min(range(self.size), key=self._load.__getitem__)
        client = self._clients[index] or self._create(index)
        self._load[index] += 1
        try:
            yield client
        finally:
            self._load[index] -= 1

    async def aclose(self) -> None:
        clients, self._clients = self._clients, [None] * self.size
        for client in clients:
            if client is not None:
                await client.aclose()

    def _create(self, index: int) -> httpx.AsyncClient:
        import httpx

        limits = httpx.Limits(
            max_connections=self._per_client, max_keepalive_connections=self._per_client
        )
        if self._ssl_context is None:
            # What each client would make; without TLS, one that loads no CA bundle. It is
            # never used then: redirects are not followed, and a proxy has its own context.
            self._ssl_context = httpx.create_ssl_context(verify=self._tls)
        # No httpx timeout: each attempt runs under asyncio.timeout(request.timeout).
        client = httpx.AsyncClient(
            limits=limits, timeout=None, transport=self._transport, verify=self._ssl_context
        )
        self._clients[index] = client
        return client


# --- retry policy -------------------------------------------------------------------------


def is_plain_http(url: str) -> bool:
    """Whether `url` is sent without TLS (``http://``), so no certificate is ever checked."""
    return url[:7].lower() == "http://"


def backoff_cap(retry: int) -> float:
    """The longest wait before retry number `retry` (1-based): 0.5 s doubling, at most 8 s."""
    return min(BACKOFF_BASE * 2 ** (retry - 1), BACKOFF_MAX)


def parse_retry_after(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds the server asks us to wait (``retry-after-ms``, then ``Retry-After`` in
    seconds or as an HTTP date), when that is between 0 and 60 s; otherwise None."""
    for seconds in (_ms_header(headers), _retry_after_header(headers, now)):
        if seconds is not None and 0 <= seconds <= RETRY_AFTER_LIMIT:
            return seconds
    return None


def _ms_header(headers: Mapping[str, str]) -> float | None:
    try:
        return float(headers["retry-after-ms"]) / 1000
    except (KeyError, ValueError):
        return None


def _retry_after_header(headers: Mapping[str, str], now: float) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() - now if when.tzinfo else None


# --- error bodies and secrets -------------------------------------------------------------


def error_message(body: bytes | str, *, limit: int = 500, secrets: Sequence[str] = ()) -> str:
    """The provider's own words from an error body (``{"error": {"message": ...}}`` and
    the usual variants), else the body itself: redacted whole, then shortened (a key cut
    at the limit would no longer match)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    message = redact(message_in(data) or text.strip(), secrets)
    return message if len(message) <= limit else message[:limit] + "…"


def message_in(data: Any) -> str | None:
    """The message in parsed error JSON: ``error.message``, ``error``, ``message``, ``detail``."""
    if isinstance(data, str):
        return data or None
    if not isinstance(data, dict):
        return None
    for key in ("error", "message", "detail"):
        found = message_in(data.get(key))
        if found:
            return found
    return None


# --- the provider base --------------------------------------------------------------------


class HTTPProvider:
    """A provider reached over HTTP. Subclasses set the class variables and four hooks."""

    path: ClassVar[str]  # appended to base_url
    default_key_env: ClassVar[str]  # named in the hint of a 401

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        concurrency: int = 8,
        api_key_env: str | None = None,
        secrets: Sequence[str] = (),
        sleep: SleepFn = asyncio.sleep,
        rand: RandomFn = random.random,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key or None
        self._extra_headers = dict(headers or {})
        self._key_env = api_key_env or self.default_key_env
        self._sleep = sleep
        self._rand = rand
        self._clock = clock
        self._pool = ClientPool(
            concurrency=concurrency, transport=transport, tls=not is_plain_http(self.base_url)
        )
        self._secrets = _secrets_of(self._api_key, self._extra_headers, secrets)
        self.limiter: RateLimiter | None = None  # the pool's, shared by every call
        # Built on the first call (the subclass's hooks are ready by then), not on each one.
        self._sent_headers: dict[str, str] | None = None
        self._parsed_url: httpx.URL | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={redact_url(self.base_url)!r})"

    @property
    def url(self) -> str:
        return self.base_url + self.path

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def complete(
        self,
        request: LLMRequest,
        *,
        on_token: TokenCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> LLMResponse:
        """One model call: transient failures are retried up to ``request.retries`` times."""
        body = self._body(request)
        failures: list[TransientError] = []
        retries = max(request.retries, 0)
        for attempt in range(1, retries + 2):
            try:
                response = await self._limited_attempt(request, body, on_token)
                return attrs.evolve(response, attempts=attempt)
            except TransientError as failure:
                failures.append(failure)
            except StepError as error:
                error.attempts = attempt
                raise
            if attempt <= retries:
                await self._wait(attempt, failures[-1], on_retry)
        raise self._give_up(request, failures)

    # --- hooks for subclasses -------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _body(self, request: LLMRequest) -> dict[str, Any]:
        raise NotImplementedError

    def _parse_body(self, data: Any) -> LLMResponse:
        """A complete JSON reply -> the response (raise TransientError if it is malformed)."""
        raise NotImplementedError

    async def _parse_stream(
        self, events: AsyncIterator[ServerSentEvent], on_token: TokenCallback | None
    ) -> LLMResponse:
        raise NotImplementedError

    # --- helpers for subclasses -----------------------------------------------------------

    def _error(self, message: str, hint: str | None = None) -> ProviderError:
        """A final error, with secrets removed."""
        return ProviderError(redact(f"{self.name}: {message}", self._secrets), hint=hint)

    # --- one attempt ----------------------------------------------------------------------

    async def _limited_attempt(
        self, request: LLMRequest, body: dict[str, Any], on_token: TokenCallback | None
    ) -> LLMResponse:
        """An attempt once the rate limiter has a slot for it (see _limits.py)."""
        limiter = self.limiter
        if limiter is None:
            return await self._timed_attempt(request, body, on_token)
        reserved = estimate_tokens(request.messages, request.max_tokens) if limiter.tokens else 0
        await limiter.acquire(reserved)
        try:
            response = await self._timed_attempt(request, body, on_token)
        finally:
            limiter.release()
        usage = response.usage
        limiter.spent(reserved, usage.input_tokens + usage.output_tokens if usage else None)
        return response

    async def _timed_attempt(
        self, request: LLMRequest, body: dict[str, Any], on_token: TokenCallback | None
    ) -> LLMResponse:
        import httpx

        try:
            async with asyncio.timeout(request.timeout):
                return await self._attempt(request, body, on_token)
        except (TimeoutError, httpx.TimeoutException) as exc:
            reason = f"no reply within {request.timeout:g} s"
            raise TransientError(reason, timed_out=True) from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise self._error(
                f"cannot send to {self.url}: {exc}", hint="check the provider's base_url"
            ) from None
        except httpx.RequestError as exc:
            reason = redact(f"{type(exc).__name__} from {self.url}: {exc}", self._secrets)
            raise TransientError(reason, hint="check the network and base_url") from None

    async def _attempt(
        self, request: LLMRequest, body: dict[str, Any], on_token: TokenCallback | None
    ) -> LLMResponse:
        import httpx

        if self._sent_headers is None:
            self._sent_headers = {**self._headers(), **self._extra_headers}
        if self._parsed_url is None:
            self._parsed_url = httpx.URL(self.url)
        with self._pool.lease() as client:
            response = None
            try:
                sending = client.build_request(
                    "POST", self._parsed_url, json=body, headers=self._sent_headers
                )
                response = await client.send(sending, stream=True)
            except (UnicodeEncodeError, httpx.LocalProtocolError):
                pass  # its repr may hold a header value, the API key: not even as __context__
            if response is None:
                raise self._unsendable()
            if self.limiter is not None:  # 429s and rate-limit headers slow every call down
                self._observe(self.limiter, response)
            try:
                if not 200 <= response.status_code < 300:
                    raise self._status_error(response, await _head(response, ERROR_BODY_LIMIT))
                return await self._read(response, request, on_token)
            finally:
                await response.aclose()

    def _observe(self, limiter: RateLimiter, response: httpx.Response) -> None:
        # One pass over the headers: each httpx lookup scans them all, and the limiter
        # looks up a dozen. Retry-After only matters to it on a 429.
        status = response.status_code
        headers = dict(response.headers.items())
        retry_after = parse_retry_after(headers, now=self._clock()) if status == 429 else None
        limiter.observe(status, headers, retry_after)

    def _unsendable(self) -> ProviderError:
        """A request httpx refused to build or send: final, and without the exception's text."""
        return self._error(
            f"cannot send the request to {self.url}: a header holds characters that HTTP "
            "does not allow",
            hint=f"check {self._key_env} and the provider's `headers:` for a stray space, "
            "quote or non-ASCII character",
        )

    async def _read(
        self, response: httpx.Response, request: LLMRequest, on_token: TokenCallback | None
    ) -> LLMResponse:
        """Parse an SSE stream, or a JSON body (also when a server ignored ``stream``)."""
        content_type = response.headers.get("content-type", "")
        if request.stream and "json" not in content_type:
            async with contextlib.aclosing(self._capped(response)) as chunks:
                async with contextlib.aclosing(aiter_sse(chunks)) as events:
                    reply = await self._parse_stream(events, on_token)
                await _drain(chunks)
            return reply
        body = bytearray()
        async for chunk in self._capped(response):
            body += chunk
        data = _json_body(body)
        with malformed_reply():
            reply = self._parse_body(data)
        if request.stream and on_token is not None and reply.text:
            on_token(reply.text)
        return reply

    async def _capped(self, response: httpx.Response) -> AsyncGenerator[bytes, None]:
        """The body as it arrives, failing for good once it passes :data:`REPLY_LIMIT`:
        a reply that large is not an answer, and another attempt would only repeat it.
        A Content-Length over the limit fails before reading; a smaller one is not trusted.
        """
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > REPLY_LIMIT:
            raise self._too_large()
        received = 0
        # httpx types aiter_bytes() as an AsyncIterator; it is an async generator (aclose).
        async with contextlib.aclosing(response.aiter_bytes()) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                received += len(chunk)
                if received > REPLY_LIMIT:
                    raise self._too_large()
                yield chunk

    def _too_large(self) -> ProviderError:
        return ProviderError(
            f"the reply from {self.name} passed the {REPLY_LIMIT // 2**20} MB limit",
            hint="check the provider's base_url, and the step's max_tokens",
        )

    def _status_error(self, response: httpx.Response, body: bytes) -> Exception:
        status = response.status_code
        message = f"HTTP {status} from {self.url}: {error_message(body, secrets=self._secrets)}"
        message = redact(message, self._secrets)
        if status in RETRY_STATUSES or status >= 500:
            retry_after = parse_retry_after(response.headers, now=self._clock())
            return TransientError(message, retry_after=retry_after, hint=_hint_for(status))
        return self._error(message, hint=self._status_hint(status))

    def _status_hint(self, status: int) -> str | None:
        if status == 401 and self._api_key is None:
            return f"set {self._key_env} to an API key for this provider"
        if status == 401:
            return f"the API key was rejected: check {self._key_env}"
        return _hint_for(status)

    # --- between attempts -----------------------------------------------------------------

    async def _wait(
        self, attempt: int, failure: TransientError, on_retry: RetryCallback | None
    ) -> None:
        delay = failure.retry_after
        if delay is None:
            delay = backoff_cap(attempt) * self._rand()
        if on_retry is not None:
            on_retry(attempt + 1, delay, redact(failure.reason, self._secrets))
        await self._sleep(delay)

    def _give_up(self, request: LLMRequest, failures: list[TransientError]) -> StepError:
        attempts = len(failures)
        tries = f"{attempts} attempt" + ("s" if attempts > 1 else "")
        if all(failure.timed_out for failure in failures):
            timeout = StepTimeout(
                f"{self.name}: no reply within {request.timeout:g} s ({tries})",
                hint="raise the step's timeout, or its retries",
            )
            timeout.attempts = attempts
            return timeout
        last = failures[-1]
        error = self._error(f"{last.reason} (gave up after {tries})", hint=last.hint)
        error.attempts = attempts
        return error


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows a stream's last event (usually just the end of the chunked body).

    httpcore puts a connection back in the pool only when the response was read to its
    end; closing it after ``[DONE]`` or ``message_stop`` would cost a new connection (and
    a TLS handshake) for every streamed call. A server that goes on sending is not waited
    for: the answer is complete, only the connection is lost.
    """
    left = DRAIN_LIMIT
    with contextlib.suppress(Exception):
        async with asyncio.timeout(DRAIN_TIMEOUT):
            async for chunk in chunks:
                left -= len(chunk)
                if left < 0:
                    break


async def _head(response: httpx.Response, limit: int) -> bytes:
    """The first `limit` bytes of the body (all of it when shorter); the rest is not read."""
    head = bytearray()
    # httpx types aiter_bytes() as an AsyncIterator; it is an async generator (aclose).
    async with contextlib.aclosing(response.aiter_bytes()) as chunks:  # type: ignore[type-var]
        async for chunk in chunks:
            head += chunk
            if len(head) >= limit:
                break
    return bytes(head[:limit])


MALFORMED = (AttributeError, KeyError, IndexError, TypeError, ValueError)


@contextlib.contextmanager
def malformed_reply(what: str = "the reply") -> Iterator[None]:
    """Turn a parser tripping over an unexpected shape into a TransientError (retried)."""
    try:
        yield
    except MALFORMED as exc:
        raise TransientError(f"{what} has an unexpected shape ({type(exc).__name__})") from None


def token_count(value: Any) -> int | None:
    """A usage count as a server reports it: an int (or a whole float), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


def text_or_none(value: Any) -> str | None:
    """A string field of a reply (model id, response id, finish reason), else None."""
    return value if isinstance(value, str) else None


def _json_body(raw: bytes | bytearray) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise TransientError("the reply is not valid JSON") from None


def _secrets_of(
    api_key: str | None, headers: Mapping[str, str], secrets: Sequence[str] = ()
) -> tuple[str, ...]:
    values = [api_key or "", *secrets]
    values += [value for name, value in headers.items() if is_secret_header(name)]
    return longest_first(v for v in values if len(v) >= 4)


def _hint_for(status: int) -> str | None:
    return {
        403: "the key has no access to this model or endpoint",
        404: "check the model name and the provider's base_url",
        429: "the provider is rate limiting: lower `concurrency` or try again later",
    }.get(status)
