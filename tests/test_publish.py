"""``islandsync publish``: the running version's wheel under RUN/dist/, built from the source
checkout or re-packed from an installed islandsync; names and sizes refused when they are not
an islandsync wheel. (Installing it from a notebook: tests/test_notebooks.py.)"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import islandsync
from islandsync.bucket.layout import parse_dist_key
from islandsync.cli import main
from islandsync.errors import ConfigError
from islandsync.publish import build_wheel, newest, project_root, publish, published
from islandsync.store import LocalStore


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_is_built_from_this_checkout(wheel: Path) -> None:
    root = project_root()
    assert root is not None and (root / "islandsync" / "__init__.py").is_file()
    assert wheel.name == f"islandsync-{islandsync.__version__}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    assert "islandsync/publish.py" in names and "islandsync/platform_profiles/colab.toml" in names
    assert not any("__pycache__" in n for n in names)
    # Built in a copy: the checkout gets no build/ folder from it.
    assert not (root / "build").exists() or (root / "build").stat().st_mtime < wheel.stat().st_mtime


def test_publish_numbers_each_wheel_and_never_overwrites(tmp_path: Path, wheel: Path) -> None:
    store = LocalStore(tmp_path / "run")
    assert newest(store) is None
    first = publish(store, wheel)
    second = publish(store, wheel)
    assert [parse_dist_key(k) for k in (first, second)] == [(1, wheel.name), (2, wheel.name)]
    assert published(store) == [(1, wheel.name), (2, wheel.name)]
    assert newest(store) == (second, wheel.name)
    assert store.get(second).data == wheel.read_bytes()


def test_publish_refuses_what_is_not_an_islandsync_wheel(tmp_path: Path, wheel: Path) -> None:
    store = LocalStore(tmp_path / "run")
    other = tmp_path / "evil-1.0-py3-none-any.whl"
    other.write_bytes(wheel.read_bytes())
    with pytest.raises(ConfigError, match="not an islandsync pure-Python wheel"):
        publish(store, other)
    fake = tmp_path / wheel.name
    fake.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a wheel"):
        publish(store, fake)
    assert published(store) == []


def test_an_installed_islandsync_is_repacked(tmp_path: Path, wheel: Path) -> None:
    """Installed (not a checkout): publish re-packs the installed files into a wheel that
    installs and imports again."""
    first, second = tmp_path / "site1", tmp_path / "site2"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    subprocess.run([*pip, "--target", str(first), str(wheel)], check=True)
    out = tmp_path / "out"
    code = ("import sys; from islandsync.publish import build_wheel, project_root; "
            "assert project_root() is None; print(build_wheel(sys.argv[1]))")
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                          text=True, env={"PYTHONPATH": str(first), "PATH": "/usr/bin:/bin"},
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    repacked = Path(done.stdout.strip())
    assert repacked.name == wheel.name
    assert sorted(n for n in zipfile.ZipFile(repacked).namelist() if n.endswith(".py")) == \
        sorted(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py"))
    subprocess.run([*pip, "--target", str(second), str(repacked)], check=True)
    check = subprocess.run([sys.executable, "-c", "import islandsync; print(islandsync.__file__)"],
                           capture_output=True, text=True, env={"PYTHONPATH": str(second)},
                           cwd=tmp_path)
    assert check.stdout.strip() == str(second / "islandsync" / "__init__.py"), check.stderr


def test_cli_publish(tmp_path: Path, wheel: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["publish", str(run), "--wheel", str(wheel)]) == 0
    assert f"dist/000001/{wheel.name}" in capsys.readouterr().out
    assert (run / "dist" / "000001" / wheel.name).is_file()
