"""Opening a run from this machine (``env/opening.py``), on local paths: a run that must
exist and does not is one clear error that creates nothing, not even its directory; a local
directory takes no credentials; this machine's platform profile comes with the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from islandsync.bucket.run import init_run
from islandsync.config import spec_from_flags
from islandsync.env.opening import open_run
from islandsync.errors import ConfigError, RunNotFound


def test_a_run_that_must_exist_and_does_not_creates_nothing(tmp_path: Path) -> None:
    where = tmp_path / "typo"
    with pytest.raises(RunNotFound, match="islandsync init"):
        open_run(str(where), existing=True, platform="local")
    assert not where.exists()


def test_an_existing_run_opens_with_this_machines_profile(tmp_path: Path) -> None:
    store, _ = open_run(str(tmp_path / "run"), platform="local")
    init_run(store, spec_from_flags(problem="sphere", dim=2, islands=1, pop=4))
    again, profile = open_run(str(tmp_path / "run"), existing=True, platform="kaggle")
    assert again.stat("run.json") is not None and profile.name == "kaggle"


def test_a_new_local_run_creates_its_directory(tmp_path: Path) -> None:
    open_run(str(tmp_path / "new"), platform="local")
    assert (tmp_path / "new").is_dir()


def test_a_local_directory_takes_no_credentials(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="takes no credentials"):
        open_run(str(tmp_path / "run"), credentials="key.json", platform="local")
    assert not (tmp_path / "run").exists()


def test_an_unknown_platform_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--platform"):
        open_run(str(tmp_path / "run"), platform="mainframe")
