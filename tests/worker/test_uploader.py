"""The uploader (``worker/uploader.py``): a checkpoint blob, then HEAD by CAS on the
generation it wrote last. A lost reply is read back by nonce, not taken for a lost island; an
outage of HEAD writes backs off and leaves one blob above HEAD, not one per submit; a zombie of
our worker id never writes on top of a restarted process's claim; retention keeps HEAD's whole
lineage and deletes only blobs of its own. (Moved from test_faults.py, issue 10 and 18.)"""

from __future__ import annotations

import time
from pathlib import Path

from islandsync.bucket.layout import checkpoint_key, parse_checkpoint_key
from islandsync.bucket.records import MAX_PREVIOUS, read_head, write_head
from islandsync.bucket.run import init_run
from islandsync.store import LocalStore
from islandsync.testing.faulty import ErrorBefore, FaultyStore, LostReply
from islandsync.testing.processes import wait_for

from .conftest import LostThen, claimed, fast_spec, island_snapshots, make_uploader

# -- a lost HEAD reply, an outage of HEAD writes, a zombie of our worker id -----------------


def test_a_lost_head_reply_is_read_back_and_the_island_kept(tmp_path: Path) -> None:
    inner = LocalStore(tmp_path / "run")
    gen = claimed(inner)
    store = FaultyStore(inner, rules=[LostReply(ops=("put",), keys="islands/0/HEAD.json",
                                                calls=(1,))])
    lost: list[int] = []
    up = make_uploader(store, lost=lost)
    up.adopt(0, gen, [])
    snaps = island_snapshots(fast_spec())
    try:
        first = next(snaps)
        up.submit(first)
        assert up.flush(30)
        head = read_head(inner, 0)[0]
        assert store.counts() == {"lost_reply": 1}
        assert lost == [], "the island was dropped after its own HEAD write landed"
        assert head.generation == first.generation and inner.stat(head.checkpoint) is not None
        second = next(snaps)
        up.submit(second)
        assert up.flush(30)
        head = read_head(inner, 0)[0]
        assert head.generation == second.generation and head.owner == "w"
        assert all(inner.stat(k) is not None for k in head.lineage())
    finally:
        up.close(5)


def test_a_lost_reply_then_a_takeover_keeps_the_blob_the_new_head_names(tmp_path: Path) -> None:
    inner = LocalStore(tmp_path / "run")
    gen = claimed(inner)

    def b_claims() -> None:  # our write landed; B takes the island before our retry
        head, g = read_head(inner, 0)
        write_head(inner, head.model_copy(update={"owner": "b", "nonce": ""}), if_generation=g)

    store = FaultyStore(inner, rules=[LostThen(ops=("put",), keys="islands/0/HEAD.json",
                                               calls=(1,), then=b_claims)])
    lost: list[int] = []
    up = make_uploader(store, lost=lost)
    up.adopt(0, gen, [])
    try:
        up.submit(next(island_snapshots(fast_spec())))
        assert up.flush(30)
    finally:
        up.close(5)
    head = read_head(inner, 0)[0]
    assert lost == [0] and head.owner == "b"
    assert inner.stat(head.checkpoint) is not None, "deleted the blob B's HEAD names"


def test_an_outage_of_head_writes_backs_off_and_leaves_one_blob_above_head(
        tmp_path: Path) -> None:
    """N8: while HEAD writes fail, submits must neither cut the backoff short nor each put a
    new full blob (22 blobs above HEAD after 7 s; a worker exiting then left them all)."""
    inner = LocalStore(tmp_path / "run")
    gen = claimed(inner)
    store = FaultyStore(inner, rules=[ErrorBefore(ops=("put",), keys="islands/0/HEAD.json",
                                                  rate=1.0)])
    up = make_uploader(store)
    up.adopt(0, gen, [])
    snaps = island_snapshots(fast_spec())
    try:
        for _ in range(20):
            up.submit(next(snaps))
            time.sleep(0.02)
        blobs = [i.key for i in inner.list("islands/0/") if i.key.endswith(".isz")]
        head_writes = store.counts().get("error_before", 0)
    finally:
        up.close(0.1)
    assert len(blobs) == 1, f"{len(blobs)} blobs above HEAD during the outage"
    # Backoff from 0.5 s doubling: a handful of tries, not one per submit (a slow machine
    # only makes fewer).
    assert head_writes <= 5, f"{head_writes} HEAD writes for 20 submits"


def test_after_an_outage_of_head_writes_head_names_a_blob_that_exists(tmp_path: Path) -> None:
    inner = LocalStore(tmp_path / "run")
    gen = claimed(inner)
    store = FaultyStore(inner, rules=[ErrorBefore(ops=("put",), keys="islands/0/HEAD.json",
                                                  calls=(1, 2))])
    up = make_uploader(store, max_backoff=0.5)
    up.adopt(0, gen, [])
    snaps = island_snapshots(fast_spec())
    try:
        up.submit(next(snaps))
        wait_for(lambda: store.counts().get("error_before", 0) >= 1, 10, "a failed HEAD write")
        last = next(snaps)
        up.submit(last)
        assert up.flush(30)
    finally:
        up.close(5)
    head = read_head(inner, 0)[0]
    blobs = {i.key for i in inner.list("islands/0/") if i.key.endswith(".isz")}
    assert head.generation == last.generation and head.checkpoint in blobs
    assert blobs <= set(head.lineage())


def test_a_zombie_of_our_worker_id_never_overwrites_a_restarted_process_claim(
        tmp_path: Path) -> None:
    """Reasoning case of issue 18: a zombie process and the restarted process share a worker
    id. The restarted one claims the island (its HEAD names the zombie's blob, owner the same
    id); the zombie's next HEAD write is refused, and reading HEAD back must not take that
    claim for a write of its own (by owner and blob tag, or by a nonce the claim copied), or
    it writes on top of the claim and the lineage forks."""
    from islandsync.worker.claims import take_island

    store = LocalStore(tmp_path / "run")
    spec = fast_spec()
    init_run(store, spec)
    lost: list[int] = []
    zombie = make_uploader(store, owner="w", lost=lost)
    zombie.adopt(0, claimed(store), [])
    snaps = island_snapshots(spec)
    try:
        zombie.submit(next(snaps))
        assert zombie.flush(30)
        claim = take_island(store, spec, "w", 0, read_head(store, 0))  # the restarted "w"
        assert claim is not None
        zombie.submit(next(snaps))
        assert zombie.flush(30)
    finally:
        zombie.close(5)
    head, version = read_head(store, 0)
    assert version == claim.head_generation, "the zombie wrote on top of the new claim"
    assert lost == [0] and head.owner == "w"
    assert store.stat(head.checkpoint) is not None


# -- retention keeps HEAD's lineage ---------------------------------------------------------


def test_retention_keeps_heads_whole_lineage_and_only_deletes_its_own(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    gen = claimed(store)
    foreign = checkpoint_key(0, 1, "someone-else")
    store.put(foreign, b"not ours")  # a previous owner's blob: never ours to delete
    up = make_uploader(store)
    up.adopt(0, gen, [foreign])
    snaps = island_snapshots(fast_spec())
    try:
        for _ in range(MAX_PREVIOUS + 4):
            up.submit(next(snaps))
            assert up.flush(30)
    finally:
        up.close(5)
    head = read_head(store, 0)[0]
    assert len(head.previous) == MAX_PREVIOUS
    missing = [k for k in head.lineage() if store.stat(k) is None]
    assert not missing, f"HEAD's lineage names deleted blobs: {missing}"
    ours = [i.key for i in store.list("islands/0/")
            if (p := parse_checkpoint_key(i.key)) and p[2] == up.tag]
    assert sorted(ours) == sorted(head.lineage())  # older ones of ours are gone
    assert store.stat(foreign) is not None
