"""Moving runs between histories: `orchestrate history export FILE` and `import FILE`.

The file is JSON Lines, written and read one run at a time (a history of any size fits):

    {"format": "orchestrate-history", "version": 1, "migrations": [...], "exported_at": ...}
    {"batch": {column: value, ...}}
    ...
    {"run": {column: value, ...}, "steps": [{column: value, ...}, ...]}
    ...

A run travels as its rows, every column as stored, so nothing is lost between SQLite and
PostgreSQL (both keep the same columns, :mod:`._schema`); a batch travels as its row, its
rows' runs as runs. Importing keys on the run (and batch) id: one already in the history
is left as it is, so importing a file twice adds nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

import attrs

from orchestrate._errors import UsageError
from orchestrate.history._schema import pending

if TYPE_CHECKING:
    from orchestrate.history._store import HistoryStore

FORMAT = "orchestrate-history"
VERSION = 1


@attrs.frozen
class Imported:
    """What `history import` did."""

    added: int
    present: int  # runs the history had already
    batches: int = 0  # batches added


@attrs.frozen
class Exported:
    """What `history export` wrote."""

    runs: int
    batches: int


def export_history(store: HistoryStore, out: IO[str]) -> Exported:
    """Write every batch and run of `store` to `out`."""
    header = {
        "format": FORMAT,
        "version": VERSION,
        "migrations": store.applied_migrations(),
        "source": store.location,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out.write(_line(header))
    batches = runs = 0
    for batch in store.export_batches():
        out.write(_line({"batch": batch}))
        batches += 1
    for run, steps in store.export_runs():
        out.write(_line({"run": run, "steps": steps}))
        runs += 1
    return Exported(runs, batches)


def import_history(store: HistoryStore, lines: Iterable[str], source: str) -> Imported:
    """Add the runs of an export to `store`, each in its own transaction; a run whose id is
    there already is skipped. UsageError, naming the line, for a file that is not one."""
    added = present = batches = 0
    numbered = enumerate(lines, start=1)
    header = next(((number, line) for number, line in numbered if line.strip()), None)
    if header is None:
        raise UsageError(f"{source} is empty", hint="make one with `orchestrate history export`")
    _check_header(_record(source, *header), source)
    for number, line in numbered:
        if not line.strip():
            continue
        record = _record(source, number, line)
        if "batch" in record:
            batch = record["batch"]
            if not isinstance(batch, dict) or not isinstance(batch.get("batch_id"), str):
                raise UsageError(
                    f"{source}:{number}: expected a batch",
                    hint='a batch\'s line is {"batch": {"batch_id": ...}}',
                )
            batches += store.import_batch(batch)
            continue
        run, steps = record.get("run"), record.get("steps", [])
        if (
            not isinstance(run, dict)
            or not isinstance(run.get("run_id"), str)
            or not (isinstance(steps, list) and all(isinstance(step, dict) for step in steps))
        ):
            raise UsageError(
                f"{source}:{number}: expected a run and its steps",
                hint='each line after the first is {"run": {...}, "steps": [...]}',
            )
        if store.import_run(run, [step | {"run_id": run["run_id"]} for step in steps]):
            added += 1
        else:
            present += 1
    return Imported(added, present, batches)


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def _record(source: str, number: int, line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise UsageError(
            f"{source}:{number}: not JSON ({exc.args[0]})",
            hint="the file should be what `orchestrate history export` wrote",
        ) from None
    if not isinstance(record, dict):
        raise UsageError(f"{source}:{number}: expected a JSON object")
    return record


def _check_header(header: dict[str, Any], source: str) -> None:
    if header.get("format") != FORMAT:
        raise UsageError(
            f"{source} is not an orchestrate history export",
            hint="make one with `orchestrate history export FILE`",
        )
    if header.get("version") != VERSION:
        raise UsageError(
            f"{source} is an export of version {header.get('version')!r}; this "
            f"orchestrate reads version {VERSION}",
            hint="upgrade orchestrate",
        )
    migrations = header.get("migrations")
    if not isinstance(migrations, list):
        raise UsageError(f"{source}:1: the header has no list of migrations")
    pending([str(name) for name in migrations], source)  # a newer schema: a clear error
