"""Workflow inputs from -i, @file, @- and --inputs files, checked against their specs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from orchestrate._errors import InputError
from orchestrate._inputs import parse_assignments, read_inputs_file, resolve_inputs
from orchestrate._spec import InputSpec

SPECS = {
    "article": InputSpec(),
    "count": InputSpec(type="integer", default=3),
    "tags": InputSpec(type="array", default=[]),
    "strict": InputSpec(type="boolean", default=False),
    "ratio": InputSpec(type="number", default=0.5),
}


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("article=hello world", {"article": "hello world"}),
        ("article=", {"article": ""}),
        ("article=a=b", {"article": "a=b"}),
        ("article=42", {"article": "42"}),
        ("count=7", {"count": 7}),
        ('tags=["a", "b"]', {"tags": ["a", "b"]}),
        ("strict=true", {"strict": True}),
        ("ratio=2", {"ratio": 2}),
    ],
)
def test_assignments_are_typed_by_the_input_spec(assignment: str, expected: dict) -> None:
    """A string input takes the text as is; other types parse it as JSON."""
    assert parse_assignments([assignment], SPECS) == expected


def test_at_file_reads_the_file(tmp_path: Path) -> None:
    """NAME=@file reads the whole file as the value."""
    article = tmp_path / "article.txt"
    article.write_text("line one\nline two\n", encoding="utf-8")
    assert parse_assignments([f"article=@{article}"], SPECS) == {"article": "line one\nline two\n"}


def test_at_dash_reads_stdin() -> None:
    """NAME=@- reads standard input."""
    stdin = io.StringIO("from a pipe")
    assert parse_assignments(["article=@-"], SPECS, stdin) == {"article": "from a pipe"}


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("nosuch=1", "unknown input 'nosuch'"),
        ("articel=x", "unknown input 'articel'"),
        ("justaname", "expected NAME=VALUE, got 'justaname'"),
        ("count=seven", "input 'count' must be JSON for its type, got 'seven'"),
        ("article=@/no/such/file", "cannot read /no/such/file"),
    ],
)
def test_bad_assignments_are_input_errors(assignment: str, message: str) -> None:
    """Each malformed -i is an InputError (exit 2) that names the problem."""
    with pytest.raises(InputError) as caught:
        parse_assignments([assignment], SPECS)
    assert caught.value.message.startswith(message)


def test_a_key_in_a_bad_input_is_redacted_before_the_value_is_shortened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A known key inside a mistyped input is removed from the message, not cut in half."""
    key = "0f3a9c1e5b2d4f60a7c8e9d0b1a2c3d4e5f60718"
    monkeypatch.setenv("SERVICE_TOKEN", key)
    with pytest.raises(InputError) as caught:
        parse_assignments([f"count={'x' * 40}{key}"], SPECS)
    assert key[:10] not in caught.value.message
    assert "[REDAC" in caught.value.message


def test_unknown_input_hint_suggests_the_near_miss() -> None:
    """A misspelt input name gets a did-you-mean hint."""
    with pytest.raises(InputError) as caught:
        parse_assignments(["articel=x"], SPECS)
    assert caught.value.hint == "did you mean 'article'?"


def test_resolve_fills_defaults_in_spec_order() -> None:
    """The resolved inputs hold every input, defaults included."""
    resolved = resolve_inputs(SPECS, {"strict": True, "article": "text"})
    assert resolved == {"article": "text", "count": 3, "tags": [], "strict": True, "ratio": 0.5}
    assert list(resolved) == list(SPECS)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "missing required input 'article'"),
        ({"article": 5}, "input 'article' must be of type string, got 5"),
        ({"article": "x", "count": True}, "input 'count' must be of type integer, got true"),
        ({"article": "x", "count": 1.5}, "input 'count' must be of type integer, got 1.5"),
        ({"article": "x", "other": 1}, "unknown input 'other'"),
    ],
)
def test_resolve_rejects_missing_and_mistyped(given: dict, message: str) -> None:
    """Missing required inputs and wrong types are InputErrors naming the input."""
    with pytest.raises(InputError) as caught:
        resolve_inputs(SPECS, given)
    assert caught.value.message == message


CHOICES = {
    "tone": InputSpec(enum=("formal", "casual"), default="formal"),
    "level": InputSpec(type="integer", enum=(1, 2, 3), default=1),
}


@pytest.mark.parametrize(
    ("given", "message", "hint"),
    [
        (
            {"tone": "casul"},
            "input 'tone' must be one of formal, casual, got \"casul\"",
            "did you mean 'casual'?",
        ),
        (
            {"tone": "loud"},
            "input 'tone' must be one of formal, casual, got \"loud\"",
            "the values it takes: formal, casual",
        ),
        (
            {"level": 5},
            "input 'level' must be one of 1, 2, 3, got 5",
            "the values it takes: 1, 2, 3",
        ),
    ],
)
def test_resolve_rejects_a_value_outside_the_enum(given: dict, message: str, hint: str) -> None:
    """An `enum` input takes only its listed values; the nearest one is suggested."""
    with pytest.raises(InputError) as caught:
        resolve_inputs(CHOICES, given)
    assert (caught.value.message, caught.value.hint) == (message, hint)


def test_resolve_takes_an_enum_value() -> None:
    """A listed value (or the default) passes the enum check."""
    assert resolve_inputs(CHOICES, {"level": 3}) == {"tone": "formal", "level": 3}


@pytest.mark.parametrize(
    ("name", "text"),
    [("inputs.json", '{"article": "a", "count": 2}'), ("inputs.yaml", "article: a\ncount: 2\n")],
)
def test_inputs_file_is_json_or_yaml(tmp_path: Path, name: str, text: str) -> None:
    """--inputs FILE accepts a JSON or a YAML mapping."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert read_inputs_file(path) == {"article": "a", "count": 2}


def test_inputs_file_must_be_a_mapping(tmp_path: Path) -> None:
    """A list in an inputs file is an InputError."""
    path = tmp_path / "inputs.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(InputError, match="must hold a mapping"):
        read_inputs_file(path)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "[" * 5000 + "]" * 5000])
def test_values_json_cannot_hold_are_refused(value: str) -> None:
    """NaN, Infinity and absurdly deep JSON are input errors, not values or tracebacks."""
    with pytest.raises(InputError, match="must be JSON for its type"):
        parse_assignments([f"ratio={value}"], SPECS)


def test_non_finite_numbers_from_files_are_refused() -> None:
    """A YAML `.nan` is not a number an input can hold."""
    with pytest.raises(InputError, match="must be of type number, got NaN"):
        resolve_inputs(SPECS, {"article": "x", "ratio": float("nan")})


def test_stdin_must_be_utf8() -> None:
    """`@-` reads bytes and refuses what is not UTF-8, like `@file` does."""
    stdin = io.TextIOWrapper(io.BytesIO(b"\xff\xfe bad"))
    with pytest.raises(InputError, match="standard input is not valid UTF-8"):
        parse_assignments(["article=@-"], SPECS, stdin)


def test_inputs_file_errors_are_located(tmp_path: Path) -> None:
    """A broken --inputs file names FILE:LINE:COL like a broken workflow does."""
    path = tmp_path / "inputs.yaml"
    path.write_text("article: a\narticle: b\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_inputs_file(path)
    assert caught.value.message == f"{path}:2:1: duplicate key 'article'"


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("article=@@handle", "@handle"),
        ("article=@@-", "@-"),
        ("article=@@@x", "@@x"),
        ("article=@@", "@"),
    ],
)
def test_double_at_is_a_literal_at(assignment: str, expected: str) -> None:
    """`@@text` is the literal `@text`: no file or stdin is read."""
    assert parse_assignments([assignment], SPECS) == {"article": expected}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stdin", "prompted"), [(_Terminal("typed"), True), (io.StringIO("piped"), False)]
)
def test_at_dash_on_a_terminal_says_it_is_waiting(
    capsys: pytest.CaptureFixture[str], stdin: io.StringIO, prompted: bool
) -> None:
    """`@-` on a terminal tells on stderr that it waits for input; from a pipe it is silent."""
    parse_assignments(["article=@-"], SPECS, stdin)
    captured = capsys.readouterr()
    notice = "reading input 'article' from stdin (end with Ctrl-D)\n"
    assert (captured.err, captured.out) == ((notice if prompted else ""), "")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("inputs.json", '{"article": "a",\n "count": ' + "7" * 5000 + "}"),
        ("inputs.yaml", "article: a\ncount: " + "7" * 5000 + "\n"),
    ],
)
def test_inputs_file_integer_past_the_digit_limit_is_located(
    tmp_path: Path, name: str, text: str
) -> None:
    """An integer longer than Python converts is FILE:LINE:COL, not a traceback."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_inputs_file(path)
    column = 11 if name.endswith(".json") else 8
    assert caught.value.message == f"{path}:2:{column}: the number has more than 4,300 digits"


def test_assignment_integer_past_the_digit_limit_is_an_input_error() -> None:
    """`-i count=<5,000 digits>` names the input and the digit limit."""
    with pytest.raises(InputError) as caught:
        parse_assignments(["count=" + "7" * 5000], SPECS)
    assert caught.value.message == "input 'count': the number has more than 4,300 digits"
