"""Read a workflow file into :mod:`orchestrate._spec` classes, keeping every position.

The stages, each stopping at the first that fails for the whole file:
bytes (size limit, UTF-8) -> YAML tree (ruamel, duplicate keys) -> alias expansion limit ->
classes (a private cattrs converter with strict hooks). Structural problems are collected
per key and per step, so one broken step does not hide the problems of the others.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

import attrs

from orchestrate._errors import Diagnostic, InputError
from orchestrate._hints import did_you_mean
from orchestrate._spec import (
    CHECK_KIND_KEYS,
    KIND_KEYS,
    MATCH_KEYS,
    SETTING_KEYS,
    Defaults,
    InputSpec,
    Judge,
    LLMStep,
    Message,
    ModelSettings,
    Price,
    ProviderSpec,
    ProviderType,
    Step,
    Workflow,
)

if TYPE_CHECKING:
    from ruamel.yaml.composer import Composer
from orchestrate.providers import kind_names

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 100  # nesting levels; deeper data would exhaust Python's recursion limit later
FAST_PATH_CHARS = 1024 * 1024  # larger files are read by the round-trip parser alone

Path_ = tuple[str | int, ...]
At = Literal["key", "value", "node"]


@attrs.frozen
class SourceMap:
    """Positions of the keys and values of the YAML tree a workflow was built from.

    `root` is the tree the workflow was built from. A file read by the fast path (see
    :func:`_parse_fast`) has a plain tree without positions; the first call that needs
    one reads the text again with the round-trip parser, which records them.
    """

    file: str
    root: Any = None
    text: str = ""
    _located: list[Any] = attrs.field(factory=list, eq=False, repr=False)

    def _positions(self) -> Any:
        """The tree with positions: `root` itself when the round-trip parser built it."""
        if hasattr(self.root, "lc") or self.root is None:
            return self.root
        if not self._located:
            self._located.append(_parse_yaml(self.text)[0])
        return self._located[0]

    def indent_of(self, line: int) -> int:
        """The 1-based column of the first character of a 1-based line."""
        lines = self.text.splitlines()
        if not 0 < line <= len(lines):
            return 1
        content = lines[line - 1]
        return len(content) - len(content.lstrip()) + 1

    def locate(self, path: Path_, at: At = "value") -> tuple[int, int]:
        """The 1-based (line, column) of the key, the value or the node at `path`."""
        from ruamel.yaml.comments import CommentedSeq

        node, parent, last = self._positions(), None, None
        for part in path:
            if not _has(node, part):
                break
            parent, last, node = node, part, node[part]
        if parent is None:
            return (node.lc.line + 1, node.lc.col + 1) if hasattr(node, "lc") else (1, 1)
        if at == "node" and hasattr(node, "lc"):
            return node.lc.line + 1, node.lc.col + 1
        if isinstance(parent, CommentedSeq):
            line, col = parent.lc.item(last)
            return line + 1, col + 1
        owner = _owner_of(parent, last)
        if owner is None:  # no position recorded: point at the mapping itself
            return parent.lc.line + 1, parent.lc.col + 1
        line, col = owner.lc.key(last) if at == "key" else owner.lc.value(last)
        return line + 1, col + 1

    def diagnostic(
        self, path: Path_, message: str, *, hint: str | None = None, at: At = "value"
    ) -> Diagnostic:
        line, column = self.locate(path, at)
        return Diagnostic(self.file, line, column, message, hint)

    def value(self, path: Path_) -> Any:
        """The node at `path` as written (a block scalar keeps its style)."""
        node = self._positions()
        for part in path:
            node = node[part]
        return node


def _owner_of(mapping: Any, key: Any) -> Any:
    """The mapping whose text holds `key`: itself, or one merged into it with `<<: *anchor`."""
    if key in mapping.lc.data:
        return mapping
    for merged in getattr(mapping, "merge", ()):
        # ruamel.yaml 0.18 lists (position, mapping) pairs, 0.19 the mappings themselves.
        source = merged[1] if isinstance(merged, tuple) else merged
        owner = _owner_of(source, key) if hasattr(source, "lc") else None
        if owner is not None:
            return owner
    return None


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, list):
        return isinstance(part, int) and 0 <= part < len(node)
    return isinstance(node, dict) and part in node


@attrs.frozen
class LoadResult:
    """A workflow as far as it could be built, with the problems found on the way.

    `workflow` is None when the file could not be read as a mapping at all. Steps that
    could not be built are left out; their ids are in `broken_steps` so that later checks
    do not report references to them as unknown; the same holds for `broken_inputs`.
    """

    source: SourceMap
    workflow: Workflow | None
    diagnostics: list[Diagnostic]
    broken_steps: frozenset[str] = frozenset()
    step_positions: tuple[int, ...] = ()  # each built step's index in the file's `steps`
    broken_inputs: frozenset[str] = frozenset()
    check_positions: tuple[int, ...] = ()  # each built check's index in the file's `checks`
    broken_checks: frozenset[str] = frozenset()


def load_file(path: str | Path, display: str | None = None) -> LoadResult:
    """Load the workflow file at `path`; `display` is the name used in diagnostics."""
    path = Path(path)
    display = display if display is not None else str(path)
    empty = SourceMap(display)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return LoadResult(empty, None, [_at_start(display, _too_big_message(size))])
        data = path.read_bytes()
    except OSError as exc:
        problem = _at_start(display, f"cannot read the file: {exc.strerror}")
        return LoadResult(empty, None, [problem])
    return load_bytes(data, display, path)


def load_bytes(data: bytes, display: str, path: Path | None = None) -> LoadResult:
    empty = SourceMap(display)
    if len(data) > MAX_FILE_BYTES:
        return LoadResult(empty, None, [_at_start(display, _too_big_message(len(data)))])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LoadResult(empty, None, [_not_utf8(display, data, exc)])
    return load_text(text, display, path)


def load_text(text: str, display: str, path: Path | None = None) -> LoadResult:
    plain = _parse_fast(text)
    if plain is not None:
        loaded = _load_tree(plain, text, display, path)
        if not loaded.diagnostics:
            return loaded
    empty = SourceMap(display)
    try:
        root, duplicates = _parse_yaml(text)
    except _YAMLProblem as problem:
        return LoadResult(empty, None, [problem.diagnostic(display)])
    if duplicates:
        loaded = _load_tree(root, text, display, path)
        problems = [p.diagnostic(display) for p in duplicates]
        return attrs.evolve(loaded, diagnostics=problems + loaded.diagnostics)
    return _load_tree(root, text, display, path)


def _load_tree(root: Any, text: str, display: str, path: Path | None) -> LoadResult:
    """The stages after parsing: the top-level shape, the alias limit, the classes."""
    source = SourceMap(display, root, text)
    if root is None:
        message = "the workflow file is empty"
        return LoadResult(source, None, [_at_start(display, message, "start with `steps:`")])
    if not isinstance(root, dict):
        message = f"a workflow must be a mapping at the top level, not {_type_name(root)}"
        hint = "put the steps under a `steps:` key"
        return LoadResult(source, None, [_at_start(display, message, hint)])
    try:
        _check_expansion(root)
    except _Problem as problem:
        return LoadResult(source, None, [_at_start(display, problem.message, problem.hint)])
    unquoted = _unquote_templates(root, text, display)
    loaded = _build_workflow(root, source, path)
    return attrs.evolve(loaded, diagnostics=unquoted + loaded.diagnostics) if unquoted else loaded


def _unquote_templates(root: Any, text: str, display: str) -> list[Diagnostic]:
    """Find `key: {{ ... }}` written without quotes, anywhere in the file.

    YAML reads an unquoted `{{ x }}` as a mapping holding a mapping; no workflow value is
    ever that. Each is reported with the quoted form as a hint, then replaced by its
    text, so that the rest of the file (the template itself included) is still checked.
    """
    found: list[Diagnostic] = []
    lines = text.splitlines()
    visited: set[int] = set()
    pending = [root]
    while pending:  # iterative: the depth is bounded already, the width is not
        node = pending.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        slots = list(node.items()) if isinstance(node, dict) else enumerate(node)
        for key, value in slots:
            if _is_unquoted_template(value):
                template = _template_text(value, lines)
                found.append(
                    Diagnostic(
                        display,
                        value.lc.line + 1,
                        value.lc.col + 1,
                        "YAML reads an unquoted {{ ... }} as a mapping",
                        _quote_hint(key, template),
                    )
                )
                is_expression = key in _EXPRESSION_KEYS
                node[key] = template[2:-2].strip() if is_expression else template
            elif isinstance(value, dict | list):
                pending.append(value)
    return sorted(found, key=lambda d: (d.line, d.column))


_EXPRESSION_KEYS = ("when", "for_each", "expect")  # bare expressions, not templates


def _is_unquoted_template(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1 or not hasattr(value, "lc"):
        return False
    ((key, inner),) = value.items()
    return inner is None and isinstance(key, Mapping)


def _template_text(node: Any, lines: list[str]) -> str:
    """The template as written: from the node's `{` to the `}` that closes it."""
    line = lines[node.lc.line] if node.lc.line < len(lines) else ""
    depth = 0
    for end in range(node.lc.col, len(line)):
        depth += {"{": 1, "}": -1}.get(line[end], 0)
        if depth == 0:
            return line[node.lc.col : end + 1]
    return "{{ ... }}"  # spread over several lines: the hint shows its shape only


def _quote_hint(key: Any, template: str) -> str:
    if key in _EXPRESSION_KEYS:
        return f"an expression is written without braces: {key}: {template[2:-2].strip()}"
    quoted = f'"{template}"' if '"' not in template else f"'{template}'"
    written = f"- {quoted}" if isinstance(key, int) else f"{key}: {quoted}"
    return f"quote the template: {written}"


def load_data(text: str, display: str) -> Any:
    """Plain data from YAML (or JSON, which is YAML) text, within the workflow file's limits.

    Raises :class:`InputError` naming FILE:LINE:COL of the first problem.
    """
    try:
        root, duplicates = _parse_yaml(text)
        if duplicates:
            raise duplicates[0]
        _check_expansion(root)
    except _YAMLProblem as problem:
        where = f"{display}:{problem.line}:{problem.column}"
        raise InputError(f"{where}: {problem.message}", hint=problem.hint) from None
    except _Problem as problem:
        raise InputError(f"{display}: {problem.message}", hint=problem.hint) from None
    return _plain(root)


def file_sha256(path: Path | None) -> str | None:
    """The sha256 of a workflow file's bytes (None when it cannot be read), read once per
    version of the file however often a run asks."""
    if path is None:
        return None
    try:
        return _sha256_of(path, path.stat().st_mtime_ns)
    except OSError:
        return None


@functools.lru_cache(maxsize=64)
def _sha256_of(path: Path, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _too_big_message(size: int) -> str:
    return f"the file is {size:,} bytes; workflow files are limited to {MAX_FILE_BYTES:,} bytes"


def _at_start(file: str, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(file, 1, 1, message, hint)


def _not_utf8(file: str, data: bytes, exc: UnicodeDecodeError) -> Diagnostic:
    line_start = data.rfind(b"\n", 0, exc.start) + 1
    line = data.count(b"\n", 0, exc.start) + 1
    byte = data[exc.start]
    message = f"the file is not valid UTF-8 (byte 0x{byte:02x})"
    return Diagnostic(file, line, exc.start - line_start + 1, message, "save the file as UTF-8")


# --- YAML ---------------------------------------------------------------------------


class _YAMLProblem(Exception):
    def __init__(self, message: str, line: int, column: int, hint: str | None) -> None:
        super().__init__(message)
        self.message, self.line, self.column, self.hint = message, line, column, hint

    def diagnostic(self, file: str) -> Diagnostic:
        return Diagnostic(file, self.line, self.column, self.message, self.hint)


def _parse_yaml(text: str) -> tuple[Any, list[_YAMLProblem]]:
    """The YAML tree, and every duplicate key in it.

    ruamel stops at the first duplicate key; then the file is read again allowing them, so
    that each duplicate is reported and the rest of the file is still checked.
    """
    from ruamel.yaml.constructor import DuplicateKeyError

    try:
        return _load_yaml(text, allow_duplicates=False), []
    except DuplicateKeyError:
        return _load_yaml(text, allow_duplicates=True), _duplicate_keys(text)


def _parse_fast(text: str) -> dict | None:
    """The file as plain data read by libyaml, or None to take the round-trip path.

    ruamel's round-trip parser is pure Python (0.35 ms for a 70-byte step); libyaml
    (`ruamel.yaml.clib`) reads the same YAML 1.2 ten times faster but keeps no positions.
    Anything unusual goes the slow way, which reports it with its line and column: a
    parse error, a duplicate key, an unknown tag, a mapping as a key (an unquoted
    `{{ ... }}`); so do a `%YAML` directive and merge keys (`<<`, which
    libyaml orders differently and lets a mapping merge itself). A file that then loads
    with a problem (too many nodes among them) is read again the slow way too, so every
    diagnostic comes from the round-trip tree.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.main import CParser  # None without ruamel.yaml.clib

    # A large file may hold more than MAX_NODES values: the slow way stops reading there.
    if CParser is None or len(text) > FAST_PATH_CHARS or "%YAML" in text or "<<" in text:
        return None
    try:
        root = YAML(typ="safe", pure=False).load(text)
    except Exception:  # whatever it is, the round-trip parser reports it with a position
        return None
    return root if isinstance(root, dict) and _is_plain(root) else None


_PLAIN_SCALARS = (str, int, float, type(None), datetime.date)


def _is_plain(root: dict) -> bool:
    """Only what the round-trip tree holds too: mappings, lists and scalars (`!!set`,
    `!!omap` and `!!pairs` read as other types here)."""
    visited: set[int] = set()
    pending: list[Any] = [root]
    while pending:
        node = pending.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, dict):
            if not all(isinstance(key, _PLAIN_SCALARS) for key in node):
                return False
            pending += node.values()
        elif isinstance(node, list):
            pending += node
        elif not isinstance(node, _PLAIN_SCALARS):
            return False
    return True


def _load_yaml(text: str, *, allow_duplicates: bool) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt")
    yaml.Composer = _counting_composer()
    yaml.Constructor = _located_constructor()
    yaml.allow_duplicate_keys = allow_duplicates
    try:
        return yaml.load(text)
    except _ConstructionProblem as exc:
        raise exc.problem from None
    except RecursionError:
        message = f"the file nests data too deeply (more than {MAX_DEPTH} levels are refused)"
        raise _YAMLProblem(message, 1, 1, "flatten the structure") from None
    except DuplicateKeyError as exc:
        if not allow_duplicates:
            raise
        raise _syntax_problem(exc) from None  # `<<` twice: refused even when allowed
    except MarkedYAMLError as exc:
        raise _syntax_problem(exc) from None
    except YAMLError as exc:
        raise _YAMLProblem(f"invalid YAML: {exc}", 1, 1, None) from None


def _syntax_problem(exc: Any) -> _YAMLProblem:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return _YAMLProblem(f"invalid YAML: {problem}", line, col, _syntax_hint(problem, line))


def _syntax_hint(problem: str, line: int) -> str | None:
    """What a YAML parser's words mean for someone who writes a workflow."""
    if "\\t" in repr(problem):
        return "indent with spaces: YAML does not allow tabs"
    if "mapping values are not allowed" in problem:
        return (
            "a value holds ': ' (or a key is indented too far): quote the value, "
            "or line the key up with the keys above it"
        )
    if "expected <block end>" in problem or "could not find expected ':'" in problem:
        return "the indentation of this line does not match the lines above it"
    if "found character '@'" in problem or "found character '`'" in problem:
        return "a value cannot start with @ or `: quote it"
    if "found undefined alias" in problem:
        return "define the anchor (&name) before the alias (*name) that uses it"
    if "while scanning a quoted scalar" in problem or "found unexpected end of stream" in problem:
        return "a quoted value is not closed: check the quotes"
    if line > 1 and "expected" in problem:
        return "check the indentation and the brackets on this line and the lines above it"
    return None


class _ConstructionProblem(Exception):
    """A YAML node that cannot become a value, with the node's position."""

    def __init__(self, message: str, mark: Any, hint: str | None = None) -> None:
        super().__init__(message)
        self.problem = _YAMLProblem(message, mark.line + 1, mark.column + 1, hint)


def _counting_composer() -> type[Composer]:
    """ruamel's composer, stopping at the node past :data:`MAX_NODES`.

    Counted while the file is read, before any value is built: a file with too much in it
    is refused after reading only as far as the limit. Keys and aliases are not counted,
    as in the alias expansion check.
    """
    from ruamel.yaml.composer import Composer
    from ruamel.yaml.events import AliasEvent
    from ruamel.yaml.nodes import MappingNode

    class CountingComposer(Composer):
        nodes = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            is_key = isinstance(parent, MappingNode) and index is None
            if not is_key and not self.parser.check_event(AliasEvent):
                self.nodes += 1
                if self.nodes > MAX_NODES:
                    mark = self.parser.peek_event().start_mark
                    raise _ConstructionProblem(
                        f"the file holds more than {MAX_NODES:,} values, past the limit",
                        mark,
                        "split the workflow into sub-workflows, or keep bulk data in "
                        "a file that a function step reads",
                    )
            return super().compose_node(parent, index)

    return CountingComposer


def _located_constructor() -> type:
    """ruamel's round-trip constructor, whose failures name the value that caused them.

    ruamel raises plain Python errors (an integer past Python's digit limit, a date that
    does not exist, a mapping that merges itself) without a position; each becomes a
    problem at the node that could not be built.
    """
    from ruamel.yaml.constructor import RoundTripConstructor
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.nodes import SequenceNode

    class LocatedConstructor(RoundTripConstructor):
        def construct_non_recursive_object(self, node: Any, tag: Any = None) -> Any:
            try:
                return super().construct_non_recursive_object(node, tag)
            except (YAMLError, _ConstructionProblem, RecursionError):
                raise
            except Exception as exc:  # any other failure is about this node's value
                raise _ConstructionProblem(*_value_problem(exc, node.start_mark)) from None

        def flatten_mapping(self, node: Any) -> Any:
            for key, value in node.value:
                if key.tag != "tag:yaml.org,2002:merge":
                    continue
                merged = value.value if isinstance(value, SequenceNode) else [value]
                if any(m is node or m in self.recursive_objects for m in merged):
                    raise _ConstructionProblem(
                        "a merge key (<<) merges the mapping that holds it",
                        key.start_mark,
                        "merge an anchor defined outside this mapping",
                    )
            return super().flatten_mapping(node)

    return LocatedConstructor


def _value_problem(exc: Exception, mark: Any) -> tuple[str, Any, str | None]:
    """(message, position, hint) of a value that failed to build."""
    if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
        limit = sys.get_int_max_str_digits()
        return f"the number has more than {limit:,} digits", mark, "quote it to keep it as text"
    return f"invalid YAML value: {exc}", mark, None


def _duplicate_keys(text: str) -> list[_YAMLProblem]:
    """Every key that repeats within its mapping, at its second (third...) place."""
    from ruamel.yaml import YAML
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    found: list[_YAMLProblem] = []
    visited: set[int] = set()
    pending = [YAML(typ="rt").compose(text)]
    while pending:  # iterative: a deep file cannot exhaust the recursion limit here
        node = pending.pop()
        if node is None or id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, MappingNode):
            seen: set[Any] = set()
            for key, value in node.value:
                if isinstance(key.value, str) and key.value != "<<":  # merge keys may repeat
                    if key.value in seen:
                        mark = key.start_mark
                        found.append(
                            _YAMLProblem(
                                f"duplicate key {key.value!r}",
                                mark.line + 1,
                                mark.column + 1,
                                "each key may appear once in a mapping; remove or rename one",
                            )
                        )
                    seen.add(key.value)
                pending += [key, value]
        elif isinstance(node, SequenceNode):
            pending += node.value
    return sorted(found, key=lambda p: (p.line, p.column))


def _check_expansion(root: Any) -> None:
    """Refuse alias bombs: count the nodes the tree has once every alias is expanded.

    Aliases share one Python object, so sizes are memoised by identity and the count
    costs time in proportion to the file, not to the expansion.
    """
    sizes: dict[int, int] = {}

    def size(node: Any, depth: int) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if depth > MAX_DEPTH:
            raise _Problem(
                f"the file nests data more than {MAX_DEPTH} levels deep",
                hint="flatten the structure",
            )
        total = 1
        children = node.values() if isinstance(node, dict) else node
        if isinstance(node, dict | list):
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_NODES:
                    break
        sizes[id(node)] = total
        return total

    if size(root, 0) > MAX_NODES:
        raise _Problem(
            f"the file expands to more than {MAX_NODES:,} nodes through its aliases",
            hint="this looks like an alias bomb; write the data out or use fewer aliases",
        )


# --- structuring ----------------------------------------------------------------------


class _Problem(Exception):
    """A structural problem at `path` below the node being structured."""

    def __init__(
        self, message: str, *, hint: str | None = None, at: At = "value", path: Path_ = ()
    ) -> None:
        super().__init__(message)
        self.message, self.hint, self.at, self.path = message, hint, at, path


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _expected(what: str, value: Any) -> _Problem:
    plain = isinstance(value, str | int | float) and not isinstance(value, bool)
    shown = f" ({value!r})" if plain and len(repr(value)) < 40 else ""
    return _Problem(f"expected {what}, got {_type_name(value)}{shown}")


def _plain(value: Any) -> Any:
    """ruamel's commented containers and scalar subclasses as plain Python data."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (str, int, float):
        if isinstance(value, kind):
            return kind(value)
    return value


def _structure_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise _expected("a string", value)
    return str(value)


def _structure_int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expected("an integer", value)
    return int(value)


def _structure_float(value: Any, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _expected("a number", value)
    return float(value)


def _structure_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise _expected("true or false", value)
    return value


def _structure_literal(value: Any, literal: Any) -> Any:
    return _one_of(value, get_args(literal))


def _structure_provider_type(value: Any, _: type) -> str:
    return _one_of(value, kind_names())


def _one_of(value: Any, choices: tuple[Any, ...]) -> Any:
    if value in choices and type(value) is type(choices[0]):
        return value
    listed = ", ".join(str(c) for c in choices)
    problem = _Problem(f"expected one of {listed}, got {value!r}")
    problem.hint = did_you_mean(str(value), choices) if isinstance(value, str) else None
    raise problem


def _structure_str_tuple(value: Any, _: type) -> tuple[str, ...]:
    if isinstance(value, str):  # `needs: summarize` reads as well as a one-item list
        return (value,)
    if not isinstance(value, list):
        raise _expected("a list of step ids", value)
    problems = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            problem = _expected("a step id", item)
            problem.path = (index,)
            problems.append(problem)
    if problems:
        raise ExceptionGroup("invalid list", problems)
    return tuple(str(v) for v in value)


def _structure_mapping(value: Any, _: type) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _expected("a mapping", value)
    return _plain(value)


def _structure_values(value: Any, _: type) -> tuple[Any, ...]:
    """An input's `enum`: a list of values (a string is not a list of its characters)."""
    if not isinstance(value, list):
        raise _expected("a list of values", value)
    return tuple(_plain(item) for item in value)


class _Converter:
    """The private cattrs converter: strict scalars, and our own hook per class."""

    def __init__(self) -> None:
        import cattrs

        conv = cattrs.Converter()
        conv.register_structure_hook(str, _structure_str)
        conv.register_structure_hook(int, _structure_int)
        conv.register_structure_hook(float, _structure_float)
        conv.register_structure_hook(bool, _structure_bool)
        conv.register_structure_hook(Any, lambda v, _: _plain(v))
        conv.register_structure_hook_func(lambda t: t == tuple[str, ...], _structure_str_tuple)
        conv.register_structure_hook_func(lambda t: t == dict[str, Any], _structure_mapping)
        conv.register_structure_hook_func(lambda t: t == tuple[Any, ...], _structure_values)
        conv.register_structure_hook_func(lambda t: get_origin(t) is Literal, _structure_literal)
        conv.register_structure_hook_func(lambda t: t is ProviderType, _structure_provider_type)
        conv.register_structure_hook_func(
            lambda t: t == tuple[Message, ...], self._structure_messages
        )
        classes: list[type] = [
            InputSpec,
            ModelSettings,
            Defaults,
            Price,
            ProviderSpec,
            Message,
            Judge,
            Step,
            Workflow,
            *KIND_KEYS.values(),
            *CHECK_KIND_KEYS.values(),
        ]
        for cls in classes:
            attrs.resolve_types(cls)
        for cls in (InputSpec, ModelSettings, Defaults, Price, ProviderSpec, Message, Judge):
            conv.register_structure_hook(cls, self._object_hook(cls))
        self.conv = conv

    def _object_hook(self, cls: type) -> Any:
        def hook(value: Any, _: type) -> Any:
            return self.structure_object(value, cls, _field_keys(cls), _noun(cls))

        return hook

    def structure(self, value: Any, type_: Any) -> Any:
        return self.conv.structure(value, type_)

    def _structure_messages(self, value: Any, _: type) -> tuple[Message, ...]:
        """A list of messages; a string is one problem, not one per character."""
        from cattrs.errors import IterableValidationNote

        if not isinstance(value, list):
            problem = _expected("a list of messages", value)
            problem.hint = "write each as `- {role: user, content: ...}`, or use `prompt:`"
            raise problem
        messages, problems = [], []
        for index, item in enumerate(value):
            try:
                messages.append(self.conv.structure(item, Message))
            except Exception as exc:  # collected, then reported with its index
                exc.add_note(IterableValidationNote(f"@ index {index}", index, Message))
                problems.append(exc)
        if problems:
            raise ExceptionGroup("invalid messages", problems)
        return tuple(messages)

    def structure_object(
        self,
        raw: Any,
        cls: type,
        keys: Mapping[str, attrs.Attribute],
        noun: str,
        extra: Mapping[str, Any] | None = None,
    ) -> Any:
        """Build `cls` from the mapping `raw`, whose YAML keys map to `keys`' attributes.

        Raises an ExceptionGroup of every problem: unknown keys (with a hint), missing
        required keys, and each value of the wrong type.
        """
        if not isinstance(raw, dict):
            raise _expected(f"a mapping ({noun})", raw)
        problems: list[Exception] = []
        kwargs: dict[str, Any] = dict(extra or {})
        for key, value in raw.items():
            field = keys.get(key)
            if field is None:
                problems.append(_unknown_key(key, noun, keys))
                continue
            try:
                kwargs[_argument(field)] = self.structure(value, field.type)
            except Exception as exc:  # collected, then reported with its path
                exc.add_note(_KeyNote(key))
                problems.append(exc)
        for key, field in keys.items():
            if key not in raw and field.default is attrs.NOTHING and field.alias not in kwargs:
                problems.append(_Problem(f"{noun} is missing the required key {key!r}", at="node"))
        if problems:
            raise ExceptionGroup(f"invalid {noun}", problems)
        return cls(**kwargs)


class _KeyNote(str):
    """A note naming the mapping key under which an error happened."""

    key: str

    def __new__(cls, key: str) -> _KeyNote:
        self = super().__new__(cls, f"@ key {key!r}")
        self.key = key
        return self


def _unknown_key(key: Any, noun: str, keys: Mapping[str, Any]) -> _Problem:
    return _Problem(
        f"unknown key {key!r} in {noun}",
        hint=did_you_mean(str(key), keys) or f"allowed keys: {', '.join(sorted(keys))}",
        at="key",
        path=(key,),
    )


def _field_keys(cls: type, skip: tuple[str, ...] = ()) -> dict[str, attrs.Attribute]:
    """YAML key -> attribute: `with_` is written `with` in a file."""
    return {f.name.rstrip("_"): f for f in attrs.fields(cls) if f.name not in skip}


def _argument(field: attrs.Attribute) -> str:
    """The `__init__` argument that sets `field`."""
    assert field.alias is not None  # attrs fills it in when it builds the class
    return field.alias


def _noun(cls: type) -> str:
    return {
        InputSpec: "an input",
        ModelSettings: "`defaults`",
        Defaults: "`defaults`",
        Price: "a price",
        ProviderSpec: "a provider",
        Message: "a message",
        Judge: "a judge",
    }.get(cls, cls.__name__)


_converter: _Converter | None = None


def converter() -> _Converter:
    global _converter
    if _converter is None:
        _converter = _Converter()
    return _converter


# --- the workflow and its steps -----------------------------------------------------------

_TOP_KEYS = _field_keys(Workflow, skip=("path", "steps", "name", "checks"))
_STEP_COMMON = tuple(f.name.rstrip("_") for f in attrs.fields(Step))


def _build_workflow(root: dict, source: SourceMap, path: Path | None) -> LoadResult:
    conv = converter()
    diagnostics: list[Diagnostic] = []
    kwargs: dict[str, Any] = {}
    broken_inputs: set[str] = set()
    for key, value in root.items():
        if key in ("steps", "name", "checks") or _is_extension(key):
            continue
        field = _TOP_KEYS.get(key)
        if field is None:
            known = {**_TOP_KEYS, "name": 0, "steps": 0, "checks": 0}
            diagnostics += _diagnose(_unknown_key(key, "the workflow", known), (), source)
            continue
        if key in ("inputs", "providers") and isinstance(value, dict):
            kwargs[key], lost = _build_entries(value, field.type, key, source, diagnostics)
            broken_inputs |= lost if key == "inputs" else set()
            continue
        try:
            kwargs[_argument(field)] = conv.structure(value, field.type)
        except Exception as exc:
            diagnostics += _diagnose(exc, (key,), source)
    kwargs["name"] = _workflow_name(root, path, source, diagnostics)
    steps, positions, broken = _build_steps(root, source, diagnostics)
    checks, check_positions, broken_checks = _build_checks(root, source, diagnostics)
    workflow = Workflow(steps=tuple(steps), checks=tuple(checks), path=path, **kwargs)
    return LoadResult(
        source,
        workflow,
        diagnostics,
        frozenset(broken),
        tuple(positions),
        frozenset(broken_inputs),
        tuple(check_positions),
        frozenset(broken_checks),
    )


def _is_extension(key: Any) -> bool:
    """`x-...` keys at the top hold anchors to reuse with `<<: *name`, as in Compose files."""
    return isinstance(key, str) and key.startswith("x-")


def _build_entries(
    value: dict, type_: Any, key: str, source: SourceMap, diagnostics: list[Diagnostic]
) -> tuple[dict[str, Any], set[str]]:
    """Each entry of `inputs` or `providers` on its own, so one bad entry hides no other."""
    entry_type = get_args(type_)[1]
    entries, broken = {}, set()
    for name, raw in value.items():
        try:
            if raw is None:
                raise _empty_entry(key, str(name))
            entries[_structure_str(name, str)] = converter().structure(raw, entry_type)
        except _Problem as problem:
            problem.at = "key"
            diagnostics += _diagnose(problem, (key, name), source)
            broken |= {str(name), str(name).rstrip(":")}
        except Exception as exc:
            diagnostics += _diagnose(exc, (key, name), source)
            broken.add(str(name))
    return entries, broken


def _empty_entry(key: str, name: str) -> _Problem:
    """`inputs: {a:}` or `a:` alone: one problem, with the spec to write instead.

    In a flow mapping YAML reads `{a:}` as the key 'a:' (no space after the colon).
    """
    noun, shown = key[:-1], name.rstrip(":")
    example = (
        f"{shown}: {{}}` for a string input" if key == "inputs" else f"{shown}: {{base_url: ...}}`"
    )
    return _Problem(
        f"{noun} {shown!r} has no settings (its value is empty)", hint=f"write `{example}"
    )


def _workflow_name(
    root: dict, path: Path | None, source: SourceMap, diagnostics: list[Diagnostic]
) -> str:
    default = path.stem if path else "workflow"
    if "name" not in root:
        return default
    try:
        return _structure_str(root["name"], str)
    except _Problem as problem:
        diagnostics += _diagnose(problem, ("name",), source)
        return default


def _build_steps(
    root: dict, source: SourceMap, diagnostics: list[Diagnostic]
) -> tuple[list[Any], list[int], list[str]]:
    raw_steps = root.get("steps")
    if raw_steps is None:
        message = "the workflow has no `steps`"
        diagnostics.append(Diagnostic(source.file, 1, 1, message, "add `steps:` with a list"))
        return [], [], []
    if not isinstance(raw_steps, list):
        diagnostics += _diagnose(_expected("a list of steps", raw_steps), ("steps",), source)
        return [], [], []
    steps, positions, broken = [], [], []
    for index, raw in enumerate(raw_steps):
        try:
            steps.append(structure_step(raw))
            positions.append(index)
        except Exception as exc:
            diagnostics += _diagnose(exc, ("steps", index), source)
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                broken.append(raw["id"])
    if not raw_steps:
        diagnostics += _diagnose(_Problem("the workflow has no steps"), ("steps",), source)
    return steps, positions, broken


def structure_step(raw: Any) -> Any:
    """Pick the step's kind from its keys, then build it."""
    conv = converter()
    if not isinstance(raw, dict):
        raise _expected("a step (a mapping with an `id`)", raw)
    if isinstance(raw.get("when"), bool):  # `when: false` as in GitHub Actions' `if:`
        raw = {**raw, "when": str(raw["when"]).lower()}
    kinds = [key for key in KIND_KEYS if key in raw]
    classes = {KIND_KEYS[key] for key in kinds}
    if not classes:
        raise _no_kind(
            raw,
            "step",
            KIND_KEYS,
            _ALL_STEP_KEYS,
            "give it one of `prompt`, `messages`, `function` or `workflow`",
        )
    if len(classes) > 1:
        shown = " and ".join(f"`{k}`" for k in kinds)
        raise _Problem(
            f"a step is exactly one kind, but this one has {shown}",
            hint="split it into two steps",
            at="key",
            path=(kinds[-1],),
        )
    cls = classes.pop()
    if cls is LLMStep:
        return _structure_llm_step(raw, conv)
    return conv.structure_object(raw, cls, _field_keys(cls), "a step")


def _structure_llm_step(raw: dict, conv: _Converter) -> LLMStep:
    settings_keys = {k: f for k, f in _field_keys(ModelSettings).items() if k != "timeout"}
    step_keys = _field_keys(LLMStep, skip=("settings",))
    own = {k: v for k, v in raw.items() if k not in settings_keys}
    settings_raw = {k: v for k, v in raw.items() if k in settings_keys}
    problems: list[Exception] = []
    settings = ModelSettings()
    try:
        settings = conv.structure_object(settings_raw, ModelSettings, settings_keys, "a step")
    except Exception as exc:
        problems.append(exc)
    try:
        step = conv.structure_object(
            own, LLMStep, {**step_keys, **settings_keys}, "a step", {"settings": settings}
        )
    except Exception as exc:
        problems.append(exc)
    if problems:
        raise ExceptionGroup("invalid step", problems)
    if step.prompt is not None and step.messages is not None:
        raise _Problem(
            "an LLM step has `prompt` or `messages`, not both", at="key", path=("messages",)
        )
    return step


_ALL_STEP_KEYS = sorted(
    {*_STEP_COMMON, *KIND_KEYS, *SETTING_KEYS, "system", "output", "schema", "mock", "with"}
)


def _no_kind(
    raw: dict, what: str, kinds: Iterable[str], known: Collection[str], hint: str
) -> Exception:
    """A step or check (`what`) without a kind key: each unknown key, and the missing kind
    unless one of those keys is a misspelt kind (then that is the problem)."""
    problems: list[Exception] = []
    misspelt_kind = False
    for key in raw:
        if key in known:
            continue
        kind = did_you_mean(str(key), kinds)
        misspelt_kind = misspelt_kind or kind is not None
        problems.append(
            _Problem(
                f"unknown key {key!r} in a {what}",
                at="key",
                path=(key,),
                hint=kind or did_you_mean(str(key), known),
            )
        )
    if not misspelt_kind:
        name = f" {raw['id']!r}" if isinstance(raw.get("id"), str) else ""
        problems.append(_Problem(f"{what}{name} has no kind", hint=hint, at="node"))
    return problems[0] if len(problems) == 1 else ExceptionGroup(f"invalid {what}", problems)


# --- checks ---------------------------------------------------------------------------------


def _build_checks(
    root: dict, source: SourceMap, diagnostics: list[Diagnostic]
) -> tuple[list[Any], list[int], list[str]]:
    """Each check on its own, as steps are: one broken check hides no other."""
    raw_checks = root.get("checks")
    if raw_checks is None:
        return [], [], []
    if not isinstance(raw_checks, list):
        diagnostics += _diagnose(_expected("a list of checks", raw_checks), ("checks",), source)
        return [], [], []
    checks, positions, broken = [], [], []
    for index, raw in enumerate(raw_checks):
        try:
            checks.append(structure_check(raw))
            positions.append(index)
        except Exception as exc:
            diagnostics += _diagnose(exc, ("checks", index), source)
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                broken.append(raw["id"])
    return checks, positions, broken


def structure_check(raw: Any) -> Any:
    """Pick the check's kind from its keys (exactly one), then build it."""
    if not isinstance(raw, dict):
        raise _expected("a check (a mapping with an `id`)", raw)
    kinds = [key for key in CHECK_KIND_KEYS if key in raw]
    if not kinds:
        kinds_named = ", ".join(f"`{k}`" for k in CHECK_KIND_KEYS)
        raise _no_kind(
            raw, "check", CHECK_KIND_KEYS, _ALL_CHECK_KEYS, f"give it one of {kinds_named}"
        )
    if len(kinds) > 1:
        shown = " and ".join(f"`{k}`" for k in kinds)
        raise _Problem(
            f"a check is exactly one kind, but this one has {shown}",
            hint="split it into two checks",
            at="key",
            path=(kinds[-1],),
        )
    if kinds == ["equals"] and raw["equals"] is None:
        raise _Problem(
            "`equals` needs a value",
            path=("equals",),
            at="key",
            hint="to test for null, write `expect: outputs.NAME is none`",
        )
    cls = CHECK_KIND_KEYS[kinds[0]]
    return converter().structure_object(raw, cls, _check_keys(cls, kinds[0]), "a check")


def _check_keys(cls: type, kind: str) -> dict[str, attrs.Attribute]:
    """A match check's keys: its own operator only, so a second one is an unknown key."""
    return {k: f for k, f in _field_keys(cls).items() if k not in MATCH_KEYS or k == kind}


_ALL_CHECK_KEYS = sorted({"id", "output", "mock", "with", "threshold", *CHECK_KIND_KEYS})


# --- errors -> diagnostics -----------------------------------------------------------------


def _diagnose(exc: BaseException, path: Path_, source: SourceMap) -> list[Diagnostic]:
    return [
        source.diagnostic(where, message, hint=hint, at=at)
        for where, at, message, hint in _flatten(exc, path)
    ]


def _flatten(exc: BaseException, path: Path_) -> Iterator[tuple[Path_, At, str, str | None]]:
    """Every leaf problem of an exception tree, with its full path into the YAML."""
    path = path + _note_path(exc)
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _flatten(sub, path)
    elif isinstance(exc, _Problem):
        yield path + exc.path, exc.at, exc.message, exc.hint
    else:
        yield path, "value", str(exc) or type(exc).__name__, None


def _note_path(exc: BaseException) -> Path_:
    from cattrs.errors import IterableValidationNote

    parts: list[str | int] = []
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, _KeyNote):
            parts.append(note.key)
        elif isinstance(note, IterableValidationNote):
            parts.append(note.index)
    return tuple(parts)
