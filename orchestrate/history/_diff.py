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
        return "".join(
            f"### item {i}\n{request_text(item)}" for i, item in enumerate(request["items"])
        )
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

    return "".join(
        difflib.unified_diff(
            a.splitlines(keepends=True), b.splitlines(keepends=True), label_a, label_b
        )
    )


def _side(step: dict[str, Any] | None) -> dict[str, Any] | None:
    if step is None:
        return None
    return {
        key: step.get(key)
        for key in ("status", "model", "duration_ms", "usage", "cost_usd", "attempts")
    } | {"cached": bool(step.get("cached")), "reused": bool(step.get("reused"))}


def _delta(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    """b's cost minus a's (a missing step costs 0); None when either cost is unknown."""
    costs = [
        0.0 if doc is None or doc.get("usage") is None else doc.get("cost_usd") for doc in (a, b)
    ]
    if costs[0] is None or costs[1] is None:
        return None
    return costs[1] - costs[0]


def diff_runs(store: HistoryStore, run_a: str, run_b: str) -> dict[str, Any]:
    """Per step: what changed in the rendered request and in the output, side by side."""
    docs = [store.document(run_a), store.document(run_b)]
    requests = [
        {stored.result.id: stored.result.request for stored in store.stored_steps(run)}
        for run in (run_a, run_b)
    ]
    steps = [{s["id"]: s for s in doc["steps"]} for doc in docs]
    order = [s["id"] for s in docs[0]["steps"]]
    order += [s["id"] for s in docs[1]["steps"] if s["id"] not in steps[0]]
    entries = []
    for step_id in order:
        a, b = steps[0].get(step_id), steps[1].get(step_id)
        request_diff = _unified(
            request_text(requests[0].get(step_id)),
            request_text(requests[1].get(step_id)),
            f"{run_a}/{step_id}/request",
            f"{run_b}/{step_id}/request",
        )
        output_diff = _unified(
            output_text(a["output"]) if a else "",
            output_text(b["output"]) if b else "",
            f"{run_a}/{step_id}/output",
            f"{run_b}/{step_id}/output",
        )
        entries.append(
            {
                "id": step_id,
                "a": _side(a),
                "b": _side(b),
                "cost_usd_delta": _delta(a, b),
                "request_changed": bool(request_diff),
                "output_changed": bool(output_diff),
                "request_diff": request_diff,
                "output_diff": output_diff,
            }
        )
    summary_keys = (
        "run_id",
        "workflow",
        "status",
        "started_at",
        "duration_ms",
        "usage",
        "cost_usd",
    )
    return {
        "a": {key: docs[0].get(key) for key in summary_keys},
        "b": {key: docs[1].get(key) for key in summary_keys},
        "cost_usd_delta": _delta(docs[0], docs[1]),
        "inputs_diff": _unified(
            output_text(docs[0]["inputs"]),
            output_text(docs[1]["inputs"]),
            f"{run_a}/inputs",
            f"{run_b}/inputs",
        ),
        "outputs_diff": _unified(
            output_text(docs[0]["outputs"]),
            output_text(docs[1]["outputs"]),
            f"{run_a}/outputs",
            f"{run_b}/outputs",
        ),
        "steps": entries,
    }


def _verdicts(
    store: HistoryStore, batch_id: str, check_ids: list[str]
) -> dict[int, tuple[int | None, dict[str, dict[str, Any]]]]:
    """Row -> (its line, check id -> verdict); a row that did not succeed fails every
    check, with its error as the message."""
    rows = {}
    for row in store.batch_rows(batch_id):
        if row.status == "succeeded":
            verdicts = {c["id"]: c for c in row.checks}
        else:
            message = f"the run {row.status}: {row.error_message or ''}".rstrip(": ")
            verdicts = {
                check_id: {"id": check_id, "passed": False, "message": message}
                for check_id in check_ids
            }
        rows[row.row] = (row.line, verdicts)
    return rows


def diff_batches(store: HistoryStore, batch_a: str, batch_b: str) -> dict[str, Any]:
    """Two batches of the same dataset: each check's pass rate before and after, and the
    rows whose verdict changed (pass -> fail first, then fail -> pass)."""
    summaries = []
    for batch_id in (batch_a, batch_b):
        row = store.batch(batch_id)
        assert row is not None, "the caller checked that both are batches"
        summaries.append(
            json.loads(row["summary"])
            if row["summary"]
            else {
                "batch_id": batch_id,
                "workflow": row["workflow"],
                "status": row["status"],
                "checks": {},
            }
        )
    names = list(summaries[0].get("checks") or {})
    names += [n for n in summaries[1].get("checks") or {} if n not in names]
    checks = {}
    for name in names:
        rates = [(doc.get("checks") or {}).get(name, {}).get("pass_rate") for doc in summaries]
        delta = None if None in rates else round(rates[1] - rates[0], 4)
        checks[name] = {"a": rates[0], "b": rates[1], "delta": delta}
    rows_a, rows_b = (_verdicts(store, batch_id, names) for batch_id in (batch_a, batch_b))
    changed = []
    for index in sorted(rows_a.keys() & rows_b.keys()):
        (_, before), (line, after) = rows_a[index], rows_b[index]
        for name in names:
            was, now = before.get(name), after.get(name)
            if was is None or now is None or was["passed"] == now["passed"]:
                continue
            changed.append(
                {
                    "row": index,
                    "line": line,
                    "check": name,
                    "a": was["passed"],
                    "b": now["passed"],
                    "message": now.get("message") if not now["passed"] else was.get("message"),
                }
            )
    changed.sort(key=lambda c: (c["b"], c["row"]))  # pass -> fail first
    keys = ("batch_id", "workflow", "status", "started_at", "rows", "pass_rate", "cost_usd")
    return {
        "kind": "batch",
        "a": {k: summaries[0].get(k) for k in keys},
        "b": {k: summaries[1].get(k) for k in keys},
        "pass_rate": {"a": summaries[0].get("pass_rate"), "b": summaries[1].get("pass_rate")},
        "checks": checks,
        "changed_rows": changed,
    }


def run_details(store: HistoryStore, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's result document, and what `runs show` adds: provenance, mode, who and where."""
    row = store.run_row(run_id)
    details = {
        key: row[key]
        for key in (
            "file_path",
            "file_sha256",
            "git_commit",
            "mode",
            "finished_at",
            "user_name",
            "host_name",
        )
    }
    return store.document(run_id), details
