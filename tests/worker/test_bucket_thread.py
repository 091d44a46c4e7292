"""The worker's bucket thread reads what others wrote within the run's bounds (issue 18)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from islandsync.bucket.elites import encode_elite
from islandsync.bucket.ids import genome_ids_numpy
from islandsync.bucket.layout import LEASE_KEY, elite_key
from islandsync.bucket.records import EliteHead, LeaseRecord, write_elite_head, write_record
from islandsync.config import spec_from_flags
from islandsync.store import LocalStore
from islandsync.store.counting import CountingStore
from islandsync.worker.bucket_thread import BucketLink

SPEC = spec_from_flags(problem="rastrigin", dim=10, pop=16, islands=2, elite_size=4)


def _epoch(store, epoch: int, rows: int) -> None:
    genomes = np.zeros((rows, 10), np.float32)
    elite = (genomes, np.zeros(rows, np.float32), genome_ids_numpy(genomes),
             np.zeros(rows, np.int64))
    store.put(elite_key(epoch), encode_elite(elite, epoch=epoch, term=1))
    found = store.stat("elite/HEAD.json")
    write_elite_head(store, EliteHead(epoch=epoch, key=elite_key(epoch), term=1, size=rows),
                     if_generation=found.generation if found else 0)


def test_an_elite_beyond_the_runs_shapes_is_refused_once_and_not_fetched_again(
        tmp_path: Path) -> None:
    """N4: the worker read elites with no caps (an 18.7 KiB epoch decoded to 576 MiB), and a
    refused epoch was downloaded and decompressed again on every poll."""
    store = CountingStore(LocalStore(tmp_path))
    write_record(store, LEASE_KEY, LeaseRecord(holder="c", term=1, lease_s=3.0))  # vouches
    link = BucketLink(store, SPEC, worker_id="w", solo=False, max_islands=1, stats=dict,
                      hosted=set)
    _epoch(store, 1, rows=100_000)  # 4 MB of genomes in a few KiB; the run keeps 4
    link._read_elite()
    assert link.take().foreign is None
    before = store.counts()["bytes_read"]
    for _ in range(3):
        link._read_elite()
    assert store.counts()["bytes_read"] == before, "the refused epoch was fetched again"
    _epoch(store, 2, rows=4)  # the next epoch is read as usual
    link._read_elite()
    inbox = link.take()
    assert inbox.foreign_epoch == 2 and inbox.foreign[0].shape == (4, 10)
