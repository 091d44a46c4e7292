"""Lease rules with an injected clock (no sleeps), plus one race of real processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from islandsync.bucket.layout import LEASE_KEY
from islandsync.leader.lease import Lease
from islandsync.store import open_store


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


@pytest.fixture
def store(tmp_path: Path):
    return open_store(str(tmp_path / "run"))


def test_first_candidate_claims_an_empty_run(store) -> None:
    clock = Clock()
    a, b = Lease(store, "a", lease_s=15, clock=clock), Lease(store, "b", lease_s=15, clock=clock)
    assert a.step() and a.term == 1
    assert not b.step()
    assert json.loads(store.get(LEASE_KEY).data)["holder"] == "a"


def test_renewing_holder_keeps_the_lease(store) -> None:
    ca, cb = Clock(), Clock()
    a, b = Lease(store, "a", lease_s=15, clock=ca), Lease(store, "b", lease_s=15, clock=cb)
    a.step()
    for _ in range(20):  # a minute of renewals every 5 s; b watches
        ca.advance(5)
        cb.advance(5)
        assert a.step()
        assert not b.step()
    assert a.term == 1 and b.term == 0


def test_takeover_only_after_a_whole_lease_unchanged(store) -> None:
    ca, cb = Clock(), Clock()
    a, b = Lease(store, "a", lease_s=15, clock=ca), Lease(store, "b", lease_s=15, clock=cb)
    a.step()
    b.step()  # b starts watching now
    cb.advance(14.9)
    assert not b.step()
    cb.advance(0.2)
    assert b.step() and b.term == 2
    # a's own clock says its lease lapsed (no renewal for lease - margin): it stopped acting
    # before b could take over.
    ca.advance(15 - a.margin_s)
    assert not a.is_leader
    assert not a.step()  # and it does not come back: the blob moved on


def test_refused_renewal_ends_leadership_at_once(store) -> None:
    ca, cb = Clock(), Clock()
    a, b = Lease(store, "a", lease_s=15, clock=ca), Lease(store, "b", lease_s=15, clock=cb)
    a.step()
    b.step()
    cb.advance(16)
    assert b.step()  # a was paused (SIGSTOP) past its lease, b took over
    ca.advance(5)  # a wakes within what it believes is its lease...
    assert a.is_leader  # ...and still thinks it leads until it tries to renew:
    assert not a.step()
    assert not a.is_leader and a.renewal_failures == 1


def test_lapses_without_a_successful_renewal(store, tmp_path: Path) -> None:
    clock = Clock()
    a = Lease(store, "a", lease_s=15, margin_s=3, clock=clock)
    a.step()
    a.store = open_store(str(tmp_path / "file-not-dir"))  # nothing to renew against
    (tmp_path / "file-not-dir" / "lease.json").mkdir(parents=True)  # every write now fails
    clock.advance(5)
    assert a.step()  # renewal failed, but the lease is still valid for a while
    clock.advance(6.9)
    assert a.step()
    clock.advance(0.2)  # 12.1 s > lease - margin = 12 s since the last success
    assert not a.is_leader


def test_release_lets_the_next_candidate_in_at_once(store) -> None:
    clock = Clock()
    a, b = Lease(store, "a", lease_s=15, clock=clock), Lease(store, "b", lease_s=15, clock=clock)
    a.step()
    b.step()
    a.release()
    assert not a.is_leader
    # The run was empty again (a create-only claim); the chain goes on from the term b saw.
    assert b.step() and b.term == 2


def test_garbage_lease_blob_is_taken_over_after_a_lease(store) -> None:
    clock = Clock()
    store.put(LEASE_KEY, b"not json")
    a = Lease(store, "a", lease_s=15, clock=clock)
    assert not a.step()
    clock.advance(15)
    assert a.step() and a.term == 1


def test_a_renewal_whose_reply_was_lost_keeps_the_lease(store) -> None:
    """N9: a renewal that landed but whose reply was lost is read back by its nonce at once;
    the next renewal, freshly stamped, would find the blob moved and believe it deposed."""
    from islandsync.testing.faulty import FaultyStore, LostReply

    clock = Clock()
    faulty = FaultyStore(store, rules=[LostReply(ops=("put",), keys=LEASE_KEY, calls=(2,))])
    a = Lease(faulty, "a", lease_s=15, clock=clock)
    assert a.step() and a.term == 1  # the claim
    for _ in range(3):
        clock.advance(5)
        assert a.step(), "the holder gave the lease up after its own renewal landed"
    assert faulty.counts() == {"lost_reply": 1} and a.renewal_failures == 0
