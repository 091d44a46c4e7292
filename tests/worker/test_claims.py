"""Claiming islands. An island whose HEAD is garbage is taken over with a HEAD that names the
checkpoint the island resumes from, so the leader's sweep keeps that lineage and a next owner
resumes it too, should this one die before its first upload. A solo worker's poll reads only
the HEADs that moved."""

from __future__ import annotations

from pathlib import Path

from islandsync.bucket.heads import HeadWatch
from islandsync.bucket.layout import head_key
from islandsync.bucket.records import read_head
from islandsync.bucket.run import init_run
from islandsync.leader.sweep import sweep
from islandsync.store import LocalStore
from islandsync.worker.link import BucketLink

from .test_faults import checkpointed_island
from .test_worker import fast_spec


def test_the_head_that_replaces_garbage_names_the_checkpoint_resumed(tmp_path: Path) -> None:
    store, spec, newest = checkpointed_island(tmp_path)
    store.put(head_key(0), b"\x00 not a HEAD \xff")
    link = BucketLink(store, spec, worker_id="w2", solo=True, max_islands=1, stats=dict,
                      hosted=set)
    link._poll()
    [claim] = link.take().claims
    assert claim.snapshot is not None and claim.snapshot.generation == newest.generation
    head = read_head(store, 0)[0]
    assert (head.owner, head.checkpoint, head.generation) == \
        ("w2", newest.checkpoint, newest.generation)
    assert head.evals == newest.evals
    # The sweep, twice (orphans go at the second), spares the resumed checkpoint.
    view = HeadWatch(store, spec.islands).look()
    seen: set[str] = set()
    for _ in range(2):
        doomed, seen = sweep(view, view.heads, seen)
        assert newest.checkpoint not in doomed
    # The next owner, should w2 die now, resumes the same checkpoint.
    other = BucketLink(store, spec, worker_id="w3", solo=True, max_islands=1, stats=dict,
                       hosted=set)
    again = other.claim(0, read_head(store, 0))
    assert again is not None and again.snapshot is not None
    assert again.snapshot.generation == newest.generation


def _quiet_poll_reads(tmp_path: Path, islands: int) -> int:
    """Class B operations of a solo worker's poll when nothing moved: the other islands are
    owned by a live worker whose HEADs stand still."""
    from islandsync.bucket.records import Head, write_head
    from islandsync.store.counting import CountingStore

    inner = LocalStore(tmp_path / f"run{islands}")
    spec = fast_spec(islands=islands)
    init_run(inner, spec)
    for i in range(islands):
        write_head(inner, Head(island=i, owner="other"), if_generation=0)
    store = CountingStore(inner)
    link = BucketLink(store, spec, worker_id="w", solo=True, max_islands=islands,
                      stats=dict, hosted=set)
    link.liveness.alive = lambda worker: True  # "other" beats on
    link._poll()
    assert link.take().claims == []
    before = store.counts()["ops"]["B"]
    link._poll()
    return store.counts()["ops"]["B"] - before


def test_a_solo_workers_quiet_poll_reads_no_head_that_did_not_move(tmp_path: Path) -> None:
    """One listing tells which HEADs moved: a poll's reads do not grow with the islands."""
    assert _quiet_poll_reads(tmp_path, 2) == _quiet_poll_reads(tmp_path, 16)
