"""CountingStore: counts by pricing class, errors only for real failures, optional latency."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from islandsync.errors import NotFound, PreconditionFailed, StoreError
from islandsync.store.base import Blob, BlobInfo, BlobStore
from islandsync.store.counting import CountingStore
from islandsync.store.local import LocalStore


class BrokenStore(BlobStore):
    """Every operation fails the way an outage does."""

    url = "broken://"

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        raise StoreError("outage")

    def put(self, key: str, data: bytes, *, if_generation: int | None = None) -> int:
        raise StoreError("outage")

    def stat(self, key: str) -> BlobInfo | None:
        raise StoreError("outage")

    def list(self, prefix: str = "") -> list[BlobInfo]:
        raise StoreError("outage")

    def delete(self, key: str, *, if_generation: int | None = None) -> None:
        raise StoreError("outage")


def test_forwards_and_counts_by_class(tmp_path: Path) -> None:
    inner = LocalStore(tmp_path)
    store = CountingStore(inner)
    assert store.url == inner.url
    assert store.counts() == {"ops": {"A": 0, "B": 0, "free": 0},
                              "errors": {"put": 0, "list": 0, "delete": 0, "get": 0, "stat": 0},
                              "bytes_read": 0}
    gen = store.put("a/b.json", b"one", if_generation=0)             # A
    assert store.get("a/b.json").data == b"one"                      # B
    assert store.get("a/b.json", start=0, end=2).data == b"on"       # B
    assert store.counts()["bytes_read"] == 5
    info = store.stat("a/b.json")                                    # B
    assert info is not None and info.generation == gen
    assert [i.key for i in store.list("a/")] == ["a/b.json"]         # A
    store.delete("a/b.json", if_generation=gen)                      # free
    assert store.stat("a/b.json") is None                            # B
    counts = store.counts()
    assert counts["ops"] == {"A": 2, "B": 4, "free": 1}
    assert sum(counts["errors"].values()) == 0


def test_normal_outcomes_are_not_errors(tmp_path: Path) -> None:
    store = CountingStore(LocalStore(tmp_path))
    store.put("k", b"x", if_generation=0)
    with pytest.raises(PreconditionFailed):
        store.put("k", b"y", if_generation=0)
    with pytest.raises(NotFound):
        store.get("missing")
    with pytest.raises(NotFound):
        store.delete("missing")
    counts = store.counts()
    assert counts["ops"] == {"A": 2, "B": 1, "free": 1}  # failed calls are billed too
    assert sum(counts["errors"].values()) == 0


def test_real_failures_are_counted_and_reraised() -> None:
    store = CountingStore(BrokenStore())
    calls = {
        "get": lambda: store.get("k"),
        "put": lambda: store.put("k", b"x"),
        "stat": lambda: store.stat("k"),
        "list": lambda: store.list(),
        "delete": lambda: store.delete("k"),
    }
    for fn in calls.values():
        with pytest.raises(StoreError, match="outage"):
            fn()
    with pytest.raises(StoreError):
        store.put("k", b"x")
    counts = store.counts()
    assert counts["errors"] == {"get": 1, "put": 2, "stat": 1, "list": 1, "delete": 1}
    assert counts["ops"] == {"A": 3, "B": 2, "free": 1}


def test_counts_are_copies(tmp_path: Path) -> None:
    store = CountingStore(LocalStore(tmp_path))
    snapshot = store.counts()
    snapshot["ops"]["A"] = 99
    snapshot["errors"]["put"] = 99
    assert store.counts()["ops"]["A"] == 0
    assert store.counts()["errors"]["put"] == 0


def test_thread_safe_counts(tmp_path: Path) -> None:
    store = CountingStore(LocalStore(tmp_path))
    store.put("k", b"x")

    def reader() -> None:
        for _ in range(200):
            store.stat("k")

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert store.counts()["ops"] == {"A": 1, "B": 800, "free": 0}


def test_latency_applied(tmp_path: Path) -> None:
    store = CountingStore(LocalStore(tmp_path), latency_s=0.05)
    started = time.monotonic()
    store.put("k", b"x")
    store.get("k")
    store.stat("k")
    assert time.monotonic() - started >= 0.15
    with pytest.raises(ValueError):
        CountingStore(LocalStore(tmp_path), latency_s=-1)


def test_close_and_context_manager(tmp_path: Path) -> None:
    closed = []

    class Closing(LocalStore):
        def close(self) -> None:
            closed.append(True)

    with CountingStore(Closing(tmp_path)) as store:
        store.put("k", b"x")
    assert closed == [True]
