"""What a batch draws: one progress display (not a line per row), and its summary.

    BatchLiveView       on a terminal: one line redrawn by Rich, from the batch's counters
    BatchPlainProgress  not a terminal: a progress line every few seconds at most
    summary_text()      the summary on stderr; print_batch(): `runs show BATCH_ID`

Both displays only read the :class:`~orchestrate._batch.BatchSummary` the runner keeps
up to date; they never change a batch. Rich is imported lazily, as in :mod:`._render`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any

from orchestrate._cost import format_usd
from orchestrate._render import (
    _STYLES,
    _cost_text,
    _duration,
    _history_console,
    _local_time,
    _status_text,
    escape_controls,
)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from orchestrate._batch import BatchSummary, RowResult

PLAIN_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal


def _eta(summary: BatchSummary) -> str:
    rate = summary.rows_per_second
    left = summary.rows - summary.done
    if rate <= 0 or left <= 0:
        return ""
    return f" · ETA {_duration(round(left / rate * 1000))}"


def progress_line(summary: BatchSummary) -> str:
    """rows done/total, rate, ETA, failures, tokens, cost, and what waits on a rate
    limit."""
    total = max(summary.rows, 1)
    usage = summary.usage
    text = (
        f"rows {summary.done:,}/{summary.rows:,} ({100 * summary.done // total}%)"
        f" · {summary.rows_per_second:,.1f} rows/s{_eta(summary)}"
    )
    if summary.failed:
        text += f" · {summary.failed:,} failed"
    text += f" · {usage.input_tokens + usage.output_tokens:,} tokens"
    text += f" · {format_usd(summary.cost_usd)}"
    if summary.out_of_budget:
        text += " (budget reached: no new rows)"
    waiting = summary.waiting_until - summary.clock()
    if summary.retries:
        text += f" · {summary.retries:,} retries"
        if waiting > 0:
            text += f" (waiting {waiting:.1f}s on the provider)"
    for provider, calls, seconds in summary.rate_waits():
        text += f" · {calls} calls waiting on {provider}'s rate limit ({seconds:.1f}s)"
    return text


class BatchLiveView:
    """The terminal's display: one progress line and the last error, redrawn 4 times a
    second whatever the rate of rows."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.summary: BatchSummary | None = None
        self.live: Any = None

    def started(self, summary: BatchSummary) -> None:
        from rich.live import Live

        self.summary = summary
        self.live = Live(
            get_renderable=self.render,
            console=self.console,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.live.start()

    def row_finished(self, result: RowResult) -> None:
        """Drawn at the next refresh, from the counters."""

    def finished(self, summary: BatchSummary) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def render(self) -> RenderableType:
        from rich.text import Text

        summary = self.summary
        if summary is None:
            return Text("")
        text = Text(progress_line(summary), no_wrap=True, overflow="ellipsis")
        if summary.last_error:
            text.append("\nlast error: ", style="red")
            text.append(summary.last_error)
        return text


class BatchPlainProgress:
    """A stderr that is not a terminal: a progress line every PLAIN_EVERY seconds at most."""

    def __init__(
        self,
        out: IO[str] | None = None,
        *,
        every: float = PLAIN_EVERY,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.out = out or sys.stderr
        self.every = every
        self.clock = clock
        self.summary: BatchSummary | None = None
        self.last = 0.0

    def started(self, summary: BatchSummary) -> None:
        self.summary = summary
        self.last = self.clock()
        resumed = f", resuming {summary.resumed_from}" if summary.resumed_from else ""
        print(
            f"batch {summary.batch_id} of {summary.workflow}: {summary.rows:,} rows{resumed}",
            file=self.out,
            flush=True,
        )

    def row_finished(self, result: RowResult) -> None:
        now = self.clock()
        if self.summary is not None and now - self.last >= self.every:
            self.last = now
            print(progress_line(self.summary), file=self.out, flush=True)

    def finished(self, summary: BatchSummary) -> None:
        """The summary follows (see summary_text)."""


def summary_text(doc: dict[str, Any]) -> str:
    """The batch's summary for stderr: counts, usage, cost, time, latency, rate, the id,
    and why a cost is unknown."""
    lines = [
        f"batch {doc['batch_id']} {doc['status']}: {doc['succeeded']:,} succeeded, "
        f"{doc['failed']:,} failed, {doc['cancelled']:,} cancelled of {doc['rows']:,} rows",
        _usage_line(doc),
    ]
    lines += [f"  note: {note}" for note in doc.get("notes") or ()]
    if doc.get("reused"):
        lines.append(f"  {doc['reused']:,} rows taken from batch {doc.get('resumed_from')}")
    lines += checks_lines(doc)
    if doc.get("variants"):
        lines.append(comparison_table(doc["variants"]))
    if doc["status"] != "succeeded":
        lines.append(f"  run the rest with: orchestrate batch ... --resume {doc['batch_id']}")
    return "\n".join(lines)


def _usage_line(doc: dict[str, Any]) -> str:
    """Tokens, cost, time, rate and row latency, on one indented line."""
    usage = doc.get("usage") or {}
    latency = doc.get("latency_ms") or {}
    return (
        f"  {usage.get('input_tokens', 0):,} tokens in, {usage.get('output_tokens', 0):,} out"
        f" · cost {_cost_text(doc)} · {_duration(doc['duration_ms'] or 0)}"
        + (f" · {doc['rows_per_second']:,.1f} rows/s" if doc.get("rows_per_second") else "")
        + (
            f" · row latency p50 {_duration(latency['p50'])}, p95 {_duration(latency['p95'])}"
            if latency.get("p50") is not None
            else ""
        )
    )


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def checks_lines(doc: dict[str, Any]) -> list[str]:
    """The checks' pass rates (SPEC 9): overall against --fail-under, then each check's."""
    checks = doc.get("checks") or {}
    if not checks:
        return []
    rate, needed = doc.get("pass_rate"), doc.get("fail_under", 1.0)
    verdict = "met" if rate is not None and rate >= needed else "NOT met"
    lines = [f"  checks: {_rate(rate)} passed (--fail-under {needed:.0%}: {verdict})"]
    width = max(len(name) for name in checks)
    for name, counts in checks.items():
        lines.append(
            f"    {name:<{width}}  {counts['passed']:>6,} passed {counts['failed']:>6,} "
            f"failed  {_rate(counts['pass_rate']):>6}"
        )
    return lines


def _duration_or_dash(ms: int | None) -> str:
    return "-" if ms is None else _duration(ms)


def comparison_table(variants: list[dict[str, Any]]) -> str:
    """--matrix: one column per variant, one line per measure, as plain text."""
    heads = [
        ", ".join(f"{k}={v}" for k, v in (variant["variant"] or {}).items()) for variant in variants
    ]
    rows: list[tuple[str, list[str]]] = [("pass rate", [_rate(v["pass_rate"]) for v in variants])]
    for name in variants[0]["checks"]:
        rows.append((f"  {name}", [_rate(v["checks"][name]["pass_rate"]) for v in variants]))
    rows += [
        (
            "mean judge score",
            [
                "-" if v["mean_judge_score"] is None else f"{v['mean_judge_score']:.2f}"
                for v in variants
            ],
        ),
        ("rows failed", [f"{v['failed']:,}" for v in variants]),
        (
            "tokens",
            [f"{v['usage']['input_tokens'] + v['usage']['output_tokens']:,}" for v in variants],
        ),
        ("cost", [format_usd(v["cost_usd"]) for v in variants]),
    ]
    rows += [
        (f"latency {name}", [_duration_or_dash(v["latency_ms"][name]) for v in variants])
        for name in ("p50", "p95")
    ]
    first = max(len(label) for label, _ in rows)
    widths = [max(len(head), *(len(cells[i]) for _, cells in rows)) for i, head in enumerate(heads)]
    lines = [
        "  " + " " * first + "".join(f"  {h:>{w}}" for h, w in zip(heads, widths, strict=True))
    ]
    for label, cells in rows:
        lines.append(
            f"  {label:<{first}}"
            + "".join(f"  {c:>{w}}" for c, w in zip(cells, widths, strict=True))
        )
    return "\n".join(lines)


def print_batch_diff(diff: dict[str, Any], out: IO[str]) -> None:
    """`runs diff` of two batches: pass rates before and after, then the rows whose
    verdict changed (pass -> fail first)."""
    a, b = diff["a"], diff["b"]
    lines = [
        f"a {a['batch_id']}  {a['workflow']}  {a['status']}",
        f"b {b['batch_id']}  {b['workflow']}  {b['status']}",
        f"pass rate: {_rate(diff['pass_rate']['a'])} -> {_rate(diff['pass_rate']['b'])}",
    ]
    width = max((len(name) for name in diff["checks"]), default=0)
    for name, rates in diff["checks"].items():
        delta = "" if rates["delta"] is None else f"  ({rates['delta']:+.1%})"
        lines.append(f"  {name:<{width}}  {_rate(rates['a']):>6} -> {_rate(rates['b']):>6}{delta}")
    if diff["changed_rows"]:
        lines.append("rows whose verdict changed:")
    for row in diff["changed_rows"]:
        turn = "pass -> fail" if row["a"] else "fail -> pass"
        message = row.get("message")
        message = "" if not message else f": {message}" if row["a"] else f" (was: {message})"
        lines.append(f"  row {row['row']} {row['check']}: {turn}{message}")
    out.write(escape_controls("\n".join(lines)) + "\n")


def print_batch(doc: dict[str, Any], failed: Iterable[dict[str, Any]], out: IO[str]) -> None:
    """`runs show BATCH_ID`: the summary, then the rows that did not succeed."""
    with _history_console(out) as console:
        _draw_batch(doc, list(failed), console)


def _draw_batch(doc: dict[str, Any], failed: list[dict[str, Any]], console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    title = Text(f"batch {doc['batch_id']}  {doc['workflow']}  ", style="bold")
    console.print(title + _status_text(doc["status"]))
    facts = [
        ("file", doc.get("file") or ""),
        ("data", doc.get("data") or ""),
        ("started", _local_time(doc.get("started_at"))),
    ]
    if doc.get("resumed_from"):
        facts.append(("resumed", f"from {doc['resumed_from']}"))
    facts.append(
        (
            "rows",
            f"{doc['succeeded']:,} succeeded, {doc['failed']:,} failed, "
            f"{doc['cancelled']:,} cancelled of {doc['rows']:,}",
        )
    )
    for name, value in facts:
        console.print(Text(f"{name:<8} ", style="dim") + Text(value))
    console.print(Text(_usage_line(doc)))
    for line in checks_lines(doc):
        console.print(Text(line))
    if doc.get("variants"):
        console.print(Text(comparison_table(doc["variants"])))
    console.print()
    for row in doc.get("failed_checks") or ():
        for check in row["checks"]:
            message = f": {check['message']}" if check.get("message") else ""
            console.print(Text(f"✗ row {row['row']} {check['id']}{message}"))
    if not failed:
        return
    table = Table(
        box=None,
        padding=(0, 1),
        header_style="bold",
        title="rows that did not succeed",
        title_justify="left",
        title_style="bold",
    )
    for column in ("row", "line", "status", "run id", "error"):
        table.add_column(column, no_wrap=column != "error")
    for row in failed:
        error = row.get("error") or {}
        message = f"{error.get('type')}: {error.get('message')}" if error else ""
        table.add_row(
            str(row["row"]),
            str(row.get("line") or ""),
            Text(row["status"], style=_STYLES.get(row["status"], "")),
            row["run_id"],
            message,
        )
    console.print(table)
