"""Reading recorded runs back: `runs show` and `runs diff`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrate.history._store import HistoryStore


def request_text(request: dict[str, Any] | None) -> str:
    """A rendered request as readable lines, for a unified diff."""
    if request is None:
        return ""
    if "items" in request and isinstance(request["items"], list):
        return "".join(f"### item {i}\n{request_text(item)}"
                       for i, item in enumerate(request["items"]))
    lines = []
    for key in sorted(request):
        if key == "messages" or request[key] is None:
            continue
        lines.append(f"{key}: {json.dumps(request[key], ensure_ascii=False, sort_keys=True)}\n")
    for message in request.get("messages") or []:
        lines.append(f"[{message.get('role')}]\n")
        content = str(message.get("content", ""))
        lines.append(content if content.endswith("\n") else content + "\n")
    return "".join(lines)


def output_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    return text if text.endswith("\n") else text + "\n"


def _unified(a: str, b: str, label_a: str, label_b: str) -> str:
    import difflib

    return "".join(difflib.unified_diff(a.splitlines(keepends=True),
                                        b.splitlines(keepends=True), label_a, label_b))


def _side(step: dict[str, Any] | None) -> dict[str, Any] | None:
    if step is None:
        return None
    return {key: step.get(key) for key in ("status", "model", "duration_ms", "usage",
                                           "cost_usd", "attempts")} | {
        "cached": bool(step.get("cached")), "reused": bool(step.get("reused"))}


def _delta(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    """b's cost minus a's (a missing step costs 0); None when either cost is unknown."""
    costs = [0.0 if doc is None or doc.get("usage") is None else doc.get("cost_usd")
             for doc in (a, b)]
    if costs[0] is None or costs[1] is None:
        return None
    return costs[1] - costs[0]


def diff_runs(store: HistoryStore, run_a: str, run_b: str) -> dict[str, Any]:
    """Per step: what changed in the rendered request and in the output, side by side."""
    docs = [store.document(run_a), store.document(run_b)]
    requests = [{stored.result.id: stored.result.request for stored in store.stored_steps(run)}
                for run in (run_a, run_b)]
    steps = [{s["id"]: s for s in doc["steps"]} for doc in docs]
    order = [s["id"] for s in docs[0]["steps"]]
    order += [s["id"] for s in docs[1]["steps"] if s["id"] not in steps[0]]
    entries = []
    for step_id in order:
        a, b = steps[0].get(step_id), steps[1].get(step_id)
        request_diff = _unified(request_text(requests[0].get(step_id)),
                                request_text(requests[1].get(step_id)),
                                f"{run_a}/{step_id}/request", f"{run_b}/{step_id}/request")
        output_diff = _unified(output_text(a["output"]) if a else "",
                               output_text(b["output"]) if b else "",
                               f"{run_a}/{step_id}/output", f"{run_b}/{step_id}/output")
        entries.append({"id": step_id, "a": _side(a), "b": _side(b),
                        "cost_usd_delta": _delta(a, b),
                        "request_changed": bool(request_diff),
                        "output_changed": bool(output_diff),
                        "request_diff": request_diff, "output_diff": output_diff})
    summary_keys = ("run_id", "workflow", "status", "started_at", "duration_ms", "usage",
                    "cost_usd")
    return {
        "a": {key: docs[0].get(key) for key in summary_keys},
        "b": {key: docs[1].get(key) for key in summary_keys},
        "cost_usd_delta": _delta(docs[0], docs[1]),
        "inputs_diff": _unified(output_text(docs[0]["inputs"]), output_text(docs[1]["inputs"]),
                                f"{run_a}/inputs", f"{run_b}/inputs"),
        "outputs_diff": _unified(output_text(docs[0]["outputs"]),
                                 output_text(docs[1]["outputs"]),
                                 f"{run_a}/outputs", f"{run_b}/outputs"),
        "steps": entries,
    }


def run_details(store: HistoryStore, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's result document, and what `runs show` adds: provenance, mode, who and where."""
    row = store.run_row(run_id)
    details = {key: row[key] for key in ("file_path", "file_sha256", "git_commit", "mode",
                                         "finished_at", "user_name", "host_name")}
    return store.document(run_id), details
