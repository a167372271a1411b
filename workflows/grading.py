"""Check functions for workflows/review-sentiment.yaml (`function: grading:brevity`).

A check function gets its `with:` as keyword arguments and returns a bool, a score from
0 to 1 (compared with the check's `threshold`), or {"score", "message"}.
"""

from __future__ import annotations


def brevity(text: str, words: int = 25) -> dict[str, float | str]:
    """1.0 for at most `words` words, falling linearly to 0 at twice as many."""
    count = len(text.split())
    score = 1.0 if count <= words else max(0.0, 2 - count / words)
    return {"score": round(score, 2), "message": f"{count} words (aim: at most {words})"}
