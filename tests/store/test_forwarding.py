"""The one base of store wrappers (``store/forwarding.py``): each of the five calls reaches
``inner`` with every argument, through ``_call`` with its operation name and key, so a
wrapper that overrides ``_call`` sees every call once; an error of ``inner`` passes through
unchanged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from islandsync.errors import NotFound, PreconditionFailed
from islandsync.store import LocalStore
from islandsync.store.forwarding import ForwardingStore

T = TypeVar("T")


class Seen(ForwardingStore):
    def __init__(self, inner: LocalStore) -> None:
        super().__init__(inner)
        self.calls: list[tuple[str, str]] = []

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        self.calls.append((op, key))
        return fn()


def test_every_call_reaches_inner_with_its_arguments_through_call_once(tmp_path: Path) -> None:
    inner = LocalStore(tmp_path / "run")
    store = Seen(inner)
    generation = store.put("a/b", b"0123456789", if_generation=0)
    assert inner.stat("a/b").generation == generation
    assert store.get("a/b", start=2, end=5).data == b"234"
    assert store.stat("a/b").generation == generation
    assert [i.key for i in store.list("a/")] == ["a/b"]
    with pytest.raises(PreconditionFailed):  # if_generation reaches inner
        store.put("a/b", b"x", if_generation=generation + 1000)
    with pytest.raises(PreconditionFailed):
        store.delete("a/b", if_generation=generation + 1000)
    store.delete("a/b", if_generation=generation)
    assert inner.stat("a/b") is None
    with pytest.raises(NotFound):
        store.get("a/b")
    assert store.calls == [("put", "a/b"), ("get", "a/b"), ("stat", "a/b"), ("list", "a/"),
                           ("put", "a/b"), ("delete", "a/b"), ("delete", "a/b"),
                           ("get", "a/b")]


def test_a_wrapper_names_its_inner_store(tmp_path: Path) -> None:
    inner = LocalStore(tmp_path / "run")
    store = ForwardingStore(ForwardingStore(inner))
    assert store.url == inner.url
    assert repr(store) == f"ForwardingStore(ForwardingStore({inner!r}))"
