"""Reusing an earlier run's steps: `--resume`, `--from` and `--only`.

plan_reuse()        picks the base run (--resume RUN_ID, or the latest of the file in
                    the same mode family) and checks it fits
└── ReusePlan       the engine's `reuse` seam, filled from that run's steps
steps_to_rerun()    what --from S and --only S run again
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from orchestrate._errors import UsageError
from orchestrate._loader import file_sha256
from orchestrate._result import ItemResult, StepResult
from orchestrate._spec import AnyStep, FunctionStep, Workflow
from orchestrate.history._provenance import definition_hash
from orchestrate.history._store import resolve_run

if TYPE_CHECKING:
    from pathlib import Path

    from orchestrate._prepared import PreparedRun
    from orchestrate.history._store import HistoryStore


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

    A step is reused only when running it now would do the same as then: it succeeded
    there, and both its definition and its rendered request (the fingerprint: prompt,
    model, settings, a function's arguments, a sub-workflow's inputs; so the run's inputs
    and the outputs it reads) are unchanged. Anything else runs. `rerun` (--from, --only)
    names steps that run again even when unchanged; a step outside it that changed (its
    definition, or what it reads: other inputs, or the new output of a step that ran
    again) runs too, never taking an output computed from something else.

    Model answers from a `--mock` run serve only mock runs and the other way round
    (`same_mode` False): then only function steps are reused. A sub-workflow step counts
    as a model answer (its steps may be). --from and --only refuse a base run of the other
    mode before a plan is made (see _base_run).
    """

    base_run: str
    prior: dict[str, StepResult]
    definitions: dict[str, str | None]
    rerun: frozenset[str] | None = None
    same_mode: bool = True

    def __call__(self, step: AnyStep, fingerprint: str) -> StepResult | None:
        prior = self.prior.get(step.id)
        if prior is None or prior.status != "succeeded" or not self._may_take(step):
            return None
        return prior if prior.fingerprint == fingerprint else None

    def items(self, step: AnyStep) -> dict[str, ItemResult]:
        """The items of a for_each that succeeded there (also when the step failed), by
        the fingerprint of their request, if the step may be taken from there at all."""
        prior = self.prior.get(step.id)
        if prior is None or not self._may_take(step):
            return {}
        return {item.fingerprint: item for item in prior.items}

    def _may_take(self, step: AnyStep) -> bool:
        """Not chosen to run again, of a mode this run may take answers from, and written
        as it was then."""
        return (
            (self.rerun is None or step.id not in self.rerun)
            and (self.same_mode or isinstance(step, FunctionStep))
            and self.definitions.get(step.id) == definition_hash(step)
        )


def prior_results(
    store: HistoryStore, run_id: str
) -> tuple[dict[str, StepResult], dict[str, str | None]]:
    """The steps of a recorded run as results the engine can reuse, and their definitions."""
    results, definitions = {}, {}
    for stored in store.stored_steps(run_id):
        step = stored.result
        # What reuse takes: the output and how it was made, not the last run's flags.
        results[step.id] = attrs.evolve(step, error=None, cached=False, reused=False)
        definitions[step.id] = stored.definition
    return results, definitions


def plan_reuse(
    store: HistoryStore,
    prepared: PreparedRun,
    *,
    mode: str,
    resume: str | None,
    rerun: frozenset[str] | None,
    flag: str,
) -> ReusePlan | None:
    """The plan for --resume (`rerun` None) or --from/--only (`flag`), None without them."""
    base = _base_run(
        store, prepared, mode=mode, resume=resume, make_style=rerun is not None, flag=flag
    )
    if base is None:
        return None
    prior, definitions = prior_results(store, base)
    base_mode = store.run_row(base)["mode"]
    return ReusePlan(
        base, prior, definitions, rerun, same_mode=mode_family(base_mode) == mode_family(mode)
    )


def resumed_inputs(
    resume: str, env: Mapping[str, str] = os.environ, database: str | Path | None = None
) -> dict[str, Any]:
    """The inputs of the run `--resume` names: a resumed run needs no `-i` again (as
    `batch --resume` needs no `--data`), and the `resume with:` line works as printed."""
    import json

    from orchestrate.history._open import open_store

    with open_store(env, database) as store:
        return dict(json.loads(store.run_row(resolve_run(store, resume, "run --resume"))["inputs"]))


def _base_run(
    store: HistoryStore,
    prepared: PreparedRun,
    *,
    mode: str,
    resume: str | None,
    make_style: bool,
    flag: str,
) -> str | None:
    """The run to reuse from: --resume RUN_ID (of this workflow), or for --from/--only
    the latest run of this file in the same mode family (mock, or live and replay)."""
    family = mode_family(mode)
    if resume:
        run_id = resolve_run(store, resume, "run --resume")
        row = store.run_row(run_id)
        check_same_workflow(prepared, row)
        if make_style and mode_family(row["mode"]) != family:
            raise UsageError(
                f"{flag} takes the other steps' unchanged outputs from run {run_id}, "
                f"which is {_MODE_WORDS.get(row['mode'], row['mode'])}, and this one is "
                f"{_MODE_WORDS[mode]}: model answers of a --mock run are never "
                f"taken into a run without --mock, nor the other way round",
                hint=f"leave out --resume to use the latest "
                f"{_FAMILY_WORDS[family].format('the file')}, or use --resume "
                f"alone (it runs the model steps again)",
            )
        return run_id
    if not make_style:
        return None
    path = prepared.workflow.path
    file = prepared.file or "the workflow"
    latest = other = None
    if path is not None:
        latest = store.latest_run(str(path.resolve()), _FAMILY_MODES[family])
        if latest is None:
            other = store.latest_run(str(path.resolve()))
    if other is not None:
        other_mode = store.run_row(other)["mode"]
        raise UsageError(
            f"{flag} takes the other steps' outputs from the latest "
            f"{_FAMILY_WORDS[family].format(file)}, and there is none (its latest run, "
            f"{other}, is {_MODE_WORDS.get(other_mode, other_mode)}: model answers of a "
            f"--mock run are never taken into a run without --mock, nor the other way "
            f"round)",
            hint="run the whole workflow once "
            + ("with --mock" if family == "mock" else "without --mock")
            + " first",
        )
    if latest is None:
        raise UsageError(
            f"{flag} takes the other steps' outputs from the latest run of "
            f"{file}, and there is none",
            hint="run the whole workflow once first, or name a run with --resume RUN_ID",
        )
    return latest


def check_same_workflow(prepared: PreparedRun, row: Mapping[str, Any]) -> None:
    """--resume takes a run of this workflow: the same file (by path or content), or the
    same workflow name (a file moved or renamed keeps it, if it has a `name:`)."""
    workflow = prepared.workflow
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
        f"({prepared.file or path or 'this workflow'}): --resume reuses a run of "
        f"the same workflow only",
        hint=f"`orchestrate runs list -w {workflow.name}` lists this workflow's runs",
    )


def steps_to_rerun(workflow: Workflow, rerun_from: str | None, only: str | None) -> frozenset[str]:
    """--only S: S alone. --from S: S and every step that depends on it, at any distance."""
    from orchestrate._plan import build_plan

    start = only or rerun_from
    assert start is not None
    if start not in workflow.step_ids:
        from orchestrate._hints import did_you_mean

        raise UsageError(
            f"the workflow has no step {start!r}",
            hint=did_you_mean(start, workflow.step_ids) or "steps: " + ", ".join(workflow.step_ids),
        )
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
