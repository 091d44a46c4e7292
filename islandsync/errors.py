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


class RunNotFound(ConfigError):
    """The run URL names no run (it has no ``run.json``); nothing was created there. Raised
    by the read-only views (``islandsync.status``, ``best``, ``history``) and commands."""


class StoreError(IslandSyncError):
    """A bucket or directory operation failed (outage, permission, timeout).

    What is known of its outcome is said once, by the store that raised it, through the
    subclass: :class:`NotSent` and :class:`Refused` changed nothing; :class:`OutcomeUnknown`,
    and a plain StoreError, may have been applied (:func:`maybe_applied`).
    """


class NotSent(StoreError):
    """The request never reached the store (the connection never opened, no credentials):
    nothing changed, and sending it again is safe."""


class Refused(StoreError):
    """The store answered that it did not apply the request (throttled, a conflicting
    request, no permission): nothing changed."""


class OutcomeUnknown(StoreError):
    """The request may have been applied (a timeout, a reset connection, a lost reply, a 5xx
    from a server or a proxy in front of it). A conditional write is never resent blindly
    after it: the writer reads the record back (``records.landed``, by its nonce) first."""


class NotFound(StoreError, KeyError):
    """The key does not exist in the store."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else "not found"


class PreconditionFailed(StoreError):
    """A generation precondition did not hold: someone else wrote (or deleted) the key first.

    Losing such a race is a normal outcome for leases, HEAD pointers and assignments; callers
    handle it where it happens rather than logging it loudly.
    """


def maybe_applied(err: BaseException) -> bool:
    """Whether a failed store request may have been applied: the one classification every
    caller decides by (a write that may have landed must be read back before deciding)."""
    return isinstance(err, StoreError) and not isinstance(
        err, (NotSent, Refused, NotFound, PreconditionFailed))


class CheckpointError(IslandSyncError, ValueError):
    """A checkpoint blob is corrupt, truncated, or otherwise not a valid ``.isz`` file.

    The message names the blob; callers fall back to the previous checkpoint.
    """


class FitnessError(IslandSyncError):
    """The fitness function raised; the message names the islands and generation."""


__all__ = [
    "IslandSyncError",
    "ConfigError",
    "RunNotFound",
    "StoreError",
    "NotSent",
    "Refused",
    "OutcomeUnknown",
    "maybe_applied",
    "NotFound",
    "PreconditionFailed",
    "CheckpointError",
    "FitnessError",
]
