"""The run history: recording runs, reusing them, caching answers, reading them back.

    _session        HistorySession, HistoryOptions: what one `orchestrate run` gets
    ├── _recorder   Recorder: the engine observer that writes a run as it goes
    ├── _reuse      ReusePlan, plan_reuse(): --resume, --from, --only
    ├── _recording  cache / record / replay providers for the ProviderPool
    └── _provenance files, git commit, versions, step definitions
    _batches        BatchSession: what one `orchestrate batch` gets; batch_details()
    _diff           run_details(), diff_runs(): `runs show` and `runs diff`
    _open           open_store(): where the history is, and which backend opens it
    └── _sqlite     SQLiteStore: the schema, migrations and writer thread for SQLite
        └── _store  HistoryStore (the interface), the records, results <-> rows

Data flows one way: the API and the CLI call the session and the readers, which use a
HistoryStore; only :mod:`._sqlite` imports :mod:`sqlite3`, and only when a store is opened.
"""

from __future__ import annotations

from orchestrate.history._batches import batch_details
from orchestrate.history._diff import diff_runs, run_details
from orchestrate.history._open import database_path, home, open_store
from orchestrate.history._provenance import definition_hash, git_commit
from orchestrate.history._reuse import ReusePlan, mode_family, resumed_inputs, steps_to_rerun
from orchestrate.history._session import HistoryOptions, HistorySession, RecordingFailed
from orchestrate.history._store import (
    CachedResponse,
    HistoryStore,
    RunRecord,
    StepRecord,
    StoredStep,
    delete_runs,
    parse_age,
    resolve_run,
)

__all__ = [
    "CachedResponse",
    "HistoryOptions",
    "HistorySession",
    "HistoryStore",
    "RecordingFailed",
    "ReusePlan",
    "RunRecord",
    "StepRecord",
    "StoredStep",
    "batch_details",
    "database_path",
    "definition_hash",
    "delete_runs",
    "diff_runs",
    "git_commit",
    "home",
    "mode_family",
    "open_store",
    "parse_age",
    "resolve_run",
    "resumed_inputs",
    "run_details",
    "steps_to_rerun",
]
