"""The history's schema, written once for every database: an ordered list of migrations.

    Dialect         what differs between databases in the DDL (a float's type, ...)
    Migration       a named step: SQL statements with `{placeholders}` a dialect fills in
    MIGRATIONS      the list, oldest first; each applied one is recorded by name in the
                    database's `_migrations` table
    pending()       which migrations a database still needs; StoreError if it is newer

Append only: never edit or reorder a migration once released, add a new one. Write its
SQL so that SQLite and PostgreSQL both accept it; where they differ, use a placeholder
(and add it to both dialects) rather than writing the migration twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from orchestrate._errors import StoreError
from orchestrate.history._store import NO_HISTORY_HINT


@attrs.frozen
class Dialect:
    """A database's spelling of what the portable SQL cannot say alike."""

    name: str
    types: Mapping[str, str]  # placeholder -> type, e.g. {float} -> DOUBLE PRECISION

    def render(self, sql: str) -> str:
        return sql.format_map(self.types)


SQLITE = Dialect("sqlite", {"float": "REAL"})
# PostgreSQL's REAL is 4 bytes: Unix seconds would lose their minutes.
POSTGRESQL = Dialect("postgresql", {"float": "DOUBLE PRECISION"})


@attrs.frozen
class Migration:
    """One step of the schema; `statements` run in order, in one transaction."""

    name: str
    statements: tuple[str, ...]

    def sql(self, dialect: Dialect) -> list[str]:
        return [dialect.render(statement) for statement in self.statements]


_RUNS = """
    CREATE TABLE runs (
        run_id        TEXT PRIMARY KEY,
        workflow      TEXT NOT NULL,
        file          TEXT,              -- the path as given on the command line
        file_path     TEXT,              -- the same, absolute
        file_sha256   TEXT,              -- of the workflow file's bytes
        git_commit    TEXT,              -- HEAD of the file's repository, if any
        status        TEXT NOT NULL,     -- running | succeeded | failed | cancelled
        mode          TEXT NOT NULL,     -- live | mock | replay
        started_at    TEXT NOT NULL,     -- ISO 8601, UTC
        started       {float} NOT NULL,  -- the same, as Unix seconds
        finished_at   TEXT,
        duration_ms   INTEGER,
        input_tokens  INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        inputs        TEXT NOT NULL,     -- JSON
        outputs       TEXT,              -- JSON
        error_step    TEXT,
        error_type    TEXT,
        error_message TEXT,
        resumed_from  TEXT,
        provenance    TEXT,              -- JSON: versions, sub-workflow hashes
        document      TEXT               -- the result document, outputs and steps left out
    )"""

_STEPS = """
    CREATE TABLE steps (
        run_id        TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        position      INTEGER NOT NULL,  -- the step's place in the file, from 0
        step_id       TEXT NOT NULL,
        kind          TEXT NOT NULL,     -- llm | function | workflow
        status        TEXT NOT NULL,     -- succeeded | failed | skipped | cancelled
        output        TEXT,              -- JSON
        error_type    TEXT,
        error_message TEXT,
        provider      TEXT,
        model         TEXT,              -- the exact model id the provider reported
        response_id   TEXT,              -- the provider's id for the response
        attempts      INTEGER NOT NULL DEFAULT 0,
        duration_ms   INTEGER NOT NULL DEFAULT 0,
        input_tokens  INTEGER,
        output_tokens INTEGER,
        cached        INTEGER NOT NULL DEFAULT 0,  -- answered from the response cache
        reused        INTEGER NOT NULL DEFAULT 0,  -- taken from an earlier run
        fingerprint   TEXT,              -- sha256 of the rendered request
        definition    TEXT,              -- sha256 of the step as written
        request       TEXT,              -- JSON: the rendered request
        finished_at   TEXT,              -- ISO 8601, UTC
        extra         TEXT,              -- JSON: the rest of the step's result entry
        PRIMARY KEY (run_id, step_id)
    )"""

_RESPONSES = """
    CREATE TABLE responses (              -- the response cache (run --cache)
        key           TEXT PRIMARY KEY,  -- sha256 of provider, model, messages, settings
        provider      TEXT NOT NULL,
        model         TEXT,              -- the exact model id of the answer
        request       TEXT NOT NULL,     -- JSON
        response      TEXT NOT NULL,     -- JSON: text, usage, model, response_id
        created       {float} NOT NULL   -- Unix seconds
    )"""

_BATCHES = """
    CREATE TABLE batches (
        batch_id      TEXT PRIMARY KEY,
        workflow      TEXT NOT NULL,
        file          TEXT,              -- the workflow's path as given
        file_path     TEXT,              -- the same, absolute
        file_sha256   TEXT,
        data          TEXT,              -- the data file as given (- for stdin)
        data_path     TEXT,              -- the same, absolute
        status        TEXT NOT NULL,     -- running | succeeded | failed | cancelled
        mode          TEXT NOT NULL,     -- live | mock | replay
        started_at    TEXT NOT NULL,
        started       {float} NOT NULL,
        finished_at   TEXT,
        duration_ms   INTEGER,
        rows          INTEGER NOT NULL,
        succeeded     INTEGER NOT NULL DEFAULT 0,
        failed        INTEGER NOT NULL DEFAULT 0,
        cancelled     INTEGER NOT NULL DEFAULT 0,
        input_tokens  INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        settings      TEXT NOT NULL,     -- JSON: --map, shared inputs, --model, ...
        resumed_from  TEXT,              -- the batch whose unfinished rows this one ran
        summary       TEXT               -- JSON: the summary document
    )"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "m001_initial",
        (
            _RUNS,
            "CREATE INDEX runs_by_start ON runs (started)",
            "CREATE INDEX runs_by_workflow ON runs (workflow, started)",
            "CREATE INDEX runs_by_file ON runs (file_path, started)",
            _STEPS,
            _RESPONSES,
            "CREATE INDEX responses_by_age ON responses (created)",
        ),
    ),
    # JSON: the items of a for_each that succeeded (see _store.items_value), for --resume
    Migration("m002_step_items", ("ALTER TABLE steps ADD COLUMN items TEXT",)),
    # A batch's rows are runs: they name their batch, and `runs list` leaves them out (the
    # partial indexes keep it fast however many rows a batch has).
    Migration(
        "m003_batches",
        (
            "ALTER TABLE runs ADD COLUMN batch_id TEXT",
            "ALTER TABLE runs ADD COLUMN batch_row INTEGER",  # the row's index, from 0
            "ALTER TABLE runs ADD COLUMN batch_line INTEGER",  # its line in the data file
            "CREATE INDEX runs_by_batch ON runs (batch_id, batch_row) WHERE batch_id IS NOT NULL",
            "CREATE INDEX runs_alone_by_start ON runs (started) WHERE batch_id IS NULL",
            "CREATE INDEX runs_alone_by_workflow ON runs (workflow, started) "
            "WHERE batch_id IS NULL",
            _BATCHES,
            "CREATE INDEX batches_by_start ON batches (started)",
        ),
    ),
    # What runs and steps cost, and the price it was computed with, so that a later change
    # of the price table does not rewrite old runs. Runs recorded before are NULL (unknown).
    Migration(
        "m004_cost",
        (
            "ALTER TABLE runs ADD COLUMN cost_usd {float}",
            "ALTER TABLE steps ADD COLUMN cost_usd {float}",
            "ALTER TABLE steps ADD COLUMN price TEXT",  # JSON: USD per million tokens
            "ALTER TABLE steps ADD COLUMN cached_input_tokens INTEGER",
            "ALTER TABLE steps ADD COLUMN cache_write_tokens INTEGER",
        ),
    ),
    # Who ran it (ORCHESTRATE_USER, else the login name) and where: a shared history has
    # many of each. `user` is a reserved word in PostgreSQL.
    Migration(
        "m005_run_user",
        (
            "ALTER TABLE runs ADD COLUMN user_name TEXT",
            "ALTER TABLE runs ADD COLUMN host_name TEXT",
            "CREATE INDEX runs_by_user ON runs (user_name, started)",
            "ALTER TABLE batches ADD COLUMN user_name TEXT",
            "ALTER TABLE batches ADD COLUMN host_name TEXT",
        ),
    ),
    # Each run's checks (SPEC 9) as JSON, so a batch's rows give their verdicts without
    # reading every document. Runs recorded before have none (NULL).
    Migration("m006_checks", ("ALTER TABLE runs ADD COLUMN checks TEXT",)),
    # `runs list --user` leaves a batch's rows out as `runs list` does: its index held them
    # too, so with a batch of 100,000 rows it walked past them all (130 ms) to the runs.
    Migration(
        "m007_runs_alone_by_user",
        (
            "CREATE INDEX runs_alone_by_user ON runs (user_name, started) WHERE batch_id IS NULL",
            "DROP INDEX runs_by_user",
        ),
    ),
)

MIGRATIONS_TABLE = "CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT)"


def pending(applied: Iterable[str], location: str) -> list[Migration]:
    """The migrations a database with `applied` still needs, in order; StoreError when it
    has one this version does not know (a newer orchestrate made it)."""
    applied = list(applied)
    known = {migration.name for migration in MIGRATIONS}
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise newer_schema(location, len(applied), f"; unknown migration {unknown[-1]}")
    return [migration for migration in MIGRATIONS if migration.name not in applied]


def newer_schema(location: str, version: int, detail: str = "") -> StoreError:
    return StoreError(
        f"{location} was written by a newer orchestrate (schema {version}, this version "
        f"knows {len(MIGRATIONS)}{detail})",
        hint="upgrade orchestrate, or " + NO_HISTORY_HINT,
    )
