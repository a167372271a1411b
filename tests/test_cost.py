"""Cost: the price table and its lookup, cost arithmetic, the budget, and cost in results."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrate._cost import (
    Budget,
    BudgetExceeded,
    MeteredProvider,
    cost_of,
    format_usd,
    worst_case_cost,
)
from orchestrate._pricing import FREE, Pricing, shipped_table
from orchestrate._result import Usage, total_cost
from orchestrate._spec import Price, ProviderSpec
from orchestrate.providers import LLMRequest, LLMResponse

OPENAI_URL = "https://api.openai.com/v1/chat/completions"
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"


# --- the table and the lookup -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt-4.1-mini", "gpt-4.1-mini"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4-0", "claude-sonnet-4"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-3-5-sonnet@20241022", "claude-3-5-sonnet"),
        ("gpt-5-chat-latest", "gpt-5"),
    ],
)
def test_aliases_and_snapshots_take_the_base_models_price(model: str, base: str) -> None:
    """A dated snapshot, `-latest`, a vendor prefix or a listed alias is priced as its base."""
    table = shipped_table()
    assert table.find(model) == table.prices[base]


def test_chatgpt_latest_is_its_own_model() -> None:
    """An exact entry wins over stripping `-latest`: chatgpt-4o-latest is not gpt-4o."""
    table = shipped_table()
    assert table.find("chatgpt-4o-latest") != table.find("gpt-4o")


@pytest.mark.parametrize("model", ["llama3", "gpt-4o-audio-preview", "mistral-large", ""])
def test_an_unknown_model_has_no_price(model: str) -> None:
    """No guessing by prefix: a model the table does not name has no price."""
    assert shipped_table().find(model) is None


def test_the_table_is_complete_and_dated() -> None:
    """Every entry has input and output prices at or above 0; the table says when and where."""
    table = shipped_table()
    assert table.as_of and table.sources
    for price in table.prices.values():
        assert price.input >= 0 and price.output >= 0
        assert price.max_output is not None


def test_a_workflow_price_wins_for_its_provider_only() -> None:
    """providers.NAME.pricing prices that provider's models, snapshots included; others
    keep the table's price; the mock is free."""
    own = Price(input=0.1, output=0.4)
    pricing = Pricing(
        {"local": ProviderSpec(base_url="http://x/v1", pricing={"gpt-4o": own, "llama3": FREE})}
    )
    assert pricing.price("local", "gpt-4o") == own
    assert pricing.price("local", "gpt-4o-2024-08-06") == own
    assert pricing.price("local", "llama3") == FREE
    assert pricing.price("openai", "gpt-4o") == shipped_table().find("gpt-4o")
    assert pricing.price("openai", "llama3") is None
    assert pricing.price("mock", "anything") == FREE


# --- arithmetic -------------------------------------------------------------------------------


def test_cost_prices_cached_and_written_tokens_apart() -> None:
    """Plain input, cache reads, cache writes and output each at their own price."""
    price = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    usage = Usage(
        input_tokens=1_000_000,
        output_tokens=100_000,
        cached_input_tokens=600_000,
        cache_write_tokens=100_000,
    )
    expected = 300_000 * 3.0e-6 + 600_000 * 0.3e-6 + 100_000 * 3.75e-6 + 100_000 * 15e-6
    assert math.isclose(cost_of(usage, price), expected)


def test_cached_tokens_without_a_cached_price_cost_the_input_price() -> None:
    """A model without a cached_input price charges cached tokens as input."""
    price = Price(input=2.0, output=8.0)
    assert math.isclose(cost_of(Usage(1000, 0, cached_input_tokens=500), price), 1000 * 2e-6)


def test_costs_in_json_carry_no_float_noise() -> None:
    """11 in + 7 out at $0.15/$0.60 is 5.85e-06, not 5.849999999999999e-06, and sums of
    step costs read as written: the document shows what a person would compute."""
    step = cost_of(Usage(input_tokens=11, output_tokens=7), Price(input=0.15, output=0.6))
    assert json.dumps(step) == "5.85e-06"
    assert json.dumps(total_cost([step, 1.08e-05])) == "1.665e-05"
    assert total_cost([1e-15, 0.0]) == 1e-15  # tiny is not rounded to 0


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (None, "?"),
        (0.0, "$0"),
        (0.0000135, "$0.000013"),
        (0.0123456, "$0.0123"),
        (0.5, "$0.50"),
        (12.345, "$12.35"),
        (1234.5, "$1,234.50"),
    ],
)
def test_amounts_are_shown_without_rounding_to_zero(amount: float | None, shown: str) -> None:
    """A small cost keeps two significant digits; unknown is `?`."""
    assert format_usd(amount) == shown


# --- cached tokens over HTTP --------------------------------------------------------------------


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-cost-0123456789")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-cost-0123456789")


def _openai_reply(prompt: int, cached: int, completion: int) -> dict[str, Any]:
    return {
        "id": "r1",
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


def _anthropic_reply(uncached: int, read: int, written: int, output: int) -> dict[str, Any]:
    return {
        "id": "m1",
        "type": "message",
        "model": "claude-sonnet-4-20250514",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": uncached,
            "output_tokens": output,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": written,
        },
    }


def test_openai_cached_tokens_are_read_and_priced(
    write_flow: Callable,
    cli: Callable,
    respx_mock: Any,
    keys: None,
) -> None:
    """prompt_tokens_details.cached_tokens is part of prompt_tokens, at the cached price."""
    respx_mock.post(OPENAI_URL).mock(
        return_value=httpx.Response(
            200, json=_openai_reply(prompt=10_000, cached=8_000, completion=1_000)
        )
    )
    flow = write_flow("steps:\n  - {id: ask, model: gpt-4o, prompt: hi}\n")
    result = cli("run", flow, "--json", "--no-history")
    doc = json.loads(result.stdout)
    step = doc["steps"][0]
    assert step["usage"] == {
        "input_tokens": 10_000,
        "output_tokens": 1_000,
        "cached_input_tokens": 8_000,
    }
    expected = 2_000 * 2.5e-6 + 8_000 * 1.25e-6 + 1_000 * 10e-6
    assert math.isclose(step["cost_usd"], expected)
    assert math.isclose(doc["cost_usd"], expected)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_cache_reads_and_writes_are_read_and_priced(
    write_flow: Callable,
    cli: Callable,
    respx_mock: Any,
    keys: None,
    stream: bool,
    tmp_path: Path,
) -> None:
    """cache_read/cache_creation tokens join input_tokens and are priced as such, streamed
    or not."""
    reply = _anthropic_reply(uncached=1_000, read=20_000, written=5_000, output=500)
    if stream:
        usage = reply["usage"]
        events = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "m1",
                        "model": reply["model"],
                        "usage": {**usage, "output_tokens": 1},
                    },
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "ok"},
                },
            ),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 500},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
        response = httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
    else:
        response = httpx.Response(200, json=reply)
    respx_mock.post(ANTHROPIC_URL).mock(return_value=response)
    flow = write_flow("steps:\n  - {id: ask, model: claude-sonnet-4-20250514, prompt: hi}\n")
    args = ["--events", str(tmp_path / "events.jsonl"), "--events-tokens"] if stream else []
    result = cli("run", flow, "--json", "--no-history", *args)
    step = json.loads(result.stdout)["steps"][0]
    assert step["usage"] == {
        "input_tokens": 26_000,
        "output_tokens": 500,
        "cached_input_tokens": 20_000,
        "cache_write_tokens": 5_000,
    }
    expected = 1_000 * 3e-6 + 20_000 * 0.3e-6 + 5_000 * 3.75e-6 + 500 * 15e-6
    assert math.isclose(step["cost_usd"], expected)


def test_an_unknown_price_is_null_with_a_note(
    write_flow: Callable,
    cli: Callable,
    respx_mock: Any,
    keys: None,
) -> None:
    """No price: cost_usd is null (never 0), for the step and the run, with a note naming
    the model."""
    respx_mock.post(OPENAI_URL).mock(
        return_value=httpx.Response(200, json=_openai_reply(prompt=10, cached=0, completion=5))
    )
    flow = write_flow("steps:\n  - {id: ask, model: my-finetune, prompt: hi}\n")
    result = cli("run", flow, "--json", "--no-history")
    doc = json.loads(result.stdout)
    assert doc["steps"][0]["cost_usd"] is None and doc["cost_usd"] is None
    assert any("'my-finetune'" in w for w in doc["steps"][0]["warnings"])
    assert "no price known for model 'my-finetune'" in result.stderr


def test_an_unknown_price_is_said_once_per_model(
    write_flow: Callable,
    cli: Callable,
    respx_mock: Any,
    keys: None,
) -> None:
    """Three steps on one unpriced model and one on another: stderr says each model's
    missing price once, while every step's cost stays null with its warning."""
    respx_mock.post(OPENAI_URL).mock(
        return_value=httpx.Response(200, json=_openai_reply(prompt=10, cached=0, completion=5))
    )
    flow = write_flow(
        "steps:\n"
        + "".join(
            f"  - {{id: s{i}, model: {model}, prompt: hi}}\n"
            for i, model in enumerate(["my-finetune", "my-finetune", "other-tune", "my-finetune"])
        )
    )
    result = cli("run", flow, "--json", "--no-history")
    assert result.stderr.count("no price known for model 'my-finetune'") == 1
    assert result.stderr.count("no price known for model 'other-tune'") == 1
    doc = json.loads(result.stdout)
    assert [s["cost_usd"] for s in doc["steps"]] == [None] * 4
    assert all(len(s["warnings"]) == 1 for s in doc["steps"])


# --- costs in results, events and the history ----------------------------------------------------


FOR_EACH = """
inputs:
  items: {type: array, default: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
providers:
  paid:
    base_url: https://llm.example/v1
    pricing:
      m: {input: 1.0, output: 2.0}
steps:
  - id: many
    for_each: inputs.items
    provider: paid
    model: m
    max_tokens: 100
    prompt: "Item {{ item }}"
"""
PAID_URL = "https://llm.example/v1/chat/completions"
ONE_CALL = 10 * 1e-6 + 5 * 2e-6  # 10 prompt tokens, 5 reply tokens at m's price


@pytest.fixture
def paid(respx_mock: Any) -> Any:
    """The `paid` endpoint: every answer 10 prompt and 5 reply tokens, after a moment."""

    async def answer(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        return httpx.Response(200, json=_openai_reply(prompt=10, cached=0, completion=5))

    return respx_mock.post(PAID_URL).mock(side_effect=answer)


@pytest.mark.usefixtures("history_backend")
def test_a_for_each_sums_its_items_cost_and_events_carry_it(
    write_flow: Callable,
    cli: Callable,
    paid: Any,
    tmp_path: Path,
) -> None:
    """A for_each's cost is its items' sum; step_finished and run_finished carry cost_usd."""
    flow = write_flow(FOR_EACH)
    result = cli("run", flow, "--json", "--events", tmp_path / "events.jsonl")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert math.isclose(doc["steps"][0]["cost_usd"], 10 * ONE_CALL)
    assert math.isclose(doc["cost_usd"], 10 * ONE_CALL)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    finished = {
        e["event"]: e
        for e in events
        if e["event"].endswith("_finished") and e["event"] != "item_finished"
    }
    assert math.isclose(finished["step_finished"]["cost_usd"], 10 * ONE_CALL)
    assert math.isclose(finished["run_finished"]["cost_usd"], 10 * ONE_CALL)
    shown = json.loads(cli("runs", "show", doc["run_id"], "--json").stdout)
    assert shown["cost_usd"] == doc["cost_usd"]
    assert shown["steps"][0]["cost_usd"] == doc["steps"][0]["cost_usd"]
    listed = json.loads(cli("runs", "list", "--json").stdout)
    assert listed[0]["cost_usd"] == doc["cost_usd"]


@pytest.mark.usefixtures("history_backend")
def test_the_history_keeps_the_price_a_cost_was_made_with(
    write_flow: Callable,
    cli: Callable,
    paid: Any,
) -> None:
    """A later price change rewrites no recorded run; the price used is stored with it."""
    from orchestrate.history import open_store

    flow = write_flow(FOR_EACH)
    first = json.loads(cli("run", flow, "--json").stdout)
    flow.write_text(FOR_EACH.replace("input: 1.0, output: 2.0", "input: 5.0, output: 9.0"))
    second = json.loads(cli("run", flow, "--json").stdout)
    assert second["cost_usd"] > first["cost_usd"]
    with open_store() as store:
        kept = store.stored_steps(first["run_id"])[0].result
        again = store.document(first["run_id"])
    assert kept.price == Price(input=1.0, output=2.0)
    assert again["cost_usd"] == first["cost_usd"]
    diff = json.loads(cli("runs", "diff", first["run_id"], second["run_id"], "--json").stdout)
    assert math.isclose(diff["cost_usd_delta"], second["cost_usd"] - first["cost_usd"])
    assert math.isclose(diff["steps"][0]["cost_usd_delta"], diff["cost_usd_delta"])
    text = cli("runs", "diff", first["run_id"], second["run_id"]).stdout
    assert "cost: $0.0002 → $0.00095 (+$0.00075)" in text


@pytest.mark.usefixtures("history_backend")
def test_cache_hits_and_replays_cost_nothing_and_say_so(
    write_flow: Callable,
    cli: Callable,
    paid: Any,
    tmp_path: Path,
) -> None:
    """A response-cache hit or a --replay costs 0, and the step says `cached`."""
    flow = write_flow(FOR_EACH)
    fixture = tmp_path / "fixture.json"
    first = json.loads(cli("run", flow, "--json", "--cache", "--record", fixture).stdout)
    assert first["cost_usd"] > 0
    hit = json.loads(cli("run", flow, "--json", "--cache").stdout)
    replay = json.loads(cli("run", flow, "--json", "--replay", fixture).stdout)
    for doc in (hit, replay):
        step = doc["steps"][0]
        assert (step["cost_usd"], step["cached"], doc["cost_usd"]) == (0.0, True, 0.0)
        assert step["usage"] == first["steps"][0]["usage"]


def test_a_history_from_before_costs_is_migrated(
    tmp_path: Path, cli: Callable, write_flow: Callable
) -> None:
    """A database at the first schema gets the cost columns; its runs' cost is unknown."""
    import sqlite3

    from orchestrate.history import _sqlite
    from orchestrate.history._schema import MIGRATIONS, SQLITE

    path = tmp_path / "home" / "history.db"
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA application_id = {_sqlite.APPLICATION_ID}")
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    for statement in MIGRATIONS[0].sql(SQLITE):
        db.execute(statement)
    db.execute("INSERT INTO _migrations VALUES ('m001_initial', 'then')")
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO runs (run_id, workflow, status, mode, started_at, started, "
        "inputs, input_tokens, output_tokens, duration_ms) VALUES ('old1', 'w', "
        "'succeeded', 'live', '2025-01-01T00:00:00.000Z', 1, '{}', 3, 4, 5)"
    )
    db.close()
    listed = json.loads(cli("runs", "list", "--json").stdout)
    assert listed[0]["run_id"] == "old1" and listed[0]["cost_usd"] is None
    assert "?" in cli("runs", "list").stdout.splitlines()[1]


# --- the budget -----------------------------------------------------------------------------------


class _SlowProvider:
    """Answers after yielding to the loop, so that many calls are in flight at once."""

    name = "paid"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: LLMRequest, **_: Any) -> LLMResponse:
        self.calls += 1
        await asyncio.sleep(0.001 * (self.calls % 7))
        return LLMResponse(text="ok", usage=Usage(40, 30))

    async def aclose(self) -> None:
        return None


def test_reservations_never_pass_the_budget_under_concurrency() -> None:
    """Hundreds of concurrent calls: spent plus reserved never passes the limit at any
    moment, the calls refused are not made, and what was spent is the real cost."""
    price = Price(input=1.0, output=2.0)
    pricing = Pricing({"paid": ProviderSpec(base_url="http://x", pricing={"m": price})})
    request = LLMRequest(
        model="m", messages=({"role": "user", "content": "x" * 40},), max_tokens=50, provider="paid"
    )
    worst = worst_case_cost(request, price)
    budget = Budget(limit=worst * 25.5)
    inner = _SlowProvider()
    metered = MeteredProvider(inner, pricing, budget)
    peak = 0.0
    reserve = budget.reserve

    def watched(amount: float, what: str = "") -> Any:
        nonlocal peak
        held = reserve(amount, what)
        peak = max(peak, budget.spent + budget.reserved)
        return held

    budget.reserve = watched  # type: ignore[method-assign]

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(metered.complete(request) for _ in range(300)), return_exceptions=True
        )

    outcomes = asyncio.run(main())
    refused = [o for o in outcomes if isinstance(o, BudgetExceeded)]
    answered = [o for o in outcomes if isinstance(o, LLMResponse)]
    assert peak <= budget.limit
    assert len(answered) == inner.calls and len(answered) + len(refused) == 300
    assert len(answered) >= 25  # real costs are below the worst case: more calls fit
    assert budget.reserved == pytest.approx(0.0, abs=1e-12)
    assert budget.spent == pytest.approx(sum(r.cost_usd for r in answered))
    assert budget.spent <= budget.limit


def test_a_call_past_the_budget_fails_the_step_and_stops_the_run(
    write_flow: Callable,
    cli: Callable,
    paid: Any,
) -> None:
    """--max-cost: a call that could pass it is not made; error.type budget, a message with
    the spend and the budget, exit 1, even with on_error: continue."""
    flow = write_flow(
        FOR_EACH.replace("max_tokens: 100", "max_tokens: 100\n    on_error: continue")
        + """
  - id: after
    prompt: "never {{ steps.many.status }}"
    provider: paid
    model: m
"""
    )
    result = cli("run", flow, "--json", "--max-cost", "0.0003", "--max-concurrency", "1")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["status"] == "failed"
    assert doc["error"]["type"] == "budget"
    assert "the budget of $0.0003 would be passed" in doc["error"]["message"]
    assert "spent so far" in doc["error"]["message"]
    assert doc["steps"][1]["status"] == "cancelled", doc["steps"]
    assert 0 < paid.call_count < 10
    assert doc["cost_usd"] is None or doc["cost_usd"] <= 0.0003


def test_defaults_max_cost_is_the_budget_and_the_flag_wins(
    write_flow: Callable,
    cli: Callable,
    paid: Any,
) -> None:
    """defaults.max_cost sets the budget; --max-cost replaces it."""
    flow = write_flow("defaults: {max_cost: 0.000001}\n" + FOR_EACH)
    assert cli("run", flow, "--json").exit_code == 1
    assert paid.call_count == 0
    assert cli("run", flow, "--json", "--max-cost", "1").exit_code == 0


def test_a_budget_with_an_unknown_price_stops_before_any_call(
    write_flow: Callable,
    cli: Callable,
    respx_mock: Any,
    keys: None,
) -> None:
    """--max-cost and a model without a price: exit 2 naming the model, no request."""
    route = respx_mock.post(OPENAI_URL)
    flow = write_flow("steps:\n  - {id: ask, model: my-finetune, prompt: hi}\n")
    result = cli("run", flow, "--max-cost", "1")
    assert result.exit_code == 2
    assert "'my-finetune'" in result.stderr
    assert route.call_count == 0


def test_a_mock_run_costs_nothing(write_flow: Callable, run_json: Callable) -> None:
    """The mock is priced 0: a budget of 0 lets a mock run through."""
    flow = write_flow("steps:\n  - {id: ask, prompt: hi}\n")
    code, doc = run_json(flow, "--max-cost", "0")
    assert (code, doc["cost_usd"], doc["steps"][0]["cost_usd"]) == (0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("defaults: {max_cost: -1}", "`max_cost` must be 0 or more"),
        (
            "providers: {p: {base_url: 'http://x', pricing: {m: {input: -1, output: 1}}}}",
            "`input` must be 0 or more",
        ),
        (
            "providers: {p: {base_url: 'http://x', pricing: {m: {input: 1}}}}",
            "missing the required key 'output'",
        ),
    ],
)
def test_bad_budgets_and_prices_are_located_errors(
    write_flow: Callable,
    cli: Callable,
    yaml: str,
    message: str,
) -> None:
    """A negative budget or price, or a price without output, is exit 2 at its line."""
    flow = write_flow(f"{yaml}\nsteps:\n  - {{id: a, prompt: hi}}\n")
    result = cli("validate", flow)
    assert result.exit_code == 2
    assert message in result.stderr and "flow.yaml:1:" in result.stderr
