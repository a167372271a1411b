"""Rich's Markdown and traceback modules are stand-ins until used, then the real thing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

# Each runs in a fresh interpreter: the stand-ins change the import system of the process.
_PRELUDE = """
import sys
from orchestrate._deferred import defer_unused_rich_modules
defer_unused_rich_modules()
import typer.rich_utils
assert "markdown_it" not in sys.modules and "pygments" not in sys.modules, "imported early"
"""

_USES = {
    "markdown-class": """
from rich.console import Console
from typer.rich_utils import Markdown
console = Console(width=40, color_system=None)
with console.capture() as captured:
    console.print(Markdown("# Title"))
assert "Title" in captured.get(), captured.get()
assert type(Markdown("x")).__module__ == "rich.markdown"
""",
    "module-attribute": """
import rich.markdown
assert rich.markdown.Heading.__name__ == "Heading"
""",
    "from-import": """
from rich.markdown import Heading, Markdown
assert Heading.__module__ == "rich.markdown"
assert isinstance(Markdown("x"), Markdown)
""",
    "classmethod": """
from typer.rich_utils import Traceback
try:
    1 / 0
except ZeroDivisionError as error:
    traceback = Traceback.from_exception(type(error), error, error.__traceback__)
assert isinstance(traceback, Traceback) and issubclass(type(traceback), Traceback)
""",
    "real-module-afterwards": """
from typer.rich_utils import Markdown
Markdown("x")
import rich.markdown
assert type(sys.modules["rich.markdown"]).__name__ == "module"
assert rich.markdown.Markdown.__module__ == "rich.markdown"
""",
}


@pytest.mark.parametrize("use", list(_USES.values()), ids=list(_USES))
def test_a_stand_in_behaves_as_the_real_module_once_used(use: str) -> None:
    """typer's help imports neither module for real; whatever uses them gets the real one."""
    done = subprocess.run(
        [sys.executable, "-c", _PRELUDE + use], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0, done.stderr


def test_code_a_command_runs_imports_the_real_modules(tmp_path) -> None:
    """A function step's module that subclasses Markdown, run by `orchestrate run`, gets
    the real class: the stand-ins end once the command begins."""
    (tmp_path / "fancy.py").write_text(
        "from rich.markdown import Markdown\n\n"
        "class Fancy(Markdown):\n    pass\n\n"
        "def kind(text: str) -> str:\n    return type(Fancy(text)).__name__\n"
    )
    (tmp_path / "flow.yaml").write_text(
        "name: fancy\nsteps:\n  - id: kind\n    function: fancy:kind\n"
        "    with:\n      text: '# Title'\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "orchestrate", "run", "flow.yaml", "--json", "--no-history"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    [step] = json.loads(done.stdout)["steps"]
    assert step["output"] == "Fancy"
