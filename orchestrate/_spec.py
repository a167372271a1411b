"""The workflow format as immutable attrs classes.

These classes are what the loader builds from YAML and what everything after it reads.
They hold the file's data only; positions live in the loader's :class:`SourceMap`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, NewType, TypeAlias

import attrs

InputType: TypeAlias = Literal["string", "number", "integer", "boolean", "array", "object"]
OnError: TypeAlias = Literal["fail", "continue"]
OutputFormat: TypeAlias = Literal["text", "json"]
Role: TypeAlias = Literal["system", "user", "assistant"]
# A kind from the providers' registry (`orchestrate.providers.kind_names()`), which the
# loader checks: the kinds are not listed here, so a new one needs no edit of the format.
ProviderType = NewType("ProviderType", str)


class _NoDefault:
    """Marks an input that has no `default` (None is a valid default)."""

    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


@attrs.frozen
class InputSpec:
    type: InputType = "string"
    description: str | None = None
    default: Any = NO_DEFAULT
    enum: tuple[Any, ...] | None = None  # the only values it may take (a form's choice)

    @property
    def required(self) -> bool:
        return self.default is NO_DEFAULT


@attrs.frozen
class ModelSettings:
    """Settings an LLM step inherits from `defaults` and may override."""

    model: str | None = None
    provider: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    retries: int | None = None
    cache: bool | None = None

    def merged(self, override: ModelSettings) -> ModelSettings:
        """These settings with every value that `override` sets replacing ours."""
        # Once per step and item: attrs.asdict() would copy every value (10 us a call).
        changes = {k: v for k in SETTING_KEYS if (v := getattr(override, k)) is not None}
        return attrs.evolve(self, **changes) if changes else self


SETTING_KEYS: tuple[str, ...] = tuple(f.name for f in attrs.fields(ModelSettings))


@attrs.frozen
class Defaults(ModelSettings):
    """`defaults`: what every LLM step inherits, and what holds for the whole run."""

    max_cost: float | None = None  # USD; the run's budget (docs/cost.md)


@attrs.frozen
class Price:
    """A model's price in USD per million tokens (`providers.NAME.pricing.MODEL`, and each
    entry of the table shipped in orchestrate/pricing.toml)."""

    input: float
    output: float
    cached_input: float | None = None  # default: `input`
    cache_write: float | None = None  # Anthropic's prompt-cache writes; default: `input`
    max_output: int | None = None  # the most reply tokens: what a budget reserves without
    # a step's max_tokens


@attrs.frozen
class ProviderSpec:
    """An extra endpoint from `providers:`, of a kind the providers' registry knows; or,
    without `base_url`, settings (rate limits) of the built-in provider of that name."""

    base_url: str | None = None
    type: ProviderType = ProviderType("openai")
    api_key_env: str | None = None
    headers: dict[str, str] = attrs.field(factory=dict)
    rpm: int | None = None  # requests a minute the provider allows
    tpm: int | None = None  # tokens a minute (input and output)
    pricing: dict[str, Price] = attrs.field(factory=dict)


@attrs.frozen
class Message:
    role: Role
    content: str


@attrs.frozen(kw_only=True)
class Step:
    """What every kind of step has."""

    id: str
    when: str | None = None
    for_each: str | None = None
    needs: tuple[str, ...] = ()
    on_error: OnError = "fail"
    timeout: float | None = None

    kind: ClassVar[str]


@attrs.frozen(kw_only=True)
class LLMStep(Step):
    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    system: str | None = None
    output: OutputFormat = "text"
    schema: dict[str, Any] | None = None
    mock: str | None = None
    settings: ModelSettings = ModelSettings()

    kind: ClassVar[str] = "llm"


@attrs.frozen(kw_only=True)
class FunctionStep(Step):
    function: str
    with_: dict[str, Any] = attrs.field(factory=dict, alias="with_")

    kind: ClassVar[str] = "function"


@attrs.frozen(kw_only=True)
class WorkflowStep(Step):
    workflow: str
    with_: dict[str, Any] = attrs.field(factory=dict, alias="with_")

    kind: ClassVar[str] = "workflow"


AnyStep: TypeAlias = LLMStep | FunctionStep | WorkflowStep

# The keys that decide a step's kind, in the order they are checked.
KIND_KEYS: dict[str, type[Step]] = {
    "prompt": LLMStep,
    "messages": LLMStep,
    "function": FunctionStep,
    "workflow": WorkflowStep,
}


# --- checks (SPEC 9) ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Check:
    """What every kind of check has: a check grades a run's outputs once it succeeded."""

    id: str

    kind: ClassVar[str]


@attrs.frozen(kw_only=True)
class ExpectCheck(Check):
    expect: str  # an expression over inputs, outputs, steps (and row in a batch)

    kind: ClassVar[str] = "expect"


@attrs.frozen(kw_only=True)
class SchemaCheck(Check):
    schema: dict[str, Any]
    output: str | None = None  # the output it looks at; None: the workflow's only one

    kind: ClassVar[str] = "schema"


@attrs.frozen(kw_only=True)
class MatchCheck(Check):
    """One of `contains`, `icontains`, `regex`, `equals`: a template compared with an output."""

    output: str | None = None
    contains: str | None = None
    icontains: str | None = None
    regex: str | None = None
    equals: Any = None

    kind: ClassVar[str] = "match"

    @property
    def operator(self) -> str:
        return next(key for key in MATCH_KEYS if getattr(self, key) is not None)

    @property
    def expected(self) -> Any:
        return getattr(self, self.operator)


MATCH_KEYS: tuple[str, ...] = ("contains", "icontains", "regex", "equals")


@attrs.frozen(kw_only=True)
class Judge:
    """A model that grades an output against a rubric (a template)."""

    rubric: str
    model: str | None = None
    provider: str | None = None
    threshold: float = 0.5  # the score (0..1) needed to pass


@attrs.frozen(kw_only=True)
class JudgeCheck(Check):
    judge: Judge
    output: str | None = None
    mock: str | None = None  # what --mock answers for the judge (a template)

    kind: ClassVar[str] = "judge"


@attrs.frozen(kw_only=True)
class FunctionCheck(Check):
    function: str
    with_: dict[str, Any] = attrs.field(factory=dict, alias="with_")
    threshold: float = 0.5  # for a number returned: the score needed to pass

    kind: ClassVar[str] = "function"


AnyCheck: TypeAlias = ExpectCheck | SchemaCheck | MatchCheck | JudgeCheck | FunctionCheck

# The keys that decide a check's kind.
CHECK_KIND_KEYS: dict[str, type[Check]] = {
    "expect": ExpectCheck,
    "schema": SchemaCheck,
    **{key: MatchCheck for key in MATCH_KEYS},
    "judge": JudgeCheck,
    "function": FunctionCheck,
}


@attrs.frozen(kw_only=True)
class Workflow:
    name: str
    steps: tuple[AnyStep, ...]
    version: int = 1
    description: str | None = None
    inputs: dict[str, InputSpec] = attrs.field(factory=dict)
    defaults: Defaults = Defaults()
    providers: dict[str, ProviderSpec] = attrs.field(factory=dict)
    outputs: dict[str, Any] | None = None
    checks: tuple[AnyCheck, ...] = ()
    # Where the workflow came from; not part of the YAML.
    path: Path | None = None
    # Step id -> step (the first of that id), so that finding a step costs no scan.
    _by_id: dict[str, AnyStep] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        by_id: dict[str, AnyStep] = {}
        for step in self.steps:
            by_id.setdefault(step.id, step)
        object.__setattr__(self, "_by_id", by_id)

    def step(self, step_id: str) -> AnyStep:
        return self._by_id[step_id]

    @property
    def step_ids(self) -> list[str]:
        return [s.id for s in self.steps]

    @property
    def output_names(self) -> list[str]:
        """The names of a run's outputs: `outputs:`, else every step's id."""
        return list(self.outputs) if self.outputs is not None else self.step_ids
