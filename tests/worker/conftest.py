"""Helpers the worker's tests share: a spec with short timeouts, snapshots of an evolving
island, an uploader as a worker makes one, and an island with a few checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from islandsync.bucket.checkpoints import IslandSnapshot
from islandsync.bucket.records import Head, read_head, write_head
from islandsync.bucket.run import init_run
from islandsync.config import RunSpec, spec_from_flags
from islandsync.search.problems import make_problem
from islandsync.store import BlobStore, LocalStore
from islandsync.testing.faulty import LostReply
from islandsync.worker.engine import Engine
from islandsync.worker.uploader import Uploader, checkpoint_tag


def fast_spec(**overrides) -> RunSpec:
    base = dict(problem="rastrigin", dim=10, islands=4, pop=16, algorithm="ga",
                checkpoint_interval_s=0.3, heartbeat_interval_s=0.5, seed=7)
    base.update(overrides)
    spec = spec_from_flags(**base)
    # Short timeouts so takeovers happen within a test.
    return spec.model_copy(update={"assignment_poll_s": 0.2, "worker_timeout_s": 2.0})


@dataclass(frozen=True)
class LostThen(LostReply):
    """A lost reply after which ``then`` runs (another worker acting meanwhile)."""

    then: Callable[[], None] = lambda: None

    def inject(self, store, call, seed):
        self.then()
        super().inject(store, call, seed)


def island_snapshots(spec: RunSpec, island: int = 0) -> Iterator[IslandSnapshot]:
    """Snapshots of one island, a few generations apart each."""
    engine = Engine(spec, make_problem("rastrigin"), torch.device("cpu"))
    engine.add_fresh([island])
    while True:
        for _ in range(3):
            engine.step()
        yield engine.snapshot([island])[0]


def make_uploader(store: BlobStore, owner: str = "w", lost: list | None = None,
                  **kw) -> Uploader:
    return Uploader(store, owner=owner, tag=checkpoint_tag(owner), elite=4, meta={},
                    to_user=float, on_lost=(lost if lost is not None else []).append, **kw)


def claimed(store: BlobStore, island: int = 0, owner: str = "w") -> int:
    """Create the island's HEAD owned by ``owner``; returns its generation."""
    return write_head(store, Head(island=island, owner=owner), if_generation=0)


def checkpointed_island(tmp_path: Path, checkpoints: int = 3):
    """A run whose island 0 has ``checkpoints`` checkpoints by worker "w": (store, spec, its
    HEAD)."""
    store = LocalStore(tmp_path / "run")
    spec = fast_spec()
    init_run(store, spec)
    snaps = island_snapshots(spec)
    up = make_uploader(store)
    up.adopt(0, claimed(store), [])
    for _ in range(checkpoints):
        up.submit(next(snaps))
        assert up.flush(10)
    up.close()
    return store, spec, read_head(store, 0)[0]
