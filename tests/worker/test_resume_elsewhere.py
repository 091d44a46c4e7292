"""Issue 20: a CMA-ES island whose worker is killed with ``kill -9`` and that another worker
resumes continues with the same mean, step size, covariance and paths as the uninterrupted
island would: the second worker's checkpoint equals, frame for frame, what an engine that
carries the killed worker's last checkpoint forward to the same generation holds."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import torch

import islandsync
from islandsync.bucket.checkpoints import decode_island
from islandsync.bucket.layout import island_prefix, parse_checkpoint_key, tag_writer
from islandsync.bucket.run import init_run
from islandsync.config import spec_from_flags
from islandsync.search.problems import make_problem
from islandsync.store import open_store
from islandsync.testing.cluster import start_worker
from islandsync.testing.processes import wait_for
from islandsync.testing.recorder import heads
from islandsync.worker.engine import Engine

def test_a_cmaes_island_resumed_elsewhere_continues_as_the_uninterrupted_one(
        tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    store = open_store(url)
    # One island, so that no other island's claim re-seeds it, and no migration in the window
    # (a migrant injected into a CMA-ES island changes its update).
    spec = spec_from_flags(problem="rastrigin", dim=8, islands=1, pop=12, algorithm="cmaes",
                           seed=5, checkpoint_interval_s=0.3, heartbeat_interval_s=0.5,
                           migration_interval=1_000_000).model_copy(
        update={"assignment_poll_s": 0.2, "worker_timeout_s": 2.0})
    init_run(store, spec)
    first = start_worker(url, "w1", solo=True)
    try:
        wait_for(lambda: (h := heads(store, 1).get(0)) is not None and h.checkpoint
                 and h.generation >= 5, 60, "a checkpoint of the CMA-ES island")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    killed_at = heads(store, 1)[0]
    assert killed_at.owner == "w1" and not killed_at.released

    islandsync.run(url, duration=5.0, worker_id="w2", solo=True, progress=False)
    written = sorted((p[1], info.key) for info in store.list(island_prefix(0))
                     if (p := parse_checkpoint_key(info.key)) and tag_writer(p[2]) == "w2")
    assert written, "the second worker wrote no checkpoint of the island"
    generation, key = written[0]
    assert generation > killed_at.generation
    resumed = decode_island(store.get(key).data, key=key, spec=spec)

    # The uninterrupted island: the killed worker's last checkpoint, stepped on to the same
    # generation in this process.
    last = decode_island(store.get(killed_at.checkpoint).data, key=killed_at.checkpoint,
                         spec=spec)
    engine = Engine(spec, make_problem("rastrigin"), torch.device("cpu"))
    engine.add_snapshot(last)
    while engine.generations[0] < generation:
        engine.step()
    (carried,) = engine.snapshot([0])
    frames = {n for n in carried.arrays if n.startswith("island.")}
    assert {"island.mean", "island.sigma"} <= frames, frames
    assert any("cov" in n or "diag" in n for n in frames), frames
    for name in sorted(frames | {"genomes", "scores"}):
        assert np.array_equal(resumed.arrays[name], carried.arrays[name]), name
    assert resumed.generation == carried.generation == generation
