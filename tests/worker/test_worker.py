"""The worker loop on real stores: resume after kill -9, HEAD fencing, NaN, stop criteria."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import islandsync
from islandsync.bucket.checkpoints import decode_island
from islandsync.bucket.layout import island_prefix, parse_checkpoint_key
from islandsync.bucket.records import MAX_PREVIOUS, read_head
from islandsync.bucket.run import init_run
from islandsync.config import fitness_ref
from islandsync.errors import ConfigError
from islandsync.search.problems import make_problem
from islandsync.store import BlobStore, open_store
from islandsync.testing.cluster import pause_outside_store_writes, start_worker
from islandsync.testing.processes import wait_for
from islandsync.testing.recorder import heads
from islandsync.views.status import collect_status
from islandsync.worker.engine import Engine, FitnessError
from islandsync.worker.uploader import tag_writer

from ..conftest import REPO, store_kind_params, store_kind_url
from .conftest import fast_spec


def solo_run(*args, **kwargs):
    """These tests are about one worker's own loop: solo, no leader involved."""
    return islandsync.run(*args, solo=True, **kwargs)


def checkpoint_tags(store: BlobStore, island: int) -> list[tuple[int, str]]:
    return sorted((p[1], p[2]) for i in store.list(island_prefix(island))
                  if (p := parse_checkpoint_key(i.key)))


# -- in-process ------------------------------------------------------------------------------


def test_solo_worker_checkpoints_and_resumes(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    first = solo_run(url, spec=fast_spec(), duration=1.5, worker_id="w1", progress=False)
    assert first.stopped == "duration elapsed"
    assert sorted(first.islands) == [0, 1, 2, 3]
    store = open_store(url)
    before = heads(store, 4)
    assert all(h.released and h.owner == "w1" and h.generation > 0 for h in before.values())
    # Each HEAD records its lineage: the checkpoints before it, which are its only fallbacks.
    for h in before.values():
        assert h.previous and all(parse_checkpoint_key(k)[1] < h.generation for k in h.previous)
    assert all(h.generation == first.island_generations[i] for i, h in before.items())

    second = solo_run(url, duration=1.0, worker_id="w2", progress=False)
    after = heads(store, 4)
    for i in range(4):
        assert after[i].owner == "w2"
        assert after[i].generation > before[i].generation  # continued, not reset
        assert after[i].best <= before[i].best + 1e-9  # elitism: never worse
    assert second.evaluations > 0
    for i in range(4):
        # Every blob on HEAD's lineage is kept (the readers' fallbacks); of its own, a worker
        # keeps no more than that lineage (the previous owner's are the leader's to sweep).
        assert all(store.stat(k) is not None for k in after[i].lineage())
        own = [g for g, tag in checkpoint_tags(store, i) if tag_writer(tag) == "w2"]
        assert 0 < len(own) <= MAX_PREVIOUS + 1


def test_two_workers_share_islands_without_forks(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    # A generous timeout: on a loaded 2-core machine a starved heartbeat thread must not look
    # dead, or a legitimate takeover would move an island mid-test.
    spec = fast_spec(islands=6).model_copy(update={"worker_timeout_s": 15.0})
    init_run(open_store(url), spec)
    results = {}

    def work(wid: str) -> None:
        results[wid] = solo_run(url, duration=3.0, worker_id=wid, max_islands=4,
                                      progress=False)

    threads = [threading.Thread(target=work, args=(w,)) for w in ("wa", "wb")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = set(results["wa"].islands), set(results["wb"].islands)
    assert a | b == set(range(6))
    store = open_store(url)
    for i, head in heads(store, 6).items():
        # Both left cleanly: every island is released, none stays owned by a gone worker
        # (the one that stopped first may hand islands to the other on its way out).
        assert head.released and head.owner in ("wa", "wb")
        history = checkpoint_tags(store, i)
        generations = [g for g, _ in history]
        assert len(set(generations)) == len(generations), f"island {i} forked: {history}"
        owners = [tag for _, tag in history]
        switches = sum(1 for x, y in zip(owners, owners[1:]) if x != y)
        assert switches <= 1, f"island {i} changed hands back and forth: {history}"
        newest = history[-1]
        assert head.checkpoint == f"islands/{i}/{newest[0]:012d}-{newest[1]}.isz"


def test_engine_migration_injects_only_foreign_genomes() -> None:
    for topology in ("pool", "ring"):
        spec = fast_spec(islands=4, migrants=3, topology=topology)
        engine = Engine(spec, make_problem("rastrigin"), torch.device("cpu"))
        engine.add_fresh([0, 1, 2, 3])
        for _ in range(3):
            engine.step()
        before = [set(row) for row in engine.state.ids.tolist()]
        moved = engine.migrate()
        assert moved > 0
        for row, island in enumerate(engine.islands):
            for gid, origin in zip(engine.state.ids[row].tolist(),
                                   engine.state.origin[row].tolist()):
                if gid not in before[row]:
                    assert origin != island
                    if topology == "ring":
                        assert origin == (island - 1) % 4


def _nan_half(x: torch.Tensor) -> torch.Tensor:
    f = (x**2).sum(dim=1)
    f[::2] = float("nan")
    return f


def _sphere_then_fail(x: torch.Tensor) -> torch.Tensor:
    _sphere_then_fail.calls += 1
    if _sphere_then_fail.calls > 20:
        raise RuntimeError("boom")
    return (x**2).sum(dim=1)


_sphere_then_fail.calls = 0


def _custom_spec(fn, **kw):
    return fast_spec(problem="custom", dim=5, lower=-2.0, upper=2.0, fitness=fitness_ref(fn), **kw)


def test_nan_fitness_never_crashes(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    summary = solo_run(url, spec=_custom_spec(_nan_half), fitness=_nan_half, duration=1.0,
                             worker_id="w1", progress=False)
    assert summary.best_fitness is not None and summary.best_fitness >= 0
    store = open_store(url)
    from islandsync.bucket.checkpoints import load_island

    snap = load_island(store, 0, heads(store, 4)[0])
    assert snap is not None and snap.nan_count > 0


def test_fitness_exception_stops_cleanly(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    _sphere_then_fail.calls = 0
    # Islands claimed in two polls may stand at different generations: "[15, 16]".
    with pytest.raises(FitnessError,
                       match=r"islands \[0, 1, 2, 3\] at generation (\d+|\[[\d, ]+\]).*boom"):
        solo_run(url, spec=_custom_spec(_sphere_then_fail), fitness=_sphere_then_fail,
                       duration=10, worker_id="w1", progress=False)
    final = heads(open_store(url), 4)
    assert len(final) == 4 and all(h.released for h in final.values())


def test_different_fitness_or_spec_is_refused(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    init_run(open_store(url), _custom_spec(_nan_half))
    with pytest.raises(ConfigError, match="differs"):
        solo_run(url, fitness=_sphere_then_fail, duration=0.1, progress=False)
    with pytest.raises(ConfigError, match="algorithm.pop"):
        solo_run(url, spec=_custom_spec(_nan_half, pop=32), fitness=_nan_half,
                       duration=0.1, progress=False)


def test_stop_at_max_evals_finishes_the_run(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    summary = solo_run(url, spec=fast_spec(max_evals=3000), duration=30,
                             worker_id="w1", progress=False)
    assert summary.stopped == "run finished: max_evals"
    status = collect_status(open_store(url))
    assert status["finished"]["reason"] == "max_evals"
    assert status["evaluations"] >= 3000
    # A worker joining a finished run leaves at once.
    late = solo_run(url, duration=30, worker_id="w2", progress=False)
    assert late.stopped.startswith("run finished") and late.evaluations == 0


def test_stop_at_target_or_run_duration(tmp_path: Path) -> None:
    hit = solo_run(str(tmp_path / "a"), spec=fast_spec(dim=3, target=1.0), duration=30,
                         worker_id="w1", progress=False)
    assert hit.stopped == "run finished: target" and hit.best_fitness <= 1.0
    t0 = time.monotonic()
    timed = solo_run(str(tmp_path / "b"), spec=fast_spec(duration_s=1.5), duration=30,
                           worker_id="w1", progress=False)
    assert timed.stopped == "run finished: duration"
    assert time.monotonic() - t0 < 15
    assert collect_status(open_store(str(tmp_path / "b")))["finished"]["reason"] == "duration"


def test_status_json_shape(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    solo_run(url, spec=fast_spec(), duration=0.8, worker_id="w1", progress=False)
    out = subprocess.run([sys.executable, "-m", "islandsync", "status", url, "--json"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                         check=True)
    st = json.loads(out.stdout)
    assert set(st) >= {"run", "leader", "islands", "workers", "elite"}
    assert st["leader"] is None and st["elite"] is None
    assert [i["id"] for i in st["islands"]] == [0, 1, 2, 3]
    assert set(st["islands"][0]) >= {"id", "generation", "best", "owner", "head_age_s"}
    assert st["workers"][0]["id"] == "w1"
    assert set(st["workers"][0]) >= {"id", "platform", "device", "rate", "islands", "age_s", "alive"}


def test_cli_init_is_idempotent_and_shows_differences(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "islandsync", "init", url, "--problem", "rastrigin",
           "--dim", "100", "--islands", "8", "--pop", "64", "--algorithm", "de",
           "--max-evals", "800000"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert first.returncode == 0 and "created" in first.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    cmd[cmd.index("64")] = "32"
    other = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert other.returncode == 2
    assert "algorithm.pop: 64 -> 32" in other.stderr


# -- separate processes ----------------------------------------------------------------------


@pytest.mark.parametrize("kind,algorithm", [
    *store_kind_params("ga"),
    ("local", "cmaes"),  # island state (mean, sigma, covariance, paths) through the bucket
])
def test_kill9_then_restart_continues_each_island(kind: str, algorithm: str, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    url = store_kind_url(kind, tmp_path, request)
    store = open_store(url)
    spec = fast_spec(algorithm=algorithm)
    init_run(store, spec)
    proc = start_worker(url, "w1", solo=True, capture=True)
    try:
        def checkpointed() -> bool:  # one read: all() of an empty first read would be True
            found = heads(store, 4)
            return len(found) == 4 and all(h.checkpoint and h.generation >= 5
                                           for h in found.values())
        wait_for(checkpointed, 60, "first checkpoints of every island")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    before = heads(store, 4)
    assert not any(h.released for h in before.values())  # killed: nothing was released

    # A different worker must wait out the dead owner's heartbeat before taking over.
    t0 = time.monotonic()
    summary = solo_run(url, duration=6.0, worker_id="w2", progress=False)
    after = heads(store, 4)
    for i in range(4):
        assert after[i].owner == "w2"
        assert after[i].generation > before[i].generation, f"island {i} was reset"
        assert after[i].best <= before[i].best + 1e-9
        gens = [g for g, tag in checkpoint_tags(store, i) if tag_writer(tag) == "w2"]
        assert gens and min(gens) > before[i].generation  # continued from HEAD: no fork
    assert time.monotonic() - t0 >= 2.0  # waited a worker_timeout (2 s) before claiming
    assert set(summary.islands) == {0, 1, 2, 3}
    declared = {f"island.{n}" for n in spec.algorithm.island_frames(10)}
    for key in [before[0].checkpoint, after[0].checkpoint]:
        snap = decode_island(store.get(key).data, key=key, spec=spec)
        assert {n for n in snap.arrays if n.startswith("island.")} == declared


def test_paused_owner_is_fenced_out(tmp_path: Path) -> None:
    """A worker SIGSTOPped past the timeout loses its islands and never writes for them
    again after it wakes: its HEAD CAS fails and it drops them."""
    url = str(tmp_path / "run")
    store = open_store(url)
    init_run(store, fast_spec())
    proc = start_worker(url, "paused", solo=True, capture=True)
    try:
        wait_for(lambda: len(heads(store, 4)) == 4 and all(
            h.checkpoint for h in heads(store, 4).values()), 60, "first checkpoints")
        pause_outside_store_writes(proc, Path(url))
        taken = {}

        def take_over() -> None:
            taken["summary"] = solo_run(url, duration=6.0, worker_id="new",
                                              progress=False)

        t = threading.Thread(target=take_over)
        t.start()
        wait_for(lambda: all(h.owner == "new" for h in heads(store, 4).values()), 30,
                 "the takeover")
        claimed_at = {i: h.generation for i, h in heads(store, 4).items()}
        proc.send_signal(signal.SIGCONT)
        # Let it wake and try its HEAD CAS (it fails), then stop it while "new" still runs:
        # once "new" exits and releases the islands a solo worker may rightly take them back.
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
        t.join()
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode() if proc.returncode is None else out
    assert proc.returncode == 0, out
    for i in range(4):
        head = read_head(store, i)[0]
        assert head.owner == "new"
        stale = [g for g, tag in checkpoint_tags(store, i) if tag_writer(tag) == "paused"]
        assert all(g <= claimed_at[i] for g in stale), (i, stale, claimed_at[i])


@pytest.mark.gcs
def test_bucket_outage_never_stops_evolution(fake_gcs: str, gcs_url: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from islandsync.testing.tcp_proxy import TcpProxy
    from islandsync.worker.worker import Worker

    host, port = fake_gcs.rsplit("//", 1)[1].split(":")
    proxy = TcpProxy(host, int(port))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    try:
        store = open_store(gcs_url)
        init_run(store, fast_spec())
        worker = Worker(store, duration=10.0, solo=True, worker_id="w1", progress=False)
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("summary", worker.run()))
        t.start()
        wait_for(lambda: len(heads(store, 4)) == 4 and all(
            h.checkpoint for h in heads(store, 4).values()), 30, "first checkpoints")
        proxy.cut()
        steps_at_cut = worker.steps
        time.sleep(3.0)
        assert worker.steps > steps_at_cut + 10, "evolution stalled during the outage"
        assert t.is_alive()
        proxy.restore()
        t.join(timeout=120)
        summary = result["summary"]
        final = heads(store, 4)
        for i in range(4):  # the final checkpoints landed once the bucket came back
            assert final[i].generation == summary.island_generations[i]
            assert final[i].released
    finally:
        proxy.close()


def _neg_sphere(x: torch.Tensor) -> torch.Tensor:
    return -(x**2).sum(dim=1)


def test_maximised_custom_fitness(tmp_path: Path) -> None:
    spec = _custom_spec(_neg_sphere, max_evals=20000)  # a budget, not a time: load-proof
    spec = spec.model_copy(update={"problem": spec.problem.model_copy(
        update={"direction": "maximize"})})
    summary = solo_run(str(tmp_path / "run"), spec=spec, fitness=_neg_sphere,
                             duration=60, worker_id="w1", progress=False)
    assert summary.stopped == "run finished: max_evals"
    assert -0.05 < summary.best_fitness <= 0.0  # climbed to the maximum, 0 at the origin
    assert float(_neg_sphere(torch.as_tensor(summary.best_genome)[None])[0]) == pytest.approx(
        summary.best_fitness)


def test_same_seed_and_placement_give_the_same_search() -> None:
    def run_engine(groups: list[list[int]], steps: int) -> dict[int, torch.Tensor]:
        engine = Engine(fast_spec(islands=4), make_problem("rastrigin"), torch.device("cpu"))
        for group in groups:
            engine.add_fresh(group)
        for _ in range(steps):
            engine.step()
        engine.migrate()
        return {i: engine.state.genomes[r].clone() for r, i in enumerate(engine.islands)}

    a, b = run_engine([[0, 1, 2, 3]], 5), run_engine([[0, 1, 2, 3]], 5)
    assert all(torch.equal(a[i], b[i]) for i in range(4))
    # First populations depend on (seed, island) alone, whatever started beside them.
    c, d = run_engine([[0, 1, 2, 3]], 0), run_engine([[2], [0, 1], [3]], 0)
    assert all(torch.equal(c[i], d[i]) for i in range(4))
    other = Engine(fast_spec(islands=4, seed=8), make_problem("rastrigin"), torch.device("cpu"))
    other.add_fresh([0])
    assert not torch.equal(other.state.genomes[0], c[0])
