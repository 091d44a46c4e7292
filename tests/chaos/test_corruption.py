"""Corrupt and truncated blobs written into the bucket: the newest elite epochs (garbage and a
truncated copy) under a leader that must load them after a failover, and the checkpoints that
the HEADs of a killed worker's islands name. The new leader skips the bad epochs and keeps
merging without the global best getting worse; the workers that claim the islands fall back to
the previous checkpoint, never to scratch."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from islandsync.bucket.checkpoints import encode_island, load_island
from islandsync.bucket.layout import checkpoint_key, elite_key, parse_elite_key
from islandsync.bucket.records import Head, read_elite_head, read_head, write_head
from islandsync.bucket.run import init_run
from islandsync.search.problems import make_problem
from islandsync.store import open_store
from islandsync.testing.cluster import Cluster, cluster_spec
from islandsync.testing.invariants import (
    Fallback,
    check_elites,
    check_heads_readable,
    check_lineage,
    check_resumed,
    check_working,
    wait_hosting,
    wait_islands_advance,
)
from islandsync.testing.processes import wait_for
from islandsync.worker.engine import Engine
from islandsync.worker.bucket_thread import BucketLink

from .conftest import CHAOS_PATH, KINDS, run_url

ISLANDS = 6
GARBAGE = b"\x00\xffnot a checkpoint, not even close\xfe" * 8


@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_elites_and_checkpoints(kind: str, tmp_path: Path,
                                        request: pytest.FixtureRequest) -> None:
    url = run_url(kind, tmp_path, request)
    with Cluster(url, tmp_path, pythonpath=CHAOS_PATH) as cl:
        store = cl.store
        init_run(store, cluster_spec())
        with cl.recorder(ISLANDS) as rec:
            cl.coordinator("c0")
            try:
                wait_for(lambda: rec.assignments(), 60, "c0 leading")
                cl.coordinator("c1")
                cl.worker("w0")
                cl.worker("w1")
                wait_islands_advance(rec, store, ISLANDS, owners={"w0", "w1"}, timeout=60)
                wait_hosting(rec, ISLANDS, {"w0", "w1"})
                wait_for(lambda: len(rec.elite_epochs) >= 3, 30, "three elite epochs")

                # -- the two newest elite epochs, under a leader that has to read them -------
                cl.kill("c0")
                newest = read_elite_head(store)[0]
                bad_elites = {newest.key, elite_key(newest.epoch - 1)}
                data = store.get(newest.key).data
                store.put(newest.key, data[: len(data) // 2])
                store.put(elite_key(newest.epoch - 1), GARBAGE)
                fallback_above = any((e := parse_elite_key(i.key)) and e > newest.epoch
                                     for i in store.list("elite/"))
                cl.mark(f"elite epochs {newest.epoch - 1}, {newest.epoch} corrupted")
                wait_for(lambda: len(rec.elite_epochs) >= 2 and rec.elite_epochs[-1].term >= 2
                         and rec.elite_epochs[-2].term >= 2, 30,
                         "c1 leading and merging two epochs past the bad ones")
                after = [e for e in rec.elite_epochs if e.term >= 2]
                assert after[0].epoch > newest.epoch, (newest.epoch, after)
                log = cl.procs["c1"].text()
                # The epoch HEAD names is read first and must be reported; the one below it
                # only when c1 fell back that far (a blob c0 wrote for the next epoch before
                # it died, never named by HEAD, is a valid elite and comes first).
                assert newest.key in log and "unreadable" in log, f"c1 did not report {newest.key}"
                older = elite_key(newest.epoch - 1)
                assert fallback_above or older in log, f"c1 did not report {older}"

                # -- the checkpoints HEAD names, for two islands of a killed worker -----------
                # (the new leader may have moved islands for balance: kill whichever worker
                # hosts more of them, at least three of the six)
                hosts = [h.owner for i in range(ISLANDS) if (h := read_head(store, i)[0])]
                victim = max(("w0", "w1"), key=hosts.count)
                survivor = "w1" if victim == "w0" else "w0"
                killed_at = cl.kill(victim)
                time.sleep(0.3)
                before = {i: h for i in range(ISLANDS)
                          if (h := read_head(store, i)[0]).owner == victim and h.checkpoint}
                assert len(before) >= 2, before
                a, b = sorted(before)[:2]
                blob = store.get(before[b].checkpoint).data
                store.put(before[a].checkpoint, GARBAGE)
                store.put(before[b].checkpoint, blob[: len(blob) // 2])
                cl.mark(f"checkpoints of islands {a} (garbage), {b} (truncated) corrupted")
                fallbacks = {}
                for i in (a, b):
                    snap = load_island(store, i, before[i])
                    assert snap is not None and snap.meta["key"] != before[i].checkpoint
                    fallbacks[i] = Fallback(frozenset({before[i].checkpoint}), snap.generation)
                wait_for(lambda: all((h := rec.latest(i)) is not None and h.owner == survivor
                                     and h.checkpoint != before[i].checkpoint
                                     for i in before), 30, f"{survivor} resuming {sorted(before)}")
                check_resumed(rec, before, victim, killed_at,
                              floor={i: fb.floor for i, fb in fallbacks.items()})
                log = cl.procs[survivor].text()
                for i in (a, b):
                    assert f"skipping checkpoint {before[i].checkpoint}" in log, i
                assert "restarting it from the seed" not in log
                wait_islands_advance(rec, store, ISLANDS, owners={survivor}, timeout=30)
                check_working(rec, [survivor])
            finally:
                cl.stop()
        cl.check_clean_exits()
        check_lineage(rec, fallbacks)
        check_elites(rec, min_epochs=5, unreadable_ok=bad_elites)
        rec.check_single_leader_per_term()
        check_heads_readable(store, ISLANDS)


# -- a lineage fork through an orphan below HEAD (in-process, deterministic) -----------------


def test_fallback_never_resumes_from_an_orphan_below_head(tmp_path: Path) -> None:
    """A owns the island, checkpoints at 10, writes its blob at 13 and is killed before its
    HEAD CAS (an orphan). B claims at 10 (correctly), checkpoints at 20, dies, and its blob at
    20 is corrupt. C must fall back to 10, the last checkpoint of HEAD's lineage: 13 is a
    branch that HEAD never named."""
    store = open_store(str(tmp_path / "run"))
    spec = cluster_spec(islands=1)
    init_run(store, spec)

    def engine(snapshot=None) -> Engine:
        e = Engine(spec, make_problem("rastrigin"), torch.device("cpu"))
        e.add_snapshot(snapshot) if snapshot is not None else e.add_fresh([0])
        return e

    def save(e: Engine, tag: str) -> tuple[str, int]:
        snap = e.snapshot()[0]
        key = checkpoint_key(0, snap.generation, tag)
        store.put(key, encode_island(snap, elite=8, meta={"owner": tag}))
        return key, snap.generation

    def claim(worker: str):
        link = BucketLink(store, spec, worker_id=worker, solo=True, max_islands=1,
                          stats=dict, hosted=set)
        return link.claim(0, read_head(store, 0))

    gen = write_head(store, Head(island=0, owner="A"), if_generation=0)
    a = engine()
    for _ in range(10):
        a.step()
    key_a, gen_a = save(a, "A")
    write_head(store, Head(island=0, checkpoint=key_a, generation=gen_a, owner="A"),
               if_generation=gen)
    for _ in range(3):
        a.step()
    orphan, _ = save(a, "A")  # killed here: HEAD still names key_a

    claim_b = claim("B")
    assert claim_b.snapshot_key == key_a
    b = engine(claim_b.snapshot)
    for _ in range(10):
        b.step()
    key_b, gen_b = save(b, "B")
    # As B's uploader writes it: the lineage goes on from the checkpoint B resumed from.
    write_head(store, Head(island=0, checkpoint=key_b, generation=gen_b, owner="B",
                           previous=claim_b.lineage), if_generation=claim_b.head_generation)
    blob = store.get(key_b).data
    store.put(key_b, blob[: len(blob) // 2])  # B dies; its last checkpoint is truncated

    claim_c = claim("C")
    assert claim_c.snapshot_key == key_a, (
        f"C resumed from {claim_c.snapshot_key}; HEAD's lineage is {key_a} -> {key_b}, "
        f"and {orphan} is an orphan of A")
