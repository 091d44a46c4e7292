"""The sweep's choice of blobs to delete, as a pure function of one listing."""

from __future__ import annotations

from islandsync.bucket.heads import HeadView
from islandsync.bucket.layout import checkpoint_key, checkpoint_tag
from islandsync.bucket.records import Head
from islandsync.leader.housekeeping import KEEP_FALLBACKS, sweep


def _view(head: Head, keys: list[str]) -> HeadView:
    listed = [(int(k.rsplit("/", 1)[1][:12]), k) for k in keys]
    return HeadView(heads={0: head}, fresh={0}, checkpoints={0: listed})


def test_an_owners_upload_in_flight_outlives_any_number_of_sweeps() -> None:
    """The owner's blob above HEAD is an upload whose HEAD CAS an outage holds up: swept, the
    HEAD that lands would name a deleted blob (found by the soak: HEAD stepped back)."""
    owner, ghost = checkpoint_tag("w0"), checkpoint_tag("ghost")
    current = checkpoint_key(0, 100, owner)
    head = Head(island=0, checkpoint=current, generation=100, owner="w0")
    in_flight, stray = checkpoint_key(0, 150, owner), checkpoint_key(0, 140, ghost)
    earlier_self = checkpoint_key(0, 160, checkpoint_tag("w0"))  # a former process of w0
    view = _view(head, [current, in_flight, stray, earlier_self])
    seen: set[str] = set()
    doomed_all: list[str] = []
    for _ in range(3):
        doomed, seen = sweep(view, {0: head}, seen)
        doomed_all += doomed
    assert in_flight not in doomed_all and earlier_self not in doomed_all
    assert stray in doomed_all  # a writer that lost the island: gone at the second sweep


def test_once_another_worker_owns_the_island_a_former_owners_leftovers_go() -> None:
    old = checkpoint_tag("w0")
    current = checkpoint_key(0, 100, old)
    leftover = checkpoint_key(0, 150, old)
    head = Head(island=0, checkpoint=current, generation=100, owner="w1")
    view = _view(head, [current, leftover])
    doomed, seen = sweep(view, {0: head}, set())
    assert doomed == [] and seen == {leftover}
    doomed, _ = sweep(view, {0: head}, seen)
    assert doomed == [leftover]


def test_below_head_only_the_newest_fallbacks_off_the_lineage_stay() -> None:
    tag = checkpoint_tag("w0")
    keys = [checkpoint_key(0, g, tag) for g in (10, 20, 30, 40, 50, 60)]
    # Owned by another worker now (the owner's own blobs are never swept, see below).
    head = Head(island=0, checkpoint=keys[-1], generation=60, owner="w1", previous=[keys[-2]])
    doomed, _ = sweep(_view(head, keys), {0: head}, set())
    off_lineage = keys[:-2]
    assert sorted(doomed) == sorted(off_lineage[:len(off_lineage) - KEEP_FALLBACKS])


def test_a_claimers_upload_at_or_below_head_outlives_any_number_of_sweeps() -> None:
    """N1: a claimer that resumed an older checkpoint than HEAD's (HEAD's was unreadable)
    uploads generations at or below the HEAD it claimed until its first HEAD CAS lands; an
    outage holds that CAS up across sweeps. Swept, the HEAD that lands names a deleted blob."""
    former, claimer = checkpoint_tag("w1"), checkpoint_tag("w2")
    corrupt = checkpoint_key(0, 173, former)  # HEAD names it; unreadable
    strays = [checkpoint_key(0, g, checkpoint_tag("ghost")) for g in (171, 172)]
    # The claimer resumed generation 100 and has uploaded 120, 150, 160 meanwhile.
    uploads = [checkpoint_key(0, g, claimer) for g in (120, 150, 160)]
    head = Head(island=0, checkpoint=corrupt, generation=173, owner="w2")
    view = _view(head, [corrupt, *strays, *uploads])
    seen: set[str] = set()
    doomed_all: list[str] = []
    for _ in range(3):
        doomed, seen = sweep(view, {0: head}, seen)
        doomed_all += doomed
    assert not set(uploads) & set(doomed_all)
    assert corrupt not in doomed_all
