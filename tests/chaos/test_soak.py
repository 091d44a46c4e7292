"""The soak in CI: three leader candidates and three workers (threads) share one LocalStore,
each through a FaultyStore of its own (errors, lost replies, latency, outages, a byzantine
writer), for ~35 s per seed; then every invariant of islandsync/testing/soak.py is judged,
one test per (seed, invariant), so that a failure names both.

Replay a seed: ``ISLANDSYNC_SOAK_SEED=N pytest tests/chaos/test_soak.py`` (that seed only;
``ISLANDSYNC_SOAK_SECONDS`` changes the length), or ``benchmarks/soak.py --seed N --minutes M``
for longer.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from islandsync.bucket.layout import head_key
from islandsync.bucket.records import Head, write_head
from islandsync.store import LocalStore
from islandsync.testing.recorder import HeadSeen
from islandsync.testing.soak import run_soak
from islandsync.testing.soak_judging import (
    CHECKS,
    SEED_ENV,
    SoakResult,
    judge_final_checkpoint,
    judge_lineage,
    verify_live,
)

SEEDS = [int(os.environ[SEED_ENV])] if os.environ.get(SEED_ENV) else [1, 2, 3]
SECONDS = float(os.environ.get("ISLANDSYNC_SOAK_SECONDS", "30"))

_results: dict[int, SoakResult] = {}


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory):
    def result(seed: int) -> SoakResult:
        if seed not in _results:  # one soak per seed, judged by every check
            root: Path = tmp_path_factory.mktemp(f"soak-{seed}")
            _results[seed] = run_soak(root, seed=seed, seconds=SECONDS)
            print(_results[seed].report())
        return _results[seed]
    return result


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("seed", SEEDS)
def test_soak_invariant(soak, seed: int, check: str) -> None:
    result = soak(seed)
    found = result.violations[check]
    assert not found, f"seed {seed} ({SEED_ENV}={seed} to replay)\n{result.report()}"


def test_the_soak_injects_every_kind_of_fault(soak) -> None:
    """The soak is only as good as its faults: each kind fired in some seed's run."""
    seen = set()
    for seed in SEEDS:
        seen |= {k.split(".", 1)[0] for k, n in soak(seed).faults.items() if n}
    assert {"error_before", "lost_reply", "latency", "outage", "byzantine"} <= seen, seen


# -- the judges themselves, on made-up observations: each check can fail ---------------------


def _head(at: float, generation: int, owner: str = "w0") -> HeadSeen:
    return HeadSeen(at, generation, generation, f"islands/0/{generation:012d}-{owner}.isz",
                    owner, False, None)


def test_lineage_judge_flags_a_step_back_and_a_fork_unless_garbage_explains_it() -> None:
    claimed = dataclasses.replace(_head(3.0, 12), owner="w1")  # a claim moves the owner only
    linear = [_head(1.0, 10), _head(2.0, 12), claimed, _head(4.0, 20, "w1")]
    back = [_head(1.0, 10), _head(2.0, 14), _head(3.0, 12)]
    returned = [_head(1.0, 10), _head(2.0, 14), _head(3.0, 10)]
    for seen, exempt, bad in [(linear, False, 0), (back, False, 1), (back, True, 0),
                              (returned, False, 1)]:
        result = SoakResult(seed=0, seconds=1.0)
        judge_lineage(result, 0, seen, lambda a, b, e=exempt: e)
        assert len(result.violations["lineage"]) == bad, (seen, result.violations)
    fork = [_head(1.0, 10), _head(2.0, 10, "w1")]
    result = SoakResult(seed=0, seconds=1.0)
    judge_lineage(result, 0, fork, lambda a, b: False)
    assert "forked" in result.violations["lineage"][0]


def test_checkpoint_judge_flags_a_head_naming_a_missing_blob(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    head = Head(island=0, checkpoint="islands/0/000000000012-w.isz", generation=12, owner="w")
    write_head(store, head, if_generation=0)
    result = SoakResult(seed=0, seconds=1.0)
    verify_live(store, result, 0)
    judge_final_checkpoint(store, result, 0, bad_keys=set())
    assert len(result.violations["checkpoints"]) == 2, result.violations
    result = SoakResult(seed=0, seconds=1.0)
    judge_final_checkpoint(store, result, 0, bad_keys={head_key(0)})
    assert "gone" in result.violations["checkpoints"][0]  # garbage elsewhere excuses nothing
