"""The workflows pages: the list, one workflow (graph, source, input form), starting a run.

Each page's data comes from one function (`workflows_data`, `workflow_data`) that its
JSON twin under /api returns as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from orchestrate._errors import InputError, OrchestrateError, UsageError
from orchestrate._spec import NO_DEFAULT, InputSpec, Workflow
from orchestrate.ui._files import NotServed
from orchestrate.ui._render import api_error, not_found_page, page

MAX_CONCURRENCY = 1000


# --- data ------------------------------------------------------------------------------------


def workflows_data(state: Any) -> dict[str, Any]:
    """Every workflow under the PATHs: what it is, whether it is valid, how it last ran."""
    rows = []
    for file in state.catalog.files():
        report = state.catalog.report(file)
        workflow = report.workflow
        errors = sum(d.severity == "error" for d in report.diagnostics)
        rows.append(
            {
                "path": state.catalog.name(file),
                "name": workflow.name if workflow else file.stem,
                "description": workflow.description if workflow else None,
                "steps": len(workflow.steps) if workflow else None,
                "valid": report.valid,
                "errors": errors,
                "last_run": _last_run(state.store, str(file)),
            }
        )
    return {"workflows": rows}


def _last_run(store: Any, file_path: str) -> dict[str, Any] | None:
    run_id = store.latest_run(file_path)
    if run_id is None:
        return None
    row = store.run_row(run_id)
    return {key: row[key] for key in ("run_id", "status", "started_at")}


def workflow_data(state: Any, name: str) -> dict[str, Any]:
    """One workflow: source, diagnostics, graph (data and picture), inputs, recent runs."""
    file = state.catalog.find(name)
    report = state.catalog.report(file)
    workflow = report.workflow
    try:
        source = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        source = f"(cannot read the file: {exc})"
    data: dict[str, Any] = {
        "path": name,
        "name": workflow.name if workflow else file.stem,
        "description": workflow.description if workflow else None,
        "valid": report.valid,
        "diagnostics": [d.to_dict() for d in report.diagnostics],
        "source": source,
        "inputs": [],
        "graph": None,
        "svg": None,
        "recent_runs": [],
    }
    if workflow is not None:
        data["inputs"] = [_input_field(n, spec) for n, spec in workflow.inputs.items()]
        data["recent_runs"] = state.store.list_runs(limit=5, workflow=workflow.name)
        if report.valid:
            data["graph"], data["svg"] = graph_of(workflow)
    return data


def graph_of(
    workflow: Workflow, statuses: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], str]:
    """The graph as data (`graph --json`) and as a picture (`graph --format svg`)."""
    from orchestrate._graphs import graph_dict
    from orchestrate._plan import build_plan
    from orchestrate._svg import graph_svg

    plan = build_plan(workflow)
    return graph_dict(workflow, plan), graph_svg(workflow, plan, statuses=dict(statuses or {}))


def _input_field(name: str, spec: InputSpec) -> dict[str, Any]:
    default = None if spec.default is NO_DEFAULT else spec.default
    return {
        "name": name,
        "type": spec.type,
        "description": spec.description,
        "required": spec.required,
        "default": default,
        "enum": None if spec.enum is None else list(spec.enum),
    }


# --- the inputs of a form --------------------------------------------------------------------


def form_inputs(specs: Mapping[str, InputSpec], form: Mapping[str, str]) -> dict[str, Any]:
    """The typed inputs of the run form (`input.NAME` fields); an empty field of an input
    with a default leaves the default. InputError names the field that is wrong."""
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        if spec.type == "boolean" and spec.enum is None:  # a checkbox: absent is false
            values[name] = f"input.{name}" in form
            continue
        raw = form.get(f"input.{name}", "")
        if raw.strip() == "" and (not spec.required or spec.type != "string"):
            continue
        values[name] = _typed(name, spec.type, raw)
    return values


def _typed(name: str, type_name: str, raw: str) -> Any:
    if type_name == "string":
        return raw
    try:
        return json.loads(raw)  # its type is checked with the others by resolve_inputs
    except ValueError:
        raise InputError(
            f"input {name!r} must be {_described(type_name)}, got {raw!r}",
            hint="arrays and objects are written in JSON",
        ) from None


def _described(type_name: str) -> str:
    return {
        "integer": "a whole number",
        "number": "a number",
        "array": "a JSON array",
        "object": "a JSON object",
    }.get(type_name, type_name)


# --- starting a run ---------------------------------------------------------------------------


async def start_run(
    state: Any,
    name: str,
    inputs: Mapping[str, Any],
    *,
    mock: bool,
    model: str | None = None,
    concurrency: int = 8,
    resume: str | None = None,
) -> str:
    """Prepare and start a run of a served workflow, as `orchestrate run` would."""
    from orchestrate._api import prepare

    file = state.catalog.find(name)
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"concurrency must be between 1 and {MAX_CONCURRENCY}")
    prepared = prepare(file, dict(inputs))
    return await state.manager.start(
        prepared, name, mock=mock, model=model, concurrency=concurrency, resume=resume
    )


def error_data(exc: OrchestrateError) -> dict[str, Any]:
    return {"error": {"type": exc.error_type, "message": exc.message, "hint": exc.hint}}


# --- routes ------------------------------------------------------------------------------------


async def workflows_page(request: Request) -> Response:
    return page("workflows.html", **workflows_data(request.app.state), api="/api/workflows")


async def workflows_api(request: Request) -> Response:
    return JSONResponse(workflows_data(request.app.state))


async def workflow_page(request: Request) -> Response:
    name = request.path_params["path"]
    return _workflow_page(request, name)


def _workflow_page(
    request: Request,
    name: str,
    status_code: int = 200,
    form_error: OrchestrateError | None = None,
    values: Mapping[str, str] | None = None,
) -> Response:
    try:
        data = workflow_data(request.app.state, name)
    except NotServed:
        return not_found_page(f"workflow {name}")
    return page(
        "workflow.html",
        status_code,
        **data,
        form_error=form_error,
        values=values,
        api=f"/api/workflows/{name}",
    )


async def workflow_api(request: Request) -> Response:
    try:
        return JSONResponse(workflow_data(request.app.state, request.path_params["path"]))
    except NotServed:
        return api_error(404, "not_found", "no such workflow")


async def run_from_form(request: Request) -> Response:
    """The workflow page's form: start the run, then show it (or the form and the error)."""
    name = request.path_params["path"]
    fields = await form_fields(request)
    try:
        file = request.app.state.catalog.find(name)
    except NotServed:
        return not_found_page(f"workflow {name}")
    report = request.app.state.catalog.report(file)
    try:
        specs = report.workflow.inputs if report.workflow else {}
        run_id = await start_run(
            request.app.state,
            name,
            form_inputs(specs, fields),
            mock="mock" in fields,
            model=fields.get("model", "").strip() or None,
            concurrency=_int(fields.get("concurrency", ""), 8),
        )
    except OrchestrateError as exc:
        return _workflow_page(request, name, 400, form_error=exc, values=fields)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


async def form_fields(request: Request) -> dict[str, str]:
    """An url-encoded form (the only kind our pages send; no multipart parser needed)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    # Browsers send a text area's line breaks as CRLF, whatever was typed or filled in.
    return {
        key: value.replace("\r\n", "\n") for key, value in parse_qsl(body, keep_blank_values=True)
    }


def _int(text: str, default: int) -> int:
    try:
        return int(text) if text.strip() else default
    except ValueError:
        raise UsageError(f"concurrency must be a whole number, got {text!r}") from None
