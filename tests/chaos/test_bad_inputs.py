"""Bad inputs from outside the processes: a garbage run.json, and a user's fitness function that
returns NaN and infinities for part of each batch, or raises."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from islandsync.bucket.checkpoints import load_island
from islandsync.bucket.records import read_heartbeat
from islandsync.bucket.run import init_run
from islandsync.config import fitness_ref, spec_json
from islandsync.store import open_store
from islandsync.testing.cluster import Cluster, cluster_spec, has_traceback
from islandsync.testing.invariants import (
    check_elites,
    check_heads_readable,
    check_lineage,
    wait_islands_advance,
)
from islandsync.testing.processes import wait_for

from ..conftest import REPO
from .conftest import CHAOS_DIR, CHAOS_PATH, chaos_env

ISLANDS = 4


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("islandsync: error:")]


def test_garbage_run_json_is_one_clear_error(tmp_path: Path) -> None:
    """`islandsync worker` on a run whose run.json is binary junk, and `islandsync coordinate`
    on one whose run.json is a valid spec cut short: each exits 2 with one message naming
    run.json, and no traceback."""
    cases = {
        "worker": (b"\x89\x00\xff\xfe garbage \x00" * 4,
                   ["--device", "cpu", "--quiet", "--worker-id", "w"]),
        "coordinate": (spec_json(cluster_spec())[:57],
                       ["--candidate-id", "c", "--metrics-port", "-1"]),
    }
    procs = {}
    for command, (data, extra) in cases.items():
        url = str(tmp_path / command)
        open_store(url).put("run.json", data)
        procs[command] = subprocess.Popen(
            [sys.executable, "-m", "islandsync", command, url, *extra], env=chaos_env(),
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        outputs = {k: p.communicate(timeout=120) for k, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    for command, (out, err) in outputs.items():
        text = err.decode(errors="replace")
        what = f"islandsync {command} exited {procs[command].returncode}:\n{text}"
        assert procs[command].returncode == 2, what
        assert not has_traceback(text), what
        errors = _error_lines(text)
        assert len(errors) == 1 and "run.json" in errors[0], what
        assert len(text.strip().splitlines()) == 1, f"more than the one message: {what}"
        assert out == b"", what


def _import_chaos_fitness(monkeypatch: pytest.MonkeyPatch):
    """tests/chaos/chaos_fitness.py under the module name the workers import it by."""
    monkeypatch.syspath_prepend(str(CHAOS_DIR))
    return importlib.import_module("chaos_fitness")


def _custom_spec(fn):
    return cluster_spec(problem="custom", dim=5, lower=-2.0, upper=2.0, islands=ISLANDS,
                        fitness=fitness_ref(fn))


def test_nan_and_inf_fitness_never_reach_the_elite_and_a_raising_one_stops_cleanly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs side by side. One: a fitness that gives NaN, +inf and -inf for part of every
    batch, a worker and a coordinator; no elite epoch and no HEAD ever holds a non-finite
    score, and the checkpoints count the bad values. Two: a fitness that raises after a
    while; its solo worker exits 2 with one message naming the exception, after final
    checkpoints of every island (released HEADs at the generation it stopped at)."""
    chaos_fitness = _import_chaos_fitness(monkeypatch)
    nan_url, raise_url = str(tmp_path / "nan"), str(tmp_path / "raise")
    with Cluster(nan_url, tmp_path, pythonpath=CHAOS_PATH) as cl:
        init_run(cl.store, _custom_spec(chaos_fitness.nan_inf_part))
        raise_store = open_store(raise_url)
        init_run(raise_store, _custom_spec(chaos_fitness.raise_after_a_while))
        with cl.recorder(ISLANDS) as rec:
            cl.coordinator("c0")
            cl.worker("w0", "--fitness", "chaos_fitness:nan_inf_part")
            raiser = cl.worker("w-raise", "--solo", "--fitness",
                               "chaos_fitness:raise_after_a_while", url=raise_url)
            try:
                wait_islands_advance(rec, cl.store, ISLANDS, owners={"w0"}, timeout=60)
                wait_for(lambda: len(rec.elite_epochs) >= 3, 30, "three elite epochs")
                wait_islands_advance(rec, cl.store, ISLANDS, owners={"w0"}, timeout=30)
                raiser.popen.wait(timeout=60)
            finally:
                cl.stop()
        cl.check_clean_exits(expected={"w-raise": 2})
        # the NaN run
        check_lineage(rec)
        check_elites(rec, min_epochs=3)
        heads = check_heads_readable(cl.store, ISLANDS)
        for i, head in heads.items():
            assert head.best is not None and head.best >= 0, (i, head)
            snap = load_island(cl.store, i, head)
            assert snap.nan_count > 0, f"island {i}: no NaN/inf counted"
        assert all(s.best_score is not None and s.best_score >= 0 for s in rec.elites())

        # the raising run
        text = raiser.text()
        errors = _error_lines(text)
        assert len(errors) == 1, "not one error message"
        m = re.search(r"fitness function raised on islands \[([\d, ]+)\] at generation "
                      r"(\d+|\[[\d, ]+\]): ZeroDivisionError: chaos: ", errors[0])
        assert m, errors[0]
        assert sorted(int(i) for i in m[1].split(",")) == list(range(ISLANDS)), errors[0]
        stopped_at = {int(g) for g in re.findall(r"\d+", m[2])}
        for i, head in check_heads_readable(raise_store, ISLANDS).items():
            assert head.released and head.owner == "w-raise", (i, head)
            assert head.generation > 0 and head.generation in stopped_at, (i, head, stopped_at)
        beat = read_heartbeat(raise_store, "w-raise")
        assert beat is not None and beat[0].state == "exited", beat
