"""Ctrl-C and SIGTERM stop a run within a second, whatever its steps are doing.

asyncio.run turns the first Ctrl-C into cancelling the run, and the engine turns that
into a cancelled result; sigterm_cancels_the_run does the same for SIGTERM (CI cancels,
`timeout`, `docker stop`). Either only works once the event loop gets control back. An
async function step that computes without awaiting keeps it: it cannot be preempted, and
the signal would seem ignored until it returns. So the first signal also starts a
watchdog. If the run has not stopped after GRACE_SECONDS, it interrupts the main thread (a
KeyboardInterrupt where that code runs, which cancels its step); if even that does not
end the run within GRACE_SECONDS more (code that never returns to Python), it exits the
process at once with 128 + the signal (130, 143), leaving the run's history entry
`running`. Code stuck in C that holds the GIL lets no Python run, this watchdog included:
nothing here can end it.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

GRACE_SECONDS = 0.4
_WATCHED = (signal.SIGINT, signal.SIGTERM)
_NAMES: dict[int, str] = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


@contextlib.contextmanager
def sigterm_cancels_the_run() -> Iterator[list[int]]:
    """While the block runs, SIGTERM cancels the current task, which asyncio.run does for
    SIGINT; the yielded list receives the signal. Outside the main thread, nothing changes."""
    received: list[int] = []
    loop, task = asyncio.get_running_loop(), asyncio.current_task()

    def cancel(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        signal.signal(signal.SIGTERM, previous)  # a second SIGTERM is not ours to soften
        if task is not None:
            loop.call_soon_threadsafe(task.cancel)

    # None: set outside Python; the default is the nearest we can restore.
    previous = signal.getsignal(signal.SIGTERM) or signal.SIG_DFL
    try:
        signal.signal(signal.SIGTERM, cancel)
    except ValueError:  # not the main thread: signals belong to whoever runs that
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def interrupt_watchdog() -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM do what they did, and a blocked run still ends
    soon after.

    Wraps the handlers in place (asyncio.run's for SIGINT, sigterm_cancels_the_run's for
    SIGTERM, which cancel the run); a signal Python does not handle is left alone, and
    outside the main thread this is a no-op. The watchdog interrupts through SIGINT: when
    SIGINT is ignored, a blocked run ends by the exit alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {int(signum): signal.getsignal(signum) for signum in _WATCHED}
    wrapped = {signum: handler for signum, handler in previous.items() if callable(handler)}
    stopped, nudged = threading.Event(), threading.Event()
    watchdogs: list[threading.Thread] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if nudged.is_set():  # the watchdog's interrupt: stop the code that blocks the loop
            raise KeyboardInterrupt
        if not watchdogs:  # the first signal
            watchdogs.append(
                threading.Thread(target=_watch, args=(stopped, nudged, signum), daemon=True)
            )
            watchdogs[0].start()
        wrapped[signum](signum, frame)

    for signum in wrapped:
        signal.signal(signum, on_signal)
    try:
        yield
    finally:
        stopped.set()
        for signum, handler in wrapped.items():
            # A handler may have put another in place meanwhile (SIGTERM's, the one before
            # it): that one stays.
            if signal.getsignal(signum) is on_signal:
                signal.signal(signum, handler)


def _watch(stopped: threading.Event, nudged: threading.Event, signum: int) -> None:
    if stopped.wait(GRACE_SECONDS):
        return
    nudged.set()
    _thread.interrupt_main()  # as a second Ctrl-C: KeyboardInterrupt where the code runs
    if stopped.wait(GRACE_SECONDS):
        return
    sys.stderr.write(f"{_NAMES[signum]}: a step does not return to Python; exiting now\n")
    sys.stderr.flush()
    os._exit(128 + signum)
