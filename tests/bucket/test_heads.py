"""Concurrent reads and the HEAD watch."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from islandsync.bucket.heads import HeadWatch, read_concurrently
from islandsync.bucket.layout import head_key
from islandsync.bucket.records import Head, write_head
from islandsync.store import LocalStore


def test_reader_threads_are_kept_between_calls_so_a_stores_clients_are_too() -> None:
    """A store keeps a client (and its connections) per thread: new threads every call would
    mean new clients every leader cycle."""
    def who(_: int) -> int:
        time.sleep(0.01)
        return threading.get_ident()
    first = {r for _, r in read_concurrently(who, range(8), readers=4)}
    second = {r for _, r in read_concurrently(who, range(8), readers=4)}
    assert len(first) > 1 and second <= first


def test_results_keep_the_items_order_and_errors_stay_per_item() -> None:
    def fn(i: int) -> int:
        if i == 3:
            raise ValueError("three")
        return i * i
    out = read_concurrently(fn, range(6), readers=3)
    assert [i for i, _ in out] == list(range(6))
    assert isinstance(out[3][1], ValueError)
    assert [r for i, r in out if i != 3] == [0, 1, 4, 16, 25]


def test_a_read_that_reads_concurrently_itself_does_not_wait_on_its_own_pool() -> None:
    def inner(i: int) -> int:
        return sum(r for _, r in read_concurrently(lambda j: j, range(i + 2), readers=2))
    out = read_concurrently(inner, range(6), readers=2)
    assert [r for _, r in out] == [sum(range(i + 2)) for i in range(6)]


def test_skipped_islands_are_not_read_and_not_fresh(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    for i in range(3):
        write_head(store, Head(island=i, owner="w"), if_generation=0)
    watch = HeadWatch(store, 3)
    view = watch.look(skip={1})
    assert set(view.heads) == {0, 2} and view.fresh == {0, 2} and view.read == 2
    view = watch.look()
    assert set(view.heads) == {0, 1, 2} and view.read == 1
