"""The workflow classes' own behaviour."""

from __future__ import annotations

import pytest

from orchestrate._spec import ModelSettings

DEFAULTS = ModelSettings(model="gpt-4o-mini", temperature=0.3, retries=2)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (ModelSettings(), DEFAULTS),
        (
            ModelSettings(max_tokens=10),
            ModelSettings(model="gpt-4o-mini", temperature=0.3, retries=2, max_tokens=10),
        ),
        (
            ModelSettings(model="claude-3-5-haiku", temperature=0.0, retries=0, cache=False),
            ModelSettings(model="claude-3-5-haiku", temperature=0.0, retries=0, cache=False),
        ),
    ],
)
def test_merged_takes_every_value_the_override_sets(
    override: ModelSettings, expected: ModelSettings
) -> None:
    """A step's settings replace the defaults' where set (zero and False included)."""
    assert expected == DEFAULTS.merged(override)
