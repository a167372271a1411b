"""Ctrl-C stops a run within a second, whatever its steps are doing.

asyncio.run turns the first Ctrl-C into cancelling the run, and the engine turns that
into a cancelled result; but only once the event loop gets control back. An async
function step that computes without awaiting keeps it: it cannot be preempted, and the
Ctrl-C would seem ignored until it returns. So the first Ctrl-C also starts a watchdog.
If the run has not stopped after GRACE_SECONDS, it interrupts the main thread (a
KeyboardInterrupt where that code runs, which cancels its step); if even that does not
end the run within GRACE_SECONDS more (code that never returns to Python), it exits the
process with 130 at once, leaving the run's history entry `running`. Code stuck in C
that holds the GIL lets no Python run, this watchdog included: nothing here can end it.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

GRACE_SECONDS = 0.4
INTERRUPTED_EXIT = 130


@contextlib.contextmanager
def interrupt_watchdog() -> Iterator[None]:
    """Within the block, Ctrl-C does what it did, and a blocked run still ends soon after.

    Wraps the SIGINT handler in place (asyncio.run's, which cancels the run); a no-op
    outside the main thread or when SIGINT is ignored.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    stopped = threading.Event()
    watchdog = threading.Thread(target=_watch, args=(stopped,), daemon=True)

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        if not watchdog.is_alive() and watchdog.ident is None:  # the first Ctrl-C
            watchdog.start()
        previous(signum, frame)

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        stopped.set()
        signal.signal(signal.SIGINT, previous)


def _watch(stopped: threading.Event) -> None:
    if stopped.wait(GRACE_SECONDS):
        return
    _thread.interrupt_main()  # as a second Ctrl-C: asyncio.run raises KeyboardInterrupt
    if stopped.wait(GRACE_SECONDS):
        return
    sys.stderr.write("interrupted: a step does not return to Python; exiting now\n")
    sys.stderr.flush()
    os._exit(INTERRUPTED_EXIT)
