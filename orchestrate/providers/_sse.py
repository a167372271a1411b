"""Server-sent events: a sans-I/O decoder, and one helper that feeds it from httpx.

The decoder follows the WHATWG event-stream rules, in three steps:

    bytes --(incremental UTF-8)--> text --(CR LF | LF | CR)--> lines --> events

Chunks may end anywhere: inside a line, between the CR and LF of a line ending, or inside
a multi-byte UTF-8 character. Lines starting with ``:`` are comments. Several ``data:``
lines make one event whose data is joined with ``\\n``. A blank line dispatches the event.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import httpx

__all__ = ["SSEDecoder", "ServerSentEvent", "aiter_sse"]

_LINE_END = re.compile(r"\r\n|\r|\n")


@attrs.frozen
class ServerSentEvent:
    """One dispatched event: its name (``message`` by default) and its data."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """The data parsed as JSON (raises ``ValueError`` when it is not JSON)."""
        return json.loads(self.data)


class SSEDecoder:
    """Feed it chunks of the body (``bytes`` or ``str``); it returns the finished events."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""  # the start of a line whose end has not arrived yet
        self._skip_lf = False  # the last chunk ended with CR: a leading LF belongs to it
        self._started = False  # a leading byte order mark has been dealt with
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes | str) -> list[ServerSentEvent]:
        """Decode one chunk; return the events it completes, in order."""
        text = self._utf8.decode(chunk) if isinstance(chunk, bytes) else chunk
        return self._lines_to_events(self._split(text))

    def flush(self) -> list[ServerSentEvent]:
        """End of the body: finish a last unterminated line and event, if there is one."""
        tail = self._utf8.decode(b"", final=True)
        lines = self._split(tail)
        if self._partial:
            lines.append(self._partial)
            self._partial = ""
        return self._lines_to_events([*lines, ""])

    def _split(self, text: str) -> list[str]:
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]
        buffer = self._partial + text
        self._skip_lf = buffer.endswith("\r")
        *lines, self._partial = _LINE_END.split(buffer)
        return lines

    def _lines_to_events(self, lines: list[str]) -> list[ServerSentEvent]:
        events = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        self._field(name, value.removeprefix(" "))
        return None

    def _field(self, name: str, value: str) -> None:
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = ServerSentEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self._id,
            retry=self._retry,
        )
        self._event, self._data, self._retry = "", [], None
        return event


async def aiter_sse(
    source: httpx.Response | AsyncIterator[bytes],
) -> AsyncGenerator[ServerSentEvent, None]:
    """The events of a streaming httpx response (or of its ``aiter_bytes()``), as its
    bytes arrive.

    Wrap it in ``contextlib.aclosing`` when you may stop early; the caller owns (and
    closes) the response. Given the byte iterator, the caller can go on reading it after
    the last event it wanted.
    """
    decoder = SSEDecoder()
    chunks = source.aiter_bytes() if hasattr(source, "aiter_bytes") else source
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.flush():
        yield event
