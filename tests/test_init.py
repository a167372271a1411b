"""`orchestrate init` and `--version`."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrate._starter import STARTER
from orchestrate._validate import validate_file
from orchestrate._version import __version__


def test_init_writes_a_valid_starter(
    cli: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without PATH, init writes workflow.yaml here; it validates and runs under --mock."""
    monkeypatch.chdir(tmp_path)
    result = cli("init")
    assert result.exit_code == 0
    assert validate_file(tmp_path / "workflow.yaml").diagnostics == []
    run = cli("run", "workflow.yaml", "--mock")
    assert run.exit_code == 0
    assert run.stdout.startswith("## title\nHow Sunlight Paints the Sky\n")


def test_init_never_overwrites_without_force(cli: Callable, tmp_path: Path) -> None:
    """An existing file is kept (exit 2) unless --force is given."""
    target = tmp_path / "mine.yaml"
    target.write_text("precious", encoding="utf-8")
    refused = cli("init", target)
    assert refused.exit_code == 2
    assert "already exists" in refused.stderr
    assert target.read_text() == "precious"
    assert cli("init", target, "--force").exit_code == 0
    assert target.read_text() != "precious"


def test_init_into_a_folder(cli: Callable, tmp_path: Path) -> None:
    """A folder as PATH gets workflow.yaml inside it."""
    assert cli("init", tmp_path).exit_code == 0
    assert (tmp_path / "workflow.yaml").is_file()


def test_version(cli: Callable) -> None:
    """--version prints the version."""
    result = cli("--version")
    assert result.stdout == f"orchestrate {__version__}\n"


def test_init_into_a_new_folder_with_a_trailing_slash(cli: Callable, tmp_path: Path) -> None:
    """`init newdir/` makes the folder and writes newdir/workflow.yaml."""
    assert cli("init", f"{tmp_path}/newdir/").exit_code == 0
    assert (tmp_path / "newdir" / "workflow.yaml").is_file()


def test_init_where_it_cannot_write(cli: Callable, tmp_path: Path) -> None:
    """A path under a file is a usage error with the reason, not a traceback."""
    (tmp_path / "afile").write_text("x")
    result = cli("init", tmp_path / "afile" / "flow.yaml")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: cannot write {tmp_path}/afile/flow.yaml")


def test_init_to_an_empty_path(
    cli: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`init ''` is exit 2 naming the argument, and writes nothing."""
    monkeypatch.chdir(tmp_path)
    result = cli("init", "")
    assert result.exit_code == 2
    assert "error: PATH must not be empty" in result.stderr
    assert not (tmp_path / "workflow.yaml").exists()


def test_the_starter_points_to_the_docs_online() -> None:
    """The starter's link is under the project's URL from pyproject.toml and names a doc
    that exists, not a path that only a source checkout has."""
    repo = Path(__file__).resolve().parent.parent
    project = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    links = re.findall(r"https://\S+", STARTER)
    assert links, "the starter links to no documentation"
    for link in links:
        assert link.startswith(project["urls"]["Source"] + "/blob/main/")
        assert (repo / link.split("/blob/main/", 1)[1]).is_file()
