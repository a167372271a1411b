"""The engine itself, driven by a scripted provider: concurrency, event order, cancel, skips.

Every call the provider gets can be held until the test releases it, so each test decides
exactly what is running when; nothing here sleeps, and a wait only times out on a bug.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrate._api import prepare
from orchestrate._engine import Engine, RunOptions
from orchestrate._errors import ProviderError, StepError
from orchestrate._events import (
    Event,
    ItemFinished,
    RunFinished,
    RunStarted,
    StepFinished,
    StepQueued,
    StepStarted,
)
from orchestrate._result import RunResult, Usage
from orchestrate.providers import LLMRequest, LLMResponse, ProviderPool
from orchestrate.providers._base import RetryCallback, TokenCallback

pytestmark = pytest.mark.anyio

# How long a test waits for something that should happen at once: only a bug reaches it.
PATIENCE = 5.0


class ScriptedProvider:
    """A provider whose calls, keyed by their prompt, reply, fail or wait as a test says.

    A held prompt's call waits until `release`; `arrived` gets each prompt as its call
    starts, and the provider counts how many calls run at once.
    """

    name = "scripted"

    def __init__(self) -> None:
        self.failures: dict[str, StepError] = {}
        self.held: set[str] = set()
        self.hold_all = False
        self.gates: dict[str, asyncio.Event] = {}
        self.arrived: asyncio.Queue[str] = asyncio.Queue()
        self.prompts: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    def release(self, prompt: str) -> None:
        self._gate(prompt).set()

    def release_all(self) -> None:
        self.hold_all = False
        self.held.clear()
        for gate in self.gates.values():
            gate.set()

    async def next_arrival(self) -> str:
        return await asyncio.wait_for(self.arrived.get(), PATIENCE)

    async def complete(
        self,
        request: LLMRequest,
        *,
        on_token: TokenCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> LLMResponse:
        prompt = request.messages[-1]["content"]
        self.prompts.append(prompt)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self.arrived.put_nowait(prompt)
            if self.hold_all or prompt in self.held:
                await self._gate(prompt).wait()
            if prompt in self.failures:
                raise self.failures[prompt]
            return LLMResponse(text=f"re: {prompt}", model=request.model, usage=Usage(10, 5))
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        return None

    def _gate(self, prompt: str) -> asyncio.Event:
        return self.gates.setdefault(prompt, asyncio.Event())


class Run:
    """One engine run of a workflow, with the events it emitted."""

    def __init__(self, flow: Path, provider: ScriptedProvider, max_concurrency: int) -> None:
        prepared = prepare(flow)
        # `wrap` answers every provider name with the scripted one: no key, no network.
        pool = ProviderPool(wrap=lambda name, create: provider)
        self.events: list[Event] = []
        self.engine = Engine(
            prepared.workflow,
            pool=pool,
            options=RunOptions(max_concurrency=max_concurrency),
            observers=[self.events.append],
            functions=prepared.functions,
            subworkflows=prepared.subworkflow,
            env={},
        )
        self.inputs = prepared.inputs

    def start(self) -> asyncio.Task[RunResult]:
        return asyncio.create_task(self.engine.run(self.inputs))

    async def finish(self) -> RunResult:
        return await asyncio.wait_for(self.start(), PATIENCE)

    def names(self, kind: type) -> list[str]:
        """The step ids of the events of one kind, in the order they came."""
        return [_step_of(e) for e in self.events if isinstance(e, kind)]

    def position(self, kind: type, step_id: str) -> int:
        return next(
            i for i, e in enumerate(self.events) if isinstance(e, kind) and _step_of(e) == step_id
        )


def _step_of(event: Event) -> str:
    return event.result.id if isinstance(event, StepFinished) else event.step_id  # type: ignore[union-attr]


@pytest.fixture
def provider() -> ScriptedProvider:
    return ScriptedProvider()


@pytest.fixture
def make_run(write_flow: Callable[..., Path], provider: ScriptedProvider) -> Callable[..., Run]:
    """A Run of this workflow YAML against the scripted provider."""

    def make(text: str, max_concurrency: int = 8) -> Run:
        return Run(write_flow(text), provider, max_concurrency)

    return make


async def yield_to_the_engine(times: int = 50) -> None:
    """Let every task that can make progress do so, without any real waiting."""
    for _ in range(times):
        await asyncio.sleep(0)


def statuses(result: RunResult) -> dict[str, str]:
    return {step.id: step.status for step in result.steps}


# --- the order of events ------------------------------------------------------------------------

DIAMOND = """
    steps:
      - id: d
        prompt: "d: {{ steps.b.output }} {{ steps.c.output }}"
      - id: b
        prompt: "b: {{ steps.a.output }}"
      - id: c
        prompt: c
        needs: [a]
      - id: a
        prompt: a
    """
DIAMOND_EDGES = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]


async def test_events_follow_the_dependencies(make_run: Callable[..., Run]) -> None:
    """RunStarted first, RunFinished last; each step starts after its needs finished."""
    run = make_run(DIAMOND)
    result = await run.finish()
    assert result.status == "succeeded"
    assert isinstance(run.events[0], RunStarted) and isinstance(run.events[-1], RunFinished)
    assert run.events[-1].result is result
    assert sorted(run.names(StepStarted)) == sorted(run.names(StepFinished)) == list("abcd")
    for step in "abcd":
        assert run.position(StepStarted, step) < run.position(StepFinished, step)
    for before, after in DIAMOND_EDGES:
        assert run.position(StepFinished, before) < run.position(StepStarted, after)
    assert result.outputs["d"] == "re: d: re: b: re: a re: c"
    assert [s.id for s in result.steps] == ["d", "b", "c", "a"]  # the file's order


async def test_for_each_reports_each_item_as_it_finishes(
    make_run: Callable[..., Run], provider: ScriptedProvider
) -> None:
    """ItemFinished comes per item in finishing order, inside the step; outputs keep item order."""
    provider.hold_all = True
    run = make_run("""
        steps:
          - id: each
            for_each: '["x", "y", "z"]'
            prompt: "{{ item }}"
        """)
    task = run.start()
    assert sorted([await provider.next_arrival() for _ in range(3)]) == ["x", "y", "z"]
    for prompt in ("z", "x", "y"):
        provider.release(prompt)
        await yield_to_the_engine()
    result = await asyncio.wait_for(task, PATIENCE)
    items = [e for e in run.events if isinstance(e, ItemFinished)]
    assert [(e.index, e.done, e.total, e.status) for e in items] == [
        (2, 1, 3, "succeeded"),
        (0, 2, 3, "succeeded"),
        (1, 3, 3, "succeeded"),
    ]
    started, finished = run.position(StepStarted, "each"), run.position(StepFinished, "each")
    assert all(started < run.events.index(e) < finished for e in items)
    assert next(e for e in run.events if isinstance(e, StepStarted)).items == 3
    assert result.outputs == {"each": ["re: x", "re: y", "re: z"]}


EACH_OF_THREE = """
    steps:
      - id: each
        for_each: '["x", "y", "z"]'
        prompt: "{{ item }}"
    """


async def test_a_failed_for_each_counts_its_finished_items(
    make_run: Callable[..., Run], provider: ScriptedProvider
) -> None:
    """Items x and z finish, then y fails: the step bills x and z, names y, keeps x and z."""
    provider.held = {"y"}
    provider.failures["y"] = ProviderError("the model said no")
    run = make_run(EACH_OF_THREE)
    task = run.start()
    assert sorted([await provider.next_arrival() for _ in range(3)]) == ["x", "y", "z"]
    await yield_to_the_engine()
    provider.release("y")
    result = await asyncio.wait_for(task, PATIENCE)
    step = result.step("each")
    assert step.status == "failed" and step.error is not None
    assert step.error.message == "item 1 ('y'): the model said no"
    assert (step.usage, step.attempts) == (Usage(20, 10), 2)
    assert result.usage == Usage(20, 10)
    assert [(i.index, i.output) for i in step.items] == [(0, "re: x"), (2, "re: z")]


async def test_a_cancelled_for_each_counts_its_finished_items(
    make_run: Callable[..., Run], provider: ScriptedProvider
) -> None:
    """Cancelled while y runs: the step is cancelled and still bills x and z."""
    provider.held = {"y"}
    run = make_run(EACH_OF_THREE)
    task = run.start()
    assert sorted([await provider.next_arrival() for _ in range(3)]) == ["x", "y", "z"]
    await yield_to_the_engine()
    task.cancel()
    result = await asyncio.wait_for(task, PATIENCE)
    step = result.step("each")
    assert (result.status, step.status) == ("cancelled", "cancelled")
    assert (step.usage, step.attempts) == (Usage(20, 10), 2)
    assert [i.index for i in step.items] == [0, 2]
    assert provider.in_flight == 0


# --- the concurrency bound ----------------------------------------------------------------------

WIDE = """
    steps:
      - id: many
        for_each: range(5)
        prompt: "item {{ item }}"
      - id: solo
        prompt: solo
    """


@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_max_concurrency_is_reached_and_never_exceeded(
    limit: int, make_run: Callable[..., Run], provider: ScriptedProvider
) -> None:
    """With every call held, exactly `limit` calls start (items and steps share the limit)."""
    provider.hold_all = True
    run = make_run(WIDE, max_concurrency=limit)
    task = run.start()
    for _ in range(limit):
        await provider.next_arrival()
    await yield_to_the_engine()
    assert (provider.in_flight, provider.arrived.qsize()) == (limit, 0)
    provider.release_all()
    result = await asyncio.wait_for(task, PATIENCE)
    assert result.status == "succeeded"
    assert (len(provider.prompts), provider.most_in_flight) == (6, limit)


QUEUE = """
    steps:
      - id: first
        prompt: first
      - id: each
        for_each: '["x", "y"]'
        prompt: "{{ item }}"
    """


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_step_without_a_slot_is_queued_and_its_time_starts_with_its_call(
    make_run: Callable[..., Run], provider: ScriptedProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one slot: `each` is queued (not started) until `first` is done; its items
    run one by one and its duration counts from its first call, not from when it was ready."""
    clock = FakeClock()
    monkeypatch.setattr("orchestrate._engine.time.perf_counter", clock)
    provider.hold_all = True
    run = make_run(QUEUE, max_concurrency=1)
    task = run.start()
    assert await provider.next_arrival() == "first"
    await yield_to_the_engine()
    assert run.names(StepQueued) == ["each"] and run.names(StepStarted) == ["first"]
    clock.now = 105.0
    provider.release("first")
    assert await provider.next_arrival() == "x"
    await yield_to_the_engine()
    assert run.names(StepStarted) == ["first", "each"] and provider.in_flight == 1
    clock.now = 107.0
    provider.release_all()
    result = await asyncio.wait_for(task, PATIENCE)
    assert run.names(StepQueued) == ["each"]  # said once, not per waiting item
    assert run.position(StepQueued, "each") < run.position(StepStarted, "each")
    assert {s.id: s.duration_ms for s in result.steps} == {"first": 5000, "each": 2000}


# --- cancellation -------------------------------------------------------------------------------

TWO_SLOW_THEN_ONE = """
    steps:
      - id: first
        prompt: first
      - id: slow_a
        prompt: "slow a {{ steps.first.output }}"
      - id: slow_b
        prompt: slow b
        needs: [first]
      - id: last
        prompt: "{{ steps.slow_a.output }}"
    """


async def test_cancelling_the_run_cancels_running_steps_and_starts_no_more(
    make_run: Callable[..., Run], provider: ScriptedProvider
) -> None:
    """Cancelled mid-run: running steps and never-started steps are cancelled, and so is the run."""
    provider.held = {"slow a re: first", "slow b"}
    run = make_run(TWO_SLOW_THEN_ONE)
    task = run.start()
    assert {await provider.next_arrival() for _ in range(3)} == {
        "first",
        "slow a re: first",
        "slow b",
    }
    await yield_to_the_engine()
    task.cancel()
    result = await asyncio.wait_for(task, PATIENCE)
    assert result.status == "cancelled" and result.error is not None
    assert result.error.type == "cancelled"
    assert statuses(result) == {
        "first": "succeeded",
        "slow_a": "cancelled",
        "slow_b": "cancelled",
        "last": "cancelled",
    }
    assert "last" not in run.names(StepStarted)
    assert provider.in_flight == 0  # the held calls were cancelled, not left behind
    assert isinstance(run.events[-1], RunFinished)


async def test_a_failing_step_cancels_the_running_ones(
    make_run: Callable[..., Run], provider: ScriptedProvider
) -> None:
    """on_error: fail stops the run: a running sibling is cancelled, a dependent never starts."""
    provider.held = {"slow b"}
    provider.failures["slow a re: first"] = ProviderError("the model said no")
    run = make_run(TWO_SLOW_THEN_ONE)
    result = await run.finish()
    assert result.status == "failed" and result.error is not None
    assert (result.error.step, result.error.type) == ("slow_a", "provider")
    assert statuses(result) == {
        "first": "succeeded",
        "slow_a": "failed",
        "slow_b": "cancelled",
        "last": "cancelled",
    }
    assert "last" not in run.names(StepStarted)
    assert provider.in_flight == 0


# --- when, skips and on_error -------------------------------------------------------------------

# (workflow, prompts that fail, each step's status, the run's status)
SETTLING = [
    pytest.param(
        """
        steps:
          - id: a
            when: "false"
            prompt: a
          - id: b
            prompt: "{{ steps.a.output }}"
          - id: c
            needs: [b]
            prompt: c
        """,
        set(),
        {"a": "skipped", "b": "skipped", "c": "skipped"},
        "succeeded",
        id="false-when-skips-dependents",
    ),
    pytest.param(
        """
        steps:
          - id: a
            when: "false"
            prompt: a
          - id: join
            when: steps.a.status == "skipped"
            prompt: join
        """,
        set(),
        {"a": "skipped", "join": "succeeded"},
        "succeeded",
        id="a-when-decides-for-itself",
    ),
    pytest.param(
        """
        steps:
          - id: a
            prompt: a
            on_error: continue
          - id: b
            prompt: "{{ steps.a.output }}"
          - id: other
            prompt: other
        """,
        {"a"},
        {"a": "failed", "b": "skipped", "other": "succeeded"},
        "succeeded",
        id="continue-skips-dependents-only",
    ),
    pytest.param(
        """
        steps:
          - id: a
            prompt: a
          - id: b
            prompt: "{{ steps.a.output }}"
        """,
        {"a"},
        {"a": "failed", "b": "cancelled"},
        "failed",
        id="fail-cancels-dependents",
    ),
    pytest.param(
        """
        steps:
          - id: a
            when: "false"
            prompt: a
          - id: b
            when: steps.a.output.title == "x"
            prompt: b
            on_error: continue
        """,
        set(),
        {"a": "skipped", "b": "failed"},
        "succeeded",
        id="when-that-cannot-be-evaluated-fails",
    ),
]


@pytest.mark.parametrize(("flow", "failing", "expected", "run_status"), SETTLING)
async def test_when_skip_and_on_error(
    flow: str,
    failing: set[str],
    expected: dict[str, str],
    run_status: str,
    make_run: Callable[..., Run],
    provider: ScriptedProvider,
) -> None:
    """Each step settles as the format says; skipped steps never start nor call the model."""
    provider.failures = {prompt: ProviderError("no") for prompt in failing}
    run = make_run(flow)
    result = await run.finish()
    assert (statuses(result), result.status) == (expected, run_status)
    called = {step for step, status in expected.items() if status == "succeeded"} | failing
    assert set(run.names(StepStarted)) == called
    assert set(provider.prompts) == called  # each step's prompt is its id
    assert sorted(run.names(StepFinished)) == sorted(expected)
    for step in result.steps:
        assert (step.output is None) == (step.status != "succeeded")
