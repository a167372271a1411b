"""Static checks of a workflow, reported all at once as located diagnostics.

The loader finds what is wrong with the file's shape; this module finds what is wrong
with its meaning: ids, references, templates, providers, schemas, cycles, sub-workflows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import attrs

from orchestrate._errors import Diagnostic, InvalidOutput, WorkflowInvalid
from orchestrate._hints import did_you_mean
from orchestrate._inputs import choices_text, has_type
from orchestrate._loader import MAX_FILE_BYTES, At, LoadResult, SourceMap, load_file
from orchestrate._output import parse_json_reply, schema_validator
from orchestrate._plan import (
    CycleError,
    TemplateSite,
    build_plan,
    check_sites,
    data_template_sites,
    raw_template_sites,
    template_sites,
)
from orchestrate._spec import (
    NO_DEFAULT,
    AnyCheck,
    AnyStep,
    FunctionCheck,
    FunctionStep,
    InputSpec,
    JudgeCheck,
    LLMStep,
    MatchCheck,
    SchemaCheck,
    Workflow,
    WorkflowStep,
)
from orchestrate._templating import GLOBALS, Comparison, Expression, Problem, Reference, Template
from orchestrate.providers import KINDS, builtin_provider_names

ID_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
FUNCTION_PATTERN = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")
STEP_FIELDS = ("output", "status")
# What a check's templates and expressions may read beyond a step's (SPEC 9).
CHECK_VARIABLES = frozenset({"outputs", "row"})
# Evaluated once for the whole step, so a for_each step's `item` is not set there.
_STEP_LEVEL = (("for_each",), ("when",))

# Settings with a range: (key, its bounds in JSON Schema's words, what the message says).
# `orchestrate schema` carries the same bounds.
SETTING_RANGES: tuple[tuple[str, dict[str, float], str], ...] = (
    ("timeout", {"exclusiveMinimum": 0}, "must be more than 0 seconds"),
    ("retries", {"minimum": 0, "maximum": 100}, "must be between 0 and 100"),
    ("max_tokens", {"minimum": 1}, "must be at least 1"),
    ("temperature", {"minimum": 0}, "must be 0 or more"),
)
# Amounts of money: `defaults.max_cost` and each price of `providers.NAME.pricing.MODEL`.
MONEY_BOUNDS: dict[str, float] = {"minimum": 0}
_BOUND_TESTS = {
    "minimum": lambda value, bound: value >= bound,
    "maximum": lambda value, bound: value <= bound,
    "exclusiveMinimum": lambda value, bound: value > bound,
}
# Schema keywords whose values are data, not schemas: nothing under them is a `$ref`.
_SCHEMA_DATA_KEYS = frozenset({"const", "enum", "default", "examples"})


@attrs.frozen
class Report:
    """The outcome of validating one file."""

    file: str
    workflow: Workflow | None
    diagnostics: list[Diagnostic]
    source: SourceMap | None = None
    # Every sub-workflow below this one, by resolved path, as checked with it.
    children: dict[Path, Workflow] = attrs.field(factory=dict)

    @property
    def valid(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "valid": self.valid,
            "diagnostics": [d.to_dict() for d in self.diagnostics],
        }


def validate_file(path: str | Path, display: str | None = None) -> Report:
    """Load and check the workflow at `path`, and every sub-workflow it uses."""
    return _validate(Path(path), display if display is not None else str(path), (), {})


def load_workflow(path: str | Path, display: str | None = None) -> Workflow:
    """The workflow at `path`, or :class:`WorkflowInvalid` with every problem found."""
    return load_with_children(path, display)[0]


def load_with_children(
    path: str | Path, display: str | None = None
) -> tuple[Workflow, dict[Path, Workflow]]:
    """The workflow at `path` and its sub-workflows (by resolved path), or
    :class:`WorkflowInvalid` with every problem found."""
    report = validate_file(path, display)
    if not report.valid or report.workflow is None:
        raise WorkflowInvalid(report.diagnostics)
    return report.workflow, report.children


def validate_workflow(workflow: Workflow) -> Report:
    """Check a workflow built in Python, and its sub-workflows' files.

    With no file behind it, its own problems are placed at line 1 of its path.
    """
    display = str(workflow.path) if workflow.path else "<workflow>"
    positions = tuple(range(len(workflow.steps)))
    loaded = LoadResult(
        SourceMap(display),
        workflow,
        [],
        step_positions=positions,
        check_positions=tuple(range(len(workflow.checks))),
    )
    parents = (workflow.path.resolve(),) if workflow.path else ()
    checker = _Checker(loaded, parents, {})
    diagnostics = sorted(checker.run(), key=lambda d: (d.file != display, d.line, d.column))
    return Report(display, workflow, diagnostics, children=checker.children)


def _validate(
    path: Path, display: str, parents: tuple[Path, ...], done: dict[Path, Report]
) -> Report:
    """Check one file and what it includes; `done` holds every file checked so far in
    this validation, by resolved path, so that a file included from several places (a
    diamond) is loaded and checked once, and its problems are reported once."""
    loaded = load_file(path, display)
    diagnostics = list(loaded.diagnostics)
    children: dict[Path, Workflow] = {}
    if loaded.workflow is not None:
        checker = _Checker(loaded, (*parents, path.resolve()), done)
        diagnostics += checker.run()
        children = checker.children
    diagnostics.sort(key=lambda d: (d.file != display, d.line, d.column))
    report = Report(display, loaded.workflow, diagnostics, loaded.source, children)
    done[path.resolve()] = report
    return report


class _Checker:
    def __init__(
        self, loaded: LoadResult, stack: tuple[Path, ...], done: dict[Path, Report]
    ) -> None:
        assert loaded.workflow is not None
        self.workflow = loaded.workflow
        self.source: SourceMap = loaded.source
        self.broken = loaded.broken_steps
        self.broken_inputs = loaded.broken_inputs
        # Broken steps are left out of the workflow, so positions come from the loader.
        self.positions = {
            id(step): index
            for step, index in zip(self.workflow.steps, loaded.step_positions, strict=True)
        }
        self.check_positions = {
            id(check): index
            for check, index in zip(self.workflow.checks, loaded.check_positions, strict=True)
        }
        self.stack = stack
        self.done = done
        self.index = {step.id: i for i, step in enumerate(self.workflow.steps)}
        self.found: list[Diagnostic] = []
        self.children: dict[Path, Workflow] = {}
        self.module_names: dict[str, frozenset[str] | None] = {}
        # id(step) -> the step ids its templates name, gathered while checking them.
        self.referenced: dict[int, set[str]] = {}

    def error(
        self, path: tuple[str | int, ...], message: str, hint: str | None = None, at: At = "value"
    ) -> None:
        self.found.append(self.source.diagnostic(path, message, hint=hint, at=at))

    def step_path(self, step: AnyStep) -> tuple[str | int, ...]:
        return ("steps", self.positions[id(step)])

    def run(self) -> list[Diagnostic]:
        self.check_version()
        self.check_inputs()
        self.check_ids()
        self.check_providers()
        self.check_ranges()
        self.check_money()
        for step in self.workflow.steps:
            self.check_step(step)
        self.check_broken_steps()
        self.check_outputs()
        self.check_cycles()
        self.check_check_ids()
        for check in self.workflow.checks:
            self.check_check(check)
        return self.found

    # --- the workflow ---------------------------------------------------------------------

    def check_version(self) -> None:
        if self.workflow.version != 1:
            self.error(
                ("version",),
                f"unsupported version {self.workflow.version}",
                "only version 1 exists; write `version: 1` or leave it out",
            )

    def check_inputs(self) -> None:
        for name, spec in self.workflow.inputs.items():
            if not ID_PATTERN.match(name):
                self.error(
                    ("inputs", name),
                    f"invalid input name {name!r}",
                    _identifier_hint(name),
                    at="key",
                )
            if spec.default not in (NO_DEFAULT, None) and not has_type(spec.default, spec.type):
                self.error(
                    ("inputs", name, "default"),
                    f"the default of input {name!r} is not of type {spec.type}",
                )
            elif spec.enum is not None:
                self.check_enum(name, spec)

    def check_enum(self, name: str, spec: InputSpec) -> None:
        """`enum` values of the input's type, at least one, and a default among them."""
        if not spec.enum:
            self.error(("inputs", name, "enum"), f"the enum of input {name!r} lists no values")
            return
        for index, value in enumerate(spec.enum):
            if not has_type(value, spec.type):
                self.error(
                    ("inputs", name, "enum", index),
                    f"the enum value {json.dumps(value)} of input {name!r} is not of "
                    f"type {spec.type}",
                )
        if spec.default not in (NO_DEFAULT, None) and spec.default not in spec.enum:
            shown = json.dumps(spec.default, ensure_ascii=False)
            hint = did_you_mean(spec.default, spec.enum) if isinstance(spec.default, str) else None
            self.error(
                ("inputs", name, "default"),
                f"the default {shown} of input {name!r} is not one of its enum values "
                f"({choices_text(spec.enum)})",
                hint,
            )

    def raw_steps(self) -> list[tuple[int, dict]]:
        """Every step of the file that is a mapping, built or not, with its index."""
        if self.source.root is None:  # built in Python: every step is built, ids are enough
            return [(i, {"id": step.id}) for i, step in enumerate(self.workflow.steps)]
        raw_steps = self.source.root.get("steps") if isinstance(self.source.root, dict) else None
        if not isinstance(raw_steps, list):
            return []
        return [(i, raw) for i, raw in enumerate(raw_steps) if isinstance(raw, dict)]

    def check_ids(self) -> None:
        """Ids of every step in the file: one that could not be built still holds its id."""
        first_index: dict[str, int] = {}
        for index, raw in self.raw_steps():
            step_id = raw.get("id")
            if not isinstance(step_id, str):
                continue
            path = ("steps", index, "id")
            if not ID_PATTERN.match(step_id):
                self.error(path, f"invalid step id {step_id!r}", _identifier_hint(step_id))
            if step_id in first_index:
                # located only now: a valid file's positions are never computed
                first = self.source.locate(("steps", first_index[step_id], "id"))[0]
                self.error(
                    path,
                    f"duplicate step id {step_id!r}",
                    f"it is first used on line {first}; ids must be unique",
                )
            else:
                first_index[step_id] = index

    def check_providers(self) -> None:
        known = {*builtin_provider_names(), *self.workflow.providers}
        settings: list[tuple[tuple[str | int, ...], str | None]] = [
            (("defaults", "provider"), self.workflow.defaults.provider)
        ]
        for step in self.workflow.steps:
            if isinstance(step, LLMStep):
                settings.append(((*self.step_path(step), "provider"), step.settings.provider))
        for path, name in settings:
            if name is not None and name not in known:
                self.error(
                    path,
                    f"unknown provider {name!r}",
                    did_you_mean(name, known) or f"known: {', '.join(sorted(known))}",
                )
        for name, spec in self.workflow.providers.items():
            if spec.base_url is None and name not in KINDS:
                self.error(
                    ("providers", name),
                    f"provider {name!r} needs a base_url",
                    f"only the built-in {' and '.join(KINDS)} may leave it out (to "
                    "set their rate limits)",
                )
            for key in ("rpm", "tpm"):
                value = getattr(spec, key)
                if value is not None and value < 1:
                    self.error(("providers", name, key), f"`{key}` must be at least 1, got {value}")

    def check_ranges(self) -> None:
        """Settings whose type is right but whose value makes no sense (`timeout: 0`)."""
        values: list[tuple[tuple[str | int, ...], str, Any]] = [
            (("defaults", key), key, getattr(self.workflow.defaults, key))
            for key, _, _ in SETTING_RANGES
        ]
        for step in self.workflow.steps:
            base = self.step_path(step)
            values.append(((*base, "timeout"), "timeout", step.timeout))
            if isinstance(step, LLMStep):
                values += [
                    ((*base, key), key, getattr(step.settings, key))
                    for key, _, _ in SETTING_RANGES
                    if key != "timeout"
                ]
                if step.messages is not None and not step.messages:
                    self.error(
                        (*base, "messages"),
                        "an LLM step's `messages` is empty",
                        "add at least one message, e.g. `- {role: user, content: ...}`",
                    )
        for path, key, value in values:
            self.check_range(path, key, value)

    def check_money(self) -> None:
        """A budget or a price below 0 (a local model is priced 0)."""
        amounts: list[tuple[tuple[str | int, ...], Any]] = [
            (("defaults", "max_cost"), self.workflow.defaults.max_cost)
        ]
        for name, provider in self.workflow.providers.items():
            for model, price in provider.pricing.items():
                amounts += [
                    (("providers", name, "pricing", model, field.name), getattr(price, field.name))
                    for field in attrs.fields(type(price))
                ]
        for path, value in amounts:
            if value is not None and not all(
                _BOUND_TESTS[b](value, n) for b, n in MONEY_BOUNDS.items()
            ):
                self.error(path, f"`{path[-1]}` must be 0 or more, got {value:g}")

    def check_range(self, path: tuple, key: str, value: Any) -> None:
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            return
        for name, bounds, rule in SETTING_RANGES:
            if name == key and not all(_BOUND_TESTS[b](value, n) for b, n in bounds.items()):
                shown = int(value) if isinstance(value, float) and value.is_integer() else value
                self.error(path, f"`{key}` {rule}, got {shown}")

    def check_outputs(self) -> None:
        if self.workflow.outputs is None:
            return
        for site in data_template_sites(self.workflow.outputs, ("outputs",)):
            self.check_site(site, site.path, step=None)

    def check_cycles(self) -> None:
        try:
            build_plan(self.workflow, lambda step: self.referenced.get(id(step), set()))
        except CycleError as exc:
            first = self.workflow.step(exc.cycle[0])
            self.error(
                self.step_path(first),
                f"dependency cycle: {' -> '.join(exc.cycle)}",
                "a step cannot depend, directly or not, on itself",
                at="node",
            )

    # --- steps ------------------------------------------------------------------------------

    def check_step(self, step: AnyStep) -> None:
        base = self.step_path(step)
        for need in step.needs:
            self.check_step_ref(step, need, (*base, "needs"))
        referenced = self.referenced.setdefault(id(step), set())
        for site in template_sites(step):
            parsed = self.check_site(site, (*base, *site.path), step)
            if not isinstance(parsed, Problem):
                referenced.update(r.name for r in parsed.references if r.root == "steps")
        if isinstance(step, LLMStep) and step.schema is not None:
            self.check_schema(step.schema, (*base, "schema"))
        if isinstance(step, LLMStep):
            self.check_mock(step, base)
        if isinstance(step, FunctionStep) and not FUNCTION_PATTERN.match(step.function):
            self.error(
                (*base, "function"),
                f"invalid function {step.function!r}",
                "write it as `package.module:callable`",
            )
        elif isinstance(step, FunctionStep):
            self.check_function_name(step.function, (*base, "function"))
        if isinstance(step, WorkflowStep):
            self.check_sub_workflow(step, (*base, "workflow"))

    def check_broken_steps(self) -> None:
        """Steps that could not be built still get their templates and values checked."""
        built = set(self.positions.values())
        for index, raw in self.raw_steps():
            if index in built:
                continue
            function = raw.get("function")
            if isinstance(function, str) and not FUNCTION_PATTERN.match(function):
                self.error(
                    ("steps", index, "function"),
                    f"invalid function {function!r}",
                    "write it as `package.module:callable`",
                )
            for key, _, _ in SETTING_RANGES:
                self.check_range(("steps", index, key), key, raw.get(key))
            for_each = raw.get("for_each")
            view = _StepView(
                str(raw.get("id", "")), for_each if isinstance(for_each, str) else None
            )
            for site in raw_template_sites(raw):
                self.check_site(site, ("steps", index, *site.path), view)

    def check_step_ref(self, step: AnyStep | _StepView | None, target: str, path: tuple) -> bool:
        if step is not None and target == step.id:
            self.error(path, f"step {step.id!r} refers to itself")
            return False
        if target in self.index or target in self.broken:
            return target in self.index
        self.error(
            path,
            f"unknown step {target!r}",
            did_you_mean(target, {*self.index, *self.broken}) or _identifier_hint(target),
        )
        return False

    def check_site(
        self,
        site: TemplateSite,
        path: tuple,
        step: AnyStep | _StepView | None,
        also: frozenset[str] = frozenset(),
    ) -> Template | Expression | Problem:
        """Check one template or expression (which may read the variables `also` too);
        returns what parsing it gave."""
        parsed = site.parse()
        if isinstance(parsed, Problem):
            self.template_error(path, parsed)
            return parsed
        allowed = {"inputs", "steps", *GLOBALS, *also}
        if step is not None and step.for_each is not None and site.path not in _STEP_LEVEL:
            allowed |= {"item", "index"}
        for name in sorted(parsed.variables - allowed):
            hint = _variable_hint(name, allowed)
            self.error(path, f"unknown variable {name!r} in a template", hint)
        for ref in sorted(parsed.references, key=lambda r: (r.root, r.name)):
            if ref.root == "outputs":
                if "outputs" in allowed:  # else reported as an unknown variable above
                    self.check_output_name(ref.name, path)
                continue
            self.check_reference(ref, path, step)
        if site.path == ("for_each",) and len(parsed.references) == 1:
            self.check_for_each_type(next(iter(parsed.references)), site.source, path)
        self.check_comparisons(parsed.comparisons, path)
        return parsed

    def template_error(self, path: tuple, problem: Problem) -> None:
        line, column = self.source.locate(path)
        node = self.source.value(path) if self.source.root is not None else None
        if _is_block_scalar(node):  # its text starts on the line after the `|` or `>`
            line += min(problem.line, _content_lines(str(node)))
            column = self.source.indent_of(line)
        elif problem.line > 1:
            message = f"{problem.message} (template line {problem.line})"
            problem = attrs.evolve(problem, message=message)
        self.found.append(Diagnostic(self.source.file, line, column, problem.message, problem.hint))

    def check_reference(
        self, ref: Reference, path: tuple, step: AnyStep | _StepView | None
    ) -> None:
        if ref.root == "inputs":
            if ref.name not in self.workflow.inputs and ref.name not in self.broken_inputs:
                known = {*self.workflow.inputs, *self.broken_inputs}
                hint = did_you_mean(ref.name, known) or "declare it under `inputs:`"
                self.error(path, f"unknown input {ref.name!r}", hint)
            return
        if not self.check_step_ref(step, ref.name, path):
            return
        if not ref.path:
            self.error(
                path,
                f"steps.{ref.name} is not a value",
                f"use steps.{ref.name}.output or steps.{ref.name}.status",
            )
            return
        if ref.path[0] not in STEP_FIELDS:
            field = ref.path[0]
            self.error(
                path,
                f"steps.{ref.name}.{field} does not exist",
                did_you_mean(str(field), STEP_FIELDS) or "use .output or .status",
            )
            return
        target = self.workflow.step(ref.name)
        if ref.path[0] == "output" and isinstance(target, LLMStep) and target.schema:
            self.check_typed_path(target, ref.path[1:], path)

    def check_typed_path(self, target: LLMStep, fields: tuple, path: tuple) -> None:
        """`steps.a.output.titel` against step a's schema: typed references."""
        schema = _output_schema(target)
        for field in fields:
            schema, problem = _descend(schema, field)
            if problem:
                self.error(
                    path,
                    f"step {target.id!r} has no output field {field!r}",
                    did_you_mean(str(field), problem),
                )
                return
            if schema is None:
                return

    def check_for_each_type(self, ref: Reference, source: str, path: tuple) -> None:
        """`for_each: inputs.name` over a value the workflow says is not a list."""
        written = _written(ref)
        types = self.reference_types(ref)
        if source.strip() == written and types and "array" not in types:
            self.error(
                path, f"for_each needs a list, but {written} is of type {_type_names(types)}"
            )

    def check_comparisons(self, comparisons: tuple[Comparison, ...], path: tuple) -> None:
        """`steps.x.output.score > "5"` where the schema says score is a number."""
        for comparison in comparisons:
            types = self.reference_types(comparison.reference)
            kind = _json_type(comparison.constant)
            if (
                types is None
                or kind is None
                or kind in types
                or (kind == "number" and "integer" in types)
            ):
                continue
            written, constant = _written(comparison.reference), comparison.constant
            shown = json.dumps(constant, ensure_ascii=False)
            self.error(
                path,
                f"{written} is of type {_type_names(types)}, but is "
                f"compared with {_A_TYPE[kind]} ({shown})",
                _comparison_hint(comparison, types),
            )

    def reference_types(self, ref: Reference) -> frozenset[str] | None:
        """The JSON types the workflow gives a reference's value; None where it does not say.

        An input has its declared type; `steps.x.status` is a string; `steps.x.output` is
        what x's kind, `output` and `schema` make it, followed down the schema's fields.
        """
        if ref.root == "inputs":
            spec = self.workflow.inputs.get(ref.name)
            return frozenset({spec.type}) if spec is not None and not ref.path else None
        if ref.root == "outputs" or ref.name not in self.index or not ref.path:
            return None
        target = self.workflow.steps[self.index[ref.name]]
        if ref.path == ("status",):
            return frozenset({"string"})
        if ref.path[0] != "output":
            return None
        schema = _output_schema(target)
        for field in ref.path[1:]:
            schema, problem = _descend(schema, field)
            if problem or schema is None:
                return None
        return _schema_types(schema)

    def check_function_name(self, function: str, path: tuple) -> None:
        """`module:nmae`, checked against the names in the module's source, never run."""
        from orchestrate._module_source import defined_names

        module, _, attribute = function.partition(":")
        folder = self.workflow.path.parent if self.workflow.path else None
        if module not in self.module_names:  # looked up once per module, not per step
            self.module_names[module] = defined_names(module, folder)
        names = self.module_names[module]
        name = attribute.partition(".")[0]
        if names is not None and name not in names:
            public = {n for n in names if not n.startswith("_")}
            self.error(
                path,
                f"module {module!r} has no {name!r}",
                did_you_mean(name, public) or _defines_hint(public),
            )

    def check_mock(self, step: LLMStep, base: tuple) -> None:
        """A constant `mock:` of a JSON step is parsed as the reply would be, so `--mock`
        does not fail on it later. A mock with template syntax is known only when rendered.
        """
        if step.mock is None or _is_template(step.mock):
            return
        if step.output != "json" and step.schema is None:
            return
        try:
            parse_json_reply(step.mock, step.schema, what="mock")
        except InvalidOutput as exc:
            if not exc.message.startswith("the step's schema cannot be used"):  # reported once
                self.error(
                    (*base, "mock"),
                    exc.message,
                    "`--mock` answers with this text, and it is checked like a model's reply",
                )

    def check_schema(self, schema: dict, path: tuple) -> None:
        validator = schema_validator(schema)
        for error in validator(validator.META_SCHEMA).iter_errors(schema):
            where = (*path, *error.path)
            self.error(where, f"invalid JSON Schema: {error.message}")
        anchors = set(_schema_anchors(schema))
        for route, resource, node in _schema_nodes(schema):
            self.check_schema_node(node, (*path, *route), resource, anchors)

    def check_schema_node(self, node: dict, path: tuple, resource: Any, anchors: set) -> None:
        """One schema object: its `$ref` resolves inside the schema, its regexes compile."""
        ref = node.get("$ref")
        if isinstance(ref, str):
            if not ref.startswith("#"):
                self.error(
                    (*path, "$ref"),
                    f"remote $ref {ref!r}: orchestrate never fetches "
                    "schemas; put the definition under $defs",
                    "write it as `$ref: '#/$defs/NAME'` with the schema under `$defs:`",
                )
            elif not _resolves(ref, resource, anchors):
                self.error(
                    (*path, "$ref"),
                    f"$ref {ref!r} does not resolve in the schema",
                    "a local $ref is a JSON pointer such as '#/$defs/NAME'",
                )
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            problem = _regex_problem(pattern)
            if problem:
                self.error((*path, "pattern"), f"invalid regular expression in pattern: {problem}")
        properties = node.get("patternProperties")
        if isinstance(properties, dict):
            for key in properties:
                problem = _regex_problem(key) if isinstance(key, str) else None
                if problem:
                    self.error(
                        (*path, "patternProperties", key),
                        f"invalid regular expression in patternProperties: {problem}",
                        at="key",
                    )

    # --- checks (SPEC 9) --------------------------------------------------------------------

    def raw_checks(self) -> list[tuple[int, dict]]:
        """Every check of the file that is a mapping, built or not, with its index."""
        if self.source.root is None:
            return [(i, {"id": check.id}) for i, check in enumerate(self.workflow.checks)]
        raw = self.source.root.get("checks") if isinstance(self.source.root, dict) else None
        return (
            [(i, c) for i, c in enumerate(raw) if isinstance(c, dict)]
            if isinstance(raw, list)
            else []
        )

    def check_check_ids(self) -> None:
        first_line: dict[str, int] = {}
        for index, raw in self.raw_checks():
            check_id = raw.get("id")
            if not isinstance(check_id, str):
                continue
            path = ("checks", index, "id")
            if not ID_PATTERN.match(check_id):
                self.error(path, f"invalid check id {check_id!r}", _identifier_hint(check_id))
            if check_id in first_line:
                self.error(
                    path,
                    f"duplicate check id {check_id!r}",
                    f"it is first used on line {first_line[check_id]}; ids must be unique",
                )
            else:
                first_line[check_id] = self.source.locate(path)[0]

    def check_check(self, check: AnyCheck) -> None:
        base = ("checks", self.check_positions[id(check)])
        for site in check_sites(check):
            self.check_site(site, (*base, *site.path), None, CHECK_VARIABLES)
        if isinstance(check, SchemaCheck | MatchCheck | JudgeCheck):
            self.check_check_output(check, base)
        if isinstance(check, SchemaCheck):
            self.check_schema(check.schema, (*base, "schema"))
        elif isinstance(check, MatchCheck):
            self.check_match(check, base)
        elif isinstance(check, JudgeCheck):
            self.check_judge(check, base)
        elif isinstance(check, FunctionCheck):
            self.check_threshold(check.threshold, (*base, "threshold"))
            if not FUNCTION_PATTERN.match(check.function):
                self.error(
                    (*base, "function"),
                    f"invalid function {check.function!r}",
                    "write it as `package.module:callable`",
                )
            else:
                self.check_function_name(check.function, (*base, "function"))

    def check_check_output(self, check: SchemaCheck | MatchCheck | JudgeCheck, base: tuple) -> None:
        names = self.workflow.output_names
        if check.output is not None:
            self.check_output_name(check.output, (*base, "output"))
        elif len(names) != 1:
            self.error(
                base,
                f"check {check.id!r} needs `output:` (the workflow has {len(names)} outputs)",
                f"name one of {', '.join(names)}" if names else None,
                at="node",
            )

    def check_output_name(self, name: str, path: tuple) -> None:
        names = self.workflow.output_names
        if name not in names and name not in self.broken:
            self.error(
                path,
                f"unknown output {name!r}",
                did_you_mean(name, names) or f"outputs: {', '.join(names)}",
            )

    def check_match(self, check: MatchCheck, base: tuple) -> None:
        if check.operator == "regex" and not _is_template(check.regex):
            problem = _regex_problem(check.regex or "")
            if problem:
                self.error((*base, "regex"), f"invalid regular expression: {problem}")

    def check_judge(self, check: JudgeCheck, base: tuple) -> None:
        judge = check.judge
        self.check_threshold(judge.threshold, (*base, "judge", "threshold"))
        known = {*builtin_provider_names(), *self.workflow.providers}
        if judge.provider is not None and judge.provider not in known:
            self.error(
                (*base, "judge", "provider"),
                f"unknown provider {judge.provider!r}",
                did_you_mean(judge.provider, known) or f"known: {', '.join(sorted(known))}",
            )

    def check_threshold(self, value: float, path: tuple) -> None:
        if not 0 <= value <= 1:
            self.error(path, f"`threshold` must be between 0 and 1, got {value:g}")

    def check_sub_workflow(self, step: WorkflowStep, path: tuple) -> None:
        parent = self.workflow.path
        folder = parent.parent if parent else Path()
        child = folder / step.workflow
        if not child.is_file():
            self.error(
                path,
                f"sub-workflow {step.workflow!r} not found",
                f"the path is relative to the workflow's folder ({folder})",
            )
            return
        if child.resolve() in self.stack:
            self.error(
                path,
                f"sub-workflow {step.workflow!r} includes itself",
                "a workflow cannot run itself, directly or through others",
            )
            return
        report = self.done.get(child.resolve())
        if report is None:  # the first inclusion reports the child's problems
            display = str(Path(self.source.file).parent / step.workflow)
            report = _validate(child, display, self.stack, self.done)
            self.found += report.diagnostics
        self.children.update(report.children)
        if report.workflow is not None:
            self.children[child.resolve()] = report.workflow
            self.check_with_inputs(step, report.workflow.inputs, path[:-1])

    def check_with_inputs(
        self, step: WorkflowStep, inputs: dict[str, InputSpec], base: tuple
    ) -> None:
        for name, value in step.with_.items():
            if name not in inputs:
                self.error(
                    (*base, "with", name),
                    f"the sub-workflow has no input {name!r}",
                    did_you_mean(name, inputs),
                    at="key",
                )
            elif not _is_template(value) and not has_type(value, inputs[name].type):
                shown = json.dumps(value, ensure_ascii=False, default=str)
                self.error(
                    (*base, "with", name),
                    f"the sub-workflow's input {name!r} must be of type "
                    f"{inputs[name].type}, got {shown}",
                )
        for name, spec in inputs.items():
            if spec.required and name not in step.with_:
                self.error(
                    (*base, "workflow"),
                    f"the sub-workflow needs the input {name!r}",
                    f"pass it under `with: {{{name}: ...}}`",
                )


@attrs.frozen
class _StepView:
    """What the template checks need of a step that could not be built."""

    id: str
    for_each: str | None


def _identifier_hint(name: str) -> str | None:
    fixed = re.sub(r"\W", "_", name)
    if fixed and fixed[0].isdigit():
        fixed = "_" + fixed
    if fixed != name:
        return f"use letters, digits and underscores, e.g. {fixed!r}"
    return None


def _defines_hint(names: set[str]) -> str:
    if not names:
        return "it defines no public names"
    shown = sorted(names)
    return "it defines " + ", ".join(shown[:8]) + (", ..." if len(shown) > 8 else "")


def _variable_hint(name: str, allowed: set[str]) -> str | None:
    if name in ("item", "index"):
        return "`item` and `index` are set only in a step with `for_each`"
    return did_you_mean(name, allowed) or "templates can use inputs.NAME and steps.ID.output"


def _is_template(value: Any) -> bool:
    """A string with template syntax: rendered at run time, and typed then."""
    return isinstance(value, str) and any(mark in value for mark in ("{{", "{%", "{#"))


def _content_lines(text: str) -> int:
    """How many lines a block scalar's text spans in the file (Jinja may count the end of
    the text as one line more)."""
    return max(1, len(text.rstrip("\n").split("\n")))


def _is_block_scalar(node: Any) -> bool:
    from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

    return isinstance(node, LiteralScalarString | FoldedScalarString)


def _schema_nodes(
    node: Any, route: tuple = (), resource: Any = None
) -> Iterator[tuple[tuple, Any, dict]]:
    """Every mapping in a schema: (its path, the resource its `#` refers to, it)."""
    if isinstance(node, dict):
        if resource is None or isinstance(node.get("$id"), str):
            resource = node
        yield route, resource, node
        for key, value in node.items():
            if key not in _SCHEMA_DATA_KEYS:
                yield from _schema_nodes(value, (*route, key), resource)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _schema_nodes(value, (*route, index), resource)


def _schema_anchors(schema: Any) -> Iterator[str]:
    for _, _, node in _schema_nodes(schema):
        for key in ("$anchor", "$dynamicAnchor"):
            if isinstance(node.get(key), str):
                yield node[key]


def _resolves(ref: str, resource: Any, anchors: set[str]) -> bool:
    """Whether a local `$ref` ('#', '#/json/pointer' or '#anchor') points at something."""
    fragment = unquote(ref[1:])
    if not fragment:
        return True
    if not fragment.startswith("/"):
        return fragment in anchors
    node = resource
    for token in fragment[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False
    return True


def _regex_problem(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError) as exc:
        return str(exc)
    return None


def _output_schema(step: AnyStep) -> Any:
    """What a step's kind and settings say of its output, as a schema (None: nothing)."""
    item = _reply_schema(step)
    if step.for_each is None:
        return item
    return {"type": "array"} if item is None else {"type": "array", "items": item}


def _reply_schema(step: AnyStep) -> Any:
    """The schema of one output of a step (one item's, for a `for_each` step)."""
    if isinstance(step, LLMStep):
        if step.schema is not None:
            return step.schema
        return {"type": "string"} if step.output == "text" else None
    if isinstance(step, WorkflowStep):
        return {"type": "object"}  # the child's `outputs`
    return None


def _schema_types(schema: Any) -> frozenset[str] | None:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, str):
        return frozenset({kind})
    if isinstance(kind, list) and kind and all(isinstance(k, str) for k in kind):
        return frozenset(kind)
    return None


def _type_names(types: frozenset[str]) -> str:
    return " or ".join(sorted(types, key=lambda kind: (kind == "null", kind)))


_A_TYPE = {"string": "a string", "number": "a number", "boolean": "a boolean"}


def _json_type(constant: Any) -> str | None:
    """The JSON type of a literal in an expression; None for `none` (a skipped step's null)."""
    if isinstance(constant, bool):
        return "boolean"
    if isinstance(constant, int | float):
        return "number"
    return "string" if isinstance(constant, str) else None


def _comparison_hint(comparison: Comparison, types: frozenset[str]) -> str:
    operator, constant, ref = comparison.operator, comparison.constant, comparison.reference
    outcome = (
        "is always false"
        if operator == "eq"
        else "is always true"
        if operator == "ne"
        else "fails when the step runs"
    )
    if ref.root == "inputs" and types == {"string"} and _json_type(constant) == "number":
        return (
            f"declare the input with `type: number` (an input without `type` is a "
            f"string); as it is, the comparison {outcome}"
        )
    if isinstance(constant, str) and types & {"number", "integer"}:
        try:
            number = json.loads(constant)
        except ValueError:
            number = None
        if isinstance(number, int | float) and not isinstance(number, bool):
            return f"write {constant} without quotes; as it is, the comparison {outcome}"
    if "string" in types and not isinstance(constant, str):
        quoted = json.dumps(json.dumps(constant))
        return f"write {quoted} in quotes; as it is, the comparison {outcome}"
    return f"as it is, the comparison {outcome}"


def _written(ref: Reference) -> str:
    """A reference as a template writes it: steps.a.output.items[0].title."""
    text = f"{ref.root}.{ref.name}"
    for part in ref.path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _descend(schema: Any, field: str | int) -> tuple[Any, list[str] | None]:
    """The schema of `field` inside `schema`: (sub-schema or None when unknown, problem).

    The problem is the list of known fields when `field` is not one of them.
    """
    if not isinstance(schema, dict):
        return None, None
    if isinstance(field, int):
        return (schema.get("items"), None) if schema.get("type") == "array" else (None, None)
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return None, None
    if field in properties:
        return properties[field], None
    if schema.get("additionalProperties") not in (None, False):
        return None, None
    return None, list(properties)


# --- finding the workflows in a folder ---------------------------------------------------

# A top-level `steps:` key (quoted or not), at the start of a line: what makes a YAML file
# a workflow rather than some other configuration that lives next to it.
_TOP_LEVEL_STEPS = re.compile(rb"""^(?:steps|"steps"|'steps')[ \t]*:""", re.MULTILINE)
_WORKFLOW_SUFFIXES = (".yaml", ".yml")


def workflow_files(path: Path) -> list[Path]:
    """What `validate PATH` checks: a file as it is; for a folder, the workflows below it.

    A folder is searched recursively, like `ruff check DIR`; a workflow is a *.yaml or
    *.yml file with a top-level `steps:` key. Other files, and hidden folders (.git,
    .venv), are skipped. The files come sorted, so reports are stable.
    """
    import os

    if not path.is_dir():
        return [path]
    found: list[Path] = []
    for root, folders, names in os.walk(path):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            file = Path(root, name)
            if name.endswith(_WORKFLOW_SUFFIXES) and _looks_like_workflow(file):
                found.append(file)
    return sorted(found)


def _looks_like_workflow(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            head = stream.read(MAX_FILE_BYTES + 1)
    except OSError:
        return True  # validating it reports why it cannot be read
    return _TOP_LEVEL_STEPS.search(head) is not None
