"""A worker's options are declared once (WorkerOptions) and taken alike by islandsync.run,
make_worker, Worker and the ``islandsync worker`` command."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import islandsync
from islandsync.api import make_worker
from islandsync.cli import build_parser
from islandsync.errors import ConfigError
from islandsync.testing.cluster import cluster_spec
from islandsync.worker.options import WorkerOptions, flag_dest


def _worker_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["worker"]


def test_the_worker_command_takes_each_option_from_the_model() -> None:
    actions = {a.dest: a for a in _worker_parser()._actions}
    for name, flag, _ in WorkerOptions.flags():
        action = actions[flag_dest(flag)]
        assert action.option_strings == [flag]
        assert action.help == WorkerOptions.model_fields[name].description
    args = build_parser().parse_args(
        ["worker", "run", "--quiet", "--no-coordinator", "--max-islands", "3",
         "--duration", "10m", "--lease", "20s", "--platform", "Kaggle", "--device", "cpu"])
    options = WorkerOptions.from_args(args)
    assert (options.progress, options.coordinator, options.max_islands, options.duration,
            options.lease_s, options.platform, options.device, options.solo) == \
        (False, False, 3, 600.0, 20.0, "kaggle", "cpu", False)
    plain = WorkerOptions.from_args(build_parser().parse_args(["worker", "run"]))
    assert plain == WorkerOptions()


def test_a_misspelt_or_bad_option_is_refused_before_anything_is_written(
        tmp_path: Path) -> None:
    # Before, the run was created first and the worker then died of a TypeError.
    url = tmp_path / "run"
    with pytest.raises(ConfigError, match="unknown worker option 'max_isles'"):
        make_worker(str(url), spec=cluster_spec(islands=2), max_isles=3)
    with pytest.raises(ConfigError, match="worker option duration"):
        islandsync.run(str(url), spec=cluster_spec(islands=2), duration=-1.0)
    with pytest.raises(ConfigError, match="worker option max_islands"):
        islandsync.run(str(url), spec=cluster_spec(islands=2), max_islands="2")
    assert not url.exists()


def test_options_reach_the_worker_by_model_or_by_keyword(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    options = WorkerOptions(device="cpu", max_islands=1, duration=5.0, worker_id="w-opt",
                            progress=False, coordinator=False, stall_s=42.0)
    worker = make_worker(url, options, spec=cluster_spec(islands=2))
    assert (worker.worker_id, worker.max_islands, worker.duration, worker.stall_s,
            worker.companion, worker.options.device) == ("w-opt", 1, 5.0, 42.0, None, "cpu")
    # A keyword on top of a model wins; the platform's profile fills what is left.
    again = make_worker(url, options, max_islands=2, coordinator=True, solo=True)
    assert (again.max_islands, again.solo, again.companion, again.platform) == \
        (2, True, None, "local")
