"""The batches pages: the list of batches, and one batch (its summary, check pass rates and
rows, the failed ones first), with their JSON twins.

A batch is read from the history as `runs show BATCH_ID --json` reads it
(:func:`~orchestrate.history.batch_details`); its rows link to their runs' pages.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from orchestrate._errors import UsageError
from orchestrate.ui._history import history_data
from orchestrate.ui._render import api_error, not_found_page, page

ROWS_SHOWN = 500  # rows on a batch's page: the failed ones first, then the others


class NoSuchBatch(LookupError):
    pass


class NotABatch(LookupError):
    """The id is a run's: its page is the run page."""


def batch_data(state: Any, batch_id: str, *, limit: int = ROWS_SHOWN) -> dict[str, Any]:
    """`runs show BATCH_ID --json` (the summary with `failed_rows`) and `rows_shown`: the
    first `limit` rows, those that did not succeed first, each as `failed_rows` lists it
    with its run's `cost_usd` (None while unknown)."""
    from orchestrate.history import batch_details, row_entry

    store = state.store
    try:
        batch_id = str(store.resolve(batch_id))
    except UsageError:
        raise NoSuchBatch(batch_id) from None
    document = batch_details(store, batch_id, limit=limit)
    if document is None:
        raise NotABatch(batch_id)
    rows = list(document["failed_rows"])
    if len(rows) < limit:
        succeeded = (row for row in store.batch_rows(batch_id) if row.status == "succeeded")
        for row in succeeded:
            if len(rows) >= limit:
                break
            rows.append(row_entry(row))
    for row in rows:  # the same dicts as failed_rows': those get their cost too
        row["cost_usd"] = store.run_row(row["run_id"])["cost_usd"] if row["run_id"] else None
    document["rows_shown"] = rows
    return document


# --- pages -------------------------------------------------------------------------------------


async def batches_page(request: Request) -> Response:
    """The batches, newest first: the history's entries of kind batch."""
    query = request.query_params
    data = history_data(
        request.app.state,
        workflow=query.get("workflow"),
        status=query.get("status"),
        before=query.get("before"),
        kind="batch",
    )
    return page("batches.html", **data, api="/api/runs?kind=batch")


async def batch_page(request: Request) -> Response:
    batch_id = request.path_params["batch_id"]
    try:
        data = batch_data(request.app.state, batch_id)
    except NoSuchBatch:
        return not_found_page(f"batch {batch_id}")
    except NotABatch as exc:
        return RedirectResponse(f"/runs/{exc}", status_code=303)
    return page("batch.html", batch=data, limit=ROWS_SHOWN, api=f"/api/batches/{data['batch_id']}")


async def batch_api(request: Request) -> Response:
    try:
        return JSONResponse(batch_data(request.app.state, request.path_params["batch_id"]))
    except (NoSuchBatch, NotABatch):
        return api_error(404, "not_found", "no such batch")
