"""The web view's event feed: coalesced batches, late listeners, runs of other processes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from orchestrate.ui._events import FLUSH_EVERY, RunFeed, coalesce, poll_history, sse_message


def token(step: str, text: str, item: int | None = None) -> dict[str, Any]:
    return {"event": "token", "step_id": step, "text": text, "item": item}


def count(step: str, done: int) -> dict[str, Any]:
    return {
        "event": "item_finished",
        "step_id": step,
        "index": done - 1,
        "status": "succeeded",
        "done": done,
        "total": 1000,
    }


def test_coalesce_joins_the_tokens_of_each_stream() -> None:
    """The tokens of one step and item become one record where the first was, in order,
    also when other streams' tokens come between (a for_each's items stream at once)."""
    batch = [
        token("a", "he"),
        token("a", "llo"),
        token("b", "x"),
        token("a", "!"),
        token("a", "1", item=1),
        token("a", "A", item=2),
        token("a", "2", item=1),
        token("a", "B", item=2),
    ]
    assert coalesce(batch) == [
        token("a", "hello!"),
        token("b", "x"),
        token("a", "12", item=1),
        token("a", "AB", item=2),
    ]


def test_coalesce_keeps_records_other_than_tokens_in_place() -> None:
    """A step's tokens joined do not move past the other records: a step that starts
    after another's first token still comes after it."""
    started = {"event": "step_started", "step_id": "b"}
    assert coalesce([token("a", "x"), started, token("a", "y"), token("b", "z")]) == [
        token("a", "xy"),
        started,
        token("b", "z"),
    ]


def test_coalesce_keeps_the_last_count_of_each_step() -> None:
    """Of a for_each's item_finished records only the latest (done/total) is sent."""
    finished = {"event": "step_finished", "step_id": "s", "status": "succeeded"}
    batch = [count("s", 1), count("t", 1), count("s", 2), count("s", 3), finished]
    assert coalesce(batch) == [count("t", 1), count("s", 3), finished]


def test_sse_message_names_the_event() -> None:
    """One event per record: its type is the record's name, its data the record as JSON."""
    assert sse_message({"event": "token", "text": "a\nb"}) == (
        'event: token\ndata: {"event": "token", "text": "a\\nb"}\n\n'
    )


@pytest.mark.anyio
async def test_a_fast_stream_reaches_a_listener_in_few_batches() -> None:
    """2,000 tokens in 0.2 s arrive in about one batch per FLUSH_EVERY, text complete; a
    late listener first gets what it missed."""
    feed = RunFeed()
    feed.publish({"event": "run_started", "run_id": "r"})
    batches: list[list[dict[str, Any]]] = []

    async def listen() -> None:
        async for batch in feed.follow():
            batches.append(batch)

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0)
    started = time.monotonic()
    for index in range(2000):
        feed.publish(token("a", str(index % 10)))
        if index % 100 == 0:
            await asyncio.sleep(0.01)
    feed.publish({"event": "run_finished", "status": "succeeded"})
    await asyncio.wait_for(listener, 5)
    seconds = time.monotonic() - started
    records = [r for batch in batches for r in batch]
    text = "".join(r["text"] for r in records if r["event"] == "token")
    assert text == "0123456789" * 200
    assert len(batches) <= seconds / FLUSH_EVERY + 3
    assert records[0]["event"] == "run_started" and records[-1]["event"] == "run_finished"
    late = [r async for batch in _after_end(feed) for r in batch]
    assert late[0]["event"] == "run_started" and late[-1] == token("a", text)


async def _after_end(feed: RunFeed) -> Any:
    """A listener joining after the end: the stored records, then the tokens, then stop."""
    feed.publish({"event": "run_finished", "status": "succeeded"})
    async for batch in feed.follow():
        yield batch


@pytest.mark.anyio
async def test_a_quiet_event_is_sent_at_once() -> None:
    """With nothing sent lately, an event goes out without waiting for the batch window."""
    feed = RunFeed()
    stream = feed.follow()
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.2)
    began = time.monotonic()
    feed.publish({"event": "step_started", "step_id": "a"})
    await asyncio.wait_for(first, 1)
    assert time.monotonic() - began < FLUSH_EVERY
    await stream.aclose()


@pytest.mark.anyio
async def test_poll_history_reports_each_step_once_then_the_end() -> None:
    """Another process's run: step_finished as steps appear in the history, run_finished
    when its status is no longer running."""
    documents = [
        None,
        {"status": "running", "steps": [{"id": "a", "status": "succeeded", "output": 1}]},
        {"status": "running", "steps": [{"id": "a", "status": "succeeded", "output": 1}]},
        {
            "status": "failed",
            "run_id": "r",
            "steps": [
                {"id": "a", "status": "succeeded", "output": 1},
                {"id": "b", "status": "failed", "output": None},
            ],
        },
    ]
    reads = iter(documents)
    batches = [batch async for batch in poll_history(lambda: next(reads), every=0)]
    assert [[(r["event"], r.get("step_id")) for r in batch] for batch in batches] == [
        [("step_finished", "a")],
        [("step_finished", "b"), ("run_finished", None)],
    ]
    assert batches[0][0] == {
        "event": "step_finished",
        "step_id": "a",
        "status": "succeeded",
        "output": 1,
    }
