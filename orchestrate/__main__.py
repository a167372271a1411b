"""The `orchestrate` process (the command, and `python -m orchestrate`): its start-up, then
the command line (orchestrate._cli), imported only once collection is off."""

import gc
import sys


def main() -> None:
    # Start-up builds tens of thousands of objects that live as long as the process
    # (modules, classes, the parsed workflow) and little garbage: looking for garbage
    # among them is wasted work, some 50 ms of CPU for a small `run`, 5 ms of it while
    # typer and the CLI are imported. Commands turn collection back on as they begin,
    # `run` once the run is prepared.
    gc.disable()
    # httpx imports its own command line when click, rich and pygments are installed (as
    # typer's dependencies they are): 20-40 ms of a run's start-up, for a tool this
    # process never runs. Marked missing, httpx puts a stub in its place.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    # typer's help imports Rich's Markdown and traceback modules, which it draws nothing
    # with here: some 30 ms of `--help` and of every usage error.
    from orchestrate._deferred import defer_unused_rich_modules

    defer_unused_rich_modules()
    from orchestrate._cli import app

    app()


if __name__ == "__main__":
    main()
