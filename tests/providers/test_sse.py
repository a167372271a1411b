"""The SSE decoder: the WHATWG rules, whatever the chunk boundaries."""

from __future__ import annotations

import httpx
import pytest

from orchestrate.providers._sse import ServerSentEvent, SSEDecoder, aiter_sse

E = ServerSentEvent

# (name, body, events): each body is also fed split at every character and every byte.
CORPUS = [
    ("one event", "data: hello\n\n", [E(data="hello")]),
    ("two events", "data: a\n\ndata: b\n\n", [E(data="a"), E(data="b")]),
    ("crlf", "data: a\r\n\r\ndata: b\r\n\r\n", [E(data="a"), E(data="b")]),
    ("bare cr", "data: a\r\rdata: b\r\r", [E(data="a"), E(data="b")]),
    ("mixed endings", "data: a\r\ndata: b\rdata: c\n\r\n", [E(data="a\nb\nc")]),
    ("multi-line data", "data: line 1\ndata: line 2\n\n", [E(data="line 1\nline 2")]),
    ("event name", "event: message_start\ndata: {}\n\n", [E(event="message_start", data="{}")]),
    ("comments", ": keep-alive\n:\ndata: x\n: between\n\n", [E(data="x")]),
    ("no space after colon", "data:x\n\n", [E(data="x")]),
    ("only one space stripped", "data:  x \n\n", [E(data=" x ")]),
    ("empty data line", "data:\n\n", [E(data="")]),
    ("field without colon", "data\n\n", [E(data="")]),
    ("colon inside value", "data: a: b\n\n", [E(data="a: b")]),
    ("blank lines only", "\n\n\n", []),
    ("event without data", "event: ping\n\ndata: x\n\n", [E(data="x")]),
    ("unknown field", "foo: bar\ndata: x\n\n", [E(data="x")]),
    ("id and retry", "id: 7\nretry: 1500\ndata: x\n\n", [E(data="x", id="7", retry=1500)]),
    ("bad retry ignored", "retry: soon\ndata: x\n\n", [E(data="x")]),
    ("id persists", "id: 1\ndata: a\n\ndata: b\n\n", [E(data="a", id="1"), E(data="b", id="1")]),
    ("byte order mark", "\ufeffdata: x\n\n", [E(data="x")]),
    ("utf-8", "data: héllo wörld — 日本 🎉\n\n", [E(data="héllo wörld — 日本 🎉")]),
    ("openai done", 'data: {"a":1}\n\ndata: [DONE]\n\n', [E(data='{"a":1}'), E(data="[DONE]")]),
    ("unterminated last event", "data: a\n\ndata: b\n", [E(data="a"), E(data="b")]),
    ("unterminated last line", "data: a\n\ndata: b", [E(data="a"), E(data="b")]),
]
IDS = [name for name, _, _ in CORPUS]


def decode(chunks: list[bytes] | list[str]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.flush()


@pytest.mark.parametrize(("name", "body", "expected"), CORPUS, ids=IDS)
def test_whole_body(name: str, body: str, expected: list[ServerSentEvent]) -> None:
    """A body fed in one piece gives the expected events."""
    assert expected == decode([body])


@pytest.mark.parametrize(("name", "body", "expected"), CORPUS, ids=IDS)
def test_split_at_every_character(name: str, body: str, expected: list[ServerSentEvent]) -> None:
    """Splitting the text anywhere (even between CR and LF) changes nothing."""
    for cut in range(len(body) + 1):
        assert expected == decode([body[:cut], body[cut:]]), cut


@pytest.mark.parametrize(("name", "body", "expected"), CORPUS, ids=IDS)
def test_split_at_every_byte(name: str, body: str, expected: list[ServerSentEvent]) -> None:
    """Splitting the bytes anywhere, inside a UTF-8 character too, changes nothing."""
    raw = body.encode()
    for cut in range(len(raw) + 1):
        assert expected == decode([raw[:cut], raw[cut:]]), cut


@pytest.mark.parametrize(("name", "body", "expected"), CORPUS, ids=IDS)
def test_one_byte_at_a_time(name: str, body: str, expected: list[ServerSentEvent]) -> None:
    """Feeding single bytes gives the same events."""
    raw = body.encode()
    assert expected == decode([raw[i : i + 1] for i in range(len(raw))])


def test_events_arrive_as_soon_as_complete() -> None:
    """`feed` returns an event as soon as its blank line arrives, not at the end."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert [E(data="a")] == decoder.feed(b"\ndata: b")
    assert [E(data="b")] == decoder.flush()


def test_cr_then_lf_in_next_chunk_is_one_line_end() -> None:
    """A CR ending one chunk and an LF starting the next make one line end, not two."""
    decoder = SSEDecoder()
    assert decoder.feed("data: a\r") == []
    assert decoder.feed("") == []
    assert decoder.feed("\ndata: b\r") == []
    assert [E(data="a\nb")] == decoder.feed("\n\r\n")


def test_invalid_utf8_is_replaced() -> None:
    """Bytes that are not UTF-8 become U+FFFD instead of raising."""
    assert [E(data="a\ufffdb")] == decode([b"data: a\xffb\n\n"])


def test_truncated_utf8_at_end_is_replaced() -> None:
    """A body that ends inside a character yields U+FFFD at flush."""
    assert [E(data="x\ufffd")] == decode([b"data: x", "é".encode()[:1]])


def test_json() -> None:
    """`json()` parses the data."""
    assert E(data='{"a": [1, 2]}').json() == {"a": [1, 2]}


@pytest.mark.anyio
async def test_aiter_sse_reads_an_httpx_stream() -> None:
    """`aiter_sse` decodes a streaming httpx response chunk by chunk."""

    async def body():
        for chunk in [b"event: x\nda", b"ta: \xc3", b"\xa9\n\n", b"data: end"]:
            yield chunk

    response = httpx.Response(200, content=body())
    events = [event async for event in aiter_sse(response)]
    assert [E(event="x", data="é"), E(data="end")] == events
