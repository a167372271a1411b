"""What the history needs from a database, and the one mapping between results and rows.

    HistoryStore        the interface a backend implements (SQLite today, PostgreSQL next)
    RunRecord           a run as it starts: what the `runs` row holds before the end
    StepRecord          a finished step, with its place in the file and its definition
    run_values() ...    RunRecord, StepRecord, RunResult, CachedResponse -> column values
                        (JSON encoded, known secret values out)
    step_result() ...   row -> StepResult, and the step's entry in the result document

A backend owns its SQL, its schema and its migrations, and nothing else: it turns records
into rows and rows back into results and documents only through the functions here, so a
new field of a step result is added in this module (and a migration) once.

Writes (`insert_*`, `finish_run`, `cancel_run`, `put_response`) are queued and done off
the event loop, in order; :meth:`HistoryStore.close` waits for them and raises StoreError
if one failed. Reads answer at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import attrs

from orchestrate._errors import UsageError
from orchestrate._result import (
    ErrorInfo,
    ItemResult,
    RunResult,
    StepResult,
    Usage,
    iso_time,
    total_cost,
)
from orchestrate._secrets import redact_values

NO_HISTORY_HINT = "run with --no-history to run without it, or point ORCHESTRATE_HOME elsewhere"


@attrs.frozen(kw_only=True)
class Deleted:
    """What `runs delete` or `runs prune` removed."""

    runs: int = 0  # runs on their own (not a batch's rows)
    batches: tuple[str, ...] = ()  # batch ids; their rows' runs went with them
    rows: int = 0  # those rows' runs
    responses: int = 0  # cached responses (prune)


# --- the records a run writes ----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RunRecord:
    """A run as it starts: the `runs` row before its end is known."""

    run_id: str
    workflow: str
    file: str | None  # as given on the command line
    file_path: str | None  # the same, absolute
    file_sha256: str | None
    git_commit: str | None
    mode: str  # live | mock | replay
    started_at: str
    started: float  # Unix seconds
    inputs: dict[str, Any]
    resumed_from: str | None
    provenance: dict[str, Any]
    user_name: str | None = None  # who ran it: $ORCHESTRATE_USER, else the login name
    host_name: str | None = None
    batch_id: str | None = None  # the batch this run is a row of
    batch_row: int | None = None  # the row's index in the dataset, from 0
    batch_line: int | None = None  # the row's line in the data file, from 1


@attrs.frozen(kw_only=True)
class BatchRecord:
    """A batch as it starts: the `batches` row before its end is known."""

    batch_id: str
    workflow: str
    file: str | None  # as given on the command line
    file_path: str | None  # the same, absolute
    file_sha256: str | None
    data: str | None  # the data file as given (`-` for stdin, None from Python)
    data_path: str | None  # the same, absolute
    mode: str  # live | mock | replay
    started_at: str
    started: float  # Unix seconds
    rows: int  # how many rows the batch runs (after --limit)
    settings: dict[str, Any]  # --map, shared inputs, --model, --concurrency, --limit
    resumed_from: str | None
    user_name: str | None = None  # who ran it, as for a run
    host_name: str | None = None


@attrs.frozen(kw_only=True)
class BatchRow:
    """A row's latest run in a batch (or in the batch it resumed, and so on)."""

    row: int
    line: int | None
    run_id: str
    status: str
    error_type: str | None
    error_message: str | None
    checks: list[dict[str, Any]] = attrs.field(factory=list)  # its checks' results (SPEC 9)


@attrs.frozen(kw_only=True)
class StepRecord:
    """A finished step, where it stands in the file, and what its definition was."""

    result: StepResult
    position: int  # in the file, from 0; -1 for a step the file does not name
    kind: str  # llm | function | workflow
    definition: str | None  # see definition_hash
    finished: float  # Unix seconds


@attrs.frozen(kw_only=True)
class StoredStep:
    """A step of a recorded run, as `--resume` needs it back."""

    result: StepResult
    definition: str | None


@attrs.frozen(kw_only=True)
class CachedResponse:
    """An entry of the response cache (`run --cache`)."""

    key: str
    endpoint: str
    model: str | None
    request: dict[str, Any]
    response: dict[str, Any]
    created: float  # Unix seconds


class HistoryStore(Protocol):
    """The run history: one backend per kind of database."""

    location: str  # where it is, for messages (a path, or a URL without its password)

    # Queued writes, in order, off the event loop.
    def insert_run(self, make: Callable[[], RunRecord]) -> None:
        """Record a run as started (`running`); `make` is called off the loop (it hashes
        files)."""

    def insert_steps(self, run_id: str, make: Callable[[], Sequence[StepRecord]]) -> None:
        """Record finished steps (again: the later row wins); `make` is called off the loop."""

    def finish_run(self, result: RunResult, finished: float) -> None:
        """Record how the run ended."""

    def cancel_run(self, run_id: str) -> None:
        """Record a run that never finished (Ctrl-C) as cancelled, if still running."""

    def put_response(self, response: CachedResponse) -> None:
        """Keep a model's answer in the response cache."""

    def insert_batch(self, batch: BatchRecord) -> None:
        """Record a batch as started (`running`); its rows are runs with its batch_id."""

    def finish_batch(self, batch_id: str, summary: Mapping[str, Any], finished: float) -> None:
        """Record how the batch ended: `summary` is the batch's summary document."""

    # Reads.
    def get_response(self, key: str) -> dict[str, Any] | None:
        """A cached answer (`text`, `usage`, `model`, ...), or None."""

    def list_runs(
        self,
        *,
        limit: int | None = 20,
        workflow: str | None = None,
        status: str | None = None,
        user: str | None = None,
        before: str | None = None,
        kind: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs newest first, as `runs list --json` prints them; `user`: run by them;
        `before` (a run id) gives the runs that come after that one in this order (the
        next page); `kind` (run or batch) only those entries."""

    def resolve(self, prefix: str) -> str:
        """The one run id starting with `prefix`; UsageError naming the candidates."""

    def run_row(self, run_id: str) -> Mapping[str, Any]:
        """A run's columns (provenance, mode, ...); UsageError if there is no such run."""

    def document(self, run_id: str) -> dict[str, Any]:
        """The run's result document, exactly as `run --json` printed it."""

    def stored_steps(self, run_id: str) -> list[StoredStep]:
        """A run's steps, in file order."""

    def latest_run(self, file_path: str, modes: Iterable[str] | None = None) -> str | None:
        """The newest run of the file, of one of `modes` if given."""

    def batch(self, batch_id: str) -> Mapping[str, Any] | None:
        """A batch's columns (`settings` and `summary` as JSON text), or None: `resolve`
        gives run and batch ids alike, and this tells which one it is."""

    def batch_rows(
        self, batch_id: str, *, failed_only: bool = False, limit: int | None = None
    ) -> Iterator[BatchRow]:
        """Each row's latest run, in row order, streamed: a row the batch did not run
        again (`--resume`) is found in the batch it resumed, and so on back."""

    # Moving runs between histories (see _transfer).
    def applied_migrations(self) -> list[str]:
        """The names of the schema's migrations applied to this database."""

    def export_runs(self) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Every run's row with its steps' rows, read a page at a time."""

    def import_run(self, run: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> bool:
        """Add an exported run unless its id is here already; whether it was added."""

    def export_batches(self) -> Iterator[dict[str, Any]]:
        """Every batch's row (its rows are runs, exported with them)."""

    def import_batch(self, batch: Mapping[str, Any]) -> bool:
        """Add an exported batch unless its id is here already; whether it was added."""

    # Deleting, and the end.
    def delete(self, run_ids: list[str]) -> Deleted:
        """Delete runs with their steps (a batch id: the batch and its rows' runs)."""

    def prune(self, before: float) -> Deleted:
        """Delete what started before `before` (Unix seconds) and is not running: runs,
        batches with all their rows' runs (by the batch's start), and cached responses."""

    def close(self) -> None:
        """Finish the queued writes and close; StoreError if a write failed."""

    def __enter__(self) -> HistoryStore: ...

    def __exit__(self, *exc: object) -> None: ...


# --- results -> rows ----------------------------------------------------------------------------

RUN_START_COLUMNS = (
    "run_id",
    "workflow",
    "file",
    "file_path",
    "file_sha256",
    "git_commit",
    "status",
    "mode",
    "started_at",
    "started",
    "inputs",
    "resumed_from",
    "provenance",
    "user_name",
    "host_name",
    "batch_id",
    "batch_row",
    "batch_line",
)
RUN_END_COLUMNS = (
    "status",
    "finished_at",
    "duration_ms",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "outputs",
    "error_step",
    "error_type",
    "error_message",
    "document",
    "checks",
)
STEP_COLUMNS = (
    "run_id",
    "position",
    "step_id",
    "kind",
    "status",
    "output",
    "error_type",
    "error_message",
    "provider",
    "model",
    "response_id",
    "attempts",
    "duration_ms",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cost_usd",
    "price",
    "cached",
    "reused",
    "fingerprint",
    "definition",
    "request",
    "finished_at",
    "extra",
    "items",
)
RESPONSE_COLUMNS = ("key", "provider", "model", "request", "response", "created")
BATCH_START_COLUMNS = (
    "batch_id",
    "workflow",
    "file",
    "file_path",
    "file_sha256",
    "data",
    "data_path",
    "status",
    "mode",
    "started_at",
    "started",
    "rows",
    "settings",
    "resumed_from",
    "user_name",
    "host_name",
)
BATCH_END_COLUMNS = (
    "status",
    "finished_at",
    "duration_ms",
    "succeeded",
    "failed",
    "cancelled",
    "input_tokens",
    "output_tokens",
    "summary",
)

# The keys of a step's entry in the result document that its columns hold.
_DOCUMENT_COLUMNS = frozenset(
    {
        "id",
        "status",
        "output",
        "error",
        "provider",
        "model",
        "attempts",
        "duration_ms",
        "usage",
        "cost_usd",
        "cached",
        "reused",
    }
)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _scrubbed(secrets: Sequence[str], text: str | None) -> str | None:
    return text if text is None or not secrets else redact_values(text, secrets)


def run_values(run: RunRecord, secrets: Sequence[str]) -> dict[str, Any]:
    """The `runs` row of a run that just started (RUN_START_COLUMNS)."""
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "file": run.file,
        "file_path": run.file_path,
        "file_sha256": run.file_sha256,
        "git_commit": run.git_commit,
        "status": "running",
        "mode": run.mode,
        "started_at": run.started_at,
        "started": run.started,
        "inputs": _scrubbed(secrets, _json(run.inputs)),
        "resumed_from": run.resumed_from,
        "provenance": _json(run.provenance),
        "user_name": run.user_name,
        "host_name": run.host_name,
        "batch_id": run.batch_id,
        "batch_row": run.batch_row,
        "batch_line": run.batch_line,
    }


def batch_values(batch: BatchRecord, secrets: Sequence[str]) -> dict[str, Any]:
    """The `batches` row of a batch that just started (BATCH_START_COLUMNS)."""
    values = attrs.asdict(batch)
    values["status"] = "running"
    values["settings"] = _scrubbed(secrets, _json(batch.settings))
    return values


def batch_end_values(
    summary: Mapping[str, Any], finished: float, secrets: Sequence[str]
) -> dict[str, Any]:
    """What the `batches` row learns when the batch ends (BATCH_END_COLUMNS)."""
    usage = summary.get("usage") or {}
    return {
        "status": summary["status"],
        "finished_at": iso_time(finished),
        "duration_ms": summary["duration_ms"],
        "succeeded": summary["succeeded"],
        "failed": summary["failed"],
        "cancelled": summary["cancelled"],
        "input_tokens": usage.get("input_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0),
        "summary": _scrubbed(secrets, _json(summary)),
    }


def batch_summary(row: Row) -> dict[str, Any]:
    """A batch as `runs list --json` prints it: one entry, `kind` batch."""
    return {
        "run_id": row["batch_id"],
        "workflow": row["workflow"],
        "file": row["file"],
        "status": row["status"],
        "started_at": row["started_at"],
        "duration_ms": row["duration_ms"],
        "usage": {
            "input_tokens": row["input_tokens"] or 0,
            "output_tokens": row["output_tokens"] or 0,
        },
        # the batches table has no cost column: the cost is in the summary document
        "cost_usd": json.loads(row["summary"]).get("cost_usd") if row["summary"] else None,
        "kind": "batch",
        "rows": row["rows"],
        "user": row["user_name"],
    }


def run_end_values(result: RunResult, finished: float, secrets: Sequence[str]) -> dict[str, Any]:
    """What the `runs` row learns when the run ends (RUN_END_COLUMNS)."""
    doc = result.to_dict()
    doc["outputs"] = None  # kept in the `outputs` column
    doc["steps"] = None  # kept in the `steps` table
    usage, error = result.usage, result.error
    return {
        "status": result.status,
        "finished_at": iso_time(finished),
        "duration_ms": result.duration_ms,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cost_usd": result.cost_usd,
        "outputs": _scrubbed(secrets, _json(result.outputs)),
        "error_step": error.step if error else None,
        "error_type": error.type if error else None,
        "error_message": _scrubbed(secrets, error.message) if error else None,
        "document": _scrubbed(secrets, _json(doc)),
        "checks": _scrubbed(secrets, _json(doc["checks"])) if result.checks else None,
    }


def step_values(run_id: str, record: StepRecord, secrets: Sequence[str]) -> dict[str, Any]:
    """A `steps` row (STEP_COLUMNS)."""
    step = record.result
    usage, error = step.usage, step.error
    extra = step_extras(step)
    return {
        "run_id": run_id,
        "position": record.position,
        "step_id": step.id,
        "kind": record.kind,
        "status": step.status,
        "output": None if step.output is None else _scrubbed(secrets, _json(step.output)),
        "error_type": error.type if error else None,
        "error_message": _scrubbed(secrets, error.message) if error else None,
        "provider": step.provider,
        "model": step.model,
        "response_id": step.response_id,
        "attempts": step.attempts,
        "duration_ms": step.duration_ms,
        "input_tokens": usage.input_tokens if usage else None,
        "output_tokens": usage.output_tokens if usage else None,
        "cached_input_tokens": usage.cached_input_tokens if usage else None,
        "cache_write_tokens": usage.cache_write_tokens if usage else None,
        "cost_usd": step.cost_usd,
        "price": None if step.price is None else _json(attrs.asdict(step.price)),
        "cached": int(step.cached),
        "reused": int(step.reused),
        "fingerprint": step.fingerprint,
        "definition": record.definition,
        "request": None if step.request is None else _scrubbed(secrets, _json(step.request)),
        "finished_at": iso_time(record.finished),
        "extra": None if extra is None else _scrubbed(secrets, _json(extra)),
        "items": _scrubbed(secrets, items_value(step)),
    }


def items_value(step: StepResult) -> str | None:
    """The `items` column: a for_each's items that succeeded, as JSON. A step that
    succeeded has their outputs in `output` already, so only the others keep them here."""
    if not step.items:
        return None
    keep_output = step.status != "succeeded"
    return _json(
        [
            {
                "index": item.index,
                "fingerprint": item.fingerprint,
                "attempts": item.attempts,
                "model": item.model,
                "reused": item.reused,
                "usage": item.usage.to_dict() if item.usage else None,
            }
            | ({"output": item.output} if keep_output else {})
            for item in step.items
        ]
    )


def _items(value: str | None, output: Any) -> tuple[ItemResult, ...]:
    """The `items` column back as ItemResults (see items_value)."""
    items = []
    for item in json.loads(value) if value else ():
        usage = item["usage"]
        items.append(
            ItemResult(
                index=item["index"],
                fingerprint=item["fingerprint"],
                attempts=item["attempts"],
                model=item["model"],
                reused=item["reused"],
                usage=Usage(**usage) if usage else None,
                output=item["output"] if "output" in item else output[item["index"]],
            )
        )
    return tuple(items)


def step_extras(step: StepResult) -> dict[str, Any] | None:
    """What a step's entry in the result document has beyond its columns (`warnings`, and
    whatever a later version adds), so that `runs show --json` gives it back exactly."""
    doc = step.to_dict()
    extra = {key: value for key, value in doc.items() if key not in _DOCUMENT_COLUMNS}
    if step.error is not None and step.error.step != step.id:
        extra["error"] = doc["error"]
    return extra or None


def response_values(response: CachedResponse, secrets: Sequence[str]) -> dict[str, Any]:
    """A `responses` row (RESPONSE_COLUMNS). The key was made from the request as sent, so
    an identical request still finds the row whose copy of it is scrubbed."""
    return {
        "key": response.key,
        "provider": response.endpoint,
        "model": response.model,
        "request": _scrubbed(secrets, _json(response.request)),
        "response": _scrubbed(secrets, json.dumps(response.response, ensure_ascii=False)),
        "created": response.created,
    }


# --- rows -> results ----------------------------------------------------------------------------


class Row(Protocol):
    """A database row as a backend reads it: its columns by name (sqlite3.Row, a dict)."""

    def __getitem__(self, column: str, /) -> Any: ...

    def keys(self) -> Iterable[str]: ...


def step_result(row: Row) -> StepResult:
    """A `steps` row as the StepResult it was recorded from."""
    from orchestrate._spec import Price  # here: listing runs does not load the workflow model

    extra = _extra(row)
    error = None
    if row["error_type"] is not None:
        # An error that came from inside a sub-workflow names its own step (see step_extras).
        step = (extra.get("error") or {}).get("step", row["step_id"])
        error = ErrorInfo(row["error_type"], row["error_message"], step=step)
    usage = None
    if row["input_tokens"] is not None:
        usage = Usage(
            row["input_tokens"],
            row["output_tokens"] or 0,
            row["cached_input_tokens"] or 0,
            row["cache_write_tokens"] or 0,
        )
    price = Price(**json.loads(row["price"])) if row["price"] else None
    output = json.loads(row["output"]) if row["output"] is not None else None
    return StepResult(
        id=row["step_id"],
        status=row["status"],
        output=output,
        error=error,
        provider=row["provider"],
        model=row["model"],
        attempts=row["attempts"],
        duration_ms=row["duration_ms"],
        usage=usage,
        cost_usd=row["cost_usd"],
        price=price,
        cached=bool(row["cached"]),
        reused=bool(row["reused"]),
        warnings=tuple(extra.get("warnings", ())),
        request=json.loads(row["request"]) if row["request"] else None,
        fingerprint=row["fingerprint"],
        response_id=row["response_id"],
        items=_items(row["items"], output),
    )


def _extra(row: Row) -> dict[str, Any]:
    return json.loads(row["extra"]) if row["extra"] else {}


def step_document(row: Row) -> dict[str, Any]:
    """A step's entry in the result document, from its row (what a later version added
    included)."""
    return step_result(row).to_dict() | _extra(row)


def run_document(run: Row, steps: Iterable[Row]) -> dict[str, Any]:
    """The run's result document from its row and its steps' rows."""
    entries = [step_document(row) for row in steps]
    if run["document"] is not None:
        doc = json.loads(run["document"])
        doc["outputs"] = json.loads(run["outputs"]) if run["outputs"] else {}
        doc["steps"] = entries
        return doc
    # A run still going, or whose process died: rebuilt from what was written.
    usage = {
        "input_tokens": sum((s["usage"] or {}).get("input_tokens", 0) for s in entries),
        "output_tokens": sum((s["usage"] or {}).get("output_tokens", 0) for s in entries),
    }
    cost = total_cost(s["cost_usd"] for s in entries if s["usage"] is not None)
    doc = {
        "run_id": run["run_id"],
        "workflow": run["workflow"],
        "file": run["file"],
        "status": run["status"],
        "started_at": run["started_at"],
        "duration_ms": run["duration_ms"],
        "inputs": json.loads(run["inputs"]),
        "outputs": json.loads(run["outputs"]) if run["outputs"] else {},
        "steps": entries,
        "usage": usage,
        "cost_usd": cost,
        "error": None,
    }
    if run["resumed_from"]:
        doc["resumed_from"] = run["resumed_from"]
    return doc


def run_summary(row: Row) -> dict[str, Any]:
    """A run as `runs list --json` prints it, from its row with `tokens_in`/`tokens_out`."""
    return {
        "run_id": row["run_id"],
        "workflow": row["workflow"],
        "file": row["file"],
        "status": row["status"],
        "started_at": row["started_at"],
        "duration_ms": row["duration_ms"],
        "usage": {"input_tokens": row["tokens_in"], "output_tokens": row["tokens_out"]},
        "kind": "run",
        "cost_usd": row["cost"],
        "user": row["user_name"],
    }


# --- finding and deleting runs -----------------------------------------------------------------


def resolved(
    prefix: str, matches: Sequence[Row], recent: Callable[[], Sequence[Row]], location: str
) -> str:
    """The one run id of `matches` (at most 11 runs whose id starts with `prefix`), or a
    UsageError naming the candidates (or, when none matches, the `recent` runs)."""
    if len(matches) == 1:
        return str(matches[0]["run_id"])
    if not matches:
        latest = recent()
        hint = "`orchestrate runs list` shows the recorded runs"
        if latest:
            hint = "recent runs:\n" + _candidates(latest)
        raise UsageError(f"no run with id {prefix!r} in {location}", hint=hint)
    more = " (and more)" if len(matches) > 10 else ""
    raise UsageError(
        f"run id {prefix!r} is ambiguous: it matches several runs{more}",
        hint="give more characters; candidates:\n" + _candidates(matches[:10]),
    )


def resolve_run(store: HistoryStore, prefix: str, command: str) -> str:
    """The id of the run `prefix` names for `command`; a UsageError when it names a batch,
    whose id `resolve` also finds (a batch is no run: it has no steps to show or compare)."""
    run_id = store.resolve(prefix)
    if store.batch(run_id) is not None:
        raise UsageError(
            f"{run_id} is a batch, not a run: {command} takes a run id",
            hint="each row of a batch is a run: its `run_id` is in the batch's "
            f"output rows (and `orchestrate runs show {run_id}` lists the "
            "rows that failed)",
        )
    return run_id


def _candidates(rows: Sequence[Row]) -> str:
    return "\n".join(
        f"  {r['run_id']}  {r['workflow']}  {r['started_at']}  {r['status']}" for r in rows
    )


def delete_runs(store: HistoryStore, prefixes: Sequence[str], *, force: bool = False) -> Deleted:
    """`runs delete`: the runs (or batches) named by id or prefix; what was deleted.

    A run still `running` may be going on in another process, whose writes would then
    land on a run that no longer exists: it is a UsageError, unless `force` (the process
    was killed and left the run running). Nothing is deleted when one id fails.
    """
    run_ids = sorted({store.resolve(prefix) for prefix in prefixes})
    running = [run_id for run_id in run_ids if _status(store, run_id) == "running"]
    if running and not force:
        names = ", ".join(running)
        raise UsageError(
            f"run {names} is still running"
            if len(running) == 1
            else f"runs {names} are still running",
            hint="wait for it to finish; if its process is gone (killed), delete it with --force",
        )
    return store.delete(run_ids)


def _status(store: HistoryStore, run_id: str) -> str:
    """The status of a run, or of a batch (whose rows' runs go with it)."""
    batch = store.batch(run_id)
    return str((batch if batch is not None else store.run_row(run_id))["status"])


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_AGE_DAYS = 36500  # 100 years: longer is a typo, or a number too big for a float


def parse_age(text: str) -> float:
    """`30d` -> seconds (`runs prune --older-than`). Units: s, m, h, d, w; at most 100 years."""
    match = _AGE.match(text)
    if match is None:
        raise UsageError(
            f"cannot read the age {text!r}", hint="a number and a unit: 90s, 45m, 12h, 30d or 2w"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not seconds <= _MAX_AGE_DAYS * 86400:  # inf too
        raise UsageError(
            f"the age {text.strip()!r} is over 100 years", hint=f"the longest is {_MAX_AGE_DAYS}d"
        )
    return seconds
