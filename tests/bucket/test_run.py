"""``run.json`` (``bucket/run.py``): created once; an identical spec again is a no-op (also
after losing a create race to it), a different one an error listing the differences; a
missing, oversized or invalid one is one ConfigError naming the run, and an oversized one is
never downloaded whole. (Moved from tests/config/test_config.py: the spec is config's, its
blob the protocol's.)"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from islandsync.bucket.layout import RUN_KEY
from islandsync.bucket.run import MAX_SPEC_BYTES, init_run, read_spec, require_run
from islandsync.config import RunSpec, spec_from_flags, spec_json
from islandsync.errors import ConfigError, RunNotFound
from islandsync.store import LocalStore, open_store
from islandsync.store.base import Blob


def _spec(**kw) -> RunSpec:
    return spec_from_flags(**{"problem": "rastrigin", "dim": 10, "islands": 4,
                              "algorithm": "ga", **kw})


def test_init_run_created_exists_different(tmp_path: Path) -> None:
    store = open_store(tmp_path / "run")
    spec = _spec()
    assert init_run(store, spec) == "created"
    generation = store.stat(RUN_KEY).generation  # type: ignore[union-attr]
    assert init_run(store, spec) == "exists"
    assert store.stat(RUN_KEY).generation == generation  # type: ignore[union-attr]
    with pytest.raises(ConfigError) as info:
        init_run(store, _spec(pop=128))
    assert str(info.value) == (f"run {store.url} already exists with a different spec:\n"
                               f"  algorithm.pop: {spec.algorithm.pop} -> 128")
    assert read_spec(store) == spec
    assert store.get(RUN_KEY).data == spec_json(spec)


def test_init_run_race_between_threads(tmp_path: Path) -> None:
    spec = _spec()
    for attempt in range(5):
        store = open_store(tmp_path / f"run{attempt}")
        barrier = threading.Barrier(2)
        results: list[str] = []

        def go(store: LocalStore, barrier: threading.Barrier, results: list[str]) -> None:
            barrier.wait()
            results.append(init_run(store, spec))

        threads = [threading.Thread(target=go, args=(store, barrier, results)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["created", "exists"]


def test_read_spec_errors(tmp_path: Path) -> None:
    store = open_store(tmp_path / "run")
    with pytest.raises(RunNotFound, match="islandsync init"):
        require_run(store)
    with pytest.raises(ConfigError) as info:
        read_spec(store)
    assert str(info.value) == \
        f"run {store.url} has no run.json; create it with `islandsync init`"
    store.put(RUN_KEY, b"\x00garbage\xff")
    with pytest.raises(ConfigError, match=f"{store.url}/run.json: not UTF-8"):
        read_spec(store)
    store.put(RUN_KEY, b'{"islands": 1}')
    with pytest.raises(ConfigError, match=f"{store.url}/run.json: problem: Field required"):
        read_spec(store)
    store.put(RUN_KEY, b" " * (MAX_SPEC_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        read_spec(store)
    with pytest.raises(ConfigError, match="larger than"):
        init_run(store, _spec())


class Reads(LocalStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.fetched = 0

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        blob = super().get(key, start=start, end=end)
        self.fetched += len(blob.data)
        return blob


def test_an_oversized_run_json_is_never_downloaded_whole(tmp_path: Path) -> None:
    store = Reads(tmp_path / "run")
    store.put(RUN_KEY, b" " * (4 * MAX_SPEC_BYTES))
    with pytest.raises(ConfigError, match="larger than"):
        read_spec(store)
    assert store.fetched == MAX_SPEC_BYTES + 1
