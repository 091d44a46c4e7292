"""ForwardingStore: the one base of every BlobStore wrapper that forwards to ``inner``
(:class:`~islandsync.store.counting.CountingStore`, the test harness's
:class:`~islandsync.testing.faulty.FaultyStore`).

Each of the five calls goes through :meth:`ForwardingStore._call` with its operation name and
key (a listing's prefix), so a wrapper writes what it adds once, in ``_call``, instead of five
times. ``probe`` finds the store under any number of wrappers through ``inner``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .base import Blob, BlobInfo, BlobStore

T = TypeVar("T")


class ForwardingStore(BlobStore):
    """Forwards every call to ``inner`` through :meth:`_call` (which, here, just makes it)."""

    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner

    @property
    def url(self) -> str:  # type: ignore[override]
        return self.inner.url

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        """Make one call: ``op`` is get, put, stat, list or delete, ``key`` its key (a
        listing's prefix), ``fn`` the call on ``inner``. Wrappers override this."""
        return fn()

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        return self._call("get", key, lambda: self.inner.get(key, start=start, end=end))

    def put(self, key: str, data: bytes, *, if_generation: int | None = None) -> int:
        return self._call("put", key,
                          lambda: self.inner.put(key, data, if_generation=if_generation))

    def stat(self, key: str) -> BlobInfo | None:
        return self._call("stat", key, lambda: self.inner.stat(key))

    def list(self, prefix: str = "") -> list[BlobInfo]:
        return self._call("list", prefix, lambda: self.inner.list(prefix))

    def delete(self, key: str, *, if_generation: int | None = None) -> None:
        return self._call("delete", key,
                          lambda: self.inner.delete(key, if_generation=if_generation))

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


__all__ = ["ForwardingStore"]
