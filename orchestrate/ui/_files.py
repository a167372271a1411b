"""The workflow files the server may show: those under the PATHs it was given, nothing else.

A workflow is named in URLs by its path relative to the folder the PATHs have in common
(`base`), with `/` separators. A name is turned back into a file only if it has no `..`
and is not absolute, and if the file it resolves to (symlinks followed) lies under one of
the PATHs; anything else is "not found", so a probe learns nothing about other files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import attrs

from orchestrate._validate import Report, validate_file, workflow_files


class NotServed(LookupError):
    """A name that is not a workflow under the server's PATHs."""


@attrs.frozen
class Catalog:
    """The PATHs (files or folders) whose workflows the server shows."""

    roots: tuple[Path, ...]  # resolved
    base: Path  # the folder every root is in
    _reports: dict[Path, tuple[tuple[int, int], Report]] = attrs.field(
        factory=dict, repr=False, eq=False
    )

    @classmethod
    def of(cls, paths: Sequence[str | Path]) -> Catalog:
        roots = tuple(Path(p).resolve() for p in (paths or ["."]))
        folders = [root if root.is_dir() else root.parent for root in roots]
        return cls(roots, Path(os.path.commonpath(folders)))

    def files(self) -> list[Path]:
        """Every workflow file under the roots, resolved, each once, sorted by name."""
        found: dict[Path, None] = {}
        for root in self.roots:
            for file in workflow_files(root):
                resolved = file.resolve()
                if self._allowed(resolved):
                    found[resolved] = None
        return sorted(found, key=self.name)

    def name(self, file: Path) -> str:
        """The URL name of a served file."""
        return file.relative_to(self.base).as_posix()

    def find(self, name: str) -> Path:
        """The file a URL name stands for; NotServed unless it is a workflow under the roots."""
        parts = PurePosixPath(name).parts
        if not parts or name.startswith(("/", "\\")) or ".." in parts or "\\" in name:
            raise NotServed(name)
        try:
            file = (self.base / Path(*parts)).resolve()
        except (OSError, ValueError):
            raise NotServed(name) from None
        if not (self._allowed(file) and file.suffix in (".yaml", ".yml") and file.is_file()):
            raise NotServed(name)
        return file

    def served(self, file: str | None) -> str | None:
        """The URL name of a file path (as the history records it), if it is served."""
        if not file:
            return None
        resolved = Path(file).resolve()
        if not self._allowed(resolved) or not resolved.is_file():
            return None
        return self.name(resolved)

    def report(self, file: Path) -> Report:
        """The file's validation report, kept until the file changes."""
        try:
            stat = file.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = (0, 0)
        kept = self._reports.get(file)
        if kept is not None and kept[0] == stamp:
            return kept[1]
        report = validate_file(file, self.name(file))
        self._reports[file] = (stamp, report)
        return report

    def _allowed(self, file: Path) -> bool:
        return any(file == root or file.is_relative_to(root) for root in self.roots)
