"""Everything drawn for a person: the live view, plain progress, results, trees, tables.

Rich is imported here (and in _render_batch.py), always lazily, so commands that draw
nothing start fast. Renderers observe engine events; they never change a run.
"""

from __future__ import annotations

import io
import json
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, cast

import attrs

from orchestrate._cost import format_usd
from orchestrate._events import (
    Event,
    ItemFinished,
    RunFinished,
    RunStarted,
    StepFinished,
    StepQueued,
    StepRetrying,
    StepStarted,
    TokenReceived,
)
from orchestrate._hints import plural
from orchestrate._result import CheckResult, RunResult, StepResult

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.text import Text

    from orchestrate._estimate import Estimate
    from orchestrate._plan import Plan
    from orchestrate._spec import Workflow

_SYMBOLS = {"succeeded": "✓", "failed": "✗", "skipped": "↷", "cancelled": "■"}
_STYLES = {"succeeded": "green", "failed": "red", "skipped": "dim", "cancelled": "yellow"}
PREVIEW_CHARS = 240
MAX_PREVIEWS = 3  # lines of streamed text under the table
# Columns the live view leaves free on the right, so that the terminal's `^C` echo fits on
# the last line: wrapping there would throw Rich's redraw off by a line (a second header).
ECHO_ROOM = 2
QUEUED_NOTE = "waiting for a slot"


# C0 controls but newline and tab, DEL, C1 controls, and the bidi overrides: a message or
# an answer holding them could clear the screen, write the clipboard (OSC 52), redraw a
# line (CR) or reorder what is shown.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """`text` safe to show on a terminal: each control character written as an escape
    (ESC as `\\x1b`). Results written to a file or a pipe are left byte-exact."""
    return _CONTROLS.sub(lambda m: ascii(m.group())[1:-1], text)


class _EscapingStream(io.TextIOBase):
    """Text written onto `out` with its control characters escaped."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.out.write(escape_controls(text))
        return len(text)

    def flush(self) -> None:
        self.out.flush()


def function_output(stderr: IO[str]) -> IO[str]:
    """Where what function steps print goes while a run writes its results to stdout:
    stderr, with control characters escaped when it is a terminal (a function may print
    text it fetched), as it is otherwise."""
    if not stderr.isatty():
        return stderr
    return cast("IO[str]", _EscapingStream(stderr))  # a TextIOBase, typeshed's IO[str] aside


def escape_data(value: Any) -> Any:
    """:func:`escape_controls` on every string of JSON-like data (keys included)."""
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, dict):
        return {escape_data(k): escape_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_data(v) for v in value]
    return value


def stderr_console(*, force_terminal: bool | None = None) -> Console:
    from rich.console import Console

    return Console(file=sys.stderr, stderr=True, force_terminal=force_terminal)


def format_value(value: Any) -> str:
    """An output as text: strings as they are, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def _duration(ms: int) -> str:
    return f"{ms / 1000:.1f}s" if ms >= 100 else f"{ms}ms"


def _tokens(step: StepResult) -> str:
    if step.usage is None:
        return ""
    return f"{step.usage.input_tokens + step.usage.output_tokens} tok"


# --- plain progress, for logs and pipes ------------------------------------------------------


class PlainProgress:
    """One uncoloured line per lifecycle event, for a stderr that is not a terminal."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stderr
        self.said: set[str] = set()  # the run's warnings so far

    def __call__(self, event: Event) -> None:
        line = self._line(event)
        if line:
            print(escape_controls(line), file=self.out, flush=True)

    def _line(self, event: Event) -> str | None:
        if isinstance(event, RunStarted):
            self.said = set()
            return f"run {event.run_id} of {event.workflow}: {plural(len(event.steps), 'step')}"
        if isinstance(event, StepQueued):
            return f"· {event.step_id} {QUEUED_NOTE}"
        if isinstance(event, StepStarted):
            detail = f" ({event.provider}/{event.model})" if event.model else ""
            items = f", {plural(event.items, 'item')}" if event.items is not None else ""
            return f"▶ {event.step_id} started{detail}{items}"
        if isinstance(event, StepRetrying):
            item = f"[{event.item}]" if event.item is not None else ""
            return (
                f"↻ {event.step_id}{item} attempt {event.attempt} in {event.delay:.1f}s: "
                f"{event.reason}"
            )
        if isinstance(event, ItemFinished) and _worth_a_line(event.done, event.total):
            return f"  {event.step_id}: {event.done}/{event.total} done"
        if isinstance(event, StepFinished):
            return _finished_line(event.result, _unsaid(event.result.warnings, self.said))
        if isinstance(event, RunFinished):
            reused = reuse_line(event.result)
            summary = summary_line(event.result) + _run_error(event.result)
            return summary if reused is None else f"{reused}\n{summary}"
        return None


def _worth_a_line(done: int, total: int) -> bool:
    """Every item of a short list; about every tenth of a long one, and the last."""
    return done == total or done % max(1, total // 10) == 0


def _run_error(result: RunResult) -> str:
    """The reason of a failure no step line gave (an output that could not be built)."""
    error = result.error
    if result.status != "failed" or error is None or error.step is not None:
        return ""
    hint = f"\n  hint: {error.hint}" if error.hint else ""
    return f"\n  error: {error.message}{hint}"


def _unsaid(warnings: tuple[str, ...], said: set[str]) -> list[str]:
    """The warnings not said yet in this run, now counted as said: a model without a price
    warns on each of its steps, and is worth saying once."""
    fresh = [warning for warning in warnings if warning not in said]
    said.update(fresh)
    return fresh


def _finished_line(step: StepResult, warnings: list[str]) -> str:
    parts = [f"{_SYMBOLS[step.status]} {step.id} {step.status}"]
    if step.status in ("succeeded", "failed"):
        parts.append(_duration(step.duration_ms))
    if step.usage:
        parts.append(_tokens(step))
        parts.append(format_usd(step.cost_usd))
    if step.cached:
        parts.append("(cached)")
    if step.reused:
        parts.append("(reused)")
    line = " ".join(parts)
    if step.status == "failed" and step.error:
        line += f": {step.error.message}"
        if step.error.hint:
            line += f"\n  hint: {step.error.hint}"
    for warning in warnings:
        line += f"\n  warning: {warning}"
    return line


def reuse_line(result: RunResult) -> str | None:
    """What a run made with --resume, --from or --only took from the earlier run:
    `reused 2 steps from run ID (fetch, shape), and 4 items of each`; None otherwise."""
    if result.resumed_from is None:
        return None
    steps = [step.id for step in result.steps if step.reused]
    items = [
        f"{count} item{'s' if count != 1 else ''} of {step.id}"
        for step in result.steps
        if not step.reused and (count := sum(item.reused for item in step.items))
    ]
    plural = "" if len(steps) == 1 else "s"
    line = f"reused {len(steps)} step{plural} from run {result.resumed_from}"
    if steps:
        line += f" ({', '.join(steps)})"
    return ", and ".join([line, *items])


def summary_line(result: RunResult) -> str:
    counts: dict[str, int] = {}
    for step in result.steps:
        counts[step.status] = counts.get(step.status, 0) + 1
    shown = ", ".join(f"{n} {status}" for status, n in counts.items())
    usage = result.usage
    tokens = usage.input_tokens + usage.output_tokens
    cost = result.cost_usd
    return (
        f"run {result.run_id} {result.status} in {_duration(result.duration_ms)}: "
        f"{shown}; {plural(tokens, 'token')} ({usage.input_tokens} in, "
        f"{usage.output_tokens} out), "
        f"{'cost unknown' if cost is None else format_usd(cost)}"
    )


def resume_hint(result: RunResult, flow: str) -> str | None:
    """How to go on from a recorded run that failed or was cancelled."""
    if result.status == "succeeded":
        return None
    import shlex

    return f"resume with: orchestrate run {shlex.quote(flow)} --resume {result.run_id}"


# --- the live view, for a terminal ------------------------------------------------------------


@attrs.define
class _Row:
    id: str
    kind: str
    status: str = "waiting"
    model: str = ""
    started: float | None = None
    ended: float | None = None
    tokens: int = 0
    cost: str = ""
    # Streamed text per for_each item (None for a plain step); the lowest item is shown.
    previews: dict[int | None, str] = attrs.Factory(dict)
    items_done: int = 0
    items_total: int | None = None
    note: str = ""


class LiveView:
    """A table of the steps with spinners, timings, tokens and a preview of streamed text.

    State changes on each event; drawing happens at Rich's refresh rate, not per token.
    """

    def __init__(self, console: Console, clock: Callable[[], float] = time.perf_counter) -> None:
        self.console = console
        self.clock = clock
        self.rows: dict[str, _Row] = {}
        self.live: Any = None
        self.result: RunResult | None = None
        self.said: set[str] = set()  # the run's warnings so far

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.rows = {i: _Row(i, k) for i, k in event.steps}
            self.said = set()
            self._start()
        elif isinstance(event, StepQueued):
            row = self.rows[event.step_id]
            row.status, row.note = "queued", QUEUED_NOTE
        elif isinstance(event, StepStarted):
            row = self.rows[event.step_id]
            row.status, row.started, row.note = "running", self.clock(), ""
            row.model, row.items_total = event.model or "", event.items
        elif isinstance(event, TokenReceived):
            row = self.rows[event.step_id]
            row.tokens += 1
            text = row.previews.get(event.item, "") + event.text
            row.previews[event.item] = text[-PREVIEW_CHARS:]
        elif isinstance(event, ItemFinished):
            row = self.rows[event.step_id]
            row.items_done = event.done
            row.previews.pop(event.index, None)
        elif isinstance(event, StepRetrying):
            row = self.rows[event.step_id]
            item = f" (item {event.item})" if event.item is not None else ""
            row.note = f"retry {event.attempt} in {event.delay:.0f}s{item}: {event.reason}"
            # A failed attempt's text is not part of the answer.
            if event.item is None:
                row.previews.clear()
            else:
                row.previews.pop(event.item, None)
        elif isinstance(event, StepFinished):
            self._finish(event.result)
        elif isinstance(event, RunFinished):
            self.result = event.result
            self.stop()

    def _finish(self, step: StepResult) -> None:
        row = self.rows[step.id]
        row.status, row.ended = step.status, self.clock()
        if step.usage:
            row.tokens = step.usage.input_tokens + step.usage.output_tokens
            row.cost = format_usd(step.cost_usd)
        row.note = "cached" if step.cached else "reused" if step.reused else ""
        warnings = _unsaid(step.warnings, self.said)
        if warnings:
            row.note = f"warning: {warnings[0]}"
        if step.error and step.status == "failed":
            row.note = step.error.message
        if step.model:
            row.model = step.model

    def _start(self) -> None:
        from rich.live import Live

        self.live = Live(
            get_renderable=self.render,
            console=self.console,
            refresh_per_second=8,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.result is not None:
            reused = reuse_line(self.result)
            if reused is not None:
                self.console.print(reused, highlight=False)
            self.console.print(
                summary_line(self.result), style=_STYLES[self.result.status], highlight=False
            )

    def render(self) -> RenderableType:
        from rich.console import Group
        from rich.constrain import Constrain
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, padding=(0, 1), show_header=True, header_style="bold")
        for column in ("", "step", "model", "time", "tokens", "cost", ""):
            table.add_column(column)
        previews: list[Text] = []
        width = self.console.width - ECHO_ROOM
        shown = self._visible_rows(max(self.console.height - 2 - MAX_PREVIEWS, 4))
        for row in shown:
            if row.status == "running":
                icon: Any = Spinner("dots", style="cyan")
            else:
                icon = Text(_SYMBOLS.get(row.status, "·"), style=_STYLES.get(row.status, "dim"))
            table.add_row(
                icon,
                row.id,
                row.model,
                self._elapsed(row),
                str(row.tokens) if row.tokens else "",
                row.cost,
                _detail(row),
            )
            if row.status == "running" and row.previews and len(previews) < MAX_PREVIEWS:
                previews.append(_preview(row, width))
        more = []
        if len(shown) < len(self.rows):
            hidden = len(self.rows) - len(shown)
            more.append(Text(f"  … and {hidden} more: {self._counts(shown)}", style="dim"))
        return Constrain(Group(table, *more, *previews), width)

    def _visible_rows(self, limit: int) -> list[_Row]:
        """Every row when they fit; else the running and failed ones, the next two waiting
        (for a slot first), then the latest finished, shown in file order."""
        rows = list(self.rows.values())
        if len(rows) <= limit:
            return rows
        waiting = sorted(
            (r for r in rows if r.status in ("queued", "waiting")),
            key=lambda r: r.status != "queued",
        )
        next_up = {id(r) for r in waiting[:2]}

        def urgency(row: _Row) -> tuple[int, float]:
            if row.status in ("running", "failed") or id(row) in next_up:
                return 0, 0.0
            return (1, -row.ended) if row.ended else (2, 0.0)

        keep = {id(r) for r in sorted(rows, key=urgency)[: limit - 1]}
        return [r for r in rows if id(r) in keep]

    def _counts(self, shown: list[_Row]) -> str:
        counts: dict[str, int] = {}
        visible = {id(r) for r in shown}
        for row in self.rows.values():
            if id(row) not in visible:
                counts[row.status] = counts.get(row.status, 0) + 1
        return ", ".join(f"{n} {status}" for status, n in counts.items())

    def _elapsed(self, row: _Row) -> str:
        if row.started is None:
            return ""
        end = row.ended if row.ended is not None else self.clock()
        return f"{end - row.started:.1f}s"


def _detail(row: _Row) -> RenderableType:
    """The last column: the row's note; for a for_each, `n/N done` and the note, or a bar
    while there is no note (a retry or a failure says more than the bar)."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    note: RenderableType = Text(
        escape_controls(row.note), style="dim", overflow="ellipsis", no_wrap=True
    )
    if not row.items_total:
        return note
    if not row.note:
        note = ProgressBar(total=row.items_total, completed=row.items_done, width=20)
    grid = Table.grid(padding=(0, 1))
    grid.add_row(Text(f"{row.items_done}/{row.items_total} done", no_wrap=True), note)
    return grid


def _preview(row: _Row, width: int) -> Text:
    """The newest streamed text of a running step (of its lowest item), on one line."""
    from rich.text import Text

    item = min(row.previews, key=lambda i: -1 if i is None else i)
    label = f"{row.id}: " if item is None else f"{row.id}[{item}]: "
    text = escape_controls(" ".join(row.previews[item].split()))
    room = max(width - len(label), 1)
    if len(text) > room:
        text = "…" + text[-(room - 1) :]
    return Text(label + text, style="dim", no_wrap=True, overflow="ellipsis")


# --- results ----------------------------------------------------------------------------------

_MARKDOWN = re.compile(r"^(#{1,6} |[-*+] |\d+\. |> |```)|\*\*[^*]+\*\*", re.MULTILINE)


def looks_like_markdown(text: str) -> bool:
    return bool(_MARKDOWN.search(text))


def print_outputs(outputs: dict[str, Any], out: IO[str], *, terminal: bool = False) -> None:
    """One output raw (so `> file` gets it byte for byte); several as `## NAME` sections
    in order. On a terminal, control characters are shown escaped."""
    if terminal:
        outputs = escape_data(outputs)
        if _print_rich_outputs(outputs, out):
            return
    if len(outputs) == 1:
        out.write(format_value(next(iter(outputs.values()))).rstrip("\n") + "\n")
        return
    for name, value in outputs.items():
        out.write(f"## {name}\n{format_value(value).rstrip(chr(10))}\n\n")


def _print_rich_outputs(outputs: dict[str, Any], out: IO[str]) -> bool:
    """Markdown rendering on a terminal; False when no output looks like Markdown."""
    texts = [format_value(v) for v in outputs.values()]
    if not any(looks_like_markdown(t) for t in texts):
        return False
    from rich.console import Console
    from rich.markdown import Markdown

    console = Console(file=out, force_terminal=True)
    for (name, value), text in zip(outputs.items(), texts, strict=True):
        if len(outputs) > 1:
            console.print(f"## {name}", style="bold", highlight=False)
        console.print(Markdown(text) if isinstance(value, str) else text)
        if len(outputs) > 1:
            console.print()
    return True


def report_run(
    result: RunResult,
    out: IO[str],
    err: IO[str],
    *,
    with_outputs: bool,
    show_error: bool,
    verbose: bool,
    resume_from: str | None = None,
    quiet: bool = False,
) -> None:
    """After a run: its outputs on `out`, and on `err` its checks (the failed ones only
    when `quiet`), tracebacks (verbose), the error and, for a recorded run (`resume_from`
    is its workflow file), how to resume it.

    `show_error` is for when nothing else has said it (the live view and -q do not).
    """
    if with_outputs and result.status == "succeeded":
        print_outputs(result.outputs, out, terminal=out.isatty())
    print_checks(result.checks, err, only_failed=quiet)
    if verbose:
        for step in result.steps:
            if step.error and step.error.details:
                err.write(escape_controls(f"--- {step.id}\n{step.error.details}"))
    if show_error and result.error and result.status != "succeeded":
        where = f"step {result.error.step}: " if result.error.step else ""
        err.write(escape_controls(f"error: {where}{result.error.message}\n"))
        if result.error.hint:
            err.write(escape_controls(f"  hint: {result.error.hint}\n"))
    hint = resume_hint(result, resume_from) if resume_from is not None else None
    if hint:
        err.write(hint + "\n")


def print_checks(checks: Sequence[CheckResult], err: IO[str], *, only_failed: bool = False) -> None:
    """One line per check: ✓ or ✗, its id, its score, and its message (a judge's reason),
    then the count; nothing when there are no checks."""
    if not checks:
        return
    for check in checks:
        if only_failed and check.passed:
            continue
        score = f" ({check.score:.2f})" if check.score is not None else ""
        message = f": {check.message}" if check.message else ""
        mark = "✓" if check.passed else "✗"
        err.write(escape_controls(f"{mark} {check.id}{score}{message}") + "\n")
    failed = sum(not check.passed for check in checks)
    if not only_failed or failed:
        err.write(f"checks: {len(checks) - failed} passed, {failed} failed\n")


# --- graphs -----------------------------------------------------------------------------------


def print_graph_tree(workflow: Workflow, plan: Plan, out: IO[str]) -> None:
    """`graph`'s tree on `out`: steps that depend on nothing at the top; under each step,
    the steps that need it."""
    from rich.console import Console
    from rich.markup import escape
    from rich.tree import Tree

    from orchestrate._graphs import node_label

    tree = Tree(f"[bold]{escape(workflow.name)}[/]")
    shown: set[str] = set()

    def add(branch: Any, step_id: str) -> None:
        if step_id in shown:
            branch.add(f"{step_id} [dim](see above)[/]")
            return
        shown.add(step_id)
        details = node_label(workflow.step(step_id)).removeprefix(f"{step_id} ")
        node = branch.add(f"{step_id} [dim]{escape(details)}[/]")
        for dependent in plan.dependents(step_id):
            add(node, dependent)

    for step in workflow.steps:
        if not plan.needs[step.id]:
            add(tree, step.id)
    Console(file=out).print(tree)


# --- the run history: runs list, show, diff ---------------------------------------------------


def _local_time(iso: str | None) -> str:
    if not iso:
        return ""
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _usage_text(usage: dict[str, Any] | None) -> str:
    if not usage:
        return ""
    return str(usage.get("input_tokens", 0) + usage.get("output_tokens", 0))


def print_estimate(estimate: Estimate, out: IO[str]) -> None:
    """`estimate`: per LLM step its calls, tokens and cost range; the total; the notes."""
    from rich.table import Table

    doc = escape_data(estimate.to_dict())
    table = Table(box=None, padding=(0, 1), header_style="bold")
    for column in ("step", "model", "calls", "input tokens", "output tokens", "cost"):
        table.add_column(
            column, justify="left" if column in ("step", "model") else "right", no_wrap=True
        )

    def span(tokens: dict[str, int]) -> str:
        low, high = tokens["low"], tokens["high"]
        return f"{low:,}" if low == high else f"{low:,}–{high:,}"

    def cost(costs: dict[str, float] | None) -> str:
        if costs is None:
            return "unknown"
        low, high = format_usd(costs["low"]), format_usd(costs["high"])
        return low if low == high else f"{low}–{high}"

    for step in doc["steps"]:
        table.add_row(
            step["id"],
            step["model"],
            str(step["calls"]),
            span(step["input_tokens"]),
            span(step["output_tokens"]),
            cost(step["cost_usd"]),
        )
    total = doc["total"]
    rows = f" × {total['rows']:,} rows" if total["rows"] != 1 else ""
    table.add_row(
        f"total{rows}",
        "",
        f"{total['calls']:,}",
        span(total["input_tokens"]),
        span(total["output_tokens"]),
        cost(total["cost_usd"]),
        style="bold",
    )
    with _history_console(out) as console:
        console.print(table)
        console.print(f"tokens: {doc['tokenizer']}", style="dim", markup=False)
        for note in doc["notes"]:
            console.print(f"note: {note}", style="dim", markup=False)


def _cost_text(doc: dict[str, Any]) -> str:
    """A run's cost; `unknown` for a price nobody knew or a run recorded before costs were."""
    cost = doc.get("cost_usd")
    return "unknown" if cost is None else format_usd(cost)


def _cost_change(a: float | None, b: float | None, delta: float | None) -> str:
    """`$0.01 → $0.02 (+$0.01)`; one amount when they are the same."""
    change = _side_by_side(format_usd(a), format_usd(b))
    if delta:
        sign = "+" if delta > 0 else "-"
        change += f" ({sign}{format_usd(abs(delta))})"
    return change


def _status_text(status: str) -> Any:
    from rich.text import Text

    return Text(f"{_SYMBOLS.get(status, '…')} {status}", style=_STYLES.get(status, "cyan"))


@contextmanager
def _history_console(out: IO[str]) -> Iterator[Console]:
    """A console for stdout: the terminal's width; piped, wide enough not to cut, and
    without the spaces Rich pads table cells with at the ends of lines."""
    from rich.console import Console

    if out.isatty():
        yield Console(file=out, highlight=False, soft_wrap=True)
        return
    buffer = io.StringIO()
    yield Console(file=buffer, highlight=False, soft_wrap=True, width=200)
    out.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))


def print_runs_table(runs: list[dict[str, Any]], out: IO[str]) -> None:
    """`runs list`: one row per run, newest first; a batch says so after its workflow."""
    from rich.table import Table

    runs = escape_data(runs)

    table = Table(box=None, padding=(0, 1), header_style="bold")
    table.add_column("run id", no_wrap=True)
    table.add_column("workflow")
    table.add_column("status", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    for run in runs:
        duration = run["duration_ms"]
        workflow = run["workflow"]
        if run.get("kind") == "batch":
            workflow += f" (batch of {run['rows']:,} rows)"
        table.add_row(
            run["run_id"],
            workflow,
            _status_text(run["status"]),
            _local_time(run["started_at"]),
            "" if duration is None else _duration(duration),
            _usage_text(run["usage"]),
            format_usd(run.get("cost_usd")),
        )
    with _history_console(out) as console:
        console.print(table)


def print_run(doc: dict[str, Any], details: dict[str, Any], out: IO[str]) -> None:
    """`runs show`: what ran, from which file, the outputs, then each step."""
    with _history_console(out) as console:
        _draw_run(escape_data(doc), escape_data(details), console)


def _draw_run(doc: dict[str, Any], details: dict[str, Any], console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    title = Text(f"run {doc['run_id']}  {doc['workflow']}  ", style="bold")
    console.print(title + _status_text(doc["status"]))
    facts: list[tuple[str, str]] = []
    source = doc.get("file") or ""
    if details.get("file_sha256"):
        source += f"  sha256 {details['file_sha256'][:12]}"
    if details.get("git_commit"):
        source += f"  git {details['git_commit'][:12]}"
    facts.append(("file", source))
    took = "" if doc.get("duration_ms") is None else f", took {_duration(doc['duration_ms'])}"
    facts.append(("started", f"{_local_time(doc['started_at'])}{took}, {details.get('mode')}"))
    if details.get("user_name") or details.get("host_name"):
        facts.append(
            ("by", f"{details.get('user_name') or '?'} on {details.get('host_name') or '?'}")
        )
    usage = doc.get("usage") or {}
    facts.append(
        ("tokens", f"{usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out")
    )
    facts.append(("cost", _cost_text(doc)))
    if doc.get("resumed_from"):
        facts.append(("resumed", f"from {doc['resumed_from']}"))
    if doc.get("error"):
        error = doc["error"]
        where = f"step {error['step']}: " if error.get("step") else ""
        facts.append(("error", f"{where}{error['type']}: {error['message']}"))
    facts.append(("inputs", _shorten(json.dumps(doc.get("inputs"), ensure_ascii=False))))
    for name, value in facts:
        console.print(Text(f"{name:<8} ", style="dim") + Text(value))
    console.print()
    for name, value in (doc.get("outputs") or {}).items():
        console.print(f"## {name}", style="bold")
        console.print(Text(format_value(value).rstrip("\n")))
        console.print()
    table = Table(
        box=None,
        padding=(0, 1),
        header_style="bold",
        title="steps",
        title_justify="left",
        title_style="bold",
    )
    for column in ("", "step", "model", "time", "tokens", "cost", "note"):
        table.add_column(column, no_wrap=column != "note")
    for step in doc.get("steps") or []:
        status = step["status"]
        note = "cached" if step.get("cached") else "reused" if step.get("reused") else ""
        if step.get("error") and status == "failed":
            note = step["error"]["message"]
        elif status == "succeeded" and step.get("output") is not None:
            preview = _shorten(" ".join(format_value(step["output"]).split()), 100)
            note = (f"({note}) " if note else "") + preview
        model = "/".join(p for p in (step.get("provider"), step.get("model")) if p)
        shown = status in ("succeeded", "failed")
        table.add_row(
            Text(_SYMBOLS.get(status, "·"), style=_STYLES.get(status, "")),
            step["id"],
            model,
            _duration(step["duration_ms"]) if shown else "",
            _usage_text(step.get("usage")),
            format_usd(step.get("cost_usd")) if step.get("usage") else "",
            Text(note, style="dim", overflow="ellipsis", no_wrap=True),
        )
    console.print(table)


def _diff_text(diff: str) -> Any:
    from rich.text import Text

    text = Text()
    for line in diff.splitlines(keepends=True):
        style = (
            "bold"
            if line.startswith(("---", "+++"))
            else "green"
            if line.startswith("+")
            else "red"
            if line.startswith("-")
            else "cyan"
            if line.startswith("@@")
            else ""
        )
        text.append("  " + line, style=style)
    return text


def _side_by_side(a: Any, b: Any) -> str:
    a, b = ("-" if a in (None, "") else str(a)), ("-" if b in (None, "") else str(b))
    return a if a == b else f"{a} → {b}"


def print_diff(diff: dict[str, Any], out: IO[str]) -> None:
    """`runs diff`: per step, status, tokens and time side by side, then what changed."""
    with _history_console(out) as console:
        _draw_diff(escape_data(diff), console)


def _draw_diff(diff: dict[str, Any], console: Console) -> None:
    from rich.text import Text

    a, b = diff["a"], diff["b"]
    console.print(
        Text(
            f"a {a['run_id']}  {a['workflow']}  {a['status']}  {_local_time(a['started_at'])}",
            style="bold",
        )
    )
    console.print(
        Text(
            f"b {b['run_id']}  {b['workflow']}  {b['status']}  {_local_time(b['started_at'])}",
            style="bold",
        )
    )
    console.print(
        Text(
            "cost: "
            + _cost_change(a.get("cost_usd"), b.get("cost_usd"), diff.get("cost_usd_delta"))
        )
    )
    for label, key in (("inputs", "inputs_diff"), ("outputs", "outputs_diff")):
        console.print(Text(f"{label}: " + ("changed" if diff[key] else "unchanged")))
        if diff[key]:
            console.print(_diff_text(diff[key]), end="")
    for step in diff["steps"]:
        sa, sb = step["a"] or {}, step["b"] or {}
        duration_a = sa.get("duration_ms")
        duration_b = sb.get("duration_ms")
        parts = [
            _side_by_side(sa.get("status"), sb.get("status")),
            _side_by_side(_usage_text(sa.get("usage")), _usage_text(sb.get("usage"))) + " tok",
            _cost_change(sa.get("cost_usd"), sb.get("cost_usd"), step.get("cost_usd_delta")),
            _side_by_side(
                None if duration_a is None else _duration(duration_a),
                None if duration_b is None else _duration(duration_b),
            ),
        ]
        changed = [name for name in ("request", "output") if step[f"{name}_changed"]]
        parts.append(", ".join(f"{name} changed" for name in changed) or "unchanged")
        console.print()
        console.print(Text(f"## {step['id']}", style="bold") + Text("  " + "  ".join(parts)))
        for name in changed:
            console.print(_diff_text(step[f"{name}_diff"]), end="")
