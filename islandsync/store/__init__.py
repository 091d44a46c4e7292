"""Layer 1: blobs with generations and conditional writes. ``open_store(url)`` picks one."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

from ..durations import parse_duration
from ..errors import ConfigError
from .base import Blob, BlobInfo, BlobStore
from .local import LocalStore


def open_store(url: str | os.PathLike[str], *, credentials: Any = None, create: bool = True,
               **options: Any) -> BlobStore:
    """Open the store a run URL names.

    * ``gs://bucket/prefix`` — :class:`GCSStore` (``credentials`` and ``options`` go to it);
    * ``s3://bucket/prefix`` — :class:`~islandsync.store.s3.S3Store` (AWS S3, R2, MinIO; needs
      the ``islandsync[s3]`` extra; ``credentials`` and ``options`` go to it);
    * ``file:///abs/path`` — :class:`LocalStore`;
    * a plain path, absolute or relative — :class:`LocalStore` (the folder is created, unless
      ``create=False``: then nothing is, until the first write).

    Opening a bucket creates nothing in it either way.

    Raises ConfigError naming the URL for an unknown scheme, a missing bucket or an
    unwritable directory.

    Benchmarking aid: when the environment variable ``ISLANDSYNC_STORE_LATENCY`` is set (e.g.
    ``50ms``, ``0.05`` or ``0.05s``; also ``us``), the store is wrapped in
    :class:`~islandsync.store.counting.CountingStore` with that ``latency_s``, so that every
    bucket call of this process sleeps that long first: a local directory then behaves like a
    remote bucket, without changing any result. Unset, empty or zero: no wrapper. A value that
    is not a non-negative duration raises ConfigError naming the variable.
    """
    latency = _latency_from_env()  # a bad value fails before anything is created
    store = _open(url, credentials=credentials, create=create, **options)
    if latency > 0:
        from .counting import CountingStore

        return CountingStore(store, latency_s=latency)
    return store


LATENCY_ENV = "ISLANDSYNC_STORE_LATENCY"


def _latency_from_env() -> float:
    """Seconds of simulated latency from ``ISLANDSYNC_STORE_LATENCY`` (0 when unset)."""
    text = os.environ.get(LATENCY_ENV, "")
    if not text.strip():
        return 0.0
    try:
        return parse_duration(text, what=LATENCY_ENV, allow_zero=True)
    except ConfigError as err:
        raise ConfigError(f"{err} (a benchmarking aid: unset it for real runs)") from None


def _open(url: str | os.PathLike[str], *, credentials: Any = None, create: bool = True,
          **options: Any) -> BlobStore:
    text = os.fspath(url)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"run URL must be a non-empty string, got {url!r}")
    if "://" not in text:
        if options or credentials is not None:
            raise ConfigError(f"store {text}: a local directory takes no credentials or options")
        return LocalStore(text, create=create)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"store {text}: file URLs must be file:///absolute/path")
        return LocalStore(unquote(parts.path), url=text, create=create)
    if scheme == "gs":
        if not parts.netloc:
            raise ConfigError(f"store {text}: no bucket name (expected gs://bucket/prefix)")
        from .gcs import GCSStore

        return GCSStore(parts.netloc, unquote(parts.path), credentials=credentials, **options)
    if scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"store {text}: no bucket name (expected s3://bucket/prefix)")
        from .s3 import S3Store  # boto3 is an extra: imported only for s3:// URLs

        return S3Store(parts.netloc, unquote(parts.path), credentials=credentials, **options)
    raise ConfigError(
        f"store {text}: unknown scheme {parts.scheme!r} (expected gs://, s3://, file:// or a path)"
    )


def __getattr__(name: str) -> Any:
    # GCSStore is imported lazily so that a local run never pays for google-cloud imports.
    if name == "GCSStore":
        from .gcs import GCSStore

        return GCSStore
    raise AttributeError(name)


__all__ = ["Blob", "BlobInfo", "BlobStore", "GCSStore", "LocalStore", "open_store"]
