"""README's set-up: two commands, the second installs everything the tests need (issue 17:
it did not install Chromium, so on a fresh machine the report's browser test skipped)."""

from __future__ import annotations

import re
import shlex

from .conftest import REPO


def _setup_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", setup, flags=re.DOTALL)


def _debian_packages(command: str) -> set[str]:
    """The packages each ``apt-get install`` that ``command`` runs names (not one that a
    message quotes)."""
    found: set[str] = set()
    for part in re.findall(r"(?:^\s*|[(&|;]\s*)apt-get install ([^)&|;\n\"']*)", command,
                           flags=re.MULTILINE):
        found |= {w for w in shlex.split(part) if not w.startswith("-")}
    return found


def test_readme_has_two_setup_commands_and_the_second_installs_what_the_tests_need() -> None:
    commands = _setup_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands), commands
    tests = commands[1]
    ci = (REPO / ".ci" / "run").read_text()
    assert _debian_packages(ci) >= {"prometheus", "chromium"}  # what CI installs...
    assert _debian_packages(tests) >= _debian_packages(ci)  # ...the README's command does too
    # each is installed only when missing, checked by the binary the tests look for
    assert "command -v promtool" in tests and "command -v chromium" in tests
    assert ".[test]" in tests and tests.endswith("python -m pytest -q")
