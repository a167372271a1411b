"""Where the history is, and opening it: the one place that picks a backend."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrate.history._store import HistoryStore

DB_NAME = "history.db"


def home(env: Mapping[str, str] = os.environ) -> Path:
    """`$ORCHESTRATE_HOME`, else the user data dir (e.g. ~/.local/share/orchestrate)."""
    configured = env.get("ORCHESTRATE_HOME")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("orchestrate", appauthor=False))


def database_path(env: Mapping[str, str] = os.environ) -> Path:
    return home(env) / DB_NAME


def open_store(env: Mapping[str, str] = os.environ, path: Path | None = None, *,
               secrets: Sequence[str] = ()) -> HistoryStore:
    """The history database (created or migrated); `secrets` never reach it.

    The backend is imported here, so only the commands that use the history pay for it.
    """
    from orchestrate.history._sqlite import SQLiteStore

    return SQLiteStore.open(path or database_path(env), secrets=secrets)
