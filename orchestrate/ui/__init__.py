"""`orchestrate ui`: the workflows and the run history in a browser, live.

    _server     serve(): bind, print the address with its token, run until Ctrl-C
    _app        create_app(): the routes table, the app's state, start and stop
    ├── _security   Guard: token, Host and Origin checks on every request
    ├── _workflows  the workflows pages and their API twins; starting a run
    ├── _history    the run, history and compare pages and their API twins
    ├── _runs       RunManager: runs started here, as ordinary runs, watched live
    ├── _events     the run's events as batched Server-Sent Events
    ├── _files      Catalog: the workflow files under the PATHs, and only those
    └── _render     templates (autoescaped), Markdown, the filters pages use

Only the `ui` command imports this package (and with it Starlette and uvicorn).
"""

from __future__ import annotations

from orchestrate.ui._app import create_app
from orchestrate.ui._server import serve

__all__ = ["create_app", "serve"]
