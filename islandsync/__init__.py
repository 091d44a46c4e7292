"""islandsync: one island-model evolutionary search across free-tier notebooks and a laptop,
coordinated through a storage bucket."""

from __future__ import annotations

from islandsync.api import run
from islandsync.config import fitness_ref, spec_from_flags
from islandsync.errors import (
    CheckpointError,
    ConfigError,
    FitnessError,
    IslandSyncError,
    NotFound,
    PreconditionFailed,
    RunNotFound,
    StoreError,
)
from islandsync.store import Blob, BlobInfo, BlobStore, LocalStore, open_store

# A run's results. The attribute ``islandsync.status`` is this function; the module of the
# same name (the `islandsync status` command's) is imported by its full name, as
# ``from islandsync.status import collect_status``.
from islandsync.views import best, history, status

__version__ = "0.1.0"


def __getattr__(name: str) -> object:  # PEP 562
    # per_solution is torch code: imported when used, so `import islandsync` stays torch-free.
    if name == "per_solution":
        from islandsync.search.per_solution import per_solution

        return per_solution
    raise AttributeError(f"module 'islandsync' has no attribute {name!r}")


__all__ = [
    "Blob",
    "BlobInfo",
    "BlobStore",
    "CheckpointError",
    "ConfigError",
    "FitnessError",
    "IslandSyncError",
    "LocalStore",
    "NotFound",
    "PreconditionFailed",
    "RunNotFound",
    "StoreError",
    "__version__",
    "best",
    "fitness_ref",
    "history",
    "open_store",
    "per_solution",
    "run",
    "spec_from_flags",
    "status",
]
