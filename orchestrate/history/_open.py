"""Where the history is, and opening it: the one place that picks a backend."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrate.history._store import HistoryStore

DB_NAME = "history.db"
SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")


def home(env: Mapping[str, str] = os.environ) -> Path:
    """`$ORCHESTRATE_HOME`, else the user data dir (e.g. ~/.local/share/orchestrate)."""
    configured = env.get("ORCHESTRATE_HOME")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("orchestrate", appauthor=False))


def database_path(env: Mapping[str, str] = os.environ) -> Path:
    return home(env) / DB_NAME


def database_location(
    env: Mapping[str, str] = os.environ, given: str | Path | None = None
) -> str | Path:
    """Where the history is: `given` (`--db`), else `$ORCHESTRATE_DATABASE_URL`, else the
    SQLite file in the home folder. A URL stays a string; an SQLite file is a Path."""
    location = given if given is not None else env.get("ORCHESTRATE_DATABASE_URL") or None
    if location is None:
        return database_path(env)
    if isinstance(location, Path):
        return location
    if location.startswith(SQLITE_PREFIX):  # sqlite:///relative, sqlite:////absolute
        return Path(location[len(SQLITE_PREFIX) :]).expanduser()
    scheme = location.partition("://")[0] if "://" in location else None
    if scheme is None:
        return Path(location).expanduser()
    if scheme not in POSTGRES_SCHEMES:
        from orchestrate._errors import UsageError
        from orchestrate._secrets import redact_url

        raise UsageError(
            f"cannot keep the history in {redact_url(location)}: unknown kind "
            f"of database {scheme!r}",
            hint="give a file path, sqlite:///PATH, or postgresql://USER@HOST/DB",
        )
    return location


def open_store(
    env: Mapping[str, str] = os.environ,
    location: str | Path | None = None,
    *,
    secrets: Sequence[str] = (),
) -> HistoryStore:
    """The history database (created or migrated); `secrets` never reach it.

    The backend is imported here, so only the commands that use the history pay for it.
    """
    where = database_location(env, location)
    if isinstance(where, str):
        from orchestrate.history._postgres import PostgresStore

        return PostgresStore.open(where, secrets=secrets)
    from orchestrate.history._sqlite import SQLiteStore

    return SQLiteStore.open(where, secrets=secrets)
