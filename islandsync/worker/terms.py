"""Which leader a worker follows: the term of the lease, and the assignment of that term.

Only the lease's CAS chain vouches for a term. A record of a lower term is a deposed
leader's (stale), one of a higher term is vouched for by no lease (garbage, a forged record):
a worker follows only records of the current lease's term, and a missing or garbage lease
keeps the last term read. Following the current term, not the highest ever seen, is what lets
the chain start again after garbage without stranding the workers.
"""

from __future__ import annotations

from collections.abc import Callable

from islandsync.bucket.layout import ASSIGNMENT_KEY
from islandsync.bucket.records import Assignment, read_assignment, read_lease
from islandsync.errors import CheckpointError
from islandsync.store import BlobStore


class LeaseTerms:
    """The term a worker follows and the newest assignment it has read (see module doc).
    ``warn(message, about)`` reports a record skipped (rate-limited by the caller)."""

    def __init__(self, store: BlobStore, warn: Callable[[str, str], None]) -> None:
        self.store, self._warn = store, warn
        #: The term of the last valid lease read: the one term whose records are followed.
        self.term = 0
        self._assignment: tuple[Assignment, int] | None = None

    def refresh(self) -> None:
        """Read the lease's term; a missing or garbage lease keeps the last one (garbage
        vouches for nothing, and a released lease's successor carries on from it)."""
        try:
            found = read_lease(self.store)
        except CheckpointError as err:
            self._warn(f"ignoring the lease: {err}", "lease")
            return
        if found is not None:
            self.term = found[0].term

    def current(self, term: int, what: str, *, fresh: bool = False) -> bool:
        """Whether a record of ``term`` is the current leader's: a term above the lease's is
        garbage, one below it stale. The lease is read again first unless ``fresh`` (read
        just now) or the term is already the one followed."""
        if term != self.term and not fresh:
            self.refresh()  # the lease may have moved on since our last look
        if term > self.term:
            self._warn(f"ignoring the {what}: its term {term} is above the lease's "
                       f"({self.term}), so no lease vouches for it", what)
        return term == self.term

    def assignment(self) -> Assignment | None:
        """The newest assignment that is not fenced off, or None."""
        info = self.store.stat(ASSIGNMENT_KEY)
        if info is None:
            return None
        changed = self._assignment is None or self._assignment[1] != info.generation
        if changed:
            try:
                current = read_assignment(self.store)
            except CheckpointError as err:
                self._warn(f"ignoring the assignment: {err}", "assignment")
                return None
            if current is None:
                return None
            self._assignment = current
        assignment = self._assignment[0]
        if changed:
            # Reading the lease with each new assignment closes the window in which a deposed
            # leader that woke up has written one the new leader has not yet replaced. An
            # unchanged assignment needs no second look (a class B call a poll saved): it was
            # current when it was read, and following it a little longer moves nothing that
            # HEAD's CAS does not fence.
            self.refresh()
        return assignment if self.current(assignment.term, "assignment", fresh=True) else None


__all__ = ["LeaseTerms"]
