"""Helpers for testing islandsync and code built on it: real processes, free ports, bounded
waits, a fake GCS server (:mod:`islandsync.testing.processes`). Not imported by the package
itself."""

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
