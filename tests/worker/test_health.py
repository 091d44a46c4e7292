"""How a worker's background thread survives a bug and when it gives up
(``worker/health.py``): a failure is forgiven up to ``limit`` times within ``window`` seconds
of its own clock; one more and the thread stops, telling its worker why once."""

from __future__ import annotations

import logging

import pytest

from islandsync.worker.health import Restarts


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fail(restarts: Restarts, message: str = "boom") -> bool:
    try:
        raise RuntimeError(message)
    except RuntimeError as err:
        return restarts.failed(err)


def test_the_thread_carries_on_up_to_the_limit_then_stops_its_worker() -> None:
    fatal: list[str] = []
    restarts = Restarts("uploader", fatal.append, limit=2, window=60.0, clock=Clock())
    assert _fail(restarts) and _fail(restarts)
    assert fatal == [] and restarts.error is None
    assert not _fail(restarts, "third")
    assert fatal == ["uploader thread failed: RuntimeError: third"]
    assert restarts.error == fatal[0]


def test_failures_older_than_the_window_are_forgiven() -> None:
    clock, fatal = Clock(), []
    restarts = Restarts("poll", fatal.append, limit=2, window=60.0, clock=clock)
    assert _fail(restarts) and _fail(restarts)
    clock.now = 61.0  # both earlier failures fall out of the window
    assert _fail(restarts) and _fail(restarts)
    clock.now = 100.0  # the two at 61 s are still within it
    assert not _fail(restarts)
    assert len(fatal) == 1


def test_each_restart_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    restarts = Restarts("heartbeat", limit=1, clock=Clock())
    with caplog.at_level(logging.ERROR, logger="islandsync.worker.health"):
        assert _fail(restarts)
        assert not _fail(restarts)  # no worker to stop: the log line is all there is
    assert [r.exc_info is not None for r in caplog.records] == [True, True]
    assert "restarting it" in caplog.records[0].getMessage()
    assert "stopping the worker" in caplog.records[1].getMessage()
    assert restarts.error == "heartbeat thread failed: RuntimeError: boom"
