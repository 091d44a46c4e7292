"""Layer 1: blobs with generations and conditional writes. ``open_store(url)`` picks one, by
the URL's scheme in :data:`SCHEMES` (a local directory needs none)."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from ..durations import parse_duration
from ..errors import ConfigError
from .base import Blob, BlobInfo, BlobStore
from .local import LocalStore


@dataclass(frozen=True)
class Scheme:
    """A bucket's URL scheme: everything islandsync knows of one kind of bucket, in one entry
    of :data:`SCHEMES`. Adding a store is its module plus one entry here (docs/design.md,
    "Adding a store")."""

    #: The URL scheme, ``gs`` for ``gs://bucket/prefix``.
    name: str
    #: ``module:Class`` of its :class:`BlobStore`, imported on first use (its client library
    #: is then needed only for its URLs); built as ``Class(bucket, prefix, credentials=...,
    #: **options)``.
    store: str
    #: What it is, for help and messages: ``"Google Cloud Storage"``.
    title: str
    #: What ``--credentials FILE`` (``credentials=``) is for it, for help.
    credentials_help: str
    #: ``module:function`` that finds its credentials on this machine (an ``env`` function,
    #: ``(explicit, platform=) -> (credentials, where found)``), called by
    #: ``islandsync.env.opening.open_run``; None: the store finds its own from ``credentials``.
    find_credentials: str | None = None
    #: The ``pip install`` extra its client library comes with, if any.
    extra: str | None = None

    def store_class(self) -> type[BlobStore]:
        module, _, name = self.store.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


#: Every bucket's URL scheme (``file://`` and plain paths are a local directory).
SCHEMES: dict[str, Scheme] = {
    "gs": Scheme("gs", "islandsync.store.gcs:GCSStore", "Google Cloud Storage",
                 "a service-account JSON key file",
                 find_credentials="islandsync.env.credentials:find_credentials"),
    "s3": Scheme("s3", "islandsync.store.s3:S3Store", "S3 (AWS S3, Cloudflare R2, MinIO)",
                 "a JSON or INI file with aws_access_key_id, aws_secret_access_key "
                 "(endpoint_url, region)", extra="s3"),
}


def register_scheme(scheme: Scheme) -> None:
    """Add a bucket's scheme to :data:`SCHEMES` (ConfigError if its name is taken)."""
    if scheme.name in SCHEMES or scheme.name == "file":
        raise ConfigError(f"store scheme {scheme.name}:// is already registered")
    SCHEMES[scheme.name] = scheme


def unregister_scheme(name: str) -> None:
    """Remove a scheme :func:`register_scheme` added (tests' throwaway ones)."""
    SCHEMES.pop(name, None)


def url_examples() -> str:
    """``gs://bucket/prefix or s3://bucket/prefix``: every scheme's URL, for help text."""
    return " or ".join(f"{name}://bucket/prefix" for name in SCHEMES)


def open_store(url: str | os.PathLike[str], *, credentials: Any = None, create: bool = True,
               **options: Any) -> BlobStore:
    """Open the store a run URL names.

    * ``<scheme>://bucket/prefix`` — the store of that scheme in :data:`SCHEMES`
      (``credentials`` and ``options`` go to it): ``gs://`` :class:`GCSStore`, ``s3://``
      :class:`~islandsync.store.s3.S3Store` (AWS S3, R2, MinIO; needs the ``islandsync[s3]``
      extra);
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
    if scheme in SCHEMES:
        if not parts.netloc:
            raise ConfigError(f"store {text}: no bucket name (expected "
                              f"{scheme}://bucket/prefix)")
        return SCHEMES[scheme].store_class()(parts.netloc, unquote(parts.path),
                                             credentials=credentials, **options)
    known = ", ".join(f"{name}://" for name in SCHEMES)
    raise ConfigError(
        f"store {text}: unknown scheme {parts.scheme!r} (expected {known}, file:// or a path)"
    )


def __getattr__(name: str) -> Any:
    # GCSStore is imported lazily so that a local run never pays for google-cloud imports.
    if name == "GCSStore":
        from .gcs import GCSStore

        return GCSStore
    raise AttributeError(name)


__all__ = ["SCHEMES", "Blob", "BlobInfo", "BlobStore", "GCSStore", "LocalStore", "Scheme",
           "open_store", "register_scheme", "unregister_scheme", "url_examples"]
