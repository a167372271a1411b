"""What one `orchestrate run` gets from the history.

HistorySession      opened by run_prepared() before the run, closed after it
├── open_store()    the database (a :class:`._store.HistoryStore`: SQLite or PostgreSQL)
├── Recorder        an engine observer; turns events into rows, written off the loop
├── plan_reuse()    the engine's `reuse` seam: --resume, --from, --only
└── wrap()          cache / record / replay providers for the ProviderPool
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from orchestrate._errors import StoreError, UsageError
from orchestrate._prepared import endpoints_of
from orchestrate._spec import LLMStep
from orchestrate.history._open import open_store
from orchestrate.history._recorder import Recorder
from orchestrate.history._reuse import ReusePlan, plan_reuse, steps_to_rerun
from orchestrate.providers import run_secrets

if TYPE_CHECKING:
    from orchestrate._prepared import PreparedRun
    from orchestrate._result import RunResult
    from orchestrate.history._recording import Fixture
    from orchestrate.history._store import HistoryStore
    from orchestrate.providers import Provider


@attrs.frozen(kw_only=True)
class HistoryOptions:
    """The history options of `orchestrate run`."""

    record_history: bool = True  # False: --no-history, the database is not opened at all
    resume: str | None = None  # --resume RUN_ID (a unique prefix is enough)
    rerun_from: str | None = None  # --from STEP
    only: str | None = None  # --only STEP
    cache: bool = False  # --cache: every LLM step (unless it says `cache: false`)
    record: Path | None = None  # --record FILE
    replay: Path | None = None  # --replay FILE
    database: str | Path | None = None  # --db: a path or URL; see database_location()


class RecordingFailed(StoreError):
    """The run finished but could not be recorded; `result` is the run's result."""

    def __init__(self, error: StoreError, result: RunResult) -> None:
        super().__init__(error.message, hint=error.hint)
        self.result = result


def _wants_cache(prepared: PreparedRun) -> bool:
    """Does any LLM step say `cache: true`, itself or through `defaults`?"""
    for workflow in prepared.all_workflows():
        for step in workflow.steps:
            if isinstance(step, LLMStep):
                own = step.settings.cache
                if own or (own is None and workflow.defaults.cache):
                    return True
    return False


class HistorySession:
    """What one run gets from the history; :meth:`close` when the run is over."""

    def __init__(
        self, prepared: PreparedRun, options: HistoryOptions, *, mock: bool, env: Mapping[str, str]
    ) -> None:
        self.prepared = prepared
        self.options = options
        self.env = env
        self.mode = "replay" if options.replay else "mock" if mock else "live"
        self._asked_mock = mock  # --mock, which a fixture of mock answers needs to replay
        self.mock = mock and not options.replay  # --replay wins over --mock
        self.store: HistoryStore | None = None
        self.recorder: Recorder | None = None
        self.reuse: ReusePlan | None = None
        self.replay_fixture: Fixture | None = None
        self.record_fixture: Fixture | None = None
        self.cache = False

    @classmethod
    def start(
        cls, prepared: PreparedRun, options: HistoryOptions, *, mock: bool, env: Mapping[str, str]
    ) -> HistorySession:
        """Check the options, open the history and the fixtures; errors before any request."""
        _check(options)
        session = cls(prepared, options, mock=mock, env=env)
        try:
            session._open()
        except BaseException:
            session.close(ran=False)
            raise
        return session

    def _open(self) -> None:
        options, prepared = self.options, self.prepared
        rerun = None
        if options.rerun_from or options.only:
            rerun = steps_to_rerun(prepared.workflow, options.rerun_from, options.only)
        if options.replay or options.record:
            from orchestrate.history._recording import Fixture

            if options.replay:
                self.replay_fixture = Fixture.load(options.replay)
                self.replay_fixture.check_replay(mock=self._asked_mock)
                if self.replay_fixture.mock:  # mock answers: a mock run, reported as one
                    self.mode, self.mock = "mock", True
            if options.record:
                self.record_fixture = Fixture.load(
                    options.record, missing_ok=True, secrets=self.secrets
                )
                self.record_fixture.start_recording(mock=self.mode == "mock")
        if not options.record_history:
            return
        self.store = open_store(self.env, options.database, secrets=self.secrets)
        self.cache = (options.cache or _wants_cache(prepared)) and not options.replay
        self.reuse = plan_reuse(
            self.store,
            prepared,
            mode=self.mode,
            resume=options.resume,
            rerun=rerun,
            flag="--only" if options.only else "--from",
        )
        self.recorder = Recorder(self.store, prepared, mode=self.mode, env=self.env)

    @functools.cached_property
    def secrets(self) -> tuple[str, ...]:
        """Known secret values, kept out of every row and fixture this run writes."""
        return run_secrets(endpoints_of(self.prepared), self.env)

    @property
    def resumed_from(self) -> str | None:
        return self.reuse.base_run if self.reuse else None

    def wrap(self, name: str, create: Callable[[], Provider]) -> Provider:
        """The ProviderPool hook: the provider for `name`, with cache, record and replay."""
        from orchestrate.history._recording import (
            CachingProvider,
            RecordingProvider,
            ReplayProvider,
            cache_endpoint,
        )

        provider: Provider
        if self.replay_fixture is not None:
            provider = ReplayProvider(self.replay_fixture, name=name)
        else:
            provider = create()
            if self.cache and self.store is not None:
                provider = CachingProvider(
                    provider,
                    endpoint=cache_endpoint(name, self.prepared, self.env),
                    store=self.store,
                    everything=self.options.cache,
                )
        if self.record_fixture is not None:
            provider = RecordingProvider(provider, self.record_fixture, name=name)
        return provider

    def close(self, *, ran: bool = True) -> None:
        """Save the fixture (if the run ran), finish writing the history; StoreError if a
        write failed."""
        try:
            fixture = self.record_fixture
            if fixture is not None and (ran or fixture.added):
                fixture.save()
        finally:
            if self.recorder is not None:
                self.recorder.close()
            if self.store is not None:
                store, self.store = self.store, None
                store.close()


def _check(options: HistoryOptions) -> None:
    if options.rerun_from and options.only:
        raise UsageError(
            "--from and --only cannot be used together",
            hint="--only S reruns S alone; --from S reruns S and what depends on it",
        )
    if not options.record_history:
        needs = [
            flag
            for flag, value in (
                ("--resume", options.resume),
                ("--from", options.rerun_from),
                ("--only", options.only),
                ("--cache", options.cache),
            )
            if value
        ]
        if needs:
            raise UsageError(f"{needs[0]} needs the run history, and --no-history turns it off")
