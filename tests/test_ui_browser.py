"""The web view in a real browser (Chromium through Playwright), scripted like a user.

Skipped when no Chromium (or no Playwright) can be found, except under CI (`CI` set),
where that is a failure. Screenshots of each page go to the test's folder; set
ORCHESTRATE_UI_SCREENSHOTS=DIR to keep them too (docs/ui.md shows them).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST_THEN_SLOW, SLOW, start_orchestrate

HELLO = """
    name: hello
    description: Greets someone, then shouts it.
    inputs:
      name: {type: string, description: Who to greet}
      loud: {type: boolean, default: false}
      tags: {type: array, default: [], description: Labels for the greeting}
    steps:
      - id: greet
        prompt: "Greet {{ inputs.name }}"
        mock: "<script>alert(1)</script> hello {{ inputs.name }}"
      - id: shout
        prompt: "Shout {{ steps.greet.output }}"
        mock: "## Shouted\\n\\n**HELLO {{ inputs.name }}**, with a [link](https://example.com)"
      - id: sign
        prompt: "Sign {{ steps.shout.output }} and {{ steps.greet.output }}"
        mock: "signed"
    outputs:
      text: "{{ steps.shout.output }}"
    """
ROWS_FLOW = """
    name: review
    description: Shapes a text, then answers it.
    inputs:
      text: {type: string}
      tone: {enum: [formal, casual], default: formal}
    steps:
      - id: shape
        function: rows:shape
        with: {text: "{{ inputs.text }}"}
      - id: answer
        prompt: "Answer {{ steps.shape.output }} in a {{ inputs.tone }} tone"
        mock: "answer to {{ steps.shape.output }}"
    outputs:
      answer: "{{ steps.answer.output }}"
    checks:
      - id: short
        expect: outputs.answer | length < 17
      - id: polite
        judge: {rubric: The answer is polite.}
    """
ROWS_PY = """
    def shape(text):
        if text.startswith("bad"):
            raise ValueError(f"cannot shape {text!r}")
        return text.upper()
    """


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        found = None
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(
                "the browser tests need Chromium and Playwright in CI "
                "(apt-get install chromium; pip install '.[test]')"
            )
        pytest.skip("no Chromium (or no Playwright) here")
    return found


@pytest.fixture
def server(
    tmp_path: Path, write_flow: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """`orchestrate ui FOLDER --port 0` running as a process; its address with the token."""
    for name, text in (
        ("hello.yaml", HELLO),
        ("slow.yaml", FAST_THEN_SLOW),
        ("slow.py", SLOW),
        ("review.yaml", ROWS_FLOW),
        ("rows.py", ROWS_PY),
    ):
        write_flow(text, f"flows/{name}")
    monkeypatch.setenv("ORCHESTRATE_MOCK_LATENCY", "0.15")
    process = start_orchestrate("ui", tmp_path / "flows", "--port", "0", "--no-open")
    assert process.stderr is not None
    line = process.stderr.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+/\?token=\S+)", line)
    assert match, line
    yield match.group(1)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=15)
    assert process.returncode == 0


@pytest.fixture
def shots(tmp_path: Path) -> Any:
    """Save a screenshot under the test's folder (and ORCHESTRATE_UI_SCREENSHOTS)."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    keep = os.environ.get("ORCHESTRATE_UI_SCREENSHOTS")

    def shoot(page: Any, name: str, full_page: bool = False) -> None:
        path = folder / f"ui-{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        if keep:
            shutil.copy(path, Path(keep) / path.name)

    return shoot


@pytest.mark.skipif(sys.platform == "win32", reason="the server is stopped with SIGINT")
def test_a_user_runs_watches_cancels_and_compares(server: str, shots: Any) -> None:
    """Open the token address, open a workflow, see its graph, fill the form, run with the
    mock and watch the nodes turn green, read a step's output (the mock's `<script>`
    shown as text, no alert), start a slow run and cancel it, compare two runs."""
    from playwright.sync_api import expect, sync_playwright

    base = server.split("/?")[0]
    dialogs: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium())
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.set_default_timeout(15_000)

            page.goto(server)
            expect(page).to_have_url(base + "/")  # the token moved to a cookie
            expect(page.locator("table.workflows")).to_contain_text("hello")
            shots(page, "workflows")

            page.click("text=hello")
            expect(page.locator("#node-greet")).to_be_visible()
            expect(page.locator(".graph-box .edge")).to_have_count(3)
            page.fill("#input-name", "Ada")
            page.check("#input-loud")
            page.fill("#input-tags", '["x",')
            expect(page.locator(".json-problem")).to_contain_text("not valid JSON")
            page.fill("#input-tags", '["x"]')
            expect(page.locator(".json-problem")).to_be_hidden()
            shots(page, "workflow")

            page.click("button:has-text('Run with mock')")
            expect(page).to_have_url(re.compile(r"/runs/[0-9a-f]+$"))
            expect(page.locator(".graph-box .node.status-running").first).to_be_visible()
            shots(page, "run-live")
            expect(page.locator(".graph-box .node.status-succeeded")).to_have_count(3)
            expect(page.locator("#run-status")).to_contain_text("succeeded")
            first_run = page.url.rsplit("/", 1)[1]

            page.click("#steps li[data-step=shout] a")
            expect(page).to_have_url(re.compile(r"/steps/shout$"))
            output = page.locator("#panel .markdown")
            expect(output.locator("strong")).to_have_text("HELLO Ada")
            expect(output.locator("a")).to_have_attribute("rel", "noopener noreferrer")
            page.click("#node-greet")
            expect(page.locator("#panel .markdown")).to_contain_text(
                "<script>alert(1)</script> hello Ada"
            )
            shots(page, "run", full_page=True)

            page.goto(base + "/workflows/hello.yaml")
            page.fill("#input-name", "Bo")
            page.click("button:has-text('Run with mock')")
            expect(page.locator("#run-status")).to_contain_text("succeeded")
            second_run = page.url.rsplit("/", 1)[1]

            page.goto(base + "/workflows/slow.yaml")
            page.click("button:has-text('Run with mock')")
            expect(page.locator("#node-fast.status-succeeded")).to_be_visible()
            expect(page.locator("#node-slow.status-running")).to_be_visible()
            page.click("#cancel")
            expect(page.locator("#run-status")).to_contain_text("cancelled")
            expect(page.locator("#node-slow.status-cancelled")).to_be_visible()
            shots(page, "run-cancelled")

            page.goto(base + "/runs")
            page.check(f"input.pick[value='{first_run}']")
            page.check(f"input.pick[value='{second_run}']")
            shots(page, "history")
            # A row's cells share a baseline: the monospace run id is on the line of the
            # workflow's name (with `vertical-align: top` it sat 2 px higher).
            offsets = page.evaluate("""() => [...document.querySelectorAll(
                "table.runs tbody tr")].map((tr) => tr.querySelector("td:nth-child(2) a")
                .getBoundingClientRect().bottom - tr.querySelector("td:nth-child(3) a")
                .getBoundingClientRect().bottom)""")
            assert offsets and all(abs(offset) < 0.5 for offset in offsets), offsets
            page.click("#compare")
            expect(page).to_have_url(re.compile(r"/compare\?a="))
            expect(page.locator("table.compare")).to_contain_text("changed")
            added = page.locator(
                "pre.diff .diff-add", has_text="<script>alert(1)</script> hello Bo"
            )
            expect(added).to_have_count(1)
            shots(page, "compare", full_page=True)

            dark = browser.new_page(viewport={"width": 1280, "height": 860}, color_scheme="dark")
            dark.goto(f"{server}")
            dark.goto(f"{base}/runs/{first_run}/steps/shout")
            expect(dark.locator("#panel strong")).to_have_text("HELLO Ada")
            shots(dark, "run-dark")
        finally:
            browser.close()
    assert dialogs == []


@pytest.mark.skipif(sys.platform == "win32", reason="the server is stopped with SIGINT")
def test_a_user_reads_a_batch(server: str, shots: Any, tmp_path: Path) -> None:
    """A batch run in another process: the history links it to its page, which shows the
    summary and the failed rows first, each opening its run; the Batches menu lists it;
    an `enum` input is a select on the workflow's form."""
    from playwright.sync_api import expect, sync_playwright

    from orchestrate._batch import run_batch
    from orchestrate.history import HistoryOptions

    texts = ["alpha", "beta", "bad gamma", "delta", "epsilon", "bad zeta", "eta", "theta"]
    rows = [{"text": text, "tone": "casual" if i % 2 else "formal"} for i, text in enumerate(texts)]
    batch = run_batch(tmp_path / "flows" / "review.yaml", rows, mock=True, history=HistoryOptions())
    batch_id = batch.summary.batch_id
    base = server.split("/?")[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium())
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(15_000)
            page.goto(server)
            page.click("nav >> text=Batches")
            expect(page.locator("table.batches")).to_contain_text("review")
            page.goto(base + "/runs")
            page.click(f"a[href='/batches/{batch_id}']")
            expect(page.locator("#batch-status")).to_contain_text("failed")
            statuses = page.locator("table.rows tbody tr td:nth-child(3)")
            expect(statuses).to_have_count(8)
            expect(statuses.nth(0)).to_contain_text("failed")
            expect(statuses.nth(1)).to_contain_text("failed")
            expect(statuses.nth(2)).to_contain_text("succeeded")
            expect(page.locator("table.rows")).to_contain_text("cannot shape 'bad gamma'")
            # epsilon's answer is too long, and a failed row fails every check: 5 of 8
            expect(page.locator("table.checks tbody tr", has_text="short")).to_contain_text("62%")
            epsilon = page.locator("table.rows tbody tr", has_text=batch.rows[4].run_id)
            expect(epsilon.locator(".row-checks")).to_contain_text("✗ short")
            expect(epsilon.locator("td.cost")).to_have_text("$0")
            shots(page, "batch", full_page=True)
            page.click(f"a[href='/runs/{batch.rows[2].run_id}']")
            expect(page.locator("#run-status")).to_contain_text("failed")

            page.goto(base + "/workflows/review.yaml")
            page.select_option("#input-tone", "casual")
            expect(page.locator("#input-tone")).to_have_value("casual")
        finally:
            browser.close()
