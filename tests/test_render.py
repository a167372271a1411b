"""What a person sees: the live view, plain progress lines and printed outputs."""

from __future__ import annotations

import io
import re

import pytest
from attrs import evolve as attrs_evolve
from rich.console import Console
from rich.spinner import Spinner

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
from orchestrate._render import (
    LiveView,
    PlainProgress,
    escape_controls,
    looks_like_markdown,
    print_outputs,
    print_run,
    report_run,
    resume_hint,
    reuse_line,
)
from orchestrate._result import ErrorInfo, ItemResult, RunResult, StepResult, Usage

STEPS = (("draft", "llm"), ("each", "llm"), ("check", "function"))
DONE = StepResult(
    id="draft",
    status="succeeded",
    output="text",
    provider="openai",
    model="gpt-4o-mini",
    attempts=1,
    duration_ms=1500,
    usage=Usage(10, 20),
    cost_usd=0.0000135,
)
FAILED = StepResult(
    id="check",
    status="failed",
    duration_ms=3,
    error=ErrorInfo("function", "tools:check raised ValueError: bad", "check"),
)


def console() -> Console:
    return Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)


def started() -> RunStarted:
    return RunStarted(
        run_id="r1", workflow="demo", file="demo.yaml", started_at="now", inputs={}, steps=STEPS
    )


def result(status: str = "failed") -> RunResult:
    return RunResult(
        run_id="r1",
        workflow="demo",
        file="demo.yaml",
        status=status,
        started_at="now",
        duration_ms=2000,
        inputs={},
        outputs={},
        steps=(DONE, StepResult(id="each", status="cancelled"), FAILED),
        error=FAILED.error,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def draw(view: LiveView) -> str:
    out = console()
    out.print(view.render())
    return out.file.getvalue()


def test_live_view_shows_each_step_as_it_goes() -> None:
    """Rows follow the events: spinner and preview while running, a mark when done."""
    clock = Clock()
    view = LiveView(console(), clock=clock)
    view(started())
    view(StepStarted(step_id="draft", kind="llm", provider="openai", model="gpt-4o-mini"))
    view(TokenReceived(step_id="draft", text="Once upon "))
    view(TokenReceived(step_id="draft", text="a time"))
    clock.now = 101.5
    screen = draw(view)
    assert "gpt-4o-mini" in screen
    assert "1.5s" in screen
    assert "draft: Once upon a time" in screen
    view(StepFinished(result=DONE))
    view(StepStarted(step_id="each", kind="llm", items=4))
    view(ItemFinished(step_id="each", index=0, status="succeeded", done=1, total=4))
    view(StepRetrying(step_id="each", attempt=2, delay=0.5, reason="HTTP 429"))
    view(StepFinished(result=FAILED))
    screen = draw(view)
    view.stop()
    rows = {line.split()[1]: line for line in screen.splitlines()[1:] if line.split()}
    assert rows["draft"].split()[:5] == ["✓", "draft", "gpt-4o-mini", "1.5s", "30"]
    assert "1/4 done" in rows["each"]
    assert rows["check"].split()[:2] == ["✗", "check"]
    assert "tools:check raised" in rows["check"]
    assert "Once upon" not in screen  # no preview once a step is done


def test_live_view_prints_a_summary_at_the_end() -> None:
    """When the run finishes, the view stops and prints its id, statuses, time and tokens."""
    out = console()
    view = LiveView(out)
    view(started())
    view(RunFinished(result=result()))
    text = " ".join(out.file.getvalue().split())
    assert "run r1 failed in 2.0s: 1 succeeded, 1 cancelled, 1 failed; 30 tokens" in text


def test_plain_progress_is_one_line_per_event() -> None:
    """Without a terminal, each lifecycle event is one uncoloured line."""
    out = io.StringIO()
    progress = PlainProgress(out)
    for event in (
        started(),
        StepStarted(step_id="draft", kind="llm", provider="openai", model="m"),
        TokenReceived(step_id="draft", text="ignored"),
        StepRetrying(step_id="draft", attempt=2, delay=1.25, reason="HTTP 503"),
        StepFinished(result=DONE),
        StepFinished(result=FAILED),
        RunFinished(result=result()),
    ):
        progress(event)
    assert out.getvalue().splitlines() == [
        "run r1 of demo: 3 steps",
        "▶ draft started (openai/m)",
        "↻ draft attempt 2 in 1.2s: HTTP 503",
        "✓ draft succeeded 1.5s 30 tok $0.000013",
        "✗ check failed 3ms: tools:check raised ValueError: bad",
        "run r1 failed in 2.0s: 1 succeeded, 1 cancelled, 1 failed; 30 tokens (10 in, 20 out), "
        "$0.000013",
    ]
    assert "\x1b[" not in out.getvalue()


def plain(*events: Event) -> list[str]:
    out = io.StringIO()
    progress = PlainProgress(out)
    for event in events:
        progress(event)
    return out.getvalue().splitlines()


def test_plain_progress_says_why_an_output_failed() -> None:
    """A run failed by an output template (no step to blame) prints the reason and hint."""
    error = ErrorInfo("template", "outputs.summary: 'steps.x' is undefined", hint="a hint")
    failed = attrs_evolve(result(), steps=(DONE,), error=error)
    assert plain(RunFinished(result=failed)) == [
        "run r1 failed in 2.0s: 1 succeeded; 30 tokens (10 in, 20 out), $0.000013",
        "  error: outputs.summary: 'steps.x' is undefined",
        "  hint: a hint",
    ]


def test_plain_progress_counts_in_the_singular_and_shows_for_each_progress() -> None:
    """`1 step`, a queued step, n/N done (about every tenth item) and an item's retry."""
    one = RunStarted(
        run_id="r1",
        workflow="demo",
        file=None,
        started_at="now",
        inputs={},
        steps=(("each", "llm"),),
    )
    lines = plain(
        one,
        StepQueued(step_id="each", kind="llm"),
        StepStarted(step_id="each", kind="llm", items=1),
        StepRetrying(step_id="each", attempt=2, delay=3, reason="HTTP 429", item=0),
        ItemFinished(step_id="each", index=0, status="succeeded", done=1, total=1),
    )
    assert lines == [
        "run r1 of demo: 1 step",
        "· each waiting for a slot",
        "▶ each started, 1 item",
        "↻ each[0] attempt 2 in 3.0s: HTTP 429",
        "  each: 1/1 done",
    ]
    many = plain(
        *(
            ItemFinished(step_id="each", index=i, status="succeeded", done=i + 1, total=30)
            for i in range(30)
        )
    )
    assert many == [f"  each: {n}/30 done" for n in range(3, 31, 3)]


def row_of(screen: str, step_id: str) -> str:
    return next(line for line in screen.splitlines() if step_id in line.split()[1:2])


def test_a_step_waiting_for_a_slot_is_not_shown_running() -> None:
    """Queued: a dim dot and "waiting for a slot", no spinner and no time; started: a spinner."""
    clock = Clock()
    view = LiveView(console(), clock=clock)
    view(started())
    view(StepQueued(step_id="draft", kind="llm"))
    clock.now = 103.0
    queued = row_of(draw(view), "draft")
    assert queued.split() == ["·", "draft", "waiting", "for", "a", "slot"]
    view(StepStarted(step_id="draft", kind="llm", model="m"))
    clock.now = 104.0
    running = row_of(draw(view), "draft")
    view.stop()
    assert running.split()[1:4] == ["draft", "m", "1.0s"]  # its time counts from its start
    assert running.split()[0] in Spinner("dots").frames


def test_a_for_each_shows_items_done_and_a_retry() -> None:
    """A for_each row shows n/N done and a bar, or an item waiting to retry."""
    view = LiveView(console(), clock=Clock())
    view(started())
    view(StepStarted(step_id="each", kind="llm", items=4))
    view(ItemFinished(step_id="each", index=0, status="succeeded", done=1, total=4))
    view(TokenReceived(step_id="each", text="partial", item=1))
    view(TokenReceived(step_id="each", text="other", item=2))
    assert "━" in row_of(draw(view), "each")  # a progress bar while nothing else is said
    view(StepRetrying(step_id="each", attempt=2, delay=20, reason="HTTP 429", item=1))
    screen = draw(view)
    view.stop()
    each = row_of(screen, "each")
    assert "1/4 done" in each and "retry 2 in 20s (item 1)" in each
    assert "each[2]: other" in screen and "partial" not in screen  # only item 1's text went


def test_the_preview_shows_the_newest_text() -> None:
    """Streamed text longer than the line: the preview ends with its newest words."""
    view = LiveView(console(), clock=Clock())
    view(started())
    view(StepStarted(step_id="draft", kind="llm"))
    for word in range(60):
        view(TokenReceived(step_id="draft", text=f"w{word} "))
    screen = draw(view)
    view.stop()
    preview = next(line for line in screen.splitlines() if line.startswith("draft: "))
    assert preview.rstrip().endswith("w58 w59") and "w0 " not in preview
    assert len(preview.rstrip()) <= 80 - 2


def on_a_terminal(output: str, width: int = 80) -> list[str]:
    """What a terminal shows after `output`: it wraps long lines and obeys Rich's moves."""
    lines, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[\??[0-9;]*[A-Za-z]|.", output, re.DOTALL):
        if token == "\n":
            row, col = row + 1, 0
        elif token == "\r":
            col = 0
        elif token == "\x1b[2K":
            lines[row] = ""
        elif token.startswith("\x1b[") and token.endswith("A"):
            row -= int(token[2:-1] or 1)
        elif token.startswith("\x1b"):
            continue
        else:
            if col == width:  # a character past the edge goes to the next line
                row, col = row + 1, 0
            while len(lines) <= row:
                lines.append("")
            lines[row] = lines[row][:col].ljust(col) + token + lines[row][col + 1 :]
            col += 1
        while len(lines) <= row:
            lines.append("")
    return lines


def test_ctrl_c_leaves_one_table_header() -> None:
    """The terminal echoes ^C after the view's last line; the final table is drawn once."""
    out = console()
    view = LiveView(out, clock=Clock())
    view(started())
    view(StepStarted(step_id="draft", kind="llm"))
    view(TokenReceived(step_id="draft", text="a long answer that fills the line " * 5))
    view.live.refresh()
    out.file.write("^C")  # what the terminal prints when Ctrl-C is pressed
    cancelled = attrs_evolve(result("cancelled"), error=ErrorInfo("cancelled", "interrupted"))
    for step in cancelled.steps:
        view(StepFinished(result=step))
    view(RunFinished(result=cancelled))
    shown = on_a_terminal(out.file.getvalue())
    assert sum(line.split() == ["step", "model", "time", "tokens", "cost"] for line in shown) == 1


def test_the_resume_hint_follows_a_failed_or_cancelled_run() -> None:
    """A failed or cancelled run gets a `--resume` line (the path quoted); a success none."""
    assert resume_hint(result("failed"), "my flows/a.yaml") == (
        "resume with: orchestrate run 'my flows/a.yaml' --resume r1"
    )
    assert resume_hint(result("cancelled"), "a.yaml") == (
        "resume with: orchestrate run a.yaml --resume r1"
    )
    assert resume_hint(result("succeeded"), "a.yaml") is None


def resumed(*steps: StepResult) -> RunResult:
    return attrs_evolve(result("succeeded"), steps=steps, error=None, resumed_from="abc123")


ITEM = ItemResult(index=0, output="x", fingerprint="f", reused=True)


@pytest.mark.parametrize(
    ("run", "line"),
    [
        (result(), None),
        (
            resumed(
                attrs_evolve(DONE, reused=True),
                attrs_evolve(DONE, id="keywords", reused=True),
                FAILED,
            ),
            "reused 2 steps from run abc123 (draft, keywords)",
        ),
        (resumed(attrs_evolve(DONE, reused=True)), "reused 1 step from run abc123 (draft)"),
        (resumed(DONE), "reused 0 steps from run abc123"),
        (
            resumed(
                DONE,
                attrs_evolve(DONE, id="each", items=(ITEM, ITEM, attrs_evolve(ITEM, reused=False))),
                attrs_evolve(DONE, id="one", items=(ITEM,)),
            ),
            "reused 0 steps from run abc123, and 2 items of each, and 1 item of one",
        ),
    ],
)
def test_reuse_line(run: RunResult, line: str | None) -> None:
    """A resumed run says which steps (and for_each items) it took from which run."""
    assert reuse_line(run) == line


def test_reuse_line_comes_before_the_summary() -> None:
    """Plain progress and the live view print the reuse line above the summary."""
    run = resumed(attrs_evolve(DONE, reused=True))
    out = io.StringIO()
    PlainProgress(out)(RunFinished(result=run))
    assert out.getvalue().splitlines()[0] == "reused 1 step from run abc123 (draft)"
    screen = console()
    view = LiveView(screen)
    view(started())
    view(RunFinished(result=run))
    text = screen.file.getvalue()
    assert 0 < text.index("reused 1 step from run abc123 (draft)") < text.index("run r1 succeeded")


def test_outputs_raw_or_as_sections() -> None:
    """A single output is raw; several are `## NAME` sections; non-strings are JSON."""
    one = io.StringIO()
    print_outputs({"a": "text\n"}, one)
    assert one.getvalue() == "text\n"
    several = io.StringIO()
    print_outputs({"a": "x", "b": {"k": [1]}}, several)
    assert several.getvalue() == '## a\nx\n\n## b\n{\n  "k": [\n    1\n  ]\n}\n\n'


def test_markdown_is_rendered_on_a_terminal() -> None:
    """On a terminal, Markdown output is rendered; plain text stays raw."""
    out = io.StringIO()
    print_outputs({"a": "# Title\n\n- one\n- two"}, out, terminal=True)
    assert "Title" in out.getvalue()
    assert "# Title" not in out.getvalue()
    plain = io.StringIO()
    print_outputs({"a": "just words"}, plain, terminal=True)
    assert plain.getvalue() == "just words\n"


def test_markdown_detection() -> None:
    """Headings, lists, quotes, fences and bold look like Markdown; prose does not."""
    assert looks_like_markdown("## Heading")
    assert looks_like_markdown("intro\n- item")
    assert looks_like_markdown("some **bold** text")
    assert not looks_like_markdown("A plain sentence - with a dash.")


def test_a_tall_workflow_shows_what_matters() -> None:
    """More steps than lines: running and failed steps stay, the rest is counted."""
    out = Console(file=io.StringIO(), width=80, height=12, force_terminal=True, color_system=None)
    view = LiveView(out)
    view(
        RunStarted(
            run_id="r",
            workflow="w",
            file=None,
            started_at="now",
            inputs={},
            steps=tuple((f"s{i:02}", "llm") for i in range(40)),
        )
    )
    for i in range(10):
        view(StepFinished(result=StepResult(id=f"s{i:02}", status="succeeded")))
    view(StepStarted(step_id="s10", kind="llm"))
    view(StepFinished(result=attrs_evolve(FAILED, id="s11")))
    screen = draw(view)
    view.stop()
    assert "s10" in screen and "s11" in screen
    assert "… and 34 more: 8 succeeded, 26 waiting" in screen  # s12, s13 are next up
    assert len(screen.splitlines()) <= 12


# --- control characters ------------------------------------------------------------------------

HOSTILE = "ok\x1b[2J\x1b]52;c;cHduZWQ=\x07\rfake line\x9b31m\u202eevil"
SHOWN = "ok\\x1b[2J\\x1b]52;c;cHduZWQ=\\x07\\rfake line\\x9b31m\\u202eevil"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HOSTILE, SHOWN),
        ("\x00\x08\x0b\x0c\x7f", "\\x00\\x08\\x0b\\x0c\\x7f"),
        ("lines\nand\ttabs stay, é ✓ 字 too", "lines\nand\ttabs stay, é ✓ 字 too"),
    ],
)
def test_escape_controls(text: str, expected: str) -> None:
    """Control characters become visible escapes; newlines, tabs and other text stay."""
    assert expected == escape_controls(text)


def hostile_failure() -> StepResult:
    return attrs_evolve(
        FAILED,
        error=ErrorInfo(
            "function", f"raised: {HOSTILE}", "check", details=f"Traceback: {HOSTILE}\n"
        ),
    )


def test_progress_and_live_view_escape_messages_and_answers() -> None:
    """A retry reason, an error and streamed text reach the terminal with no raw control."""
    lines = plain(
        started(),
        StepRetrying(step_id="draft", attempt=2, delay=0, reason=HOSTILE),
        StepFinished(result=hostile_failure()),
    )
    assert "\x1b" not in "".join(lines) and SHOWN in lines[1]
    view = LiveView(console())
    view(started())
    view(StepStarted(step_id="draft", kind="llm"))
    view(TokenReceived(step_id="draft", text=HOSTILE))
    view(StepRetrying(step_id="each", attempt=2, delay=0, reason=HOSTILE))
    view(StepFinished(result=hostile_failure()))
    screen = draw(view)
    assert [c for c in "\x1b\x07\r\x9b\u202e" if c in screen] == []
    assert "\\x1b[2J" in screen


def test_results_stay_byte_exact_off_a_terminal_and_escaped_on_one() -> None:
    """`run > file` gets an answer byte for byte; a terminal and stderr get it escaped."""
    done = attrs_evolve(result("succeeded"), outputs={"a": HOSTILE}, error=None)
    out, err = io.StringIO(), io.StringIO()
    report_run(done, out, err, with_outputs=True, show_error=True, verbose=True)
    assert out.getvalue() == HOSTILE + "\n"
    terminal = io.StringIO()
    print_outputs({"a": HOSTILE}, terminal, terminal=True)
    assert terminal.getvalue() == SHOWN + "\n"
    failed = attrs_evolve(result(), steps=(hostile_failure(),), error=hostile_failure().error)
    report_run(failed, io.StringIO(), err, with_outputs=True, show_error=True, verbose=True)
    assert "\x1b" not in err.getvalue() and SHOWN in err.getvalue()


def test_runs_show_escapes_what_the_history_holds() -> None:
    """`runs show` draws outputs and errors from the history with their controls escaped."""
    doc = attrs_evolve(result(), outputs={"a": HOSTILE}, steps=(hostile_failure(),)).to_dict()
    out = io.StringIO()
    print_run(doc, {"mode": "live"}, out)
    assert "\x1b" not in out.getvalue() and "\\x1b[2J" in out.getvalue()


def test_a_warning_is_said_once_per_run() -> None:
    """The same warning on several steps (a model without a price) is said on the first
    only, by the plain progress and by the live view; a new run says it again."""
    warned = [
        attrs_evolve(DONE, id=step_id, warnings=("no price known for model 'm'",))
        for step_id in ("draft", "each")
    ]
    lines = plain(started(), *(StepFinished(result=step) for step in warned))
    assert sum("warning: no price known" in line for line in lines) == 1
    again = plain(
        started(), StepFinished(result=warned[0]), started(), StepFinished(result=warned[1])
    )
    assert sum("warning: no price known" in line for line in again) == 2
    view = LiveView(console())
    view(started())
    for step in warned:
        view(StepFinished(result=step))
    screen = draw(view)
    assert "no price known" in row_of(screen, "draft")
    assert "no price known" not in row_of(screen, "each")
