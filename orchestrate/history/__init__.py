"""The run history: recording runs, reusing them, caching answers, reading them back.

    _session        HistorySession, HistoryOptions: what one `orchestrate run` gets
    ├── _recorder   Recorder: the engine observer that writes a run as it goes
    ├── _reuse      ReusePlan, plan_reuse(): --resume, --from, --only
    ├── _recording  cache / record / replay providers for the ProviderPool
    └── _provenance files, git commit, versions, step definitions
    _batches        BatchSession: what one `orchestrate batch` gets; batch_details()
    _diff           run_details(), diff_runs(), diff_batches(): `runs show` and `runs diff`
    _transfer       export_history(), import_history(): `history export` / `import`
    _open           open_store(): where the history is (--db, $ORCHESTRATE_DATABASE_URL,
    │               the home folder), and which backend opens it
    ├── _sqlite     SQLiteStore: a file; PRAGMAs, connections, migrating it
    ├── _postgres   PostgresStore: a shared database; psycopg, advisory lock, errors
    ├── _sql        SQLStore, which both subclass: every query and write, the writer thread
    ├── _schema     the migrations both apply, written once with dialect placeholders
    └── _store      HistoryStore (the interface every module uses), the records,
                    results <-> rows

Data flows one way: the API and the CLI call the session and the readers, which use a
HistoryStore; only :mod:`._sqlite` imports :mod:`sqlite3` and only :mod:`._postgres`
imports psycopg, each only when a store of its kind is opened.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrate.history._batches import batch_details, row_entry
    from orchestrate.history._diff import diff_batches, diff_runs, run_details
    from orchestrate.history._open import database_location, database_path, home, open_store
    from orchestrate.history._provenance import definition_hash, git_commit
    from orchestrate.history._reuse import ReusePlan, mode_family, resumed_inputs, steps_to_rerun
    from orchestrate.history._session import HistoryOptions, HistorySession, RecordingFailed
    from orchestrate.history._store import (
        CachedResponse,
        Deleted,
        HistoryStore,
        RunRecord,
        StepRecord,
        StoredStep,
        delete_runs,
        parse_age,
        resolve_run,
    )
    from orchestrate.history._transfer import Imported, export_history, import_history

# Names are imported on first use, each from its own module: `runs list` needs only
# open_store, not the recorder with asyncio and the loader that `run` and `batch` need.
_HOMES = {
    "_batches": ("batch_details", "row_entry"),
    "_diff": ("diff_batches", "diff_runs", "run_details"),
    "_open": ("database_location", "database_path", "home", "open_store"),
    "_provenance": ("definition_hash", "git_commit"),
    "_reuse": ("ReusePlan", "mode_family", "resumed_inputs", "steps_to_rerun"),
    "_session": ("HistoryOptions", "HistorySession", "RecordingFailed"),
    "_store": (
        "CachedResponse",
        "Deleted",
        "HistoryStore",
        "RunRecord",
        "StepRecord",
        "StoredStep",
        "delete_runs",
        "parse_age",
        "resolve_run",
    ),
    "_transfer": ("Imported", "export_history", "import_history"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "CachedResponse",
    "Deleted",
    "HistoryOptions",
    "HistorySession",
    "HistoryStore",
    "Imported",
    "RecordingFailed",
    "ReusePlan",
    "RunRecord",
    "StepRecord",
    "StoredStep",
    "batch_details",
    "database_location",
    "database_path",
    "definition_hash",
    "delete_runs",
    "diff_batches",
    "diff_runs",
    "export_history",
    "git_commit",
    "home",
    "import_history",
    "mode_family",
    "open_store",
    "parse_age",
    "resolve_run",
    "resumed_inputs",
    "row_entry",
    "run_details",
    "steps_to_rerun",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrate.history' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"orchestrate.history.{module}"), name)
    globals()[name] = value
    return value
