"""The on-disk cache of checked and compiled templates: later processes skip the check."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrate import _sandbox, _template_cache, _templating
from orchestrate._template_base import Problem

ENTRY_SOURCE = "{% for x in steps.a.output.items %}{{ x }}{% endfor %} {{ inputs.n > 3 }}"


@pytest.fixture(autouse=True)
def _fresh_memory() -> Iterator[None]:
    """Each test starts with nothing checked or compiled in this process."""
    caches = (
        _templating.parse_template,
        _templating.parse_expression,
        _sandbox._compile_template,
        _sandbox._compile_expression,
    )
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


def entries(root: Path) -> list[Path]:
    return sorted(root.glob("templates/*/*"))


def checks_made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every source the checker (Jinja's parser) is asked about."""
    checker = _templating._template_ast()
    seen: list[str] = []
    for name in ("check_template", "check_expression"):
        real = getattr(checker, name)

        def spy(source: str, real=real) -> object:
            seen.append(source)
            return real(source)

        monkeypatch.setattr(checker, name, spy)
    return seen


def test_a_checked_template_is_read_back_without_checking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second check of a source (as in a later process) comes from disk, equal to the first."""
    seen = checks_made(monkeypatch)
    first = _templating.parse_template(ENTRY_SOURCE)
    _templating.parse_template.cache_clear()
    second = _templating.parse_template(ENTRY_SOURCE)
    assert seen == [ENTRY_SOURCE]
    assert second == first
    assert {(r.root, r.name, r.path) for r in second.references} == {
        ("steps", "a", ("output", "items")),
        ("inputs", "n", ()),
    }
    assert [c.operator for c in second.comparisons] == ["gt"]


def test_a_template_read_from_disk_renders_as_a_checked_one() -> None:
    """The compiled code on disk renders, typed values included, with no parsing."""
    template = _templating.parse_template("{{ inputs.items | length }}")
    _templating.parse_template.cache_clear()
    _sandbox._compile_template.cache_clear()
    cached = _templating.parse_template("{{ inputs.items | length }}")
    assert cached.evaluate({"inputs": {"items": [1, 2, 3]}}) == 3
    assert template.evaluate({"inputs": {"items": []}}) == 0
    expression = _templating.parse_expression("inputs.n * 2")
    _templating.parse_expression.cache_clear()
    _sandbox._compile_expression.cache_clear()
    assert _templating.parse_expression("inputs.n * 2") == expression
    assert _templating.parse_expression("inputs.n * 2").evaluate({"inputs": {"n": 21}}) == 42


@pytest.mark.parametrize(
    "source", ["Résumé {{ inputs.a }} 🚀", "lone \ud800 surrogate {{ inputs.a }}", "{{ 1 }}"]
)
def test_any_text_round_trips(source: str) -> None:
    """Non-ASCII text, even a lone surrogate from a YAML escape, is kept and read back."""
    first = _templating.parse_template(source)
    _templating.parse_template.cache_clear()
    _sandbox._compile_template.cache_clear()
    assert _template_cache.load("template", source) is not None
    second = _templating.parse_template(source)
    assert second == first
    assert second.render({"inputs": {"a": "x"}}) == first.render({"inputs": {"a": "x"}})


def test_entries_are_private_files_in_a_private_folder(tmp_path: Path) -> None:
    """The code a process will run is readable and writable by its owner only."""
    _templating.parse_template("Hello {{ inputs.name }}")
    [entry] = entries(tmp_path / "cache")
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(entry.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "source", ["{{ steps.a.output.__class__ }}", "{{ x | nosuchfilter }}", "{% if %}"]
)
def test_problems_are_never_cached(source: str, tmp_path: Path) -> None:
    """A template that fails its check is checked again each time: its error stays current."""
    assert isinstance(_templating.parse_template(source), Problem)
    assert entries(tmp_path / "cache") == []


@pytest.mark.parametrize(
    "damage",
    [b"", b"not marshal data", b"\xe3garbage", None],
    ids=["empty", "text", "bad-code", "another-source"],
)
def test_a_damaged_or_foreign_entry_is_a_miss(
    damage: bytes | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that does not decode, or holds another source, is checked again and replaced."""
    _templating.parse_template("{{ inputs.a }}")
    [entry] = entries(tmp_path / "cache")
    if damage is None:  # another template's entry under this one's name
        _templating.parse_template("{{ inputs.b }}")
        other = next(path for path in entries(tmp_path / "cache") if path != entry)
        damage = other.read_bytes()
    entry.write_bytes(damage)
    _templating.parse_template.cache_clear()
    seen = checks_made(monkeypatch)
    template = _templating.parse_template("{{ inputs.a }}")
    assert seen == ["{{ inputs.a }}"]
    assert template.evaluate({"inputs": {"a": 7}}) == 7
    assert _template_cache.load("template", "{{ inputs.a }}") is not None  # written again


def test_an_empty_cache_dir_variable_turns_the_cache_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORCHESTRATE_CACHE_DIR= writes nothing anywhere and checks every time."""
    monkeypatch.setenv("ORCHESTRATE_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    seen = checks_made(monkeypatch)
    _templating.parse_template("{{ inputs.a }}")
    _templating.parse_template.cache_clear()
    assert _templating.parse_template("{{ inputs.a }}").render({"inputs": {"a": "x"}}) == "x"
    assert seen == ["{{ inputs.a }}", "{{ inputs.a }}"]
    assert not (tmp_path / "xdg").exists()


def test_without_the_variable_the_cache_is_in_the_user_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Linux the default is $XDG_CACHE_HOME/orchestrate, as platformdirs would say."""
    monkeypatch.delenv("ORCHESTRATE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    _templating.parse_template("{{ inputs.a }}")
    if sys.platform.startswith("linux"):
        assert len(entries(tmp_path / "xdg" / "orchestrate")) == 1
        import platformdirs

        assert Path(platformdirs.user_cache_dir("orchestrate", appauthor=False)) == (
            tmp_path / "xdg" / "orchestrate"
        )


def make_shared_root(shared: Path) -> None:
    """The cache folder itself writable by everyone: anyone could swap `templates`."""
    shared.mkdir()
    shared.chmod(0o777)


def make_shared_templates(shared: Path) -> None:
    (shared / "templates").mkdir(parents=True)
    (shared / "templates").chmod(0o777)


def make_linked_templates(shared: Path) -> None:
    """`templates` a link to a folder someone else chose."""
    (shared.parent / "theirs").mkdir()
    shared.mkdir()
    (shared / "templates").symlink_to(shared.parent / "theirs")


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
@pytest.mark.parametrize(
    "make",
    [make_shared_root, make_shared_templates, make_linked_templates],
    ids=lambda f: f.__name__,
)
def test_a_folder_others_may_write_to_is_not_used(
    make: Callable[[Path], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Code is never read from a folder another user could have written it into."""
    shared = tmp_path / "shared"
    make(shared)
    monkeypatch.setenv("ORCHESTRATE_CACHE_DIR", str(shared))
    seen = checks_made(monkeypatch)
    _templating.parse_template("{{ inputs.a }}")
    _templating.parse_template.cache_clear()
    _templating.parse_template("{{ inputs.a }}")
    assert seen == ["{{ inputs.a }}", "{{ inputs.a }}"]
    assert [p for p in tmp_path.rglob("*") if len(p.name) == 64] == []  # no entry anywhere


@pytest.mark.parametrize("damage", ["group-writable", "link"])
def test_an_entry_others_could_have_written_is_not_read(
    damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry file that others may write to, or a link in its place, is checked again."""
    _templating.parse_template("{{ inputs.a }}")
    [entry] = entries(tmp_path / "cache")
    if damage == "group-writable":
        entry.chmod(0o666)
    else:
        real = tmp_path / "planted"
        entry.rename(real)
        entry.symlink_to(real)
    _templating.parse_template.cache_clear()
    seen = checks_made(monkeypatch)
    _templating.parse_template("{{ inputs.a }}")
    assert seen == ["{{ inputs.a }}"]


def test_folders_are_private_whatever_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With umask 002 (usual on Debian and Ubuntu) every folder the cache makes is 0700,
    so the cache is used."""
    root = tmp_path / "new" / "cache"
    monkeypatch.setenv("ORCHESTRATE_CACHE_DIR", str(root))
    previous = os.umask(0o002)
    try:
        _templating.parse_template("{{ inputs.a }}")
    finally:
        os.umask(previous)
    [entry] = entries(root)
    for folder in (root, root / "templates", entry.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_no_home_folder_means_no_cache_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HOME unset for a uid with no account (a container): templates are checked each time."""

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("ORCHESTRATE_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert _templating.parse_template("{{ inputs.a }}").render({"inputs": {"a": "x"}}) == "x"
    monkeypatch.setenv("ORCHESTRATE_CACHE_DIR", "~nosuchuser-orchestrate/cache")
    assert _templating.parse_template("{{ inputs.b }}").render({"inputs": {"b": "y"}}) == "y"


@pytest.mark.parametrize(
    "error",
    [
        OSError(28, "No space left on device"),
        PermissionError(13, "Permission denied"),
        OSError(30, "Read-only file system"),
    ],
    ids=["full-disk", "no-permission", "read-only"],
)
def test_a_failed_write_stops_the_writing_not_the_run(
    error: OSError, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a failed write the process tries no more, and leaves no partial file."""
    attempts: list[object] = []

    real_open = os.open

    def fail(path: str, flags: int, *args: object) -> int:
        if not flags & os.O_WRONLY:  # reading goes on as ever
            return real_open(path, flags, *args)
        attempts.append(path)
        raise error

    monkeypatch.setattr(_template_cache.os, "open", fail)
    assert _templating.parse_template("{{ inputs.a }}").render({"inputs": {"a": "x"}}) == "x"
    assert _templating.parse_template("{{ inputs.b }}").render({"inputs": {"b": "y"}}) == "y"
    assert len(attempts) == 1
    assert list((tmp_path / "cache").glob("templates/*/*")) == []
    assert list((tmp_path / "cache").glob("templates/*/.*")) == []


def test_a_new_version_removes_the_folders_of_versions_long_unused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade clears what older versions left a month ago, and nothing else."""
    templates = tmp_path / "cache" / "templates"
    old, recent, other = (
        templates / "00000000000000aa",
        templates / "00000000000000bb",
        templates / "notes",
    )
    elsewhere = tmp_path / "elsewhere" / "0000000000000000"
    for folder in (old, recent, other, elsewhere):
        folder.mkdir(parents=True)
        (folder / "entry").write_bytes(b"x")
    (templates / "00000000000000cc").symlink_to(elsewhere.parent)
    month_ago = time.time() - (_template_cache.STALE_AFTER_DAYS + 1) * 86_400
    for path in (old, other, elsewhere, elsewhere.parent):
        os.utime(path, (month_ago, month_ago))
    os.utime(templates / "00000000000000cc", (month_ago, month_ago), follow_symlinks=False)
    _templating.parse_template("{{ inputs.a }}")
    assert not old.exists()
    # kept: a recent version's, a folder not named as a version's, what a link points to
    assert (recent / "entry").exists()
    assert (other / "entry").exists()
    assert (elsewhere / "entry").exists()


def test_a_later_process_checks_a_workflow_without_jinja(tmp_path: Path) -> None:
    """Validating a workflow that was checked before imports no Jinja2, and the run is the same."""
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: cached\ninputs:\n  topic: {type: string}\nsteps:\n"
        "  - id: outline\n    prompt: 'Outline {{ inputs.topic }}'\n"
        "  - id: draft\n    when: inputs.topic != ''\n"
        "    prompt: 'Draft from {{ steps.outline.output }}'\n"
    )
    probe = (
        "import sys, json; from orchestrate import prepare, run_workflow; "
        f"prepare({str(flow)!r}, {{'topic': 'tea'}}); "
        "checked_with_jinja = 'jinja2' in sys.modules; "
        f"result = run_workflow({str(flow)!r}, {{'topic': 'tea'}}, mock=True); "
        "print(json.dumps([checked_with_jinja, result.to_dict()['outputs']]))"
    )

    def run_probe() -> list:
        import json

        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        )
        return json.loads(done.stdout)

    first, second = run_probe(), run_probe()
    assert first[0] is True
    assert second[0] is False
    assert second[1] == first[1]
    assert len(entries(tmp_path / "cache")) == 3
