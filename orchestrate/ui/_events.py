"""Run events for the browser: the `--events` records, batched, as Server-Sent Events.

    RunFeed         one run started by this server: its records so far, and who listens
    Listener        one browser tab: records queued for it, sent at most every FLUSH_EVERY
    coalesce()      a batch with each stream's tokens joined, only the latest count of a step
    poll_history()  the same records for a run of another process, read from the history

A listener sends a record at once when nothing was sent in the last FLUSH_EVERY seconds,
and otherwise waits out the rest of that time and sends everything queued meanwhile in
one write: a quiet run's events arrive without delay, and a stream of a thousand tokens a
second or a 1,000-item `for_each` costs the browser about 20 updates a second.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

FLUSH_EVERY = 0.05  # seconds
POLL_EVERY = 0.5  # seconds, for a run that another process is running

Record = dict[str, Any]


class Listener:
    """The records queued for one browser tab."""

    def __init__(self) -> None:
        self.pending: list[Record] = []
        self.ready = asyncio.Event()

    def put(self, record: Record) -> None:
        self.pending.append(record)
        self.ready.set()

    async def batches(self) -> AsyncIterator[list[Record]]:
        """Coalesced batches until the run's `run_finished` record has been sent."""
        last_sent = 0.0
        while True:
            await self.ready.wait()
            wait = last_sent + FLUSH_EVERY - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            batch, self.pending = self.pending, []
            self.ready.clear()
            last_sent = time.monotonic()
            yield coalesce(batch)
            if any(record["event"] == "run_finished" for record in batch):
                return


class RunFeed:
    """The records of one run this server runs, kept for tabs that open the page later."""

    def __init__(self) -> None:
        self.records: list[Record] = []  # everything but tokens
        self.tokens: dict[str, str] = {}  # step id -> the text streamed so far
        self.listeners: set[Listener] = set()

    def publish(self, record: Record) -> None:
        if record["event"] == "token":
            step = record["step_id"]
            self.tokens[step] = self.tokens.get(step, "") + record["text"]
        else:
            self.records.append(record)
        for listener in self.listeners:
            listener.put(record)

    async def follow(self) -> AsyncIterator[list[Record]]:
        """What happened so far (the tokens as one record per step), then what happens."""
        listener = Listener()
        for record in self.records:
            listener.put(record)
        for step, text in self.tokens.items():
            listener.put({"event": "token", "step_id": step, "text": text, "item": None})
        self.listeners.add(listener)
        try:
            async for batch in listener.batches():
                yield batch
        finally:
            self.listeners.discard(listener)


def coalesce(batch: list[Record]) -> list[Record]:
    """The tokens of each step and item joined into one record where the first of them
    was (each stream's text stays in order; a for_each's items, streaming at once, cost a
    record each, not one a chunk), and of the `item_finished` records of a step only the
    last (its `done` counts them all)."""
    last_count = {
        record["step_id"]: index
        for index, record in enumerate(batch)
        if record["event"] == "item_finished"
    }
    merged: list[Record] = []
    streams: dict[tuple[str, Any], int] = {}  # (step id, item) -> its token record in merged
    for index, record in enumerate(batch):
        name = record["event"]
        if name == "item_finished" and last_count[record["step_id"]] != index:
            continue
        if name == "token":
            stream = (record["step_id"], record.get("item"))
            at = streams.get(stream)
            if at is not None:
                merged[at] = {**merged[at], "text": merged[at]["text"] + record["text"]}
                continue
            streams[stream] = len(merged)
        merged.append(record)
    return merged


def sse_message(record: Record) -> str:
    """One Server-Sent Event: the record's name as the event type, the record as data."""
    data = json.dumps(record, ensure_ascii=False, default=str)
    return f"event: {record['event']}\ndata: {data}\n\n"


async def poll_history(
    read: Callable[[], Record | None], every: float = POLL_EVERY
) -> AsyncIterator[list[Record]]:
    """A recorded run's records, read again every `every` seconds until it has ended.

    `read` gives the run's result document (None while it is not recorded yet). Each step
    that ends gives a `step_finished` record, the end a `run_finished` record: the page
    sees another process's run move on at each step's end.
    """
    sent: dict[str, str] = {}
    while True:
        document = read()
        batch: list[Record] = []
        for step in (document or {}).get("steps", []):
            if sent.get(step["id"]) != step["status"]:
                sent[step["id"]] = step["status"]
                entry = {key: value for key, value in step.items() if key != "id"}
                batch.append({"event": "step_finished", "step_id": step["id"], **entry})
        if document is not None and document["status"] != "running":
            batch.append({"event": "run_finished", **document})
        if batch:
            yield batch
        if document is not None and document["status"] != "running":
            return
        await asyncio.sleep(every)
