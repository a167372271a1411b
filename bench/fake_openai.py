"""A small fake OpenAI-compatible server, for benchmarks and end-to-end tests.

It answers ``POST /v1/chat/completions`` (also ``/chat/completions``) after a fixed
latency, as a JSON body or, with ``"stream": true``, as server-sent events: one
``data:`` chunk per word, a usage-only chunk when ``stream_options.include_usage`` is
set, then ``data: [DONE]``. ``GET /v1/models`` lists one model; ``GET /stats`` gives the
requests and connections served so far, the most requests answered at once, and the
429s of ``rate_limit`` (above that many requests a second: 429 with ``Retry-After: 1``).
HTTP/1.1 with keep-alive on a raw asyncio server: only the standard library, 127.0.0.1
only.

The reply is ``Fake reply to: <the last message>`` (whitespace collapsed, shortened),
``{"text": ...}`` for ``response_format`` ``json_object``, and a minimal instance of the
schema for ``json_schema``. Failures can be queued (:meth:`FakeOpenAI.fail_next`): the
next requests then get that status and an OpenAI-style error body, which may echo the
request's Authorization header (``{authorization}``), or a stream cut off halfway.

From Python::

    with serve_in_thread(latency=0.02) as server:   # or: await FakeOpenAI().start()
        os.environ["OPENAI_BASE_URL"] = server.base_url
        ...

As a script (prints ``listening on http://127.0.0.1:PORT/v1``, then serves until
interrupted or for ``--exit-after`` seconds)::

    python bench/fake_openai.py --port 0 --latency-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_LATENCY", "Failure", "FakeOpenAI", "echo_reply", "main", "serve_in_thread"]

DEFAULT_LATENCY = 0.020  # seconds before the first byte of each reply
MODEL = "fake-gpt"
_WORDS = re.compile(r"\S+\s*|\s+")
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    529: "Overloaded",
}


@dataclass
class Failure:
    """What the next request gets instead of an answer.

    ``message`` may contain ``{authorization}``: the request's Authorization header, as
    some servers echo it. ``status=200`` with ``truncate=True`` cuts a stream off halfway
    (no finish reason, no ``[DONE]``).
    """

    status: int = 500
    message: str = "the fake server failed on purpose"
    headers: dict[str, str] = field(default_factory=dict)
    truncate: bool = False


def echo_reply(body: dict[str, Any]) -> str:
    """The default reply: shows which prompt it answers, and honours ``response_format``."""
    messages = body.get("messages") or [{}]
    prompt = str(messages[-1].get("content") or "")
    words = " ".join(prompt.split())
    if len(words) > 80:
        words = words[:77].rstrip() + "..."
    text = f"Fake reply to: {words}"
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        return json.dumps({"text": text})
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return json.dumps(_minimal_instance(schema))
    return text


def _minimal_instance(schema: dict[str, Any]) -> Any:
    try:
        from orchestrate._instances import minimal_instance
    except ImportError:  # run by a Python without orchestrate: take it from this checkout
        sys.path.append(str(Path(__file__).resolve().parent.parent))
        from orchestrate._instances import minimal_instance
    return minimal_instance(schema, schema)


class FakeOpenAI:
    """The server. Start it on a running loop with :meth:`start`; it records requests."""

    def __init__(
        self,
        *,
        latency: float = DEFAULT_LATENCY,
        token_delay: float = 0.0,
        reply: Callable[[dict[str, Any]], str] = echo_reply,
        record: bool = True,
        rate_limit: float = 0.0,
    ) -> None:
        self.latency = latency
        self.token_delay = token_delay  # seconds between streamed chunks
        self.reply = reply
        self.record = record
        self.requests: list[dict[str, Any]] = []  # {"path", "headers", "body"} when recording
        self.count = 0  # requests answered (or failed) so far
        self.connections = 0  # TCP connections accepted so far
        self.in_flight = 0  # chat requests being answered now
        self.max_in_flight = 0  # the most at once so far
        # above this many answers a second (0: no limit), 429 with Retry-After: 1
        self.rate_limit = rate_limit
        self.rate_limited = 0  # requests answered 429 by the rate limit so far
        self._answered: collections.deque[float] = collections.deque()  # the last second's
        self.port = 0
        self._failures: collections.deque[Failure] = collections.deque()
        self._server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(self, *failures: Failure) -> None:
        """Queue failures: the next requests get them, one each, in order."""
        self._failures.extend(failures)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen (port 0: any free port) and return the port."""
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the fake server only listens on the loopback interface")
        self._server = await asyncio.start_server(self._connection, host, port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    # --- HTTP/1.1 -------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await self._exchange(reader, writer):
                pass
        except (
            ConnectionError,
            ValueError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass  # a client that went away or spoke something other than HTTP/1.1
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One request and its reply; False when the connection should close."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # the client closed the idle connection
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _version = [*request_line.split(" "), "", ""][:3]
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        keep_alive = headers.get("connection", "").lower() != "close"
        if "content-length" not in headers and method == "POST":
            await self._send_json(writer, 411, _error("Content-Length is required"), close=True)
            return False
        raw = await reader.readexactly(int(headers.get("content-length") or 0))
        path = path.split("?", 1)[0]
        if method == "GET" and path == "/stats":
            stats = {
                "requests": self.count,
                "connections": self.connections,
                "max_in_flight": self.max_in_flight,
                "rate_limited": self.rate_limited,
            }
            await self._send_json(writer, 200, stats, close=not keep_alive)
        elif method == "GET" and path in ("/v1/models", "/models"):
            models = {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
            await self._send_json(writer, 200, models, close=not keep_alive)
        elif method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            await self._chat(writer, path, headers, raw, close=not keep_alive)
        else:
            await self._send_json(
                writer, 404, _error(f"no route for {method} {path}"), close=not keep_alive
            )
        return keep_alive

    async def _chat(
        self,
        writer: asyncio.StreamWriter,
        path: str,
        headers: dict[str, str],
        raw: bytes,
        *,
        close: bool,
    ) -> None:
        self.count += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self._answer(writer, path, headers, raw, close=close)
        finally:
            self.in_flight -= 1

    def _over_rate_limit(self) -> bool:
        """Whether this request passes `rate_limit` answers in the last second (those
        answered 429 do not count)."""
        if not self.rate_limit:
            return False
        now = time.monotonic()
        while self._answered and self._answered[0] <= now - 1.0:
            self._answered.popleft()
        if len(self._answered) >= self.rate_limit:
            self.rate_limited += 1
            return True
        self._answered.append(now)
        return False

    async def _answer(
        self,
        writer: asyncio.StreamWriter,
        path: str,
        headers: dict[str, str],
        raw: bytes,
        *,
        close: bool,
    ) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            await self._send_json(writer, 400, _error("the body is not JSON"), close=close)
            return
        if self.record:
            self.requests.append({"path": path, "headers": headers, "body": body})
        failure = self._failures.popleft() if self._failures else None
        if failure is None and self._over_rate_limit():
            failure = Failure(
                status=429, message="rate limit reached: slow down", headers={"Retry-After": "1"}
            )
        if self.latency:
            await asyncio.sleep(self.latency)
        if failure is not None and not failure.truncate:
            message = failure.message.replace("{authorization}", headers.get("authorization", ""))
            await self._send_json(
                writer, failure.status, _error(message), close=close, extra=failure.headers
            )
            return
        text = self.reply(body)
        pieces = _WORDS.findall(text) or [""]
        usage = {"prompt_tokens": _prompt_tokens(body), "completion_tokens": len(pieces)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            await self._stream(writer, body, pieces, usage, truncate=failure is not None)
            return
        reply = {
            "id": f"chatcmpl-fake{self.count}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or MODEL,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "logprobs": None,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                }
            ],
            "usage": usage,
        }
        await self._send_json(writer, 200, reply, close=close)

    async def _stream(
        self,
        writer: asyncio.StreamWriter,
        body: dict[str, Any],
        pieces: list[str],
        usage: dict[str, int],
        *,
        truncate: bool,
    ) -> None:
        base = {
            "id": f"chatcmpl-fake{self.count}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model") or MODEL,
        }
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        extra = {"usage": None} if with_usage else {}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return _sse({**base, **extra, "choices": [choice]})

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in pieces]
        if truncate:
            events = events[: max(1, len(events) // 2)]
        else:
            events.append(chunk({}, "stop"))
            if with_usage:
                events.append(_sse({**base, "choices": [], "usage": usage}))
            events.append(b"data: [DONE]\n\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        if self.token_delay:
            for event in events:
                writer.write(_http_chunk(event))
                await writer.drain()
                await asyncio.sleep(self.token_delay)
        else:
            writer.write(b"".join(_http_chunk(event) for event in events))
        if truncate:  # the connection drops without the terminating chunk
            await writer.drain()
            raise ConnectionResetError("stream truncated on purpose")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        data: Any,
        *,
        close: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        payload = json.dumps(data).encode()
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}",
            "content-type: application/json",
            f"content-length: {len(payload)}",
        ]
        head += [f"{name}: {value}" for name, value in (extra or {}).items()]
        if close:
            head.append("connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
        await writer.drain()


def _error(message: str) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _prompt_tokens(body: dict[str, Any]) -> int:
    chars = sum(len(str(m.get("content") or "")) for m in body.get("messages") or ())
    return math.ceil(chars / 4)


@contextlib.contextmanager
def serve_in_thread(**options: Any) -> Iterator[FakeOpenAI]:
    """Run a :class:`FakeOpenAI` on its own event loop in a daemon thread, on a free port."""
    server = FakeOpenAI(**options)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="fake-openai", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the fake OpenAI server did not start")
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def _serve(args: argparse.Namespace) -> None:
    server = FakeOpenAI(
        latency=args.latency_ms / 1000,
        token_delay=args.token_delay_ms / 1000,
        record=False,
        rate_limit=args.rate_limit,
    )
    if args.fail_first:
        server.fail_next(*[Failure(status=args.fail_status)] * args.fail_first)
    port = await server.start(args.host, args.port)
    print(f"listening on http://{args.host}:{port}/v1", flush=True)
    try:
        await asyncio.sleep(args.exit_after if args.exit_after > 0 else math.inf)
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "localhost"])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=DEFAULT_LATENCY * 1000,
        help="wait before each reply (default: %(default)g)",
    )
    parser.add_argument(
        "--token-delay-ms",
        type=float,
        default=0.0,
        help="wait between streamed chunks (default: 0)",
    )
    parser.add_argument(
        "--fail-first",
        type=int,
        default=0,
        metavar="N",
        help="answer the first N requests with --fail-status",
    )
    parser.add_argument("--fail-status", type=int, default=500)
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=0.0,
        metavar="PER_SECOND",
        help="answer 429 with Retry-After: 1 above this many requests a second (default: no limit)",
    )
    parser.add_argument(
        "--exit-after",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="stop after this long (default: serve until interrupted)",
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
