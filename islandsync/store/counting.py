"""CountingStore: a BlobStore wrapper that counts bucket operations by pricing class.

GCS, S3 and R2 bill operations in the same two classes: class A (writes and listings: ``put``,
``list``) costs about twelve times class B (reads: ``get``, ``stat``), and deletes cost
nothing on any of the three (counted apart, as ``free``). Wrapping a worker's or the
coordinator's store in a :class:`CountingStore` gives the "bucket operations per worker-hour"
measure and the ``islandsync_bucket_operations_total`` / ``islandsync_store_errors_total``
metrics without touching the stores themselves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import ConfigError, NotFound, PreconditionFailed, StoreError
from .base import Blob, BlobStore
from .forwarding import ForwardingStore

T = TypeVar("T")

#: Pricing class of each operation, the same on GCS, S3 and R2 (the one home of this rule):
#: A writes and listings, B reads and stats; a delete is billed by none of them.
OPERATION_CLASS = {"put": "A", "list": "A", "delete": "free", "get": "B", "stat": "B"}


class CountingStore(ForwardingStore):
    """Forwards every call to ``inner`` and counts it, thread-safely.

    * ``counts()["ops"]`` — operations attempted, by pricing class ``"A"``/``"B"``/``"free"``
      (a failed call is still billed, so it is still counted);
    * ``counts()["errors"]`` — failures by operation name: only :class:`StoreError`\\ s that are
      not :class:`NotFound` or :class:`PreconditionFailed` (those are normal outcomes of reads
      and compare-and-swaps, not faults). The error is always re-raised unchanged;
    * ``counts()["bytes_read"]`` — bytes that reads returned (downloaded), all keys together.

    ``latency_s`` (default 0) sleeps that many seconds before every call, to simulate a remote
    bucket (e.g. ``0.05`` for a 50 ms round trip) in benchmarks on a local directory. It adds
    latency only; it never changes results.
    """

    def __init__(self, inner: BlobStore, *, latency_s: float = 0.0) -> None:
        if latency_s < 0:
            raise ConfigError(f"latency_s must be >= 0, got {latency_s!r}")
        super().__init__(inner)
        self.latency_s = float(latency_s)
        self._lock = threading.Lock()
        self._ops = dict.fromkeys(OPERATION_CLASS.values(), 0)
        self._by_operation = {name: 0 for name in OPERATION_CLASS}
        self._errors = {name: 0 for name in OPERATION_CLASS}
        self._bytes_read = 0

    @classmethod
    def apart(cls, store: BlobStore) -> CountingStore:
        """A counter of its own over the same store (and latency) as ``store``: a second role
        in one process (a worker's leader candidate) counts its operations apart."""
        if isinstance(store, CountingStore):
            return cls(store.inner, latency_s=store.latency_s)
        return cls(store)

    def counts(self) -> dict:
        """``{"ops": {"A": int, "B": int, "free": int}, "errors": {"get": int, "put": int,
        ...}, "bytes_read": int}`` (copies)."""
        with self._lock:
            return {"ops": dict(self._ops), "errors": dict(self._errors),
                    "bytes_read": self._bytes_read}

    def by_operation(self) -> dict[str, int]:
        """Operations attempted so far by name (``get``, ``put``, ...): a copy."""
        with self._lock:
            return dict(self._by_operation)

    def _call(self, operation: str, key: str, fn: Callable[[], T]) -> T:
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        with self._lock:
            self._ops[OPERATION_CLASS[operation]] += 1
            self._by_operation[operation] += 1
        try:
            return fn()
        except (NotFound, PreconditionFailed):
            raise
        except StoreError:
            with self._lock:
                self._errors[operation] += 1
            raise

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        blob = super().get(key, start=start, end=end)
        with self._lock:
            self._bytes_read += len(blob.data)
        return blob


__all__ = ["OPERATION_CLASS", "CountingStore"]
