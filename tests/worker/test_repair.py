"""Taking over an island whose HEAD is garbage: the HEAD that replaces the garbage names the
checkpoint the island resumes from, so the leader's sweep keeps that lineage and a next owner
resumes it too, should this one die before its first upload."""

from __future__ import annotations

from pathlib import Path

from islandsync.bucket.heads import HeadWatch
from islandsync.bucket.layout import head_key
from islandsync.bucket.records import read_head
from islandsync.bucket.run import init_run
from islandsync.leader.sweep import sweep
from islandsync.store import LocalStore
from islandsync.worker.link import BucketLink

from .test_faults import _claimed, _snapshots, _uploader
from .test_worker import fast_spec


def test_the_head_that_replaces_garbage_names_the_checkpoint_resumed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    spec = fast_spec()
    init_run(store, spec)
    snaps = _snapshots(spec)
    up = _uploader(store)
    up.adopt(0, _claimed(store), [])
    for _ in range(3):
        up.submit(next(snaps))
        assert up.flush(10)
    up.close()
    newest = read_head(store, 0)[0]
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
