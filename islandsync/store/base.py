"""The BlobStore contract: the one interface everything above the store layer uses.

Kept as small as Optuna's journal backend: get / put / stat / list / delete. Leases, HEAD
pointers and elite epochs are built above it and never know which store they run on.
"""

from __future__ import annotations

import abc
import datetime as _dt
from dataclasses import dataclass
from typing import Final, Protocol, Union, runtime_checkable

from ..errors import ConfigError

#: A blob's version: an opaque token that callers compare only for equality. LocalStore and
#: GCSStore happen to use increasing integers (generations); S3Store uses the object's ETag
#: (a string). Nothing above the store may add to, subtract from or order versions.
Version = Union[int, str]

#: ``if_generation=ABSENT`` means "create only": the write succeeds only if the key does not
#: exist. No live blob ever has this version.
ABSENT: Final = 0


@dataclass(frozen=True)
class Blob:
    """The bytes of a blob (or of a range of it) and the version they were read at."""

    data: bytes
    generation: Version


@dataclass(frozen=True)
class BlobInfo:
    """Metadata of one blob. ``updated`` is the store's clock (UTC), for display only:
    no correctness decision may compare it with a local clock."""

    key: str
    generation: Version
    size: int
    updated: _dt.datetime


class BlobStore(abc.ABC):
    """A flat namespace of blobs with per-key versions and conditional writes.

    Keys are ``/``-separated paths relative to the store root (``islands/3/HEAD.json``); they
    may contain spaces and any unicode, but not empty segments, ``.`` or ``..``, a leading
    ``/`` or a NUL character (:class:`~islandsync.errors.ConfigError`).

    Contracts every implementation keeps (checked by ``tests/store/test_contract.py``):

    * **Versions** (the ``generation`` of :class:`Blob` and :class:`BlobInfo`, the value
      ``put`` returns and ``if_generation`` takes) are opaque tokens, compared only for
      equality: never ordered, never used in arithmetic. LocalStore and GCSStore happen to use
      positive integers that increase with every write; S3Store returns the object's ETag, a
      string. :data:`ABSENT` (``0``) never names a live blob.
    * ``put(key, data, if_generation=v)`` writes only if the key's current version is ``v``
      (``v=ABSENT``: only if the key does not exist), returns the new version on success, and
      raises :class:`~islandsync.errors.PreconditionFailed` otherwise (also when the key does
      not exist and ``v`` is not ABSENT). Of several writers, threads or processes, racing a
      precondition on one key, exactly one wins.
    * A write of **different bytes** never returns a version the key had before, also across a
      delete and re-create. A write of **equal bytes** may: an S3 ETag is the MD5 of the
      content, so writing the same bytes again returns the same token, and a CAS on the old
      token still succeeds (an "A-B-A" that no one can see). That is why every conditional
      record carries a fresh random nonce (:func:`islandsync.bucket.records.write_record`
      stamps one): two writes of a record never have equal bytes, so for records the rule
      holds on every store. Blobs written without a nonce must not rely on version changes.
    * A conditional write whose reply is lost (a timeout, a reset connection) may have landed.
      A store resolves that itself only where it can recognise its own write; otherwise it
      raises :class:`~islandsync.errors.StoreError`. It never retries a conditional write blindly,
      because a retried create that had landed would fail its precondition and look like a
      lost race. Callers read the record back (``records.landed``) before deciding.
    * ``delete(key, if_generation=v)`` deletes only if the current version is ``v``. Stores
      whose backend cannot enforce that atomically say so with
      ``enforces_conditional_delete = False`` (they check, then delete).
    * Writes are atomic: a reader sees the old bytes or the new, never a mix.
    * ``get(key, start=, end=)`` returns bytes ``[start, end)`` with Python slice semantics
      (a range past the end is cut short, ``start >= size`` gives ``b""``), and the version of
      the whole blob.
    * A missing key raises :class:`~islandsync.errors.NotFound` from ``get`` and ``delete``;
      ``stat`` returns ``None``.
    * Other failures (outage, permission, timeout) raise
      :class:`~islandsync.errors.StoreError`, never a library's own exception, and never
      with credentials in the message.
    * Instances are safe to share between threads.

    :func:`islandsync.store.probe.check_fencing` checks the conditional parts of this
    contract against a live bucket and refuses one that ignores them.
    """

    url: str

    #: Whether ``delete(if_generation=)`` is enforced atomically by the backend. When False
    #: the store compares, then deletes: a write landing between the two is not caught.
    enforces_conditional_delete: bool = True

    @abc.abstractmethod
    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        """Read a blob, or bytes ``[start, end)`` of it. Raises NotFound."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes, *, if_generation: Version | None = None) -> Version:
        """Write a blob and return its new version.

        ``if_generation=None`` writes unconditionally, ``ABSENT`` (0) creates only, any other
        version replaces only that version. Raises PreconditionFailed when the condition does
        not hold.
        """

    @abc.abstractmethod
    def stat(self, key: str) -> BlobInfo | None:
        """Metadata of a blob, or None when it does not exist."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[BlobInfo]:
        """Every blob whose key starts with ``prefix`` (a plain string prefix), sorted by key."""

    @abc.abstractmethod
    def delete(self, key: str, *, if_generation: Version | None = None) -> None:
        """Delete a blob. Raises NotFound when missing, PreconditionFailed on a mismatch."""

    def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release connections; the store must not be used afterwards."""

    def __enter__(self) -> BlobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


#: The longest a signed URL may live: both GCS V4 and S3 SigV4 signatures stop at 7 days.
MAX_URL_EXPIRY_S = 7 * 86400


@runtime_checkable
class SignsURLs(Protocol):
    """An optional capability of a store, not part of the :class:`BlobStore` contract: a URL
    anyone can GET a blob's bytes from, without credentials, until it expires. GCSStore (V4
    signed URL, needs a service-account key), S3Store (presigned URL) and LocalStore (a
    ``file://`` URL) have it; :func:`signed_url` refuses a store without it."""

    def signed_url(self, key: str, *, expires_s: float) -> str:
        """The URL of ``key``'s bytes, valid for ``expires_s`` seconds (at most
        :data:`MAX_URL_EXPIRY_S`). Raises ConfigError, in one line saying what works instead,
        when these credentials cannot sign."""


def signed_url(store: BlobStore, key: str, *, expires_s: float) -> str:
    """``store``'s signed URL of ``key`` (through wrappers such as CountingStore), or a
    ConfigError naming the store that cannot make one."""
    if not 0 < expires_s <= MAX_URL_EXPIRY_S:
        raise ConfigError(f"a signed URL lives more than 0 s and at most 7 days "
                          f"({MAX_URL_EXPIRY_S} s), not {expires_s:g} s")
    inner = store
    while not isinstance(inner, SignsURLs) and isinstance(getattr(inner, "inner", None),
                                                          BlobStore):
        inner = inner.inner  # type: ignore[attr-defined]
    if not isinstance(inner, SignsURLs):
        raise ConfigError(f"store {store.url}: {type(inner).__name__} cannot make a URL of a "
                          f"blob that others can download")
    return inner.signed_url(key, expires_s=expires_s)
