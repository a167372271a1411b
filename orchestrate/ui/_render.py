"""Pages from templates: the Jinja environment (autoescape on), its filters, and Markdown.

Everything a template shows from a workflow, a run or a model is escaped by Jinja; the
only HTML that is not escaped is made here: Markdown rendered with raw HTML disabled,
and diff lines whose text is escaped first.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse, JSONResponse

from orchestrate._cost import format_usd

TEMPLATES = Path(__file__).parent / "templates"
STATUS_MARKS = {
    "waiting": "○",
    "queued": "◌",
    "running": "●",
    "succeeded": "✓",
    "failed": "✗",
    "skipped": "↷",
    "cancelled": "■",
}


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        markdown=markdown,
        pretty_json=pretty_json,
        duration=duration,
        tokens=tokens,
        mark=STATUS_MARKS.get,
        diff_lines=diff_lines,
        usd=format_usd,
        usd_change=usd_change,
        preview=preview,
    )
    return env


def page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code)


def not_found_page(what: str) -> HTMLResponse:
    """The 404 page of every page family: `what` (a run, a batch, a workflow) is not there."""
    return page("not_found.html", 404, what=what, api=None)


def api_error(status: int, kind: str, message: str) -> JSONResponse:
    """An /api error: `{"error": {"type", "message"}}` with its HTTP status."""
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


@functools.cache
def _markdown_renderer() -> Any:
    from markdown_it import MarkdownIt

    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")

    def link_open(self: Any, tokens: Any, index: int, options: Any, env: Any) -> str:
        tokens[index].attrSet("rel", "noopener noreferrer")
        return str(self.renderToken(tokens, index, options, env))

    renderer.add_render_rule("link_open", link_open)
    return renderer


def markdown(text: Any) -> Markup:
    """Model text as formatted HTML: raw HTML in it is shown as text, links open nothing
    of ours (`rel="noopener noreferrer"`), and `javascript:` links are not links."""
    return Markup(_markdown_renderer().render(str(text)))


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def duration(ms: int | None) -> str:
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms // 60_000} min {ms % 60_000 // 1000} s"


def tokens(usage: dict[str, int] | None) -> str:
    if not usage:
        return ""
    return f"{usage.get('input_tokens', 0) + usage.get('output_tokens', 0):,} tok"


def usd_change(delta: float | None) -> str:
    """A cost difference as the terminal's `runs diff` shows it: `+$0.0031`, `-$0.12`;
    `?` when either cost is unknown."""
    if delta is None:
        return "?"
    if delta == 0:
        return "$0"
    return ("+" if delta > 0 else "-") + format_usd(abs(delta))


def preview(value: Any, limit: int = 120) -> str:
    """A value on one short line: text as it is, anything else as compact JSON."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def diff_lines(diff: str) -> Markup:
    """A unified diff as lines marked added, removed or context (the text escaped)."""
    lines = []
    for line in diff.splitlines():
        kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "ctx")
        if line.startswith(("+++", "---")):
            kind = "file"
        lines.append(f'<span class="diff-{kind}">{escape(line)}</span>')
    return Markup("".join(lines))  # each line a block of its own
