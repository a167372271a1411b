"""The web application: one table of routes, the state it keeps, its start and stop.

create_app()    the Starlette app behind the Guard (token, host, origin)
app.state       catalog (the files shown), store (the history, read), manager (runs
                started here), closing (set when the server stops: streams end)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from orchestrate.history import open_store
from orchestrate.ui import _batches as batches
from orchestrate.ui import _history as runs
from orchestrate.ui import _workflows as workflows
from orchestrate.ui._files import Catalog
from orchestrate.ui._runs import RunManager
from orchestrate.ui._security import Guard

STATIC = Path(__file__).parent / "static"

ROUTES = [
    Route("/", workflows.workflows_page),
    Route("/workflows/{path:path}/run", workflows.run_from_form, methods=["POST"]),
    Route("/workflows/{path:path}", workflows.workflow_page),
    Route("/runs", runs.history_page),
    Route("/runs/{run_id}", runs.run_page),
    Route("/runs/{run_id}/steps/{step_id}", runs.run_page),
    Route("/runs/{run_id}/steps/{step_id}/panel", runs.step_panel),
    Route("/runs/{run_id}/cancel", runs.cancel_from_page, methods=["POST"]),
    Route("/runs/{run_id}/again", runs.rerun_from_page, methods=["POST"]),
    Route("/runs/{run_id}/resume", runs.rerun_from_page, methods=["POST"]),
    Route("/compare", runs.compare_page),
    Route("/batches", batches.batches_page),
    Route("/batches/{batch_id}", batches.batch_page),
    Route("/api/workflows", workflows.workflows_api),
    Route("/api/workflows/{path:path}", workflows.workflow_api),
    Route("/api/runs", runs.runs_api),
    Route("/api/runs", runs.start_run_api, methods=["POST"]),
    Route("/api/runs/{run_id}", runs.run_api),
    Route("/api/runs/{run_id}/events", runs.events_api),
    Route("/api/runs/{run_id}/cancel", runs.cancel_api, methods=["POST"]),
    Route("/api/compare", runs.compare_api),
    Route("/api/batches/{batch_id}", batches.batch_api),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]


def create_app(
    paths: Sequence[str | Path],
    *,
    token: str,
    host: str = "127.0.0.1",
    port: int = 8765,
    env: Mapping[str, str] | None = None,
) -> Guard:
    """The application over the workflows under `paths` and the history of `env`."""
    env = os.environ if env is None else env

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = app.state
        state.closing = asyncio.Event()
        state.manager = RunManager(env)
        with open_store(env) as store:
            state.store = store
            try:
                yield
            finally:
                state.closing.set()
                await state.manager.stop()

    app = Starlette(routes=ROUTES, lifespan=lifespan)
    app.state.catalog = Catalog.of(paths)
    return Guard(app, token=token, host=host, port=port)


def closing(app: Any) -> None:
    """The server is stopping: end the event streams and cancel the runs now, so that
    their connections close and the server need not wait for them."""
    state = app.app.state
    if hasattr(state, "closing"):
        state.closing.set()
        for task in state.manager.tasks:
            task.cancel()
