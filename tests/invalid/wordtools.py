"""The module that tests/invalid/function_misspelt.yaml names: read, never imported."""

raise AssertionError("validate imported a module")


def count_words(text: str) -> int:
    return len(text.split())
