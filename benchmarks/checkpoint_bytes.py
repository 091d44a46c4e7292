#!/usr/bin/env python3
"""Bytes per checkpoint at the distributed benchmark's island (DE, pop 64, dim 100), from a
real engine's snapshot after some generations: the layout before (whole frames + elite copy)
against each genome once."""
import json

import numpy as np
import torch

from islandsync.bucket import codec
from islandsync.bucket.checkpoints import encode_island
from islandsync.config import spec_from_flags
from islandsync.search.problems import make_problem
from islandsync.testing.machine import machine_info
from islandsync.worker.engine import Engine

print(f"machine: {json.dumps(machine_info('numpy', 'torch', 'zstandard'))}")
spec = spec_from_flags(problem="rastrigin", dim=100, islands=1, pop=64, algorithm="de", seed=1)
eng = Engine(spec, make_problem("rastrigin", {}), torch.device("cpu"))
eng.add_fresh([0])
for _ in range(200): eng.step()
snap = eng.snapshot()[0]
elite = min(spec.elite_size, spec.algorithm.pop)
new = encode_island(snap, elite=elite, meta={})
a = snap.arrays
order = np.argsort(a["scores"], kind="stable")[:elite]
old = codec.encode({"island": 0, "generation": snap.generation, "evals": snap.evals, "nan_count": 0},
                   {**{f"elite.{n}": a[n][order] for n in ("genomes", "scores", "ids", "origin")}, **a})
raw = sum(v.nbytes for v in a.values())
print(f"elite {elite}, arrays {raw} B raw; before {len(old)} B, after {len(new)} B ({len(new)/len(old):.2f}x)")
