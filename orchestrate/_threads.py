"""Work that must not block the event loop: a thread that never keeps the process alive."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any


async def in_daemon_thread(function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run a sync function in a thread of its own that does not keep the process alive.

    asyncio.to_thread's pool is joined when the loop closes, so Ctrl-C during a slow
    function would wait for it to return; a daemon thread is simply left behind.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Callable[[Any], None], value: Any) -> None:
        if not future.done():  # not cancelled meanwhile
            outcome(value)

    def deliver(outcome: Callable[[Any], None], value: Any) -> None:
        # A closed loop means the run is over and wants no value.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, outcome, value)

    def work() -> None:
        try:
            result = function(**kwargs)
        except BaseException as exc:
            deliver(future.set_exception, exc)
        else:
            deliver(future.set_result, result)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(work,), daemon=True)
    thread.start()
    return await future
