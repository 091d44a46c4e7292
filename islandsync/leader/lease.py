"""The coordinator lease: who may act as leader, judged without comparing clocks.

``lease.json`` holds a :class:`~islandsync.bucket.records.LeaseRecord`. The rules
(docs/design.md):

* An empty run is claimed with a create-only write (term 1).
* The holder renews every ``lease_s / 3`` with a CAS on the generation it wrote last.
* A candidate watches with reads only. It takes over only after it has seen the blob's
  generation unchanged for a whole lease duration on its *own* monotonic clock, with a CAS on
  that generation, and the term goes up by one.
* A holder that stops cleanly marks the lease ``released`` (by CAS): a candidate takes it
  over on its next look, with the next term.
* A holder stops acting as leader at once when a renewal is refused (412), or when it has had
  no successful renewal for ``lease_s - margin`` seconds of its own clock: by then a
  candidate may be about to take over, and the margin covers the difference in how fast the
  two monotonic clocks run.

The term is the fencing token that assignments and elite epochs carry. Only this chain of
CAS writes vouches for a term: a takeover writes :func:`~islandsync.bucket.records.next_term`
of the lease it replaces (or, when the blob is gone or garbage, of the last valid lease this
candidate saw), never a term read from another record, which anyone holding the run's
credentials can forge. A lease above the term cap is garbage, taken over once it stood still.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from islandsync.bucket.layout import LEASE_KEY
from islandsync.bucket.records import (
    MAX_RECORD_BYTES,
    LeaseRecord,
    next_term,
    parse_record,
    stamp,
    write_fenced,
)
from islandsync.errors import CheckpointError, NotFound, StoreError
from islandsync.store import BlobStore

log = logging.getLogger(__name__)


class Lease:
    """One candidate's view of the lease; call :meth:`step` regularly (at least every
    ``lease_s / 3``). ``is_leader`` is what the caller must check before every leader write.
    ``lease_s`` has no default here: it is the run's (``run.json``) or a flag's."""

    def __init__(
        self,
        store: BlobStore,
        candidate: str,
        *,
        lease_s: float,
        margin_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.candidate, self.lease_s = store, candidate, lease_s
        self.margin_s = lease_s * 0.2 if margin_s is None else margin_s
        self.clock = clock
        self.term = 0
        self.renewal_failures = 0
        self._generation = 0  # of the blob we last wrote (holder) or saw (candidate)
        self._valid_until = float("-inf")  # holder: act as leader only before this
        self._next_renewal = 0.0
        self._seen_since = 0.0  # candidate: when the watched generation last changed
        self._seen: LeaseRecord | None = None
        #: The last term of a valid lease this candidate read or wrote: where the chain
        #: goes on from when the blob is gone or garbage.
        self._chain_term = 0

    @property
    def is_leader(self) -> bool:
        return self.clock() < self._valid_until

    @property
    def holder(self) -> str | None:
        return self.candidate if self.is_leader else (self._seen.holder if self._seen else None)

    def step(self) -> bool:
        """Renew (holder) or watch and maybe take over (candidate); returns ``is_leader``.
        Store errors are absorbed: a holder that cannot renew simply lapses."""
        try:
            if self.is_leader:
                if self.clock() >= self._next_renewal:
                    self._renew()
            else:
                self._watch()
        except StoreError as err:
            self.renewal_failures += self.is_leader
            log.warning("lease: bucket trouble (%s)", err)
        return self.is_leader

    def renewal_due_in(self) -> float | None:
        """Seconds of this clock until a holder must renew (0 when overdue); None when not
        the holder (a candidate watches at its caller's cadence)."""
        if not self.is_leader:
            return None
        return max(0.0, self._next_renewal - self.clock())

    def release(self) -> None:
        """Give the lease up at once (clean shutdown): stop acting, then mark the blob
        released if it is still ours, so that a candidate takes over on its next look instead
        of waiting out a lease duration. Marked, not deleted: the next term goes on from this
        one (the chain of CAS writes is what vouches for terms)."""
        was_leader = self.is_leader
        self._valid_until = float("-inf")
        if was_leader:
            record = stamp(LeaseRecord(holder=self.candidate, term=self.term,
                                       lease_s=self.lease_s, released=True))
            try:
                write_fenced(self.store, LEASE_KEY, record, LeaseRecord,
                             if_generation=self._generation)
            except StoreError:
                pass  # unreachable (or someone else's now): it lapses by itself

    # -- holder --------------------------------------------------------------------------

    def _write(self, term: int, if_generation: int) -> bool:
        started = self.clock()
        record = stamp(LeaseRecord(holder=self.candidate, term=term, lease_s=self.lease_s))
        # A write whose reply was lost, or a resend that met its own 412, is read back by
        # this record's nonce now: the next renewal, freshly stamped, could not tell.
        gen = write_fenced(self.store, LEASE_KEY, record, LeaseRecord,
                           if_generation=if_generation)
        if gen is None:
            return False
        self._generation, self.term, self._chain_term = gen, term, term
        # Validity counts from when the write *started*: it may have landed at once.
        self._valid_until = started + self.lease_s - self.margin_s
        self._next_renewal = started + self.lease_s / 3
        self._seen = record
        return True

    def _renew(self) -> None:
        if not self._write(self.term, self._generation):
            self.renewal_failures += 1
            log.warning("lease: renewal of term %d refused; no longer leader", self.term)
            self._valid_until = float("-inf")
            self._seen_since = self.clock()

    # -- candidate -----------------------------------------------------------------------

    def _watch(self) -> None:
        now = self.clock()
        try:
            blob = self.store.get(LEASE_KEY, start=0, end=MAX_RECORD_BYTES + 1)
        except NotFound:
            # A new run, or a lease deleted by hand: the chain goes on from the last term we
            # saw (records' terms vouch for nothing: anyone with the run's credentials writes
            # them, so they are never where a term comes from).
            term = next_term(self._chain_term)
            if self._write(term, 0):
                log.info("lease: %s claimed the free lease, term %d", self.candidate, term)
            return
        try:
            record: LeaseRecord | None = parse_record(blob.data, LeaseRecord, name=LEASE_KEY)
        except CheckpointError as err:
            # Not a lease: treated like an expired one once its generation has stood still
            # for a lease duration (our own), so garbage cannot block the run for ever.
            if blob.generation != self._generation:
                log.warning("lease: %s", err)
            record = None
        if record is not None:
            self._chain_term = record.term
        if blob.generation != self._generation:
            self._generation, self._seen_since, self._seen = blob.generation, now, record
            if record is None or not record.released:
                return
        lease_s = max(self.lease_s, record.lease_s if record else 0.0)
        if (record is not None and record.released) or now - self._seen_since >= lease_s:
            term = next_term(record.term if record else self._chain_term)
            if self._write(term, blob.generation):
                log.info("lease: %s took over from %s, term %d", self.candidate,
                         record.holder if record else "?", term)


#: A renewal refused by bucket trouble (a 429 among them) is retried after this long at
#: first, doubling: lease.json is one object name, and GCS allows one write a second to it.
RETRY_S = 1.0


class LeaseKeeper:
    """Steps a :class:`Lease` on its own thread, on the lease's own schedule: a holder renews
    every ``lease_s / 3`` however long its caller's cycle takes; a candidate watches every
    ``watch_s``. ``on_change`` runs (on this thread) when leadership is gained or lost, so the
    caller can act at once instead of at its next cycle. Renewal failures back off from
    :data:`RETRY_S`, never sooner than a second apart, within the lease's validity.

    Only this thread mutates the lease while it runs; others read ``is_leader`` and ``term``.
    """

    def __init__(self, lease: Lease, *, watch_s: float, stop: threading.Event,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.lease, self.watch_s, self.on_change = lease, watch_s, on_change
        self._stop = stop
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="islandsync-lease", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        self._halt.set()
        self._thread.join(timeout=timeout)

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when told to stop."""
        deadline = time.monotonic() + seconds
        while not (self._stop.is_set() or self._halt.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._stop.wait(min(left, 0.25))
        return True

    def _run(self) -> None:
        retry = RETRY_S
        try:
            while not (self._stop.is_set() or self._halt.is_set()):
                was, failures = self.lease.is_leader, self.lease.renewal_failures
                try:
                    self.lease.step()
                except Exception:  # noqa: BLE001 - a dead keeper would stop every renewal
                    log.exception("lease: unexpected error; retrying")
                leader = self.lease.is_leader
                if leader != was:
                    self.on_change()
                due = self.lease.renewal_due_in()
                if due is None:
                    retry = RETRY_S
                    wait = self.watch_s
                elif self.lease.renewal_failures > failures or due == 0.0:
                    wait, retry = retry, min(2 * retry, max(RETRY_S, self.lease.lease_s / 6))
                else:
                    retry = RETRY_S
                    wait = due
                if self._wait(wait):
                    return
        finally:
            self.on_change()  # the caller's loop wakes to see why
