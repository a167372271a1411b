"""The commented starter workflow that `orchestrate init` writes."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrate._errors import UsageError

STARTER = """\
# A starter workflow. Run it offline with:   orchestrate run workflow.yaml --mock
# and for real (needs OPENAI_API_KEY):       orchestrate run workflow.yaml -i topic="tide pools"
# Check it like a compiler would:            orchestrate validate workflow.yaml
# The format: https://github.com/orchestrate-dev/orchestrate/blob/main/docs/workflow-format.md
version: 1
name: starter
description: Draft a short explainer on a topic, then give it a title.

inputs:
  topic:
    type: string
    description: What to explain
    default: how rainbows form

defaults:
  model: gpt-4o-mini        # any step can override this (or use --model)
  temperature: 0.3

steps:
  - id: explain
    system: You explain things clearly to curious adults.
    prompt: |
      Explain {{ inputs.topic }} in three short paragraphs.
    mock: |
      Rainbows form when sunlight enters raindrops, bends, reflects off the back of
      the drop and bends again on the way out, splitting white light into colours.

  - id: title
    # This step uses the first one's output, so it runs after it.
    prompt: "Give a five-word title for: {{ steps.explain.output }}"
    mock: How Sunlight Paints the Sky

outputs:
  title: "{{ steps.title.output }}"
  text: "{{ steps.explain.output }}"
"""


def write_starter(target: str, *, force: bool = False) -> Path:
    """Write the starter workflow to `target`; a folder (existing, or written with a
    trailing slash) gets `workflow.yaml` inside it."""
    path = Path(target)
    if path.is_dir() or target.endswith(("/", os.sep)):
        path = path / "workflow.yaml"
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", hint="pass --force to overwrite it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(STARTER, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
