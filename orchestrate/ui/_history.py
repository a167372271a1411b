"""The runs pages: one run (live), one step of it, the history, two runs compared; and the
run API (start, read, events, cancel).

A run is read from the server's own runs while they go on (:class:`RunManager`), and from
the history otherwise: runs of `orchestrate run` in a terminal included.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from orchestrate._errors import OrchestrateError, UsageError
from orchestrate._result import StepResult
from orchestrate.ui._events import Record, poll_history, sse_message
from orchestrate.ui._files import NotServed
from orchestrate.ui._render import api_error, not_found_page, page
from orchestrate.ui._workflows import error_data, graph_of, start_run

PAGE_SIZE = 50
ITEMS_SHOWN = 200  # a for_each's items listed on its step's panel
STATUSES = ("running", "succeeded", "failed", "cancelled")


class NoSuchRun(LookupError):
    pass


class IsABatch(NoSuchRun):
    """The id is a batch's: its page is the batch page."""


# --- data ---------------------------------------------------------------------------------------


def _resolve(store: Any, run_id: str) -> str:
    try:
        return str(store.resolve(run_id))
    except UsageError:
        raise NoSuchRun(run_id) from None


def run_data(state: Any, run_id: str) -> dict[str, Any]:
    """A run: its result document (partial while it runs), each step's status and place,
    and its graph coloured by status when its file is one the server shows."""
    live = state.manager.live.get(run_id)
    if live is not None and live.start is not None:
        document, statuses, items = live.document(), dict(live.statuses), dict(live.items)
        mode, file_path = None, str(state.catalog.find(live.workflow))
    else:
        run_id = _resolve(state.store, run_id)
        if state.store.batch(run_id) is not None:
            raise IsABatch(run_id)
        document = state.store.document(run_id)
        row = state.store.run_row(run_id)
        statuses = {step["id"]: step["status"] for step in document["steps"]}
        items, mode = {}, row["mode"]
        file_path = row["file_path"]
    path = state.catalog.served(file_path)
    workflow = state.catalog.report(Path(file_path)).workflow if path else None
    order = (
        [(s.id, s.kind, s.for_each is not None) for s in workflow.steps]
        if workflow
        else [(step["id"], None, False) for step in document["steps"]]
    )
    entries = {step["id"]: step for step in document["steps"]}
    steps = []
    for step_id, kind, for_each in order:
        status = statuses.get(
            step_id, "waiting" if document["status"] == "running" else "cancelled"
        )
        entry = entries.get(step_id)
        steps.append(
            {
                "id": step_id,
                "kind": kind,
                "status": status,
                "progress": items.get(step_id),
                "result": entry,
                "retries": retries(entry, for_each=for_each),
            }
        )
    data = {
        "run": document,
        "live": document["status"] == "running",
        "mode": mode,
        "workflow_path": path,
        "steps": steps,
        "graph": None,
        "svg": None,
    }
    if workflow is not None and state.catalog.report(Path(file_path)).valid:
        data["graph"], data["svg"] = graph_of(workflow, {s["id"]: s["status"] for s in steps})
    return data


def retries(entry: Mapping[str, Any] | None, *, for_each: bool) -> int:
    """The attempts of a step beyond one a call: a for_each's are summed over its items
    (0 when its item count is not known: it has no list of outputs)."""
    if not entry or not entry.get("attempts"):
        return 0
    calls = 1
    if for_each:
        output = entry.get("output")
        if not isinstance(output, list):
            return 0
        calls = len(output)
    return max(0, int(entry["attempts"]) - calls)


def step_data(state: Any, run_id: str, step_id: str) -> dict[str, Any]:
    """One step of a run: its entry in the result document, the requests it sent (the
    rendered prompt or messages; a for_each's first ITEMS_SHOWN), the text streamed so
    far while it runs, and a for_each's items."""
    live = state.manager.live.get(run_id)
    request = None
    streamed = ""
    if live is not None and live.start is not None:
        if step_id not in live.statuses:
            raise NoSuchRun(f"{run_id}/{step_id}")
        result = live.results.get(step_id)
        entry = result.to_dict() if result else None
        status = live.statuses[step_id]
        items = live.items.get(step_id)
        item_statuses = live.item_statuses.get(step_id, {})
        streamed = live.feed.tokens.get(step_id, "")
    else:
        run_id = _resolve(state.store, run_id)
        stored = {s.result.id: s.result for s in state.store.stored_steps(run_id)}
        document = state.store.document(run_id)
        entry = next((s for s in document["steps"] if s["id"] == step_id), None)
        if entry is None and step_id not in stored:
            raise NoSuchRun(f"{run_id}/{step_id}")
        result = stored.get(step_id)
        status = entry["status"] if entry else "waiting"
        items, item_statuses = None, {}
    request = result.request if result else None
    sent = (request or {}).get("items")
    prompts = sent if isinstance(sent, list) else [request] if request else []
    return {
        "run_id": run_id,
        "step_id": step_id,
        "status": status,
        "step": entry,
        "prompts": prompts[:ITEMS_SHOWN],
        "more_prompts": max(0, len(prompts) - ITEMS_SHOWN),
        "streamed": streamed,
        "progress": items,
        "items": for_each_items(result, status, items, item_statuses),
    }


def for_each_items(
    result: StepResult | None,
    status: str,
    progress: tuple[int, int] | None,
    statuses: Mapping[int, str],
) -> dict[str, Any] | None:
    """A for_each step's items: `total`, `done`, and the first ITEMS_SHOWN with their
    index, status and output. None for a step that is not a for_each (or not started).

    The history keeps the outputs of the items that succeeded; an item without one
    failed, or was stopped when its step failed or was cancelled (`no output`)."""
    sent = (result.request or {}).get("items") if result else None
    total = len(sent) if isinstance(sent, list) else progress[1] if progress else None
    if total is None:
        return None
    outputs: dict[int, Any] = {item.index: item.output for item in result.items} if result else {}
    if result and result.status == "succeeded" and isinstance(result.output, list):
        outputs = dict(enumerate(result.output))
    ended = "waiting" if status in ("waiting", "queued", "running") else "no output"
    shown = [
        {
            "index": index,
            "status": statuses.get(index) or ("succeeded" if index in outputs else ended),
            "output": outputs.get(index),
        }
        for index in range(min(total, ITEMS_SHOWN))
    ]
    done = progress[0] if progress else len(outputs)
    return {"total": total, "done": done, "shown": shown}


def history_data(
    state: Any,
    *,
    workflow: str | None = None,
    status: str | None = None,
    user: str | None = None,
    before: str | None = None,
    limit: int = PAGE_SIZE,
    kind: str | None = None,
) -> dict[str, Any]:
    """A page of runs, newest first; `next` is the `before` of the following page.
    `kind` (run or batch): only those entries."""
    runs = state.store.list_runs(
        limit=limit + 1,
        workflow=workflow or None,
        status=status or None,
        user=user or None,
        before=before or None,
        kind=kind or None,
    )
    more = len(runs) > limit
    runs = runs[:limit]
    return {
        "runs": runs,
        "next": runs[-1]["run_id"] if more else None,
        "workflow": workflow or "",
        "status": status or "",
        "user": user or "",
        "statuses": STATUSES,
    }


def compare_data(state: Any, run_a: str, run_b: str) -> dict[str, Any]:
    """Two runs step by step: `runs diff --json`, with each side's output beside it."""
    from orchestrate.history import diff_runs

    store = state.store
    run_a, run_b = _resolve(store, run_a), _resolve(store, run_b)
    diff = diff_runs(store, run_a, run_b)
    outputs = [{s["id"]: s for s in store.document(run)["steps"]} for run in (run_a, run_b)]
    for entry in diff["steps"]:
        for side, steps in zip(("a", "b"), outputs, strict=True):
            step = steps.get(entry["id"])
            entry[f"output_{side}"] = step["output"] if step else None
    return diff


# --- pages ---------------------------------------------------------------------------------------


async def run_page(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    selected = request.path_params.get("step_id")
    try:
        data = run_data(request.app.state, run_id)
        panel = step_data(request.app.state, data["run"]["run_id"], selected) if selected else None
    except IsABatch as exc:
        return RedirectResponse(f"/batches/{exc}", status_code=303)
    except NoSuchRun:
        return not_found_page(f"run {run_id}")
    return page("run.html", **data, panel=panel, api=f"/api/runs/{data['run']['run_id']}")


async def step_panel(request: Request) -> Response:
    """The step's details alone, for the run page to put in place without a reload."""
    try:
        panel = step_data(
            request.app.state, request.path_params["run_id"], request.path_params["step_id"]
        )
    except NoSuchRun:
        return not_found_page("step")
    return page("step_panel.html", panel=panel)


async def history_page(request: Request) -> Response:
    query = request.query_params
    data = history_data(
        request.app.state,
        workflow=query.get("workflow"),
        status=query.get("status"),
        user=query.get("user"),
        before=query.get("before"),
    )
    return page("history.html", **data, api="/api/runs?" + str(query))


async def compare_page(request: Request) -> Response:
    query = request.query_params
    a, b = query.get("a", ""), query.get("b", "")
    try:
        data = compare_data(request.app.state, a, b)
    except NoSuchRun as exc:
        return not_found_page(f"run {exc}")
    return page("compare.html", diff=data, api=f"/api/compare?a={a}&b={b}")


async def cancel_from_page(request: Request) -> Response:
    request.app.state.manager.cancel(request.path_params["run_id"])
    return RedirectResponse(f"/runs/{request.path_params['run_id']}", status_code=303)


async def rerun_from_page(request: Request) -> Response:
    """Run again (same inputs and mode), or resume a failed run (`/runs/ID/resume`)."""
    run_id = request.path_params["run_id"]
    resume = request.url.path.endswith("/resume")
    try:
        new_id = await _rerun(request.app.state, run_id, resume=resume)
    except NoSuchRun:
        return not_found_page(f"run {run_id}")
    except OrchestrateError as exc:
        return page("error.html", 400, error=exc, api=None)
    return RedirectResponse(f"/runs/{new_id}", status_code=303)


async def _rerun(state: Any, run_id: str, *, resume: bool) -> str:
    run_id = _resolve(state.store, run_id)
    row = state.store.run_row(run_id)
    path = state.catalog.served(row["file_path"])
    if path is None:
        raise UsageError("this run's workflow file is not under the folders this server shows")
    inputs = state.store.document(run_id)["inputs"]
    return await start_run(
        state, path, inputs, mock=row["mode"] == "mock", resume=run_id if resume else None
    )


# --- the API ---------------------------------------------------------------------------------


def _not_a_run(batch_id: str) -> JSONResponse:
    """A batch's id where a run's is wanted: say where the batch is."""
    return api_error(
        404, "not_found", f"{batch_id} is a batch, not a run: see /api/batches/{batch_id}"
    )


KINDS = ("run", "batch")


async def runs_api(request: Request) -> Response:
    query = request.query_params
    try:
        limit = int(query.get("limit", PAGE_SIZE))
    except ValueError:
        return api_error(400, "invalid_input", "limit must be a whole number")
    kind = query.get("kind") or None
    if kind not in (None, *KINDS):
        return api_error(400, "invalid_input", "kind must be run or batch")
    return JSONResponse(
        history_data(
            request.app.state,
            workflow=query.get("workflow"),
            status=query.get("status"),
            user=query.get("user"),
            before=query.get("before"),
            limit=max(1, min(limit, 1000)),
            kind=kind,
        )
    )


async def start_run_api(request: Request) -> Response:
    """`{"workflow": path, "inputs": {...}, "mock": bool, "model", "concurrency", "resume"}`
    -> `{"run_id"}`."""
    try:
        body = await request.json()
    except ValueError:
        return api_error(400, "invalid_input", "the body must be a JSON object")
    if not isinstance(body, dict) or not isinstance(body.get("workflow"), str):
        return api_error(400, "invalid_input", "give the workflow's path as `workflow`")
    inputs = body.get("inputs") or {}
    if not isinstance(inputs, dict):
        return api_error(400, "invalid_input", "`inputs` must be an object")
    try:
        run_id = await start_run(
            request.app.state,
            body["workflow"],
            inputs,
            mock=body.get("mock") is True,
            model=body.get("model") or None,
            concurrency=_concurrency(body),
            resume=body.get("resume") or None,
        )
    except NotServed:
        return api_error(404, "not_found", "no such workflow")
    except OrchestrateError as exc:
        return JSONResponse(error_data(exc), status_code=400)
    return JSONResponse({"run_id": run_id}, status_code=201)


def _concurrency(body: Mapping[str, Any]) -> int:
    value = body.get("concurrency", 8)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError("`concurrency` must be a whole number")
    return value


async def run_api(request: Request) -> Response:
    try:
        return JSONResponse(run_data(request.app.state, request.path_params["run_id"])["run"])
    except IsABatch as exc:
        return _not_a_run(str(exc))
    except NoSuchRun:
        return api_error(404, "not_found", "no such run")


async def compare_api(request: Request) -> Response:
    query = request.query_params
    try:
        return JSONResponse(compare_data(request.app.state, query.get("a", ""), query.get("b", "")))
    except NoSuchRun:
        return api_error(404, "not_found", "no such run")


async def cancel_api(request: Request) -> Response:
    if not request.app.state.manager.cancel(request.path_params["run_id"]):
        return api_error(409, "not_running", "this server runs no such run now")
    return JSONResponse({"cancelled": True}, status_code=202)


async def events_api(request: Request) -> Response:
    """The run's `--events` records as Server-Sent Events, until it ends."""
    state = request.app.state
    run_id = request.path_params["run_id"]
    live = state.manager.live.get(run_id)
    if live is not None:
        batches = live.feed.follow()
    else:
        try:
            run_id = _resolve(state.store, run_id)
        except NoSuchRun:
            return api_error(404, "not_found", "no such run")
        if state.store.batch(run_id) is not None:
            return _not_a_run(run_id)
        batches = poll_history(lambda: state.store.document(run_id))
    return StreamingResponse(
        _sse(batches, state.closing),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


async def _sse(batches: AsyncIterator[list[Record]], closing: asyncio.Event) -> AsyncIterator[str]:
    """The batches as SSE text; the stream ends with the run, or when the server stops."""
    iterator = aiter(batches)
    stop = asyncio.ensure_future(closing.wait())
    try:
        while True:
            following = asyncio.ensure_future(anext(iterator))
            await asyncio.wait([following, stop], return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                return
            try:
                batch = following.result()
            except StopAsyncIteration:
                return
            yield "".join(sse_message(record) for record in batch)
    finally:
        stop.cancel()
        await batches.aclose()  # type: ignore[attr-defined]
