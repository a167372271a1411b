"""The shared HTTP layer: client shards, retry policy, error bodies and secrets."""

from __future__ import annotations

import email.utils
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx

from orchestrate._errors import ProviderError, StepTimeout
from orchestrate.providers._base import LLMRequest
from orchestrate.providers._http import (
    ERROR_BODY_LIMIT,
    REPLY_LIMIT,
    ClientPool,
    backoff_cap,
    error_message,
    parse_retry_after,
)
from tests.providers.conftest import sse_lines

URL = "https://api.test/v1/chat/completions"
NOW = 1_000_000_000.0
REPLY = {
    "id": "chatcmpl-1",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}


def request(**fields: Any) -> LLMRequest:
    return LLMRequest(model="gpt-4o-mini", messages=({"role": "user", "content": "hi"},), **fields)


def ok() -> httpx.Response:
    return httpx.Response(200, json=REPLY)


def failed(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"message": f"status {status} said no", "type": "x"}}
    return httpx.Response(status, json=body, headers=headers)


# --- the client pool ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("concurrency", "size"), [(1, 1), (4, 1), (5, 2), (8, 2), (9, 3), (128, 32), (0, 1)]
)
def test_pool_size(concurrency: int, size: int) -> None:
    """The pool has ceil(concurrency / 4) clients, at least one."""
    assert size == ClientPool(concurrency=concurrency).size


def test_import_does_not_load_httpx() -> None:
    """Importing the providers package and its modules leaves httpx unimported."""
    code = (
        "import sys, orchestrate.providers, orchestrate.providers._http, "
        "orchestrate.providers._openai, orchestrate.providers._anthropic; "
        "print('httpx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.anyio
async def test_pool_creates_clients_lazily_and_picks_least_loaded() -> None:
    """Clients appear on first use; a busy client is passed over for an idle one."""
    pool = ClientPool(concurrency=24)
    assert pool.created == 0
    with pool.lease() as first, pool.lease() as second:
        assert first is not second
        assert pool.created == 2
        with pool.lease() as third:
            assert third not in (first, second)
    with pool.lease() as again:
        assert again is first
    assert pool.created == 3
    await pool.aclose()
    assert pool.created == 0


@pytest.mark.anyio
async def test_pool_limits_each_client_to_4_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each client is built with at most 4 (keep-alive) connections and no httpx timeout."""
    seen: list[dict[str, Any]] = []
    real = httpx.AsyncClient

    def spy(**kwargs: Any) -> httpx.AsyncClient:
        seen.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(httpx, "AsyncClient", spy)
    pool = ClientPool(concurrency=64)
    with pool.lease():
        pass
    await pool.aclose()
    limits = seen[0]["limits"]
    assert (limits.max_connections, limits.max_keepalive_connections) == (4, 4)
    assert seen[0]["timeout"] is None


@pytest.mark.anyio
async def test_provider_shards_by_concurrency(make_provider) -> None:
    """A provider's pool follows the concurrency it was given."""
    provider = make_provider(concurrency=128)
    assert provider._pool.size == 32
    await provider.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("base_url", "verifies"),
    [
        ("http://127.0.0.1:8000/v1", False),
        ("HTTP://localhost:11434/v1", False),
        ("https://api.test/v1", True),
        ("HTTPS://api.test/v1", True),
    ],
)
async def test_only_https_endpoints_verify_certificates(
    make_provider, base_url: str, verifies: bool
) -> None:
    """An https:// endpoint gets a verifying TLS context with the CA bundle loaded; a plain
    http:// one, which never uses TLS, gets one that loads no CA bundle."""
    import ssl

    provider = make_provider(base_url=base_url, concurrency=8)
    with provider._pool.lease() as first, provider._pool.lease() as second:
        contexts = {id(client._transport._pool._ssl_context) for client in (first, second)}
        context = first._transport._pool._ssl_context
    await provider.aclose()
    loaded = context.cert_store_stats()["x509_ca"] > 0
    expected = (1, verifies, verifies, verifies)
    assert expected == (
        len(contexts),
        context.verify_mode == ssl.CERT_REQUIRED,
        context.check_hostname,
        loaded,
    )


# --- pure policy functions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry", "cap"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0), (20, 8.0)]
)
def test_backoff_cap(retry: int, cap: float) -> None:
    """The backoff cap starts at 0.5 s and doubles up to 8 s."""
    assert cap == backoff_cap(retry)


DATE_IN_30S = email.utils.formatdate(NOW + 30, usegmt=True)
DATE_PAST = email.utils.formatdate(NOW - 30, usegmt=True)
DATE_IN_2M = email.utils.formatdate(NOW + 120, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "60"}, 60.0),
        ({"retry-after": "61"}, None),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": DATE_IN_30S}, 30.0),
        ({"retry-after": DATE_PAST}, None),
        ({"retry-after": DATE_IN_2M}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "90000", "retry-after": "9"}, 9.0),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    """Retry-After (seconds or date) and retry-after-ms count only between 0 and 60 s."""
    assert expected == parse_retry_after(headers, now=NOW)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '{"error": {"message": "Invalid model", "type": "invalid_request_error"}}',
            "Invalid model",
        ),
        (
            '{"type": "error", "error": {"type": "not_found_error", "message": "no model"}}',
            "no model",
        ),
        ('{"error": "model \'x\' not found"}', "model 'x' not found"),
        ('{"detail": "Not Found"}', "Not Found"),
        ('{"message": "bad gateway"}', "bad gateway"),
        ("<html>502 Bad Gateway</html>\n", "<html>502 Bad Gateway</html>"),
        ('{"error": {"code": 5}}', '{"error": {"code": 5}}'),
        ("x" * 600, "x" * 500 + "…"),
    ],
)
def test_error_message(body: str, expected: str) -> None:
    """The provider's own message is found in the usual error shapes."""
    assert expected == error_message(body.encode())


# --- the retry loop, through the OpenAI provider --------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
async def test_transient_status_is_retried(
    status: int, make_provider, sleeps, retries, respx_mock: respx.MockRouter
) -> None:
    """408, 409, 429 and 5xx are retried after a jittered backoff."""
    route = respx_mock.post(URL).mock(side_effect=[failed(status), ok()])
    reply = await make_provider().complete(request(), on_retry=retries)
    assert (reply.text, reply.attempts, route.call_count) == ("hi", 2, 2)
    assert sleeps.calls == [0.25]
    assert [(2, 0.25, f"HTTP {status} from {URL}: status {status} said no")] == retries.calls


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_error_fails_at_once(
    status: int, make_provider, sleeps, respx_mock: respx.MockRouter
) -> None:
    """400, 401, 403, 404 and 422 fail on the first attempt with the provider's message."""
    route = respx_mock.post(URL).mock(side_effect=[failed(status), ok()])
    with pytest.raises(ProviderError) as caught:
        await make_provider().complete(request())
    assert f"openai: HTTP {status} from {URL}: status {status} said no" == caught.value.message
    assert (route.call_count, sleeps.calls) == (1, [])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("api_key", "hint"),
    [
        ("sk-bad-key-123456", "the API key was rejected: check OPENAI_API_KEY"),
        (None, "set OPENAI_API_KEY to an API key for this provider"),
    ],
)
async def test_401_hint_names_the_variable(
    api_key: str | None, hint: str, make_provider, respx_mock: respx.MockRouter
) -> None:
    """A 401 hints at the environment variable that holds the key."""
    respx_mock.post(URL).mock(return_value=failed(401))
    with pytest.raises(ProviderError) as caught:
        await make_provider(api_key=api_key).complete(request())
    assert hint == caught.value.hint


@pytest.mark.anyio
async def test_401_hint_uses_a_custom_variable(make_provider, respx_mock) -> None:
    """An endpoint with its own `api_key_env` names that variable in the hint."""
    respx_mock.post(URL).mock(return_value=failed(401))
    with pytest.raises(ProviderError) as caught:
        await make_provider(api_key_env="GROQ_API_KEY").complete(request())
    assert caught.value.hint == "the API key was rejected: check GROQ_API_KEY"


@pytest.mark.anyio
async def test_backoff_doubles_with_full_jitter(make_provider, sleeps, retries, respx_mock) -> None:
    """Waits are uniform(0, cap) with caps 0.5, 1, 2, 4, 8, 8 s; then the call gives up."""
    route = respx_mock.post(URL).mock(return_value=failed(500))
    provider = make_provider(rand=lambda: 1.0)
    with pytest.raises(ProviderError) as caught:
        await provider.complete(request(retries=6), on_retry=retries)
    assert sleeps.calls == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert [attempt for attempt, _, _ in retries.calls] == [2, 3, 4, 5, 6, 7]
    assert route.call_count == 7
    assert caught.value.message.endswith("status 500 said no (gave up after 7 attempts)")


@pytest.mark.anyio
async def test_jitter_uses_the_random_source(make_provider, sleeps, respx_mock) -> None:
    """The wait is the cap times the injected random number."""
    respx_mock.post(URL).mock(side_effect=[failed(503), failed(503), ok()])
    draws = iter([0.1, 0.9])
    await make_provider(rand=lambda: next(draws)).complete(request())
    assert [pytest.approx(0.05), pytest.approx(0.9)] == sleeps.calls


@pytest.mark.anyio
async def test_no_retries(make_provider, sleeps, respx_mock) -> None:
    """With `retries: 0` one failure is final and nothing waits."""
    route = respx_mock.post(URL).mock(return_value=failed(503))
    with pytest.raises(ProviderError, match=r"\(gave up after 1 attempt\)"):
        await make_provider().complete(request(retries=0))
    assert (route.call_count, sleeps.calls) == (1, [])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": DATE_IN_30S}, 30.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "120"}, 0.25),  # too long: our own backoff instead
    ],
)
async def test_retry_after_is_honoured(
    headers: dict[str, str], wait: float, make_provider, sleeps, retries, respx_mock
) -> None:
    """A Retry-After of up to 60 s is waited exactly, and reported to on_retry."""
    respx_mock.post(URL).mock(side_effect=[failed(429, headers), ok()])
    reply = await make_provider(clock=lambda: NOW).complete(request(), on_retry=retries)
    assert [wait] == sleeps.calls
    assert (2, wait) == retries.calls[0][:2]
    assert reply.attempts == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("peer closed"),
        httpx.WriteError("broken pipe"),
    ],
)
async def test_network_errors_are_retried(
    error: Exception, make_provider, sleeps, retries, respx_mock
) -> None:
    """Connection, read, write and protocol errors are retried."""
    respx_mock.post(URL).mock(side_effect=[error, ok()])
    reply = await make_provider().complete(request(), on_retry=retries)
    assert (reply.attempts, sleeps.calls) == (2, [0.25])
    assert f"{type(error).__name__} from {URL}: {error}" == retries.calls[0][2]


@pytest.mark.anyio
async def test_network_errors_give_up_with_a_hint(make_provider, respx_mock) -> None:
    """When the server stays unreachable the error says so and hints at the network."""
    respx_mock.post(URL).mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(ProviderError) as caught:
        await make_provider().complete(request())
    expected = f"openai: ConnectError from {URL}: connection refused (gave up after 3 attempts)"
    assert caught.value.message == expected
    assert caught.value.hint == "check the network and base_url"


@pytest.mark.anyio
async def test_bad_base_url_fails_at_once(make_provider, sleeps) -> None:
    """A base_url without http(s) is not retried."""
    with pytest.raises(ProviderError, match="cannot send to") as caught:
        await make_provider(base_url="localhost:11434/v1").complete(request())
    assert (caught.value.hint, sleeps.calls) == ("check the provider's base_url", [])


@pytest.mark.anyio
async def test_httpx_timeouts_become_step_timeout(make_provider, sleeps, respx_mock) -> None:
    """When every attempt times out the call raises StepTimeout."""
    route = respx_mock.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(StepTimeout) as caught:
        await make_provider().complete(request(timeout=30, retries=1))
    assert caught.value.message == "openai: no reply within 30 s (2 attempts)"
    assert (route.call_count, sleeps.calls) == (2, [0.25])


@pytest.mark.anyio
async def test_attempt_timeout_cuts_a_hanging_stream(make_provider, sse, retries, respx_mock):
    """A stream that stops sending is cut at `timeout`, retried, then reported."""
    hanging = 'data: {"choices": [{"index": 0, "delta": {"content": "a"}}]}\n\n'
    respx_mock.post(URL).mock(side_effect=lambda _: sse([hanging], hang=True))
    with pytest.raises(StepTimeout):
        await make_provider().complete(
            request(timeout=0.05, stream=True, retries=1), on_retry=retries
        )
    assert retries.calls == [(2, 0.25, "no reply within 0.05 s")]


@pytest.mark.anyio
async def test_timeout_then_other_failure_is_a_provider_error(make_provider, respx_mock) -> None:
    """Only all-timeouts make a StepTimeout; otherwise the last failure is reported."""
    respx_mock.post(URL).mock(side_effect=[httpx.ReadTimeout("slow"), failed(503)])
    with pytest.raises(ProviderError, match="status 503 said no"):
        await make_provider().complete(request(retries=1))


@pytest.mark.anyio
async def test_invalid_json_body_is_retried(make_provider, retries, respx_mock) -> None:
    """A 200 whose body is not JSON is retried like a 5xx."""
    garbage = httpx.Response(200, text='{"choices": [', headers={"content-type": "text/plain"})
    respx_mock.post(URL).mock(side_effect=[garbage, ok()])
    reply = await make_provider().complete(request(), on_retry=retries)
    assert (reply.attempts, retries.calls[0][2]) == (2, "the reply is not valid JSON")


@pytest.mark.anyio
async def test_invalid_json_every_time_is_an_error(make_provider, respx_mock) -> None:
    """Invalid JSON on every attempt is never returned as a success."""
    respx_mock.post(URL).mock(side_effect=lambda _: httpx.Response(200, text="oops"))
    with pytest.raises(ProviderError, match="not valid JSON"):
        await make_provider().complete(request())


@pytest.mark.anyio
async def test_rate_limit_gives_up_with_a_hint(make_provider, respx_mock) -> None:
    """A 429 that persists ends with a hint about concurrency."""
    respx_mock.post(URL).mock(side_effect=lambda _: failed(429))
    with pytest.raises(ProviderError) as caught:
        await make_provider().complete(request())
    assert "lower `concurrency`" in caught.value.hint


# --- secrets ------------------------------------------------------------------------------

LEAKS = [
    pytest.param(401, '{"error": {"message": "Incorrect API key provided: KEY."}}', id="401"),
    pytest.param(400, '{"error": {"message": "header Authorization: Bearer KEY"}}', id="bearer"),
    pytest.param(403, "raw text with KEY inside", id="raw-403"),
    pytest.param(500, '{"error": "upstream saw x-api-key: KEY"}', id="retried-500"),
    pytest.param(404, '{"detail": "no route for KEY"}', id="detail"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "body"), LEAKS)
async def test_key_never_in_errors(
    status: int, body: str, api_key: str, make_provider, retries, respx_mock
) -> None:
    """An API key echoed by the server is redacted from messages, hints and reasons."""
    response = httpx.Response(status, text=body.replace("KEY", api_key))
    respx_mock.post(URL).mock(side_effect=lambda _: response)
    provider = make_provider()
    with pytest.raises(ProviderError) as caught:
        await provider.complete(request(), on_retry=retries)
    texts = [
        str(caught.value),
        caught.value.format(),
        repr(provider),
        *(reason for _, _, reason in retries.calls),
    ]
    assert "[REDACTED]" in caught.value.message
    assert not [text for text in texts if api_key in text]


@pytest.mark.anyio
async def test_secret_extra_headers_are_redacted(make_provider, respx_mock) -> None:
    """Values of extra auth-like headers are redacted too."""
    token = "custom-gateway-token-42"
    respx_mock.post(URL).mock(return_value=httpx.Response(400, text=f"bad token {token}"))
    provider = make_provider(api_key=None, headers={"X-Gateway-Token": token})
    with pytest.raises(ProviderError) as caught:
        await provider.complete(request())
    assert caught.value.message == "openai: HTTP 400 from " + URL + ": bad token [REDACTED]"


AZURE_KEY = "0f3a9c1e5b2d4f60a7c8e9d0b1a2c3d4e5f60718"  # 40 hex digits, no prefix to match


@pytest.mark.parametrize("kept", [30, 1])
def test_error_message_redacts_before_shortening(kept: int) -> None:
    """A key cut at the length limit is still removed: no part of it survives."""
    tail = " was refused for this deployment"
    body = json.dumps({"error": {"message": "x" * (500 - kept) + AZURE_KEY + tail}})
    message = error_message(body, secrets=(AZURE_KEY,))
    assert "x" * (500 - kept) + ("[REDACTED]" + tail)[:kept] + "…" == message


@pytest.mark.anyio
async def test_a_header_key_echoed_at_the_cut_leaks_no_prefix(make_provider, respx_mock) -> None:
    """An Azure-style `api-key` echoed where the message is shortened is redacted whole."""
    echo = "y" * 470 + f" {AZURE_KEY} is not valid for this resource"
    respx_mock.post(URL).mock(return_value=httpx.Response(401, json={"error": {"message": echo}}))
    provider = make_provider(api_key=None, headers={"api-key": AZURE_KEY})
    with pytest.raises(ProviderError) as caught:
        await provider.complete(request())
    assert AZURE_KEY[:12] not in caught.value.message
    assert "[REDAC" in caught.value.message


@pytest.mark.anyio
async def test_credentials_in_the_base_url_are_never_shown(make_provider, respx_mock) -> None:
    """`http://user:pass@host` is sent as is, and shown as `http://[REDACTED]@host`."""
    route = respx_mock.post("https://gw.test/v1/chat/completions").mock(
        return_value=httpx.Response(404, text="no such model")
    )
    provider = make_provider(base_url="https://alice:hunter2-pw@gw.test/v1", api_key=None)
    with pytest.raises(ProviderError) as caught:
        await provider.complete(request())
    assert route.calls[0].request.headers["authorization"].startswith("Basic ")
    texts = (caught.value.message, repr(provider))
    assert [t for t in texts if "hunter2-pw" in t or "alice" in t] == []
    assert "https://[REDACTED]@gw.test/v1" in caught.value.message


def test_repr_hides_the_key(api_key: str, make_provider) -> None:
    """The provider's repr names it and its URL, never the key."""
    provider = make_provider()
    assert repr(provider) == "OpenAIProvider(name='openai', base_url='https://api.test/v1')"
    assert api_key not in repr(vars(provider)["_pool"])


@pytest.mark.anyio
async def test_aclose_closes_clients(make_provider, respx_mock) -> None:
    """aclose closes every client the provider opened."""
    respx_mock.post(URL).mock(return_value=ok())
    provider = make_provider()
    await provider.complete(request())
    clients = [c for c in provider._pool._clients if c is not None]
    await provider.aclose()
    assert [client.is_closed for client in clients] == [True]


@pytest.mark.anyio
async def test_negative_retries_means_one_attempt(make_provider, respx_mock) -> None:
    """A negative `retries` still makes exactly one attempt."""
    route = respx_mock.post(URL).mock(return_value=failed(503))
    with pytest.raises(ProviderError, match=r"after 1 attempt\)"):
        await make_provider().complete(request(retries=-1))
    assert route.call_count == 1


# --- requests httpx cannot send -----------------------------------------------------------

SECRET = "sk-qa-secret-123"


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("key", [f"{SECRET}\u00a0", f"{SECRET}\u00e9", f"\u201c{SECRET}\u201d"])
async def test_key_httpx_cannot_encode_is_a_final_redacted_error(
    kind: str, key: str, make_provider, respx_mock
) -> None:
    """A key the pool would refuse, given directly: a ProviderError without the key, no retry."""
    route = respx_mock.route().mock(return_value=ok())
    provider = make_provider(kind, api_key=key)
    with pytest.raises(ProviderError) as caught:
        await provider.complete(request(retries=3))
    error = caught.value
    assert "a header holds characters that HTTP does not allow" in error.message
    assert error.attempts == 1
    assert error.__context__ is None and error.__cause__ is None
    for text in (error.message, error.hint or "", repr(error), error.format()):
        assert SECRET not in text
    assert route.call_count == 0


@pytest.mark.anyio
async def test_local_protocol_error_is_a_final_redacted_error(make_provider, respx_mock) -> None:
    """httpx's LocalProtocolError (h11 refusing a header) is final and never quoted."""
    refused = httpx.LocalProtocolError(f"Illegal header value b'Bearer {SECRET}\\n'")
    route = respx_mock.post(URL).mock(side_effect=refused)
    with pytest.raises(ProviderError) as caught:
        await make_provider(api_key=SECRET).complete(request(retries=3))
    assert SECRET not in caught.value.message and SECRET not in repr(caught.value)
    assert caught.value.__context__ is None
    assert route.call_count == 1


# --- the size of a reply ------------------------------------------------------------------


URLS = {"openai": URL, "anthropic": "https://claude.test/v1/messages"}
JSON_REPLIES = {
    "openai": json.dumps(REPLY).encode(),
    "anthropic": json.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "model": "claude",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
        }
    ).encode(),
}
STREAM_ENDS = {
    "openai": sse_lines(
        {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}, "[DONE]"
    ).encode(),
    "anthropic": sse_lines(
        {"type": "message_start", "message": {"id": "msg_1", "model": "claude"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "message_stop"},
    ).encode(),
}
CHUNK = 65_536
TOO_LARGE = "the reply from {kind} passed the 10 MB limit"


class Body:
    """A lazily sent body: `head`, `size` bytes of `filler`, then `tail`; counts what was read."""

    def __init__(self, size: int, *, filler: bytes = b" ", tail: bytes = b"") -> None:
        self.size, self.filler, self.tail = size, filler, tail
        self.sent = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        left = self.size
        while left > 0:
            chunk = (self.filler * (CHUNK // len(self.filler)))[:left]
            self.sent += len(chunk)
            left -= len(chunk)
            yield chunk
        self.sent += len(self.tail)
        yield self.tail

    def response(
        self, status: int = 200, content_type: str = "application/json", **headers: str
    ) -> httpx.Response:
        return httpx.Response(
            status, headers={"content-type": content_type, **headers}, content=self.chunks()
        )


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_reply_up_to_the_limit_is_read(kind: str, make_provider, respx_mock) -> None:
    """A JSON reply of exactly REPLY_LIMIT bytes (padded with whitespace) is accepted."""
    tail = JSON_REPLIES[kind]
    respx_mock.post(URLS[kind]).mock(
        side_effect=lambda _: Body(REPLY_LIMIT - len(tail), tail=tail).response()
    )
    assert (await make_provider(kind).complete(request())).text == "hi"


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_reply_past_the_limit_fails_for_good(kind: str, make_provider, respx_mock) -> None:
    """A JSON body one byte past REPLY_LIMIT, with no Content-Length, fails without a retry."""
    tail = JSON_REPLIES[kind]
    route = respx_mock.post(URLS[kind]).mock(
        side_effect=lambda _: Body(REPLY_LIMIT + 1 - len(tail), tail=tail).response()
    )
    with pytest.raises(ProviderError) as caught:
        await make_provider(kind).complete(request(retries=2))
    assert caught.value.message == TOO_LARGE.format(kind=kind)
    assert (route.call_count, caught.value.attempts) == (1, 1)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_stream_past_the_limit_fails_as_it_arrives(
    kind: str, make_provider, respx_mock
) -> None:
    """SSE bytes (comments here) are counted as they arrive: past the limit, the step fails."""
    body = Body(REPLY_LIMIT + 1, filler=b":" + b"x" * 1022 + b"\n", tail=STREAM_ENDS[kind])
    route = respx_mock.post(URLS[kind]).mock(
        return_value=body.response(content_type="text/event-stream")
    )
    with pytest.raises(ProviderError) as caught:
        await make_provider(kind).complete(request(stream=True, retries=2))
    assert caught.value.message == TOO_LARGE.format(kind=kind)
    assert route.call_count == 1
    assert body.sent <= REPLY_LIMIT + CHUNK


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_long_stream_under_the_limit_is_read(kind: str, make_provider, respx_mock) -> None:
    """A stream within 1 KB of the limit is read to its end."""
    tail = STREAM_ENDS[kind]
    comments = (REPLY_LIMIT - len(tail)) // 1024 * 1024  # whole comment lines
    body = Body(comments, filler=b":" + b"x" * 1022 + b"\n", tail=tail)
    respx_mock.post(URLS[kind]).mock(return_value=body.response(content_type="text/event-stream"))
    assert (await make_provider(kind).complete(request(stream=True))).text == "hi"


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True])
async def test_a_content_length_past_the_limit_is_refused_unread(
    stream: bool, make_provider, respx_mock
) -> None:
    """A declared Content-Length over the limit fails before a byte of the body is read."""
    body = Body(100, tail=JSON_REPLIES["openai"])
    respx_mock.post(URL).mock(
        return_value=body.response(**{"content-length": str(REPLY_LIMIT + 1)})
    )
    with pytest.raises(ProviderError, match="passed the 10 MB limit"):
        await make_provider().complete(request(stream=stream))
    assert body.sent == 0


@pytest.mark.anyio
async def test_a_small_content_length_is_not_trusted(make_provider, respx_mock) -> None:
    """A body longer than its Content-Length says is still cut off at the limit."""
    body = Body(REPLY_LIMIT + 1, tail=JSON_REPLIES["openai"])
    respx_mock.post(URL).mock(return_value=body.response(**{"content-length": "100"}))
    with pytest.raises(ProviderError, match="passed the 10 MB limit"):
        await make_provider().complete(request())


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 500])
async def test_only_the_head_of_an_error_body_is_read(
    status: int, make_provider, respx_mock
) -> None:
    """A huge error body is read only as far as the error message needs."""
    body = Body(3 * REPLY_LIMIT, filler=b"x" * 1024)
    respx_mock.post(URL).mock(return_value=body.response(status, content_type="text/plain"))
    with pytest.raises(ProviderError) as caught:
        await make_provider().complete(request(retries=0))
    assert f"HTTP {status} from {URL}: {'x' * 500}…" in caught.value.message
    assert body.sent <= ERROR_BODY_LIMIT + CHUNK
