"""Words for messages: the "did you mean" of every error, and counted nouns."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[object]) -> str | None:
    """`did you mean 'prompt'?` when one of `choices` is close to `word`."""
    options = sorted(str(c) for c in choices)
    matches = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"did you mean {matches[0]!r}?" if matches else None


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 step`, `3 steps`: a count with its noun (which takes an `s`, unless `nouns`
    is given: `2 batches`)."""
    return f"{count} {noun}" if count == 1 else f"{count} {nouns or noun + 's'}"
