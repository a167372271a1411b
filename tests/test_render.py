"""What a person sees: the live view, plain progress lines and printed outputs."""

from __future__ import annotations

import io

import pytest
from attrs import evolve as attrs_evolve
from rich.console import Console

from orchestrate._events import (
    ItemFinished,
    RunFinished,
    RunStarted,
    StepFinished,
    StepRetrying,
    StepStarted,
    TokenReceived,
)
from orchestrate._render import (
    LiveView,
    PlainProgress,
    looks_like_markdown,
    print_outputs,
    reuse_line,
)
from orchestrate._result import ErrorInfo, ItemResult, RunResult, StepResult, Usage

STEPS = (("draft", "llm"), ("each", "llm"), ("check", "function"))
DONE = StepResult(id="draft", status="succeeded", output="text", provider="openai",
                  model="gpt-4o-mini", attempts=1, duration_ms=1500, usage=Usage(10, 20))
FAILED = StepResult(id="check", status="failed", duration_ms=3,
                    error=ErrorInfo("function", "tools:check raised ValueError: bad", "check"))


def console() -> Console:
    return Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)


def started() -> RunStarted:
    return RunStarted(run_id="r1", workflow="demo", file="demo.yaml", started_at="now",
                      inputs={}, steps=STEPS)


def result(status: str = "failed") -> RunResult:
    return RunResult(run_id="r1", workflow="demo", file="demo.yaml", status=status,
                     started_at="now", duration_ms=2000, inputs={}, outputs={},
                     steps=(DONE, StepResult(id="each", status="cancelled"), FAILED),
                     error=FAILED.error)


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
    assert "━" in rows["each"]  # the for_each progress bar
    assert rows["check"].split()[:2] == ["✗", "check"]
    assert "tools:check raised ValueError: bad" in rows["check"]
    assert "Once upon" not in screen  # no preview once a step is done


def test_live_view_prints_a_summary_at_the_end() -> None:
    """When the run finishes, the view stops and prints statuses, time and tokens."""
    out = console()
    view = LiveView(out)
    view(started())
    view(RunFinished(result=result()))
    text = out.file.getvalue()
    assert "run failed in 2.0s: 1 succeeded, 1 cancelled, 1 failed; 30 tokens" in text


def test_plain_progress_is_one_line_per_event() -> None:
    """Without a terminal, each lifecycle event is one uncoloured line."""
    out = io.StringIO()
    progress = PlainProgress(out)
    for event in (started(),
                  StepStarted(step_id="draft", kind="llm", provider="openai", model="m"),
                  TokenReceived(step_id="draft", text="ignored"),
                  StepRetrying(step_id="draft", attempt=2, delay=1.25, reason="HTTP 503"),
                  StepFinished(result=DONE), StepFinished(result=FAILED),
                  RunFinished(result=result())):
        progress(event)
    assert out.getvalue().splitlines() == [
        "run r1 of demo: 3 steps",
        "▶ draft started (openai/m)",
        "↻ draft attempt 2 in 1.2s: HTTP 503",
        "✓ draft succeeded 1.5s 30 tok",
        "✗ check failed 3ms: tools:check raised ValueError: bad",
        "run failed in 2.0s: 1 succeeded, 1 cancelled, 1 failed; 30 tokens (10 in, 20 out)",
    ]
    assert "\x1b[" not in out.getvalue()


def resumed(*steps: StepResult) -> RunResult:
    return attrs_evolve(result("succeeded"), steps=steps, error=None, resumed_from="abc123")


ITEM = ItemResult(index=0, output="x", fingerprint="f", reused=True)


@pytest.mark.parametrize(("run", "line"), [
    (result(), None),
    (resumed(attrs_evolve(DONE, reused=True), attrs_evolve(DONE, id="keywords", reused=True),
             FAILED),
     "reused 2 steps from run abc123 (draft, keywords)"),
    (resumed(attrs_evolve(DONE, reused=True)), "reused 1 step from run abc123 (draft)"),
    (resumed(DONE), "reused 0 steps from run abc123"),
    (resumed(DONE, attrs_evolve(DONE, id="each", items=(ITEM, ITEM, attrs_evolve(
        ITEM, reused=False))), attrs_evolve(DONE, id="one", items=(ITEM,))),
     "reused 0 steps from run abc123, and 2 items of each, and 1 item of one"),
])
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
    assert 0 < text.index("reused 1 step from run abc123 (draft)") < text.index("run succeeded")


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
    out = Console(file=io.StringIO(), width=80, height=12, force_terminal=True,
                  color_system=None)
    view = LiveView(out)
    view(RunStarted(run_id="r", workflow="w", file=None, started_at="now", inputs={},
                    steps=tuple((f"s{i:02}", "llm") for i in range(40))))
    for i in range(10):
        view(StepFinished(result=StepResult(id=f"s{i:02}", status="succeeded")))
    view(StepStarted(step_id="s10", kind="llm"))
    view(StepFinished(result=attrs_evolve(FAILED, id="s11")))
    screen = draw(view)
    view.stop()
    assert "s10" in screen and "s11" in screen
    assert "… and 34 more: 8 succeeded, 26 waiting" in screen  # s12, s13 are next up
    assert len(screen.splitlines()) <= 12
