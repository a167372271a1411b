"""orchestrate: define AI workflows in YAML and run them.

Names are imported on first use, so that `orchestrate --help` does not pay for the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from orchestrate._version import __version__

if TYPE_CHECKING:
    from orchestrate._api import prepare, run_prepared, run_workflow
    from orchestrate._batch import BatchResult, BatchSummary, RowResult, run_batch
    from orchestrate._engine import Engine, RunOptions
    from orchestrate._errors import (
        ConfigError,
        Diagnostic,
        InputError,
        OrchestrateError,
        StepError,
        Terminated,
        UsageError,
        WorkflowInvalid,
    )
    from orchestrate._result import ErrorInfo, RunResult, StepResult, Usage
    from orchestrate._rows import BadRows
    from orchestrate._spec import FunctionStep, LLMStep, Workflow, WorkflowStep
    from orchestrate._validate import Report, load_workflow, validate_file
    from orchestrate.history import HistoryOptions

_HOMES = {
    "_api": ("prepare", "run_prepared", "run_workflow"),
    "_batch": ("BatchResult", "BatchSummary", "RowResult", "run_batch"),
    "_engine": ("Engine", "RunOptions"),
    "_errors": (
        "ConfigError",
        "Diagnostic",
        "InputError",
        "OrchestrateError",
        "StepError",
        "Terminated",
        "UsageError",
        "WorkflowInvalid",
    ),
    "_rows": ("BadRows",),
    "_result": ("ErrorInfo", "RunResult", "StepResult", "Usage"),
    "_spec": ("FunctionStep", "LLMStep", "Workflow", "WorkflowStep"),
    "_validate": ("Report", "load_workflow", "validate_file"),
    "history": ("HistoryOptions",),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "BadRows",
    "BatchResult",
    "BatchSummary",
    "ConfigError",
    "Diagnostic",
    "Engine",
    "ErrorInfo",
    "FunctionStep",
    "HistoryOptions",
    "InputError",
    "LLMStep",
    "OrchestrateError",
    "Report",
    "RowResult",
    "RunOptions",
    "RunResult",
    "StepError",
    "StepResult",
    "Terminated",
    "Usage",
    "UsageError",
    "Workflow",
    "WorkflowInvalid",
    "WorkflowStep",
    "__version__",
    "load_workflow",
    "prepare",
    "run_batch",
    "run_prepared",
    "run_workflow",
    "validate_file",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrate' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"orchestrate.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names only: not the submodules and helpers that live here too."""
    return list(__all__)
