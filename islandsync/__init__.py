"""islandsync: one island-model evolutionary search across free-tier notebooks and a laptop,
coordinated through a storage bucket.

The names below are imported when first used (PEP 562), so that importing one part of the
package (``import islandsync.bucket.layout`` on a coordinator, say) does not run the edges
(``api``, the notebook environment, the views) or import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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

# The one place the version is written: pyproject.toml reads it from here
# ([tool.setuptools.dynamic]), and a published wheel's name carries it.
__version__ = "0.1.0"

# Each lazily imported name, and the module that defines it. ``islandsync.status`` is the
# function (a run's status from Python); the `islandsync status` command's module is
# ``islandsync.views.status``.
_LAZY = {
    "run": "islandsync.api",
    "fitness_ref": "islandsync.config",
    "spec_from_flags": "islandsync.config",
    "best": "islandsync.views.results",
    "history": "islandsync.views.results",
    "status": "islandsync.views.results",
    "Blob": "islandsync.store",
    "BlobInfo": "islandsync.store",
    "BlobStore": "islandsync.store",
    "LocalStore": "islandsync.store",
    "open_store": "islandsync.store",
    # torch code: `import islandsync` stays torch-free until it is used.
    "per_solution": "islandsync.search.per_solution",
}

if TYPE_CHECKING:  # what type checkers and editors see
    from islandsync.api import run
    from islandsync.config import fitness_ref, spec_from_flags
    from islandsync.search.per_solution import per_solution
    from islandsync.store import Blob, BlobInfo, BlobStore, LocalStore, open_store
    from islandsync.views.results import best, history, status


def __getattr__(name: str) -> object:  # PEP 562
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'islandsync' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
