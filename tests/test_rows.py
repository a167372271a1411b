"""Datasets: each format read as a stream, CSV text typed, every bad row located."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrate._errors import InputError, UsageError
from orchestrate._rows import (
    BadRows,
    RawRow,
    RowInputs,
    check_rows,
    convert_cell,
    data_format,
    header_of,
    parse_mapping,
    read_rows,
    rows_from_mappings,
    spooled_stdin,
)
from orchestrate._spec import InputSpec

SPECS = {
    "text": InputSpec("string"),
    "amount": InputSpec("number"),
    "count": InputSpec("integer", default=1),
    "flag": InputSpec("boolean", default=False),
    "tags": InputSpec("array", default=[]),
}


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def inputs_of(path: Path, fmt: str, how: RowInputs | None = None) -> list[tuple[int, dict]]:
    how = how or RowInputs(SPECS)
    return [
        (row.line, how.inputs(row, from_text=fmt == "csv"))
        for row in read_rows(path, fmt, path.name)
    ]


def problems(path: Path, fmt: str, how: RowInputs | None = None) -> list[str]:
    with pytest.raises(BadRows) as caught:
        check_rows(
            read_rows(path, fmt, path.name), how or RowInputs(SPECS), fmt=fmt, label=path.name
        )
    return [p.format() for p in caught.value.problems]


EXPECTED = [
    (2, {"text": "a", "amount": 1.5, "count": 2, "flag": True, "tags": ["x"]}),
    (3, {"text": "b", "amount": 3, "count": 1, "flag": False, "tags": []}),
]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("rows.csv", 'text,amount,count,flag,tags\na,1.5,2,true,"[""x""]"\nb,3,,,\n'),
        (
            "rows.jsonl",
            '\n{"text": "a", "amount": 1.5, "count": 2, "flag": true, "tags": ["x"]}\n'
            '{"text": "b", "amount": 3}\n',
        ),
        (
            "rows.json",
            '[\n  {"text": "a", "amount": 1.5, "count": 2, "flag": true, "tags": ["x"]},'
            '\n  {"text": "b", "amount": 3}\n]\n',
        ),
    ],
)
def test_each_format_gives_typed_inputs_with_lines(tmp_path: Path, name: str, content: str) -> None:
    """CSV, JSON Lines (blank lines skipped) and JSON arrays give the same typed inputs,
    each with the line it starts on."""
    path = write(tmp_path, name, content)
    assert inputs_of(path, data_format(name)) == EXPECTED


@pytest.mark.parametrize(
    ("type_name", "text", "value"),
    [
        ("string", " as is ", " as is "),
        ("integer", "42", 42),
        ("integer", "-7", -7),
        ("number", "2.5", 2.5),
        ("number", "10", 10),
        ("number", "1e3", 1000.0),
        ("boolean", "TRUE", True),
        ("boolean", "no", False),
        ("boolean", "1", True),
        ("array", "[1, 2]", [1, 2]),
        ("object", '{"a": 1}', {"a": 1}),
    ],
)
def test_csv_cells_are_converted_to_the_input_type(
    type_name: str, text: str, value: object
) -> None:
    """A CSV cell becomes a number, boolean, or JSON array/object by its input's type."""
    assert convert_cell("x", text, type_name) == value


@pytest.mark.parametrize(
    ("type_name", "text", "message"),
    [
        ("number", "abc", "input 'x' expects a number, got 'abc'"),
        ("number", "nan", "input 'x' expects a number, got 'nan'"),
        ("integer", "1.5", "input 'x' expects an integer, got '1.5'"),
        ("boolean", "maybe", "input 'x' expects a boolean, got 'maybe'"),
        ("array", '{"a": 1}', "input 'x' expects an array, got '{\"a\": 1}'"),
        ("object", "[1", "input 'x' expects an object, got '[1'"),
    ],
)
def test_csv_cells_of_the_wrong_type_are_refused(type_name: str, text: str, message: str) -> None:
    """A cell that is not of its input's type is an error naming the input and the text."""
    with pytest.raises(InputError) as caught:
        convert_cell("x", text, type_name)
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "rows.csv",
            "text,amount\na,1\nb,abc\n",
            ["rows.csv:3: error: input 'amount' expects a number, got 'abc'"],
        ),
        (
            "rows.csv",
            'text,amount\na,1\nb,\n"multi\nline",zz\n',
            [
                "rows.csv:3: error: missing required input 'amount'",
                "rows.csv:4: error: input 'amount' expects a number, got 'zz'",
            ],
        ),
        (
            "rows.csv",
            "text,amount\na,1,extra\n",
            ["rows.csv:2: error: the row has 3 values and the header 2 columns"],
        ),
        (
            "rows.csv",
            "text,,amount\na,b,1\n",
            [
                "rows.csv:1: error: column 2 of the header has no name: the first line must name "
                "every column"
            ],
        ),
        (
            "rows.csv",
            "text,text\na,b\n",
            ["rows.csv:1: error: the header names the column 'text' twice"],
        ),
        ("rows.csv", "", ["rows.csv:1: error: the CSV file is empty: it needs a header row"]),
        (
            "rows.jsonl",
            '{"text": "a", "amount": 1}\n[1, 2]\n',
            ["rows.jsonl:2: error: a row must be a JSON object, got an array"],
        ),
        (
            "rows.jsonl",
            '{"text": "a", "amount": 1}\n\n{"text": "a", "amount": "1"}\n',
            ["rows.jsonl:3: error: input 'amount' must be of type number, got \"1\""],
        ),
        (
            "rows.jsonl",
            '{"text": "a", "amount": 1}\n{"text": \n',
            ["rows.jsonl:2: error: not valid JSON: Expecting value"],
        ),
        (
            "rows.jsonl",
            '{"text": "a", "amount": 1, "nope": 2, "count": true}\n',
            ["rows.jsonl:1: error: input 'count' must be of type integer, got true"],
        ),
        (
            "rows.json",
            '{"text": "a"}',
            [
                "rows.json:1: error: a .json data file must hold an array "
                "of objects (use .jsonl for one object a line)"
            ],
        ),
        (
            "rows.json",
            '[\n  {"text": "a", "amount": 1},\n  "b"\n]',
            ["rows.json:3: error: a row must be a JSON object, got a string"],
        ),
        (
            "rows.json",
            '[\n  {"text": "a", "amount": 1},\n  {"text": }\n]',
            ["rows.json:3: error: not valid JSON: Expecting value"],
        ),
        (
            "rows.json",
            '[\n  {"text": "a"}\n]',
            ["rows.json:2: error: missing required input 'amount'"],
        ),
    ],
)
def test_bad_rows_are_located(tmp_path: Path, name: str, content: str, expected: list[str]) -> None:
    """Every bad row is reported as FILE:LINE: error: MESSAGE, all of them at once."""
    path = write(tmp_path, name, content)
    assert problems(path, data_format(name)) == expected


def test_a_cell_outside_an_inputs_enum_is_a_located_bad_row(tmp_path: Path) -> None:
    """A batch row's value must be one of its input's `enum` values, typed from CSV first."""
    path = write(tmp_path, "rows.csv", "tone,level\nformal,1\ncasul,2\nformal,5\n")
    specs = {
        "tone": InputSpec(enum=("formal", "casual")),
        "level": InputSpec("integer", enum=(1, 2)),
    }
    assert problems(path, "csv", RowInputs(specs)) == [
        "rows.csv:3: error: input 'tone' must be one of formal, casual, got \"casul\"",
        "rows.csv:4: error: input 'level' must be one of 1, 2, got 5",
    ]


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.csv"])
def test_a_file_that_is_not_utf8_is_a_located_error(tmp_path: Path, name: str) -> None:
    """Bytes that are not UTF-8 are an error at their line, not a traceback."""
    header = b"text,amount\n" if name.endswith(".csv") else b'{"text": "a", "amount": 1}\n'
    path = write(tmp_path, name, header + b"caf\xe9\n")
    assert problems(path, data_format(name)) == [
        f"{name}:2: error: the line is not valid UTF-8 (byte 4)"
    ]


def test_a_json_file_that_is_not_utf8_is_a_located_error(tmp_path: Path) -> None:
    """A .json file with bad bytes names their line."""
    path = write(tmp_path, "rows.json", b'[\n{"text": "caf\xe9"}]')
    assert problems(path, "json") == ["rows.json:2: error: the file is not valid UTF-8 (byte 16)"]


def test_many_bad_rows_are_counted_beyond_those_shown(tmp_path: Path) -> None:
    """A typo that breaks every row lists the first 20 and counts the rest."""
    path = write(tmp_path, "rows.csv", "text,amount\n" + "a,x\n" * 30)
    with pytest.raises(BadRows) as caught:
        check_rows(read_rows(path, "csv"), RowInputs(SPECS), fmt="csv", label="rows.csv")
    assert caught.value.total == 30
    assert caught.value.format().splitlines()[-1] == "... and 10 more bad rows"


def test_limit_checks_only_the_first_rows(tmp_path: Path) -> None:
    """--limit N: rows after the first N are not checked (nor run)."""
    path = write(tmp_path, "rows.csv", "text,amount\na,1\nb,2\nc,bad\n")
    assert check_rows(read_rows(path, "csv"), RowInputs(SPECS), fmt="csv", label="x", limit=2) == 2


def test_map_shared_values_and_extra_columns(tmp_path: Path) -> None:
    """--map feeds an input from another column; shared values fill the gaps, a row's own
    value wins; other columns stay in the row's values."""
    path = write(tmp_path, "rows.csv", "body,amount,expected\nhi,1,yes\n")
    how = RowInputs(SPECS, parse_mapping(["text=body"], SPECS), {"count": 5, "amount": 9})
    rows = list(read_rows(path, "csv"))
    assert how.inputs(rows[0], from_text=True) == {
        "text": "hi",
        "amount": 1,
        "count": 5,
        "flag": False,
        "tags": [],
    }
    assert rows[0].values["expected"] == "yes"


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("text", "expected --map INPUT=COLUMN, got 'text'"),
        ("txet=body", "--map txet=body: the workflow has no input 'txet'"),
    ],
)
def test_bad_map_is_a_usage_error(pair: str, message: str) -> None:
    """--map needs INPUT=COLUMN with a known input."""
    with pytest.raises(UsageError) as caught:
        parse_mapping([pair], SPECS)
    assert caught.value.message == message


@pytest.mark.parametrize(
    "read",
    [
        lambda path: header_of(path, "rows.csv"),
        lambda path: list(read_rows(path, "csv", "rows.csv")),
    ],
    ids=["header", "rows"],
)
def test_a_data_file_that_cannot_be_read_is_a_usage_error(
    tmp_path: Path, read: Callable[[Path], object]
) -> None:
    """A missing data file is named in a usage error, whether its header or its rows are read."""
    with pytest.raises(UsageError) as caught:
        read(tmp_path / "rows.csv")
    assert caught.value.message == "cannot read rows.csv: No such file or directory"


def test_map_to_a_missing_csv_column_is_located(tmp_path: Path) -> None:
    """--map naming a column the CSV header lacks is an error at line 1."""
    path = write(tmp_path, "rows.csv", "body,amount\nhi,1\n")
    how = RowInputs(SPECS, {"text": "bdoy"})
    with pytest.raises(BadRows) as caught:
        how.check_header(header_of(path, "rows.csv"), "rows.csv")
    assert caught.value.format().startswith(
        "rows.csv:1: error: --map text=bdoy: the header has no column 'bdoy'"
    )


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.jsonl", "jsonl"),
        ("a.NDJSON", "jsonl"),
        ("a.json", "json"),
        ("a.csv", "csv"),
        ("-", "jsonl"),
    ],
)
def test_format_from_the_extension(name: str, fmt: str) -> None:
    """The format follows the extension; `-` is JSON Lines on stdin."""
    assert data_format(name) == fmt


def test_unknown_extension_is_a_usage_error() -> None:
    """A data file of no known format is refused with a hint."""
    with pytest.raises(UsageError):
        data_format("rows.txt")


def test_stdin_is_spooled_to_a_file_read_twice(tmp_path: Path) -> None:
    """`--data -`: stdin lands in a temporary file that can be read twice, then is gone."""
    source = write(tmp_path, "in.jsonl", '{"text": "a", "amount": 1}\n')
    with source.open("rb") as stdin, spooled_stdin(stdin) as path:
        first = list(read_rows(path, "jsonl"))
        assert first == list(read_rows(path, "jsonl")) == [RawRow(1, {"text": "a", "amount": 1})]
    assert not path.exists()


def test_python_rows_must_be_mappings() -> None:
    """run_batch's rows: anything but a mapping is a located bad row."""
    with pytest.raises(BadRows) as caught:
        list(rows_from_mappings([{"text": "a"}, ["not", "a", "mapping"]]))
    assert caught.value.format() == "<rows>:2: error: a row must be a mapping, got list"
