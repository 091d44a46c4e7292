"""A fencing probe: does this bucket really enforce the preconditions islandsync relies on?

Leases, HEAD pointers and elite epochs are safe only if the bucket refuses a create-only write
over an existing object and a compare-and-swap on a stale version. An S3-compatible server
that silently ignores ``If-None-Match`` / ``If-Match`` would accept both, and two leaders or
two owners of one island would each believe they won. :func:`check_fencing` tries each rule
once, in a prefix of its own, and refuses such a bucket before a run trusts it.
"""

from __future__ import annotations

import logging
import os
import secrets

from ..errors import ConfigError, NotFound, PreconditionFailed, StoreError
from .base import ABSENT, BlobStore

log = logging.getLogger(__name__)

#: Every probe writes under ``probe-<random hex>/`` and removes it afterwards.
PROBE_PREFIX = "probe-"


def _innermost(store: BlobStore) -> BlobStore:
    """The store under wrappers (CountingStore, FaultyStore) that forward to ``inner``."""
    seen = 0
    while isinstance(getattr(store, "inner", None), BlobStore) and seen < 16:
        store = store.inner  # type: ignore[attr-defined]
        seen += 1
    return store


def _gcs_emulator(store: BlobStore) -> bool:
    # fake-gcs-server enforces ifGenerationMatch on uploads but not on deletes; real GCS does.
    return store.url.startswith("gs://") and bool(os.environ.get("STORAGE_EMULATOR_HOST"))


def _refuse(store: BlobStore, what: str) -> ConfigError:
    return ConfigError(f"store {store.url}: this bucket {what}: islandsync cannot fence on it")


def check_fencing(store: BlobStore) -> None:
    """Refuse a store that ignores preconditions; return None when it keeps them.

    In ``probe-<random hex>/``: a second create-only write of one key must fail; a
    compare-and-swap on a stale version must fail (and one on the current version succeed,
    returning a new version); a conditional delete on a stale version must fail (skipped, with
    a warning, for stores that declare ``enforces_conditional_delete = False``; only a warning
    on a GCS emulator, which does not enforce it); and ranged reads must return exactly their
    bytes. Everything the probe wrote is deleted afterwards, also when it fails.

    Raises ConfigError naming the rule the bucket ignored; StoreError passes through (the
    bucket is unreachable: nothing was learned).
    """
    prefix = f"{PROBE_PREFIX}{secrets.token_hex(6)}/"
    try:
        _check_preconditions(store, f"{prefix}fence.json")
        _check_ranges(store, f"{prefix}range.bin")
    finally:
        _clean_up(store, prefix)


def _body(step: str) -> bytes:
    # A fresh nonce per write: an S3 ETag of equal bytes would be equal (see BlobStore).
    return f'{{"probe": "{step}", "nonce": "{secrets.token_hex(8)}"}}'.encode()


def _check_preconditions(store: BlobStore, key: str) -> None:
    try:
        first = store.put(key, _body("create"), if_generation=ABSENT)
    except PreconditionFailed:
        raise _refuse(store, "refused a create-only write of a new key") from None
    if first is None or first == ABSENT:
        raise _refuse(store, f"returned version {first!r} for a new object")

    try:
        store.put(key, _body("second create"), if_generation=ABSENT)
    except PreconditionFailed:
        pass
    else:
        raise _refuse(store, "accepted a create-only write over an existing object")

    try:
        second = store.put(key, _body("swap"), if_generation=first)
    except PreconditionFailed:
        raise _refuse(store, "refused a compare-and-swap on the current version") from None
    if second == first:
        raise _refuse(store, "returned the same version for a write of different bytes")

    try:
        store.put(key, _body("stale swap"), if_generation=first)
    except PreconditionFailed:
        pass
    else:
        raise _refuse(store, "accepted a compare-and-swap on a stale version")

    if not _innermost(store).enforces_conditional_delete:
        log.warning("store %s does not enforce conditional deletes (it checks, then deletes): "
                    "fencing step skipped; a lease released at the instant another leader "
                    "takes it over could be deleted", store.url)
        return
    try:
        store.delete(key, if_generation=first)
    except PreconditionFailed:
        pass
    else:
        if _gcs_emulator(_innermost(store)):
            log.warning("store %s: the GCS emulator ignored a conditional delete on a stale "
                        "version (fake-gcs-server does not enforce it; real GCS does)",
                        store.url)
            return
        raise _refuse(store, "deleted an object on a stale version (conditional delete "
                             "ignored; an S3-compatible server without conditional deletes "
                             "can be opened with conditional_delete=False)")
    try:
        store.delete(key, if_generation=second)
    except PreconditionFailed:
        raise _refuse(store, "refused a conditional delete on the current version") from None


def _check_ranges(store: BlobStore, key: str) -> None:
    data = os.urandom(4096)
    version = store.put(key, data, if_generation=ABSENT)
    for start, end in ((100, 164), (0, 1), (4000, 5000), (4096, None), (5000, 6000)):
        blob = store.get(key, start=start, end=end)
        want = data[start:end]
        if blob.data != want:
            span = f"[{start}, {'end' if end is None else end})"
            raise _refuse(store, f"returned {len(blob.data)} bytes for the ranged read {span} "
                                 f"of a 4096-byte object (expected {len(want)})")
        if blob.generation != version:
            raise _refuse(store, "returned a different version for a ranged read than for "
                                 "the write it read")


def _clean_up(store: BlobStore, prefix: str) -> None:
    try:
        leftovers = store.list(prefix)
    except StoreError as err:
        log.warning("fencing probe: could not list %s%s to clean up: %s", store.url, prefix, err)
        return
    for info in leftovers:
        try:
            store.delete(info.key)
        except NotFound:
            pass
        except StoreError as err:
            log.warning("fencing probe: could not delete %s: %s", info.key, err)


__all__ = ["PROBE_PREFIX", "check_fencing"]
