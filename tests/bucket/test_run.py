"""``run.json`` (``bucket/run.py``): created once; an identical spec again is a no-op, a
different one an error listing the differences; a missing, oversized or invalid one is one
ConfigError naming the run, and an oversized one is never downloaded whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from islandsync.bucket.layout import RUN_KEY
from islandsync.bucket.run import MAX_SPEC_BYTES, init_run, read_spec, require_run
from islandsync.config import spec_from_flags
from islandsync.errors import ConfigError, RunNotFound
from islandsync.store import LocalStore
from islandsync.store.base import Blob


def _spec(**kw):
    return spec_from_flags(**{"problem": "sphere", "dim": 4, "islands": 2, "pop": 8, **kw})


def test_a_run_is_created_once_and_an_identical_spec_again_is_a_no_op(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    assert init_run(store, _spec()) == "created"
    generation = store.stat(RUN_KEY).generation
    assert init_run(store, _spec()) == "exists"
    assert store.stat(RUN_KEY).generation == generation  # not written again
    assert read_spec(store) == _spec()


def test_a_different_spec_is_refused_with_the_differences(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    init_run(store, _spec())
    with pytest.raises(ConfigError, match="already exists with a different spec") as err:
        init_run(store, _spec(islands=3))
    assert "islands" in str(err.value)
    assert read_spec(store).islands == 2


def test_a_missing_run_is_one_clear_error(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "nothing")
    with pytest.raises(RunNotFound, match="islandsync init"):
        require_run(store)
    with pytest.raises(ConfigError, match="islandsync init"):
        read_spec(store)


def test_an_invalid_run_json_names_it(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    store.put(RUN_KEY, b'{"islands": "many"}')
    with pytest.raises(ConfigError, match="run.json"):
        read_spec(store)


class Reads(LocalStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.fetched = 0

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        blob = super().get(key, start=start, end=end)
        self.fetched += len(blob.data)
        return blob


def test_an_oversized_run_json_is_refused_unread(tmp_path: Path) -> None:
    store = Reads(tmp_path / "run")
    store.put(RUN_KEY, b" " * (4 * MAX_SPEC_BYTES))
    with pytest.raises(ConfigError, match="larger than"):
        read_spec(store)
    assert store.fetched == MAX_SPEC_BYTES + 1
