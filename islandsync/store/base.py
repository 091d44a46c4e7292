"""The BlobStore contract: the one interface everything above the store layer uses.

Kept as small as Optuna's journal backend: get / put / stat / list / delete. Leases, HEAD
pointers and elite epochs are built above it and never know which store they run on.
"""

from __future__ import annotations

import abc
import datetime as _dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Blob:
    """The bytes of a blob (or of a range of it) and the generation they were read at."""

    data: bytes
    generation: int


@dataclass(frozen=True)
class BlobInfo:
    """Metadata of one blob. ``updated`` is the store's clock (UTC), for display only:
    no correctness decision may compare it with a local clock."""

    key: str
    generation: int
    size: int
    updated: _dt.datetime


class BlobStore(abc.ABC):
    """A flat namespace of blobs with per-key generations and conditional writes.

    Keys are ``/``-separated paths relative to the store root (``islands/3/HEAD.json``); they
    may contain spaces and any unicode, but not empty segments, ``.`` or ``..``, a leading
    ``/`` or a NUL character (:class:`~islandsync.errors.ConfigError`).

    Contracts every implementation keeps (checked by ``tests/store/test_contract.py``):

    * **Generations** are positive integers that strictly increase each time a key is
      written, also across a delete and re-create. ``0`` never names a live blob.
    * ``put(key, data, if_generation=g)`` writes only if the key's current generation is
      ``g`` (``g=0``: only if the key does not exist) and raises
      :class:`~islandsync.errors.PreconditionFailed` otherwise. Of several writers, threads or
      processes, racing a precondition on one key, exactly one wins.
    * Writes are atomic: a reader sees the old bytes or the new, never a mix.
    * ``get(key, start=, end=)`` returns bytes ``[start, end)`` with Python slice semantics
      (a range past the end is cut short, ``start >= size`` gives ``b""``).
    * A missing key raises :class:`~islandsync.errors.NotFound` from ``get`` and ``delete``;
      ``stat`` returns ``None``.
    * Other failures (outage, permission, timeout) raise
      :class:`~islandsync.errors.StoreError`, never a library's own exception.
    * Instances are safe to share between threads.
    """

    url: str

    @abc.abstractmethod
    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        """Read a blob, or bytes ``[start, end)`` of it. Raises NotFound."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes, *, if_generation: int | None = None) -> int:
        """Write a blob and return its new generation.

        ``if_generation=None`` writes unconditionally, ``0`` creates only, ``g > 0`` replaces
        only generation ``g``. Raises PreconditionFailed when the condition does not hold.
        """

    @abc.abstractmethod
    def stat(self, key: str) -> BlobInfo | None:
        """Metadata of a blob, or None when it does not exist."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[BlobInfo]:
        """Every blob whose key starts with ``prefix`` (a plain string prefix), sorted by key."""

    @abc.abstractmethod
    def delete(self, key: str, *, if_generation: int | None = None) -> None:
        """Delete a blob. Raises NotFound when missing, PreconditionFailed on a mismatch."""

    def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release connections; the store must not be used afterwards."""

    def __enter__(self) -> BlobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
