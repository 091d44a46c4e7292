"""islandsync: one island-model evolutionary search across free-tier notebooks and a laptop,
coordinated through a storage bucket."""

from __future__ import annotations

from islandsync.api import run
from islandsync.errors import (
    CheckpointError,
    ConfigError,
    IslandSyncError,
    NotFound,
    PreconditionFailed,
    StoreError,
)
from islandsync.store import Blob, BlobInfo, BlobStore, LocalStore, open_store

__version__ = "0.1.0"

__all__ = [
    "Blob",
    "BlobInfo",
    "BlobStore",
    "CheckpointError",
    "ConfigError",
    "IslandSyncError",
    "LocalStore",
    "NotFound",
    "PreconditionFailed",
    "StoreError",
    "__version__",
    "open_store",
    "run",
]
