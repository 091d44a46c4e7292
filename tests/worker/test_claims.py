"""Claiming islands. An island whose HEAD is garbage is taken over with a HEAD that names the
checkpoint the island resumes from, so the leader's sweep keeps that lineage and a next owner
resumes it too, should this one die before its first upload. A solo worker's poll reads only
the HEADs that moved."""

from __future__ import annotations

from pathlib import Path

import pytest

from islandsync.bucket.heads import HeadWatch
from islandsync.bucket.layout import head_key
from islandsync.bucket.records import Head, read_head, write_head
from islandsync.bucket.run import init_run
from islandsync.leader.housekeeping import sweep
from islandsync.store import LocalStore, open_store
from islandsync.testing.faulty import FaultyStore, LostReply
from islandsync.worker.claims import take_island
from islandsync.worker.bucket_thread import BucketLink

from .conftest import checkpointed_island, fast_spec


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


# -- a claim whose outcome is unknown (issue 18, N9) ----------------------------------------


def test_a_claim_whose_reply_was_lost_is_read_back_and_kept(tmp_path: Path) -> None:
    """The claim's HEAD CAS landed but its reply was lost: the claimer reads HEAD back (by the
    claim's nonce) and keeps the island, rather than leaving HEAD naming it while it walks
    away."""
    inner = LocalStore(tmp_path / "run")
    spec = fast_spec()
    init_run(inner, spec)
    store = FaultyStore(inner, rules=[LostReply(ops=("put",), keys=head_key(0), calls=(1,))])
    claim = take_island(store, spec, "w2", 0, None)
    assert store.counts() == {"lost_reply": 1}
    assert claim is not None and read_head(inner, 0)[0].owner == "w2"
    assert claim.head_generation == read_head(inner, 0)[1]


def test_a_lost_race_is_still_none(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    spec = fast_spec()
    init_run(store, spec)
    write_head(store, Head(island=0, owner="w1"), if_generation=0)
    assert take_island(store, spec, "w2", 0, None) is None
    assert read_head(store, 0)[0].owner == "w1"


@pytest.mark.s3
def test_a_claim_answered_503_after_it_landed_is_kept_on_s3(s3_url: str) -> None:
    """N9 on S3: a 503 was taken for "refused", the claim resent, met its own 412, and
    take_island returned None while HEAD named us."""
    from botocore.awsrequest import AWSResponse

    store = open_store(s3_url, backoff_s=0.001, max_backoff_s=0.01)
    spec = fast_spec()
    init_run(store, spec)
    sent: list[str] = []

    class Body:
        def __init__(self) -> None:
            self.body = (b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message>"
                         b"</Error>")

        def stream(self, **_: object):  # noqa: ANN202 - botocore's raw body protocol
            yield self.body

        def read(self, *_: object) -> bytes:
            body, self.body = self.body, b""
            return body

        def close(self) -> None:
            pass

    def land_then_503(request, **_: object):  # noqa: ANN001, ANN202 - botocore's hook
        if not request.url.endswith(head_key(0)):
            return None
        sent.append(request.url)
        if len(sent) > 1:
            return None
        store._client._endpoint.http_session.send(request)  # it lands, then a proxy's 503
        return AWSResponse(request.url, 503, {"Content-Type": "application/xml"}, Body())

    store._client.meta.events.register("before-send.s3.PutObject", land_then_503)
    claim = take_island(store, spec, "w2", 0, None)
    assert len(sent) == 1, "a conditional write was resent after a 503"
    assert claim is not None and read_head(store, 0)[0].owner == "w2"
