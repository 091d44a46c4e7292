"""Layer 1: blobs with generations and conditional writes. ``open_store(url)`` picks one."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError
from .base import Blob, BlobInfo, BlobStore
from .local import LocalStore


def open_store(url: str | os.PathLike[str], *, credentials: Any = None, **options: Any) -> BlobStore:
    """Open the store a run URL names.

    * ``gs://bucket/prefix`` — :class:`GCSStore` (``credentials`` and ``options`` go to it);
    * ``file:///abs/path`` — :class:`LocalStore`;
    * a plain path, absolute or relative — :class:`LocalStore` (the folder is created).

    Raises ConfigError naming the URL for an unknown scheme, a missing bucket or an
    unwritable directory.
    """
    text = os.fspath(url)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"run URL must be a non-empty string, got {url!r}")
    if "://" not in text:
        if options or credentials is not None:
            raise ConfigError(f"store {text}: a local directory takes no credentials or options")
        return LocalStore(text)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"store {text}: file URLs must be file:///absolute/path")
        return LocalStore(unquote(parts.path), url=text)
    if scheme == "gs":
        if not parts.netloc:
            raise ConfigError(f"store {text}: no bucket name (expected gs://bucket/prefix)")
        from .gcs import GCSStore

        return GCSStore(parts.netloc, unquote(parts.path), credentials=credentials, **options)
    raise ConfigError(
        f"store {text}: unknown scheme {parts.scheme!r} (expected gs://, file:// or a path)"
    )


def __getattr__(name: str) -> Any:
    # GCSStore is imported lazily so that a local run never pays for google-cloud imports.
    if name == "GCSStore":
        from .gcs import GCSStore

        return GCSStore
    raise AttributeError(name)


__all__ = ["Blob", "BlobInfo", "BlobStore", "GCSStore", "LocalStore", "open_store"]
