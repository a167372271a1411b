"""The run history around a run: recording it, resuming from it, caching, fixtures, diffs.

    HistorySession      what one `orchestrate run` needs from the history: the store, the
                        recorder, which steps to reuse, the provider wrappers
    ├── Recorder        an engine observer; turns events into rows, written off the loop
    ├── ReusePlan       the engine's `reuse` seam: --resume, --from, --only
    └── wrap            cache / record / replay providers for the ProviderPool

The database itself is :mod:`orchestrate._store`; drawing is :mod:`orchestrate._render`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from orchestrate._errors import StoreError, UsageError
from orchestrate._events import Event, RunFinished, RunStarted, StepFinished
from orchestrate._loader import file_sha256
from orchestrate._result import RunResult, StepResult, Usage, iso_time
from orchestrate._spec import AnyStep, FunctionStep, LLMStep, Workflow

if TYPE_CHECKING:
    import sqlite3

    from orchestrate._api import PreparedRun
    from orchestrate._recording import Fixture
    from orchestrate._store import Store, Writer
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
    database: Path | None = None  # default: $ORCHESTRATE_HOME/history.db


class RecordingFailed(StoreError):
    """The run finished but could not be recorded; `result` is the run's result."""

    def __init__(self, error: StoreError, result: RunResult) -> None:
        super().__init__(error.message, hint=error.hint)
        self.result = result


def open_store(env: Mapping[str, str] = os.environ) -> Store:
    """The history database for the `runs` commands."""
    from orchestrate._store import Store, database_path

    return Store.open(database_path(env))


# --- provenance ------------------------------------------------------------------------------


def git_commit(folder: Path) -> str | None:
    """HEAD of the git repository holding `folder`, read from `.git` (no git needed)."""
    try:
        for candidate in (folder, *folder.parents):
            dotgit = candidate / ".git"
            if dotgit.is_dir():
                return _read_head(dotgit)
            if dotgit.is_file():  # a worktree or submodule: "gitdir: PATH"
                text = dotgit.read_text(encoding="utf-8").strip()
                if text.startswith("gitdir:"):
                    return _read_head((candidate / text[7:].strip()).resolve())
                return None
    except (OSError, ValueError):
        return None
    return None


_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def _read_head(gitdir: Path) -> str | None:
    head = (gitdir / "HEAD").read_text(encoding="utf-8").strip()
    if _SHA.match(head):
        return head
    if not head.startswith("ref:"):
        return None
    ref = head[4:].strip()
    common = gitdir
    if (gitdir / "commondir").is_file():
        common = (gitdir / (gitdir / "commondir").read_text(encoding="utf-8").strip()).resolve()
    for folder in (gitdir, common):
        loose = folder / ref
        if loose.is_file():
            value = loose.read_text(encoding="utf-8").strip()
            return value if _SHA.match(value) else None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            sha, _, name = line.partition(" ")
            if name == ref and _SHA.match(sha):
                return sha
    return None  # a branch without commits yet


def definition_hash(step: AnyStep) -> str:
    """What the step says in the file; resume reuses a step only when it is unchanged.

    The repr of the frozen attrs class: every field, in a fixed order, mappings in file
    order. A change of Python or orchestrate may change it; then the step just runs again.
    """
    return hashlib.sha256(repr(step).encode()).hexdigest()


# --- secrets ---------------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD)$", re.IGNORECASE)
REDACTED = "[redacted]"


class Scrubber:
    """Removes the values of key-like environment variables from text before it is stored.

    The providers already keep keys out of errors; this is the second lock on the door.
    """

    def __init__(self, env: Mapping[str, str], names: set[str] = frozenset()) -> None:
        values = {value for name, value in env.items()
                  if (name in names or _SECRET_NAME.search(name)) and len(value) >= 8}
        self.secrets = sorted(values, key=len, reverse=True)

    def __call__(self, text: str | None) -> str | None:
        if text is None or not self.secrets:
            return text
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


# --- recording -------------------------------------------------------------------------------


class Recorder:
    """Observes a run and writes it to the history as it goes.

    The observer only collects finished steps and hands them to the writer thread in
    batches (at most FLUSH_AFTER seconds after a step finishes, and when the run ends);
    the JSON encoding and the SQL happen on that thread. So the event loop never waits
    for the disk or for another process holding the database, and a crash loses at most
    the last fraction of a second, Ctrl-C nothing.
    """

    FLUSH_AFTER = 0.05

    def __init__(self, writer: Writer, prepared: PreparedRun, *, mode: str,
                 scrub: Scrubber) -> None:
        self.writer = writer
        self.mode = mode
        self.scrub = scrub
        workflow = prepared.workflow
        self.positions = {s.id: i for i, s in enumerate(workflow.steps)}
        self.steps = {s.id: s for s in workflow.steps}
        self.prepared = prepared
        self.run_id: str | None = None
        self.finished = False
        self.pending: list[tuple[StepResult, float]] = []
        self.timer: asyncio.TimerHandle | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepFinished):
            if self.run_id is not None:
                self.pending.append((event.result, event.time))
                self._flush_soon()
        elif isinstance(event, RunStarted):
            if self.run_id is None:  # sub-workflows run without observers, but be sure
                self.run_id = event.run_id
                self.writer.submit(self._run_writer(event))
        elif isinstance(event, RunFinished) and event.result.run_id == self.run_id:
            self.flush()
            self.finished = True
            self.writer.submit(self._finish_writer(event.result, event.time))

    def _flush_soon(self) -> None:
        if self.timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self.timer = loop.call_later(self.FLUSH_AFTER, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.pending and self.run_id is not None:
            batch, self.pending = self.pending, []
            self.writer.submit(self._steps_writer(self.run_id, batch))

    def close(self) -> None:
        """Write what is pending; a run that never finished is recorded as cancelled."""
        self.flush()
        if self.run_id is not None and not self.finished:
            run_id = self.run_id
            self.writer.submit(lambda db: db.execute(
                "UPDATE runs SET status = 'cancelled', error_type = 'cancelled', "
                "error_message = 'the run was interrupted' "
                "WHERE run_id = ? AND status = 'running'", (run_id,)))

    def _run_writer(self, event: RunStarted) -> Callable[[sqlite3.Connection], None]:
        scrub, prepared = self.scrub, self.prepared

        def write(db: sqlite3.Connection) -> None:
            path = prepared.workflow.path
            from orchestrate._version import __version__

            provenance = {
                "orchestrate": __version__,
                "python": sys.version.split()[0],
                "workflows": {str(child): file_sha256(child) for child in prepared.children},
            }
            db.execute(
                "INSERT INTO runs (run_id, workflow, file, file_path, file_sha256, git_commit,"
                " status, mode, started_at, started, inputs, resumed_from, provenance)"
                " VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                (event.run_id, event.workflow, event.file,
                 str(path.resolve()) if path else None, file_sha256(path),
                 git_commit(path.resolve().parent) if path else None, self.mode,
                 event.started_at, event.time, scrub(_json(event.inputs)),
                 event.resumed_from, _json(provenance)))

        return write

    def _steps_writer(self, run_id: str, batch: list[tuple[StepResult, float]]
                      ) -> Callable[[sqlite3.Connection], None]:
        scrub, positions, steps = self.scrub, self.positions, self.steps

        def write(db: sqlite3.Connection) -> None:
            rows = []
            for step, when in batch:
                spec = steps.get(step.id)
                usage, error = step.usage, step.error
                extra = step_extras(step)
                rows.append((
                    run_id, positions.get(step.id, -1), step.id, spec.kind if spec else "",
                    step.status, None if step.output is None else scrub(_json(step.output)),
                    error.type if error else None, scrub(error.message) if error else None,
                    step.provider, step.model, step.response_id, step.attempts,
                    step.duration_ms, usage.input_tokens if usage else None,
                    usage.output_tokens if usage else None, int(step.cached),
                    int(step.reused), step.fingerprint,
                    definition_hash(spec) if spec else None,
                    None if step.request is None else scrub(_json(step.request)),
                    when, None if extra is None else scrub(_json(extra))))
            db.executemany(
                "INSERT OR REPLACE INTO steps (run_id, position, step_id, kind, status, output,"
                " error_type, error_message, provider, model, response_id, attempts,"
                " duration_ms, input_tokens, output_tokens, cached, reused, fingerprint,"
                " definition, request, finished_at, extra)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " strftime('%Y-%m-%dT%H:%M:%fZ', ?, 'unixepoch'), ?)",
                rows)

        return write

    def _finish_writer(self, result: RunResult,
                       when: float) -> Callable[[sqlite3.Connection], None]:
        scrub = self.scrub

        def write(db: sqlite3.Connection) -> None:
            doc = result.to_dict()
            doc["outputs"] = None  # kept in the `outputs` column
            doc["steps"] = None  # kept in the `steps` table
            usage = result.usage
            error = result.error
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, duration_ms = ?,"
                " input_tokens = ?, output_tokens = ?, outputs = ?, error_step = ?,"
                " error_type = ?, error_message = ?, document = ? WHERE run_id = ?",
                (result.status, iso_time(when), result.duration_ms, usage.input_tokens,
                 usage.output_tokens, scrub(_json(result.outputs)),
                 error.step if error else None, error.type if error else None,
                 scrub(error.message) if error else None, scrub(_json(doc)), result.run_id))

        return write


# The keys of a step's entry in the result document that its columns hold.
_STEP_COLUMNS = frozenset({"id", "status", "output", "error", "provider", "model", "attempts",
                           "duration_ms", "usage", "cached", "reused"})


def step_extras(step: StepResult) -> dict[str, Any] | None:
    """What a step's entry in the result document has beyond its columns (`warnings`, and
    whatever a later version adds), so that `runs show --json` gives it back exactly."""
    doc = step.to_dict()
    extra = {key: value for key, value in doc.items() if key not in _STEP_COLUMNS}
    if step.error is not None and step.error.step != step.id:
        extra["error"] = doc["error"]
    return extra or None


# --- reuse: --resume, --from, --only ----------------------------------------------------------


def mode_family(mode: str) -> str:
    """Whose model answers a run may reuse: `mock` runs share theirs only with mock runs;
    `live` and `replay` runs (real answers, or recorded real ones) share theirs."""
    return "mock" if mode == "mock" else "live"


_FAMILY_MODES = {"mock": ("mock",), "live": ("live", "replay")}
_MODE_WORDS = {"mock": "a --mock run", "live": "a live run", "replay": "a --replay run"}
_FAMILY_WORDS = {"mock": "--mock run of {}", "live": "run of {} without --mock"}


@attrs.frozen
class ReusePlan:
    """The engine's `reuse` seam, filled from an earlier run.

    With `rerun` None (plain --resume) a step is reused when it succeeded there and both
    its definition and its rendered request (the fingerprint) are unchanged. With `rerun`
    set (--from, --only) every step outside it takes its earlier output as it is.

    Model answers from a `--mock` run serve only mock runs and the other way round
    (`same_mode` False): then only function steps are reused. A sub-workflow step counts
    as a model answer (its steps may be). --from and --only refuse a base run of the other
    mode before a plan is made (see HistorySession._base_run).
    """

    base_run: str
    prior: dict[str, StepResult]
    definitions: dict[str, str | None]
    rerun: frozenset[str] | None = None
    same_mode: bool = True

    def __call__(self, step: AnyStep, fingerprint: str) -> StepResult | None:
        prior = self.prior.get(step.id)
        if prior is None or prior.status != "succeeded":
            return None
        if not self.same_mode and not isinstance(step, FunctionStep):
            return None
        if self.rerun is not None:
            if step.id in self.rerun:
                return None
            if self.definitions.get(step.id) != definition_hash(step):
                note = f"reused from run {self.base_run} although the step changed since"
                return attrs.evolve(prior, warnings=(*prior.warnings, note))
            return prior
        if prior.fingerprint != fingerprint:
            return None
        if self.definitions.get(step.id) != definition_hash(step):
            return None
        return prior


def prior_results(store: Store, run_id: str) -> tuple[dict[str, StepResult],
                                                      dict[str, str | None]]:
    """The steps of a recorded run as results the engine can reuse, and their definitions."""
    results, definitions = {}, {}
    for row in store.step_rows(run_id):
        extra = json.loads(row["extra"]) if row["extra"] else {}
        usage = None
        if row["input_tokens"] is not None:
            usage = Usage(row["input_tokens"], row["output_tokens"] or 0)
        results[row["step_id"]] = StepResult(
            id=row["step_id"], status=row["status"],
            output=json.loads(row["output"]) if row["output"] is not None else None,
            provider=row["provider"], model=row["model"], attempts=row["attempts"],
            duration_ms=row["duration_ms"], usage=usage,
            warnings=tuple(extra.get("warnings", ())),
            request=json.loads(row["request"]) if row["request"] else None,
            fingerprint=row["fingerprint"], response_id=row["response_id"],
        )
        definitions[row["step_id"]] = row["definition"]
    return results, definitions


def steps_to_rerun(workflow: Workflow, rerun_from: str | None, only: str | None) -> frozenset[str]:
    """--only S: S alone. --from S: S and every step that depends on it, at any distance."""
    from orchestrate._plan import build_plan

    start = only or rerun_from
    assert start is not None
    if start not in workflow.step_ids:
        from orchestrate._hints import did_you_mean

        raise UsageError(f"the workflow has no step {start!r}",
                         hint=did_you_mean(start, workflow.step_ids)
                         or "steps: " + ", ".join(workflow.step_ids))
    if only is not None:
        return frozenset({only})
    plan = build_plan(workflow)
    chosen, todo = {start}, [start]
    while todo:
        for dependent in plan.dependents(todo.pop()):
            if dependent not in chosen:
                chosen.add(dependent)
                todo.append(dependent)
    return frozenset(chosen)


# --- one run's session ------------------------------------------------------------------------


def _endpoint(name: str, prepared: PreparedRun, env: Mapping[str, str]) -> str:
    """Who answers for a provider name (as the pool decides), so the cache keeps endpoints
    apart: the same model behind two base URLs is two different models."""
    if name == "mock":
        return "mock"
    from orchestrate._api import endpoints_of

    spec = endpoints_of(prepared).get(name)
    if spec is not None:
        return f"{name} {spec.base_url}"
    if name == "openai":
        return "openai " + (env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1")
    if name == "anthropic":
        return "anthropic " + (env.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com")
    return name


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

    def __init__(self, prepared: PreparedRun, options: HistoryOptions, *, mock: bool,
                 env: Mapping[str, str]) -> None:
        self.prepared = prepared
        self.options = options
        self.env = env
        self.mode = "replay" if options.replay else "mock" if mock else "live"
        self.mock = mock and not options.replay  # --replay wins over --mock
        self.store: Store | None = None
        self.recorder: Recorder | None = None
        self.reuse: ReusePlan | None = None
        self.replay_fixture: Fixture | None = None
        self.record_fixture: Fixture | None = None
        self.cache = False

    @classmethod
    def start(cls, prepared: PreparedRun, options: HistoryOptions, *, mock: bool,
              env: Mapping[str, str]) -> HistorySession:
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
            from orchestrate._recording import Fixture

            if options.replay:
                self.replay_fixture = Fixture.load(options.replay)
            if options.record:
                self.record_fixture = Fixture.load(options.record, missing_ok=True)
        if not options.record_history:
            return
        from orchestrate._store import Store, database_path

        self.store = Store.open(options.database or database_path(self.env))
        self.cache = (options.cache or _wants_cache(prepared)) and not options.replay
        base = self._base_run(rerun is not None)
        if base is not None:
            prior, definitions = prior_results(self.store, base)
            base_mode = self.store.run_row(base)["mode"]
            self.reuse = ReusePlan(base, prior, definitions, rerun,
                                   same_mode=mode_family(base_mode) == mode_family(self.mode))
        names = {endpoint.api_key_env for endpoint in _endpoints(prepared)} - {None}
        self.recorder = Recorder(self.store.writer, prepared, mode=self.mode,
                                 scrub=Scrubber(self.env, names))  # type: ignore[arg-type]

    def _base_run(self, make_style: bool) -> str | None:
        """The run to reuse from: --resume RUN_ID (of this workflow), or for --from/--only
        the latest run of this file in the same mode family (mock, or live and replay)."""
        assert self.store is not None
        flag = "--only" if self.options.only else "--from"
        family = mode_family(self.mode)
        if self.options.resume:
            run_id = self.store.resolve(self.options.resume)
            row = self.store.run_row(run_id)
            self._check_same_workflow(row)
            if make_style and mode_family(row["mode"]) != family:
                raise UsageError(
                    f"{flag} takes the other steps' outputs as they are from run {run_id}, "
                    f"which is {_MODE_WORDS.get(row['mode'], row['mode'])}, and this one is "
                    f"{_MODE_WORDS[self.mode]}: model answers of a --mock run are never "
                    f"taken into a run without --mock, nor the other way round",
                    hint=f"leave out --resume to use the latest "
                         f"{_FAMILY_WORDS[family].format('the file')}, or use --resume "
                         f"alone (it runs the model steps again)")
            return run_id
        if not make_style:
            return None
        path = self.prepared.workflow.path
        file = self.prepared.file or "the workflow"
        latest = other = None
        if path is not None:
            latest = self.store.latest_run(str(path.resolve()), _FAMILY_MODES[family])
            if latest is None:
                other = self.store.latest_run(str(path.resolve()))
        if other is not None:
            other_mode = self.store.run_row(other)["mode"]
            raise UsageError(
                f"{flag} takes the other steps' outputs from the latest "
                f"{_FAMILY_WORDS[family].format(file)}, and there is none (its latest run, "
                f"{other}, is {_MODE_WORDS.get(other_mode, other_mode)}: model answers of a "
                f"--mock run are never taken into a run without --mock, nor the other way "
                f"round)",
                hint="run the whole workflow once " + (
                    "with --mock" if family == "mock" else "without --mock") + " first")
        if latest is None:
            raise UsageError(f"{flag} takes the other steps' outputs from the latest run of "
                             f"{file}, and there is none",
                             hint="run the whole workflow once first, or name a run with "
                                  "--resume RUN_ID")
        return latest

    def _check_same_workflow(self, row: sqlite3.Row) -> None:
        """--resume takes a run of this workflow: the same file (by path or content), or the
        same workflow name (a file moved or renamed keeps it, if it has a `name:`)."""
        workflow = self.prepared.workflow
        path = workflow.path
        if row["workflow"] == workflow.name:
            return
        if path is not None:
            sha = file_sha256(path)
            if row["file_path"] == str(path.resolve()) or (sha and row["file_sha256"] == sha):
                return
        raise UsageError(
            f"run {row['run_id']} is of workflow {row['workflow']!r} "
            f"({row['file'] or row['file_path']}), not of {workflow.name!r} "
            f"({self.prepared.file or path or 'this workflow'}): --resume reuses a run of "
            f"the same workflow only",
            hint=f"`orchestrate runs list -w {workflow.name}` lists this workflow's runs")

    @property
    def resumed_from(self) -> str | None:
        return self.reuse.base_run if self.reuse else None

    def wrap(self, name: str, create: Callable[[], Provider]) -> Provider:
        """The ProviderPool hook: the provider for `name`, with cache, record and replay."""
        from orchestrate._recording import CachingProvider, RecordingProvider, ReplayProvider

        provider: Provider
        if self.replay_fixture is not None:
            provider = ReplayProvider(self.replay_fixture, name=name)
        else:
            provider = create()
            if self.cache and self.store is not None:
                provider = CachingProvider(provider, endpoint=_endpoint(name, self.prepared,
                                                                        self.env),
                                           store=self.store, everything=self.options.cache)
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


def _endpoints(prepared: PreparedRun) -> list[Any]:
    return [spec for workflow in prepared.all_workflows() for spec in workflow.providers.values()]


def _check(options: HistoryOptions) -> None:
    if options.rerun_from and options.only:
        raise UsageError("--from and --only cannot be used together",
                         hint="--only S reruns S alone; --from S reruns S and what depends on it")
    if not options.record_history:
        needs = [flag for flag, value in (("--resume", options.resume),
                                          ("--from", options.rerun_from),
                                          ("--only", options.only), ("--cache", options.cache))
                 if value]
        if needs:
            raise UsageError(f"{needs[0]} needs the run history, and --no-history turns it off")


# --- runs prune ------------------------------------------------------------------------------

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_AGE_DAYS = 36500  # 100 years: longer is a typo, or a number too big for a float


def parse_age(text: str) -> float:
    """`30d` -> seconds. Units: s, m, h, d, w; at most 100 years."""
    match = _AGE.match(text)
    if match is None:
        raise UsageError(f"cannot read the age {text!r}",
                         hint="a number and a unit: 90s, 45m, 12h, 30d or 2w")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not seconds <= _MAX_AGE_DAYS * 86400:  # inf too
        raise UsageError(f"the age {text.strip()!r} is over 100 years",
                         hint=f"the longest is {_MAX_AGE_DAYS}d")
    return seconds


# --- runs diff -------------------------------------------------------------------------------


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
                                           "attempts")} | {
        "cached": bool(step.get("cached")), "reused": bool(step.get("reused"))}


def diff_runs(store: Store, run_a: str, run_b: str) -> dict[str, Any]:
    """Per step: what changed in the rendered request and in the output, side by side."""
    docs = [store.document(run_a), store.document(run_b)]
    requests = [{row["step_id"]: json.loads(row["request"]) if row["request"] else None
                 for row in store.step_rows(run)} for run in (run_a, run_b)]
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
                        "request_changed": bool(request_diff),
                        "output_changed": bool(output_diff),
                        "request_diff": request_diff, "output_diff": output_diff})
    summary_keys = ("run_id", "workflow", "status", "started_at", "duration_ms", "usage")
    return {
        "a": {key: docs[0].get(key) for key in summary_keys},
        "b": {key: docs[1].get(key) for key in summary_keys},
        "inputs_diff": _unified(output_text(docs[0]["inputs"]), output_text(docs[1]["inputs"]),
                                f"{run_a}/inputs", f"{run_b}/inputs"),
        "outputs_diff": _unified(output_text(docs[0]["outputs"]),
                                 output_text(docs[1]["outputs"]),
                                 f"{run_a}/outputs", f"{run_b}/outputs"),
        "steps": entries,
    }


def run_details(store: Store, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's result document, and what `runs show` adds: provenance and mode."""
    row = store.run_row(run_id)
    details = {key: row[key] for key in ("file_path", "file_sha256", "git_commit", "mode",
                                         "finished_at")}
    return store.document(run_id), details
