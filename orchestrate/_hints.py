"""Hints for near misses: the "did you mean" of every error message."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[object]) -> str | None:
    """`did you mean 'prompt'?` when one of `choices` is close to `word`."""
    options = sorted(str(c) for c in choices)
    matches = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"did you mean {matches[0]!r}?" if matches else None
