"""``islandsync publish``: the running version's wheel at its content address under RUN/dist/,
built from the source checkout or re-packed from an installed islandsync; names and sizes
refused when they are not an islandsync wheel; the install line; a worker told when it is not
the run's newest wheel. (Installing from the line: tests/test_install.py and, on a notebook
kernel, tests/test_notebooks.py.)"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import islandsync
from islandsync.bucket.layout import parse_dist_key
from islandsync.cli import main
from islandsync.errors import ConfigError
from islandsync.publish import (build_wheel, newest, project_root, publish, publish_line,
                                published, version_note)
from islandsync.store import LocalStore


def test_the_wheel_is_built_from_this_checkout(wheel: Path) -> None:
    root = project_root()
    assert root is not None and (root / "islandsync" / "__init__.py").is_file()
    assert wheel.name == f"islandsync-{islandsync.__version__}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    assert "islandsync/publish.py" in names and "islandsync/env/profiles/colab.toml" in names
    assert not any("__pycache__" in n for n in names)
    # Built in a copy: the checkout gets no build/ folder from it.
    assert not (root / "build").exists() or (root / "build").stat().st_mtime < wheel.stat().st_mtime


def test_publish_content_addresses_each_wheel_and_never_overwrites(tmp_path: Path,
                                                                     wheel: Path) -> None:
    store = LocalStore(tmp_path / "run")
    assert newest(store) is None
    first = publish(store, wheel)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert first.key == f"dist/{sha}/{wheel.name}" and first.sha256 == sha
    assert parse_dist_key(first.key) == (sha, wheel.name)
    assert publish(store, wheel) == first  # the same bytes: the same key, nothing written
    assert [w.key for w in published(store)] == [first.key]
    assert newest(store) == first and store.get(first.key).data == wheel.read_bytes()


def test_the_wheel_build_is_reproducible(tmp_path: Path, wheel: Path) -> None:
    """The same sources give the same bytes, so republishing is a no-op, not a new key."""
    assert build_wheel(tmp_path).read_bytes() == wheel.read_bytes()


def test_no_key_outranks_the_published_wheel_forever(tmp_path: Path, wheel: Path) -> None:
    """Issue 17: a wheel at dist/999999/ won forever (the next number had 7 digits, which
    neither the parser nor the install cell matched). Now the line names its content: a
    wheel written anywhere else under dist/ changes nothing it installs, and one written
    later is only reported as the newest (the worker's version note), never installed."""
    store = LocalStore(tmp_path / "run")
    store.put(f"dist/999999/{wheel.name}", b"an old numbered wheel")
    line = publish_line(store, wheel)
    ours = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert line.endswith(f'/dist/{ours}/{wheel.name}#sha256={ours}"'), line
    assert newest(store).sha256 == ours
    assert [w.sha256 for w in published(store)] == [None, ours]  # the old one is listed
    store.put(f"dist/{'f' * 64}/islandsync-9.9.9-py3-none-any.whl", b"someone else's")
    assert publish_line(store, wheel) == line  # the same line, the same wheel
    assert newest(store).version == "9.9.9"


def test_a_wheel_replaced_at_our_address_is_put_back(tmp_path: Path, wheel: Path) -> None:
    store = LocalStore(tmp_path / "run")
    key = publish(store, wheel).key
    store.put(key, b"not what the name says")
    assert publish(store, wheel).key == key
    assert store.get(key).data == wheel.read_bytes()


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


def test_cli_publish_prints_the_one_line(tmp_path: Path, wheel: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    """A local run: the line names a plain copy of the wheel by its file URL (the blob's own
    file starts with LocalStore's record header), with the sha256 pip checks."""
    run = tmp_path / "run"
    assert main(["publish", str(run), "--wheel", str(wheel)]) == 0
    out, err = capsys.readouterr()
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    plain = run / ".islandsync" / "plain" / "dist" / sha / wheel.name
    assert out == f'%pip install "{plain.as_uri()}#sha256={sha}"\n'
    assert "paste this line" in err and "on this machine" in err
    assert plain.read_bytes() == wheel.read_bytes()
    assert (run / "dist" / sha / wheel.name).is_file()


def test_cli_expires_is_checked_before_anything_is_written(tmp_path: Path, wheel: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["publish", str(run), "--wheel", str(wheel), "--expires", "8d"]) == 2
    assert "at most 7 days" in capsys.readouterr().err
    assert published(LocalStore(run)) == []


def test_init_publishes_unless_told_not_to(tmp_path: Path, capsys: pytest.CaptureFixture
                                           ) -> None:
    flags = ["--problem", "sphere", "--dim", "4", "--islands", "2", "--pop", "8"]
    assert main(["init", str(tmp_path / "a"), *flags]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("created ")
    assert out.splitlines()[1].startswith('%pip install "file://'), out
    assert main(["init", str(tmp_path / "b"), *flags, "--no-publish"]) == 0
    assert '%pip' not in capsys.readouterr().out
    assert published(LocalStore(tmp_path / "b")) == []


def test_worker_says_when_it_is_not_the_runs_newest_wheel(tmp_path: Path, wheel: Path,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    """One line at worker start, naming both versions; none when they agree (this checkout
    is islandsync of the same version as the wheel it built)."""
    from islandsync.api import make_worker
    from islandsync.bucket.run import init_run
    from islandsync.config import spec_from_flags

    run = tmp_path / "run"
    store = LocalStore(run)
    init_run(store, spec_from_flags(problem="sphere", dim=4, islands=2, pop=8))
    publish(store, wheel)
    assert version_note(store) is None
    store.put(f"dist/{'e' * 64}/islandsync-9.9.9-py3-none-any.whl", b"a newer one")
    note = version_note(store)
    assert note == (f"this worker runs islandsync {islandsync.__version__}, but the run's "
                    f"newest published wheel is islandsync 9.9.9 (sha256 eeeeeeeeeeee): "
                    f"install it with the line `islandsync publish RUN` prints")
    caplog.set_level(logging.WARNING, logger="islandsync")
    make_worker(str(run), progress=False)
    assert [r.getMessage() for r in caplog.records if "newest published" in r.getMessage()] \
        == [f"islandsync: {note}"]


def test_nothing_installs_or_imports_from_dist() -> None:
    """Issue 18, N6: the wheel under dist/ reaches a machine only through the line the user
    pasted, checked by pip. No module of islandsync installs anything, and only publish
    (which writes and lists it) names dist/ at all."""
    root = Path(islandsync.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text("utf-8")
        rel = path.relative_to(root).as_posix()
        assert '"install"' not in text and "'install'" not in text, rel  # no pip install
        assert "zipimport" not in text, rel
        if "DIST_PREFIX" in text or "dist_key" in text or '"dist/' in text:
            assert rel in ("publish.py", "bucket/layout.py"), rel


def test_the_line_is_signed_through_a_wrapping_store(tmp_path: Path, wheel: Path) -> None:
    """ISLANDSYNC_STORE_LATENCY wraps the store in a CountingStore: signing reaches the store
    it wraps (signing is an optional capability, not part of the BlobStore contract)."""
    from islandsync.store.counting import CountingStore

    inner = LocalStore(tmp_path / "run")
    line = publish_line(CountingStore(inner), wheel)
    assert line == publish_line(inner, wheel) and line.startswith('%pip install "file://')
