"""Stand-ins for the two Rich modules that typer's help imports and this CLI never uses.

`typer.rich_utils`, which draws `--help` and usage errors, imports `rich.markdown` (with
markdown-it and pygments) for its Markdown markup mode and `rich.traceback` for its pretty
exceptions: some 30 ms of CPU on every `--help`. The CLI uses neither: its markup mode is
"rich" and pretty exceptions are off. Once :func:`defer_unused_rich_modules` has run,
importing either module gives a stand-in whose classes import the real module the first
time they are called or read, so the help is drawn exactly as before, and anything that
does use them still gets the real thing. Only typer's parsing, help and usage errors see
stand-ins: :func:`stop_deferring` ends them as a command begins, so the code it runs
(a function step's module, say) imports the real modules.
"""

from __future__ import annotations

import importlib
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from importlib.abc import Loader

# Module -> the classes typer.rich_utils imports from it.
_UNUSED_BY_THE_HELP = {"rich.markdown": ("Markdown",), "rich.traceback": ("Traceback",)}


def defer_unused_rich_modules() -> None:
    """Until something uses them, `rich.markdown` and `rich.traceback` are stand-ins."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def stop_deferring() -> None:
    """From now on both modules import for real: a command calls this as it begins, once
    typer has parsed its arguments, so that the code it runs (a function step's module
    that subclasses Markdown, say) never meets a stand-in."""
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


class _StandInFinder:
    """The import system's finder and loader of the stand-in modules."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name in _UNUSED_BY_THE_HELP:
            return ModuleSpec(name, cast("Loader", self))  # a loader by its methods
        return None

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return _StandIn(spec.name, _UNUSED_BY_THE_HELP[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        pass


_FINDER = _StandInFinder()


class _StandIn(ModuleType):
    """A module not imported yet: its classes are deferred, any other name imports it."""

    def __init__(self, name: str, class_names: tuple[str, ...]) -> None:
        super().__init__(name)
        for class_name in class_names:
            namespace = {"__module__": name, "__qualname__": class_name}
            setattr(self, class_name, _DeferredClass(class_name, (), namespace))

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):  # the import system asks a new module for these
            raise AttributeError(attribute)
        return getattr(_real_module(self.__name__), attribute)


class _DeferredClass(type):
    """Stands for a class of a module not imported yet: calling it, reading one of its
    attributes or checking an instance against it imports the module."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return _real_class(cls)(*args, **kwargs)

    def __getattr__(cls, attribute: str) -> Any:
        if attribute.startswith("__"):  # typing asks a class in an annotation for these
            raise AttributeError(attribute)
        return getattr(_real_class(cls), attribute)

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, _real_class(cls))

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, _real_class(cls))


def _real_class(stand_in: type) -> type:
    real: type = getattr(_real_module(stand_in.__module__), stand_in.__name__)
    return real


def _real_module(name: str) -> ModuleType:
    """The module `name`, imported for real now if only its stand-in was; from then on
    every import of these modules is real."""
    stop_deferring()
    if isinstance(sys.modules.get(name), _StandIn):
        del sys.modules[name]
    return importlib.import_module(name)
