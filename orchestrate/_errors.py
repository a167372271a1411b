"""Errors and diagnostics.

Every error a user can cause is an :class:`OrchestrateError`; the CLI turns each into a
message on stderr and an exit code in one place.

    OrchestrateError            message, hint, exit_code, error_type
    ├── WorkflowInvalid         one or more located Diagnostics (exit 2)   type "invalid_workflow"
    ├── UsageError              bad command-line use (exit 2)              type "invalid_input"
    │   ├── InputError          a missing, unknown or mistyped workflow input
    │   └── ConfigError         a missing API key, an unknown provider     type "provider"
    ├── StoreError              the history database cannot be used (exit 2)
    └── StepError               a step failed while running (recorded, not raised past the engine)
        ├── TemplateError       rendering or evaluating a template failed   type "template"
        ├── ProviderError       the model provider answered with an error   type "provider"
        ├── StepTimeout         an attempt took longer than `timeout`       type "timeout"
        ├── InvalidOutput       the reply is not the JSON the step expects  type "invalid_output"
        └── FunctionError       a function step raised or returned junk     type "function"

    Terminated                  SIGTERM stopped a run (a BaseException, as KeyboardInterrupt)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import attrs

if TYPE_CHECKING:
    from orchestrate._batch import BatchSummary
    from orchestrate._result import RunResult


@attrs.frozen
class Diagnostic:
    """One problem found in a workflow file, with a 1-based line and column."""

    file: str
    line: int
    column: int
    message: str
    hint: str | None = None
    severity: str = "error"

    def format(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


class OrchestrateError(Exception):
    """Base of every error that orchestrate reports to a user.

    `error_type` is the result document's `error.type` when the error stops a run.
    """

    exit_code: ClassVar[int] = 2
    error_type: str = "invalid_input"  # per class, but SubWorkflowFailed's is the child's

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def format(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class WorkflowInvalid(OrchestrateError):
    """The workflow file has problems; each is a located diagnostic."""

    error_type = "invalid_workflow"

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("\n".join(d.format() for d in diagnostics))
        self.diagnostics = diagnostics

    def format(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)


class UsageError(OrchestrateError):
    """The command line asks for something that cannot be done."""


class InputError(UsageError):
    """A workflow input is missing, unknown or of the wrong type."""


class ConfigError(UsageError):
    """The environment lacks what the run needs (an API key, a provider)."""

    error_type = "provider"


class StoreError(OrchestrateError):
    """The run history database cannot be opened or is not ours."""


class StepError(OrchestrateError):
    """A step failed; `error_type` is the result document's `error.type`.

    `attempts`, `usage` and `cost_usd` record what the failed step cost, for its result.
    """

    exit_code: ClassVar[int] = 1
    attempts: int = 0
    usage: Any = None
    cost_usd: float | None = None
    details: str | None = None  # a traceback, shown with --verbose


class TemplateError(StepError):
    error_type = "template"


class ProviderError(StepError):
    error_type = "provider"


class StepTimeout(StepError):
    error_type = "timeout"


class InvalidOutput(StepError):
    error_type = "invalid_output"


class FunctionError(StepError):
    error_type = "function"


class Terminated(BaseException):
    """SIGTERM stopped a run, which is recorded as cancelled; `result` is its result (None
    when it was stopped outside its steps), or a batch's summary.

    Like KeyboardInterrupt, it is no Exception: a handler for errors does not swallow the
    request to stop. The CLI exits 143 (128 + SIGTERM), the shell's convention.
    """

    exit_code: ClassVar[int] = 143

    def __init__(self, result: RunResult | BatchSummary | None) -> None:
        super().__init__("terminated")
        self.result = result
