"""A DE run's trajectory, bit for bit: the engine's speed work (fewer torch calls a step,
cheaper migrations and genome ids) must leave every genome, score, id, origin, F and CR of
a seeded run exactly as they were.

The fingerprints were recorded from main at commit b1c5262, before that work, with torch
2.13 on x86: the AVX2 and AVX512 kernels agree; the DEFAULT kernels (no SIMD) round some
operations differently (rastrigin's sin, lerp), so they have their own. Elsewhere there is
nothing to compare with: record that platform's values from a commit known to be right.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from islandsync.config import spec_from_flags
from islandsync.search.problems import make_problem
from islandsync.worker.engine import Engine

# (islands, pop, dim, steps, migration interval, topology, dtype): a float32 run with pool
# migration; float64 with ring migration; two islands too big for one CPU block each, which
# takes DE's island-blocked path.
RUNS = {
    "pool-float32": (4, 16, 12, 12, 4, "pool", "float32"),
    "ring-float64": (4, 16, 12, 12, 4, "ring", "float64"),
    "blocked": (2, 8, 70_000, 3, 2, "pool", "float32"),
}
RECORDED = {
    "AVX512": {"pool-float32": "debd0bf598133efe", "ring-float64": "a9fa027afe79e551",
               "blocked": "5e97a7fac96ce544"},
    "DEFAULT": {"pool-float32": "38395211c5931c74", "ring-float64": "2efc7875864d1272",
                "blocked": "7666c72d81ed283d"},
}
RECORDED["AVX2"] = RECORDED["AVX512"]
#: This machine's fingerprints: torch 2.13 on one of the kernel sets above, else None.
CAPABILITY = torch.backends.cpu.get_cpu_capability()
HERE = RECORDED.get(CAPABILITY) if torch.__version__.startswith("2.13.") else None


def fingerprint(islands: int, pop: int, dim: int, steps: int, interval: int, topology: str,
                dtype: str) -> str:
    """sha256 (16 hex digits) of the whole state after every generation of a seeded DE run on
    rastrigin, with a migration every ``interval`` generations as the worker does."""
    spec = spec_from_flags(problem="rastrigin", dim=dim, islands=islands, pop=pop,
                           algorithm="de", migration_interval=interval, topology=topology,
                           seed=7, dtype=dtype)
    engine = Engine(spec, make_problem("rastrigin"), torch.device("cpu"))
    engine.add_fresh(list(range(islands)))
    h = hashlib.sha256()
    for gen in range(1, steps + 1):
        engine.step()
        if gen % interval == 0:
            engine.migrate()
        s = engine.state
        for t in (s.genomes, s.scores, s.ids, s.origin, s.extra["F"], s.extra["CR"]):
            h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.skipif(HERE is None, reason=f"no fingerprint recorded for torch "
                    f"{torch.__version__} with {CAPABILITY} kernels (RECORDED above)")
@pytest.mark.parametrize("run", list(RUNS))
def test_de_trajectory_is_mains(run: str) -> None:
    assert fingerprint(*RUNS[run]) == HERE[run]  # the same with 1 and 2 torch threads
