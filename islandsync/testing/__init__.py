"""The harness for testing islandsync and code built on it, shared by its tests and benchmarks
(like ``optuna.testing``); not imported by the package itself.

* :mod:`~islandsync.testing.processes` — real processes, free ports, bounded waits, the
  fake-gcs-server and moto S3 starters (re-exported here);
* :mod:`~islandsync.testing.cluster` — coordinators and workers through the CLI, ``Cluster``
  (a test scenario's or a benchmark run's processes);
* :mod:`~islandsync.testing.threads` — ``ThreadCluster``: coordinators and simulated workers
  as threads of one process, each role on its own ``TappedStore`` (the leader at scale);
* :mod:`~islandsync.testing.recorder` — ``Recorder``, one observer of a bucket;
* :mod:`~islandsync.testing.observe` — one-shot looks: heartbeats, ``/metrics``, quantiles;
* :mod:`~islandsync.testing.invariants` — the judges of a recorder's evidence;
* :mod:`~islandsync.testing.faulty`, :mod:`~islandsync.testing.garbage` — ``FaultyStore``;
* :mod:`~islandsync.testing.soak` — the soak, judged by
  :mod:`~islandsync.testing.soak_judging`; :mod:`~islandsync.testing.tcp_proxy` — a line that
  can be cut; :mod:`~islandsync.testing.machine` — the machine block every benchmark prints;
  :mod:`~islandsync.testing.venvs` — fresh virtual environments.

Only :mod:`processes` is imported with the package here: the others import the bucket layer
(and some torch) when a caller imports them."""

from __future__ import annotations

from islandsync.testing.processes import (
    Proc,
    Processes,
    TimedOut,
    child_env,
    cpu_seconds,
    free_port,
    islandsync_argv,
    start_fake_gcs,
    stop_all,
    wait_for,
)

__all__ = [
    "Proc", "Processes", "TimedOut", "child_env", "cpu_seconds", "free_port",
    "islandsync_argv", "start_fake_gcs", "stop_all", "wait_for",
]
