"""The one exception tree of islandsync.

Every error the package raises derives from :class:`IslandSyncError`, so callers can catch
one type. Library errors (google-cloud-storage, OSError, zstd) are converted at the boundary
with ``raise ... from err`` so the original stays in the traceback.
"""

from __future__ import annotations


class IslandSyncError(Exception):
    """Root of every error raised by islandsync."""


class ConfigError(IslandSyncError, ValueError):
    """A URL, option or run spec is invalid; the message names what and where."""


class StoreError(IslandSyncError):
    """A bucket or directory operation failed (outage, permission, timeout)."""


class NotFound(StoreError, KeyError):
    """The key does not exist in the store."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else "not found"


class PreconditionFailed(StoreError):
    """A generation precondition did not hold: someone else wrote (or deleted) the key first.

    Losing such a race is a normal outcome for leases, HEAD pointers and assignments; callers
    handle it where it happens rather than logging it loudly.
    """


class CheckpointError(IslandSyncError, ValueError):
    """A checkpoint blob is corrupt, truncated, or otherwise not a valid ``.isz`` file.

    The message names the blob; callers fall back to the previous checkpoint.
    """


class FitnessError(IslandSyncError):
    """The fitness function raised; the message names the islands and generation."""


__all__ = [
    "IslandSyncError",
    "ConfigError",
    "StoreError",
    "NotFound",
    "PreconditionFailed",
    "CheckpointError",
    "FitnessError",
]
