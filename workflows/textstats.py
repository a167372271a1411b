"""Plain-Python text statistics for workflows/word-stats.yaml.

Function steps import their module from the workflow file's folder first, so the workflow
calls this as `function: textstats:count_words`. The functions are pure and return
JSON-serialisable data, as function steps must.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*|\d+(?:[.,]\d+)*")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_READING_WPM = 230  # words per minute of an average adult silent reader


def count_words(text: str) -> dict[str, float | int]:
    """Words, sentences, characters, average sentence length and reading time of `text`."""
    words = _WORD.findall(text)
    sentences = sum(1 for part in _SENTENCE_END.split(text) if _WORD.search(part))
    long_words = [w for w in words if len(w) >= 7]
    return {
        "words": len(words),
        "sentences": sentences,
        "characters": len(text.strip()),
        "avg_sentence_words": round(len(words) / sentences, 1) if sentences else 0,
        "long_word_ratio": round(len(long_words) / len(words), 2) if words else 0,
        "reading_minutes": round(len(words) / _READING_WPM, 1),
    }
