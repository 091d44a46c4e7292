"""A run's results from Python (issue 17): islandsync.status, best and history on real
short runs, the run's best in RunSummary, the progress callback, and a missing run."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import islandsync
from islandsync.api import make_worker
from islandsync.cli import main
from islandsync.errors import ConfigError, RunNotFound
from islandsync.store import open_store
from islandsync.testing.cluster import cluster_spec
from islandsync.testing.processes import wait_for
from islandsync.testing.recorder import heads
from islandsync.views.results import HISTORY_COLUMNS


def test_history_has_rows_while_a_run_with_a_leader_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook that leads its own run: its history is readable from Python while it runs
    (the leader's first entry is written in its first cycles, not after five minutes)."""
    import pandas as pd  # the test extra has it, as Kaggle and Colab do

    url = str(tmp_path / "run")
    worker = make_worker(url, spec=cluster_spec(islands=2), worker_id="nb", duration=120,
                         progress=False, lease_s=2.0)
    done: list[object] = []
    thread = threading.Thread(target=lambda: done.append(worker.run()), daemon=True)
    thread.start()
    try:
        wait_for(lambda: islandsync.history(url, as_frame=False), 60,
                 "a history entry while the run runs")
        live = islandsync.history(url)
        wait_for(lambda: sum(h.checkpoint is not None for h in heads(open_store(url), 2).values())
                 == 2, 60, "both islands checkpointed")
    finally:
        worker.request_stop("test over")
        thread.join(timeout=60)
    assert isinstance(live, pd.DataFrame) and list(live.columns) == list(HISTORY_COLUMNS)
    assert len(live) >= 1 and live["term"].iloc[0] >= 1 and live["leader"].iloc[0] == "nb"
    rows = islandsync.history(url, as_frame=False)  # plain records: the same rows
    assert isinstance(rows, list) and set(rows[0]) == set(HISTORY_COLUMNS)
    assert rows[0]["events"][0]["kind"] == "term" and rows[0]["elapsed_s"] == 0.0
    assert len(rows) >= len(live)
    monkeypatch.setitem(sys.modules, "pandas", None)  # a machine without pandas: records
    assert islandsync.history(url) == rows
    with pytest.raises(ConfigError, match="needs pandas"):
        islandsync.history(url, as_frame=True)
    # The summary carries the run's best beside this worker's.
    summary, = done
    best = islandsync.best(url, top=1)
    assert summary.global_best_fitness == pytest.approx(best["fitness"][0])
    assert summary.global_best_island in (0, 1) and summary.global_best_genome.shape == (10,)


def test_best_status_and_cli_best_on_a_solo_run(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """No leader, so no merged elite: the best comes from the islands' own checkpoints."""
    url = str(tmp_path / "run")
    summary = islandsync.run(url, spec=cluster_spec(islands=3), solo=True, duration=1.5,
                             worker_id="solo", progress=False)
    best = islandsync.best(url, top=5)
    assert best["epoch"] is None and best["islands_read"] == 3
    assert len(best["fitness"]) == 5 and best["fitness"] == sorted(best["fitness"])
    assert best["genomes"].shape == (5, 10) and len(set(best["id"])) == 5
    assert set(best["island"]) <= {0, 1, 2}
    head_bests = [h.best for h in heads(open_store(url), 3).values()]
    assert best["fitness"][0] == pytest.approx(min(head_bests))
    # One worker hosted every island: its best is the run's.
    assert summary.global_best_fitness == pytest.approx(best["fitness"][0])
    assert summary.best_fitness == pytest.approx(summary.global_best_fitness)
    np.testing.assert_array_equal(summary.global_best_genome, best["genomes"][0])
    status = islandsync.status(url)
    assert status["best"] == pytest.approx(min(head_bests)) and status["leader"] is None
    assert [i["id"] for i in status["islands"]] == [0, 1, 2]
    # The command line reads the same.
    capsys.readouterr()
    assert main(["best", url, "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "the elites of 3 islands' latest checkpoints" in out, out
    assert f"fitness {best['fitness'][0]:.10g}" in out and f"id {best['id'][0]:016x}" in out


def test_the_summary_has_the_runs_best_beside_this_workers(tmp_path: Path) -> None:
    """A worker that hosted one island of four: its best is that island's, the run's best is
    all four's."""
    url = str(tmp_path / "run")
    islandsync.run(url, spec=cluster_spec(islands=4), solo=True, duration=1.0, worker_id="a",
                   progress=False)
    summary = islandsync.run(url, solo=True, duration=0.5, worker_id="b", max_islands=1,
                             progress=False)
    assert len(summary.islands) == 1 and summary.best_fitness is not None
    run_best = islandsync.best(url, top=1)
    assert summary.global_best_fitness == pytest.approx(run_best["fitness"][0])
    assert summary.global_best_fitness <= summary.best_fitness
    assert summary.global_best_island == run_best["island"][0]
    assert summary.callback_error is None


def test_the_callback_gets_progress_at_most_every_callback_every_s(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    seen: list[dict] = []
    summary = islandsync.run(url, spec=cluster_spec(islands=2), solo=True, duration=2.0,
                             worker_id="cb", progress=False, callback=seen.append,
                             callback_every_s=0.3)
    assert len(seen) >= 3, seen
    *during, last = seen
    assert all(p["stopped"] is None for p in during) and last["stopped"] == "duration elapsed"
    # At most every callback_every_s while running (the final call comes whenever it stops).
    times = [p["elapsed_s"] for p in during]
    assert all(b - a >= 0.3 for a, b in zip(times, times[1:])), times
    assert set(last) >= {"worker", "elapsed_s", "evaluations", "generations", "rate", "best",
                         "run_evaluations", "run_best", "islands", "stopped"}
    assert last["worker"] == "cb" and last["evaluations"] == summary.evaluations
    assert sorted(last["islands"]) == [0, 1]
    assert all(set(v) == {"generation", "evaluations", "best"}
               for v in last["islands"].values())
    assert last["best"] == min(v["best"] for v in last["islands"].values())
    assert last["run_best"] == last["best"] and last["run_evaluations"] >= last["evaluations"]
    evals = [p["evaluations"] for p in seen]
    assert evals == sorted(evals) and evals[-1] > 0


def test_a_callback_that_raises_is_logged_once_and_dropped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[dict] = []

    def flaky(progress: dict) -> None:
        calls.append(progress)
        if len(calls) == 2:
            raise ValueError("my plot broke")

    with caplog.at_level(logging.ERROR, logger="islandsync"):
        summary = islandsync.run(str(tmp_path / "run"), spec=cluster_spec(islands=2),
                                 solo=True, duration=1.5, worker_id="cb", progress=False,
                                 callback=flaky, callback_every_s=0.1)
    assert summary.stopped == "duration elapsed" and summary.evaluations > 0
    assert len(calls) == 2  # never called again, not even at the end
    assert summary.callback_error == "ValueError: my plot broke"
    errors = [r for r in caplog.records if "callback" in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info and "my plot broke" in errors[0].getMessage()
    with pytest.raises(ConfigError, match="callback must be a function"):
        islandsync.run(str(tmp_path / "run"), solo=True, callback="print", progress=False)


@pytest.mark.parametrize("view", ["status", "best", "history"])
def test_a_missing_run_is_refused_and_nothing_is_created(tmp_path: Path, view: str) -> None:
    call = getattr(islandsync, view)
    missing = tmp_path / "runs" / "nosuchrun"
    for url in (str(missing), f"file://{missing}"):
        with pytest.raises(RunNotFound, match="no run at .*nosuchrun.*run.json"):
            call(url)
    empty = tmp_path / "empty"  # a directory that is not a run (a parent folder, say)
    empty.mkdir()
    with pytest.raises(RunNotFound):
        call(str(empty))
    assert not (tmp_path / "runs").exists() and list(empty.iterdir()) == []


@pytest.mark.gcs
@pytest.mark.s3
def test_a_missing_run_in_a_bucket_is_refused_and_nothing_is_written(gcs_url: str,
                                                                     s3_url: str) -> None:
    for url in (gcs_url, s3_url):
        for call in (islandsync.status, islandsync.best, islandsync.history):
            with pytest.raises(RunNotFound, match="no run at"):
                call(url)
        assert list(open_store(url).list("")) == []
