"""Datasets for `orchestrate batch`: reading rows as a stream and turning them into inputs.

    read_rows()     a file (.jsonl, .json, .csv) -> RawRow(line, values), one at a time
    RowInputs       a row's values -> the workflow's inputs (`--map`, shared values,
                    defaults, CSV text converted to each input's type)
    check_rows()    the first pass: every row checked, every problem located; nothing
                    is kept but the count, so a file of any size is checked in flat memory
    data_file()     the file of `--data`; `-`: spooled_stdin(), stdin copied to a temporary
                    file, so it can be read twice
    count_rows()    how many rows a batch would run (`orchestrate estimate --data`)

A problem in a row is a :class:`RowProblem` (`FILE:LINE: error: MESSAGE`, the line
1-based, a CSV header being line 1); :class:`BadRows` carries them all.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs

from orchestrate._errors import InputError, UsageError
from orchestrate._hints import did_you_mean
from orchestrate._inputs import has_type, resolve_inputs
from orchestrate._spec import InputSpec

if TYPE_CHECKING:
    from orchestrate._engine import Reuse

FORMATS = ("jsonl", "json", "csv")
SHOWN_PROBLEMS = 20  # the rest are counted, not listed: one typo can break every row
_INTEGER = re.compile(r"^[+-]?\d+$")
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
_A = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
    "string": "a string",
}


@attrs.frozen
class RowProblem:
    """One bad row, located in its file."""

    file: str
    line: int
    message: str

    def format(self) -> str:
        return f"{self.file}:{self.line}: error: {self.message}"


class BadRows(UsageError):
    """Rows that cannot run; the batch does not start (exit 2)."""

    def __init__(self, problems: list[RowProblem], total: int) -> None:
        self.problems = problems
        self.total = total
        lines = [p.format() for p in problems[:SHOWN_PROBLEMS]]
        if total > len(lines):
            lines.append(f"... and {total - len(lines)} more bad rows")
        super().__init__("\n".join(lines))

    def format(self) -> str:
        return self.message


@attrs.frozen
class RawRow:
    """A row as the file holds it: its 1-based line, and its values (CSV: all strings)."""

    line: int
    values: dict[str, Any]


@attrs.frozen
class PriorRow:
    """What an earlier batch left for a row (`--resume`): its result document when it
    succeeded (the row is taken as it was), else the steps of it that can be reused."""

    document: dict[str, Any] | None = None
    reuse: Reuse | None = None
    run_id: str | None = None


class _RowError(Exception):
    """A row (or the file) cannot be read at `line`; becomes a RowProblem."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def data_format(path: str) -> str:
    """`jsonl`, `json` or `csv`, from the file's extension (`-`: JSON Lines on stdin)."""
    if path == "-":
        return "jsonl"
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix == "ndjson":
        return "jsonl"
    if suffix not in FORMATS:
        raise UsageError(
            f"cannot tell the format of {path}",
            hint="use a .jsonl, .json or .csv file, or - for JSON Lines on stdin",
        )
    return suffix


def read_rows(path: Path, fmt: str, label: str | None = None) -> Iterator[RawRow]:
    """The rows of a data file, one at a time; BadRows at the first row that cannot be
    read (after it, line numbers mean nothing: the file is broken there)."""
    label = label or str(path)
    with _open_data(path, label) as stream:
        reader = {"jsonl": _jsonl_rows, "json": _json_rows, "csv": _csv_rows}[fmt]
        try:
            yield from reader(stream)
        except _RowError as exc:
            raise BadRows([RowProblem(label, exc.line, exc.message)], 1) from None


def _open_data(path: Path, label: str) -> IO[bytes]:
    """The data file, opened to read; a UsageError if it cannot be."""
    try:
        return path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {label}: {exc.strerror}") from None


def _decoded(raw: bytes, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _RowError(line, f"the line is not valid UTF-8 (byte {exc.start + 1})") from None


def _jsonl_rows(stream: IO[bytes]) -> Iterator[RawRow]:
    for number, raw in enumerate(stream, start=1):
        text = _decoded(raw, number)
        if number == 1:
            text = text.removeprefix("\ufeff")
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise _RowError(number, f"not valid JSON: {_json_problem(exc)}") from None
        if not isinstance(value, dict):
            raise _RowError(number, f"a row must be a JSON object, got {_kind(value)}")
        yield RawRow(number, value)


def _json_problem(exc: ValueError) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)


def _kind(value: Any) -> str:
    for name, check in (
        ("null", lambda v: v is None),
        ("a boolean", _is_bool),
        ("a number", lambda v: isinstance(v, int | float)),
        ("a string", lambda v: isinstance(v, str)),
        ("an array", lambda v: isinstance(v, list)),
    ):
        if check(value):
            return name
    return "an object"


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _json_rows(stream: IO[bytes]) -> Iterator[RawRow]:
    """A JSON array of objects. The file is read whole (JSON has no streaming form);
    each element's line is where it starts."""
    raw = stream.read()
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _RowError(line, f"the file is not valid UTF-8 (byte {exc.start + 1})") from None
    decoder = json.JSONDecoder()
    index = _skip_space(text, 0)
    if not text.startswith("[", index):
        raise _RowError(
            _line_at(text, index),
            "a .json data file must hold an array of objects (use .jsonl for one object a line)",
        )
    index = _skip_space(text, index + 1)
    line, counted = 1, 0
    if text.startswith("]", index):
        return
    while True:
        line += text.count("\n", counted, index)
        counted = index
        try:
            value, index = decoder.raw_decode(text, index)
        except ValueError as exc:
            where = exc.lineno if isinstance(exc, json.JSONDecodeError) else line
            raise _RowError(where, f"not valid JSON: {_json_problem(exc)}") from None
        if not isinstance(value, dict):
            raise _RowError(line, f"a row must be a JSON object, got {_kind(value)}")
        yield RawRow(line, value)
        index = _skip_space(text, index)
        if text.startswith(",", index):
            index = _skip_space(text, index + 1)
        elif text.startswith("]", index):
            if text[_skip_space(text, index + 1) :]:
                raise _RowError(_line_at(text, index), "not valid JSON: extra data after the array")
            return
        else:
            raise _RowError(_line_at(text, index), "not valid JSON: expected ',' or ']'")


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _line_at(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


class _LineCounter:
    """The decoded lines of a CSV file, counting them so a row knows where it starts."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.line = 0

    def __iter__(self) -> Iterator[str]:
        for raw in self.stream:
            self.line += 1
            text = _decoded(raw, self.line)
            yield text.removeprefix("\ufeff") if self.line == 1 else text


def _csv_rows(stream: IO[bytes]) -> Iterator[RawRow]:
    lines = _LineCounter(stream)
    reader = csv.reader(lines, strict=True)
    header = _csv_header(reader)
    start = lines.line + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _RowError(start, f"not valid CSV: {exc}") from None
        if cells and any(cells):
            if len(cells) > len(header):
                raise _RowError(
                    start, f"the row has {len(cells)} values and the header {len(header)} columns"
                )
            yield RawRow(start, dict(zip(header, cells, strict=False)))
        start = lines.line + 1


def _csv_header(reader: Iterator[list[str]]) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise _RowError(1, "the CSV file is empty: it needs a header row") from None
    except csv.Error as exc:
        raise _RowError(1, f"not valid CSV: {exc}") from None
    names = [name.strip() for name in header]
    for number, name in enumerate(names, start=1):
        if not name:
            raise _RowError(
                1,
                f"column {number} of the header has no name: the first line must name every column",
            )
        if name in names[: number - 1]:
            raise _RowError(1, f"the header names the column {name!r} twice")
    return names


def data_label(data: str) -> str:
    """The data file as errors name it."""
    return "<stdin>" if data == "-" else data


def count_rows(data: str) -> int:
    """How many rows a batch of `data` would run, read as the batch reads them (a blank
    JSON Lines line or an empty CSV line is no row); BadRows where the file breaks."""
    with data_file(data) as path:
        return sum(1 for _ in read_rows(path, data_format(data), data_label(data)))


@contextlib.contextmanager
def data_file(data: str) -> Iterator[Path]:
    """The rows' file as given: `-` is stdin, spooled to a temporary file (see below)."""
    if data != "-":
        yield Path(data)
        return
    with spooled_stdin() as path:
        yield path


@contextlib.contextmanager
def spooled_stdin(stdin: IO[bytes] | None = None) -> Iterator[Path]:
    """`--data -`: standard input copied to a temporary file, because the rows are read
    twice (checked, then run); the file is deleted afterwards."""
    import shutil
    import tempfile

    source = stdin or sys.stdin.buffer
    with tempfile.TemporaryDirectory(prefix="orchestrate-rows-") as folder:
        path = Path(folder) / "stdin.jsonl"
        with path.open("wb") as spool:
            shutil.copyfileobj(source, spool)
        yield path


# --- rows -> inputs ----------------------------------------------------------------------------


def parse_mapping(pairs: Iterable[str], specs: Mapping[str, InputSpec]) -> dict[str, str]:
    """`--map INPUT=COLUMN` pairs -> {input: column}; the input must exist."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        name, sep, column = pair.partition("=")
        name, column = name.strip(), column.strip()
        if not sep or not name or not column:
            raise UsageError(
                f"expected --map INPUT=COLUMN, got {pair!r}", hint="for example: --map text=body"
            )
        if name not in specs:
            hint = did_you_mean(name, specs) or f"known inputs: {', '.join(specs) or 'none'}"
            raise UsageError(f"--map {pair}: the workflow has no input {name!r}", hint=hint)
        mapping[name] = column
    return mapping


@attrs.frozen
class RowInputs:
    """How a row becomes the inputs of a run.

    An input takes the row's value of its column (its own name, or the `--map` one);
    without one, the shared value (`-i`, `--inputs`), then its default. Text from a CSV
    is converted to the input's type; an empty CSV cell is no value, except for strings.
    """

    specs: Mapping[str, InputSpec]
    mapping: Mapping[str, str] = attrs.field(factory=dict)  # input -> column
    shared: Mapping[str, Any] = attrs.field(factory=dict)

    def column(self, name: str) -> str:
        return self.mapping.get(name, name)

    def inputs(self, row: RawRow, *, from_text: bool) -> dict[str, Any]:
        """The row's resolved inputs; InputError says what is wrong with it."""
        given = dict(self.shared)
        for name, spec in self.specs.items():
            column = self.column(name)
            if column not in row.values:
                continue
            value = row.values[column]
            if from_text:
                if value == "" and spec.type != "string":
                    continue
                value = convert_cell(name, value, spec.type)
            given[name] = value
        return resolve_inputs(self.specs, given)

    def check_header(self, header: Iterable[str], label: str) -> None:
        """A `--map` that names a column the CSV header does not have is a located error."""
        names = list(header)
        for name, column in self.mapping.items():
            if column not in names:
                hint = did_you_mean(column, names) or f"columns: {', '.join(names)}"
                raise BadRows(
                    [
                        RowProblem(
                            label,
                            1,
                            f"--map {name}={column}: the header has no column {column!r} ({hint})",
                        )
                    ],
                    1,
                )


def convert_cell(name: str, text: str, type_name: str) -> Any:
    """A CSV cell as a value of the input's type; InputError naming the input if it is not."""
    value: Any = text
    stripped = text.strip()
    if type_name == "integer" and _INTEGER.match(stripped):
        value = int(stripped)
    elif type_name == "number":
        value = _number(stripped)
    elif type_name == "boolean" and stripped.lower() in _TRUE | _FALSE:
        value = stripped.lower() in _TRUE
    elif type_name in ("array", "object"):
        with contextlib.suppress(ValueError):
            value = json.loads(stripped)
    if not has_type(value, type_name):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise InputError(f"input {name!r} expects {_A[type_name]}, got {shown!r}")
    return value


def _number(text: str) -> Any:
    if _INTEGER.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def header_of(path: Path, label: str) -> list[str]:
    """The column names of a CSV file (for checking `--map` before reading the rows)."""
    with _open_data(path, label) as stream:
        try:
            return _csv_header(csv.reader(_LineCounter(stream), strict=True))
        except _RowError as exc:
            raise BadRows([RowProblem(label, exc.line, exc.message)], 1) from None


def check_rows(
    rows: Iterable[RawRow], how: RowInputs, *, fmt: str, label: str, limit: int | None = None
) -> int:
    """Check every row (the first `limit`); the number of rows, or BadRows with them all."""
    problems: list[RowProblem] = []
    bad = count = 0
    try:
        for row in rows:
            if limit is not None and count >= limit:
                break
            count += 1
            try:
                how.inputs(row, from_text=fmt == "csv")
            except InputError as exc:
                bad += 1
                if len(problems) < SHOWN_PROBLEMS:
                    problems.append(RowProblem(label, row.line, exc.message))
    except BadRows as exc:  # the file breaks here: what came before counts too
        raise BadRows([*problems, *exc.problems][:SHOWN_PROBLEMS], bad + 1) from None
    if bad:
        raise BadRows(problems, bad)
    return count


def rows_from_mappings(rows: Iterable[Mapping[str, Any]]) -> Iterator[RawRow]:
    """Python's rows for :func:`orchestrate.run_batch`: line is the row's 1-based number."""
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise BadRows(
                [
                    RowProblem(
                        "<rows>", number, f"a row must be a mapping, got {type(row).__name__}"
                    )
                ],
                1,
            )
        yield RawRow(number, dict(row))
