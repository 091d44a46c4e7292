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


# -- issue 19: the docs' algorithm lists follow the registry; the settings example works -------


def test_docs_list_every_registered_algorithm() -> None:
    from islandsync.config import ALGORITHM_CONFIGS

    from .conftest import THROWAWAY_ALGORITHM

    registered = set(ALGORITHM_CONFIGS) - {THROWAWAY_ALGORITHM}  # the tests' own
    readme = (REPO / "README.md").read_text()
    table = readme.split("| name | what | its population |", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)) == registered
    design = (REPO / "docs" / "design.md").read_text()
    row = re.search(r"algorithms \(([a-z, ]+)\) with a registry", design)
    assert row and set(row.group(1).split(", ")) == registered


def test_readme_algorithm_settings_example_makes_a_spec(tmp_path) -> None:
    from islandsync.bucket.run import read_spec
    from islandsync.cli import main
    from islandsync.config import load_toml
    from islandsync.store import open_store

    text = (REPO / "README.md").read_text().split("#### Algorithm settings", 1)[1]
    toml, = re.findall(r"```toml\n(.*?)```", text.split("\n### ", 1)[0], flags=re.DOTALL)
    (tmp_path / "run.toml").write_text(toml)
    spec = load_toml(tmp_path / "run.toml")
    assert (spec.algorithm.name, spec.algorithm.f_init, spec.algorithm.cr_init) == ("de", 0.7, 0.5)
    bash, = re.findall(r"```bash\n(.*?)```", text.split("\n### ", 1)[0], flags=re.DOTALL)
    argv = shlex.split(bash.replace("\\\n", " "))
    assert argv[:2] == ["islandsync", "init"]
    url = str(tmp_path / "run")
    assert main(["init", url, *argv[3:], "--no-publish"]) == 0
    got = read_spec(open_store(url)).algorithm
    assert (got.name, got.f_init, got.cr_init) == ("de", 0.7, 0.5)
