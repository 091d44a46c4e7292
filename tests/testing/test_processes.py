"""islandsync.testing.processes: the one process harness of tests, chaos and benchmarks."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from islandsync.errors import IslandSyncError
from islandsync.testing.processes import (
    Processes,
    TimedOut,
    child_env,
    free_port,
    islandsync_argv,
    stop_all,
    wait_for,
)

IGNORES_TERM = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(600)")


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_wait_for_returns_or_names_what_it_waited_for() -> None:
    calls = []
    wait_for(lambda: calls.append(1) or len(calls) >= 3, 10, "three calls", every=0.001)
    assert len(calls) == 3
    with pytest.raises(TimedOut, match="timed out after 0.05s waiting for the moon") as err:
        wait_for(lambda: False, 0.05, "the moon", every=0.01)
    # pytest reports it as a failed check, and it is an islandsync error like every other
    assert isinstance(err.value, AssertionError) and isinstance(err.value, IslandSyncError)


def test_wait_for_check_ends_the_wait_early() -> None:
    def dead() -> None:
        raise RuntimeError("a process died")

    with pytest.raises(RuntimeError, match="died"):
        wait_for(lambda: False, 60, "never", check=dead)


def test_child_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/already")
    monkeypatch.setenv("DROP_ME", "1")
    env = child_env("/a", Path("/b"), drop=("DROP_ME",), EXTRA="x")
    assert env["PYTHONPATH"].split(":") == ["/a", "/b", "/already"]
    assert "DROP_ME" not in env and env["EXTRA"] == "x"
    assert env["OMP_NUM_THREADS"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert "OMP_NUM_THREADS" not in child_env(threads=None)


def test_islandsync_argv_runs_the_cli() -> None:
    out = subprocess.run(islandsync_argv("--version"), capture_output=True, text=True,
                         env=child_env(Path(__file__).resolve().parents[2]), timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("islandsync ")


def test_processes_log_kill_and_stop(tmp_path: Path) -> None:
    procs = Processes(tmp_path / "logs")
    talker = procs.spawn("talker", [sys.executable, "-c", "print('hello', flush=True)"],
                         role="w")
    stubborn = procs.spawn("stubborn", [sys.executable, "-c", IGNORES_TERM], role="w")
    victim = procs.spawn("victim", [sys.executable, "-c", "import time; time.sleep(600)"])
    with pytest.raises(IslandSyncError, match="used twice"):
        procs.spawn("victim", [sys.executable, "-c", "pass"])
    wait_for(lambda: "hello" in talker.text() and "ready" in stubborn.text(), 60, "output")
    assert talker.log == tmp_path / "logs" / "talker.log"
    assert talker.popen.wait(timeout=60) == 0

    procs.kill("victim")
    assert victim.killed and not victim.running and victim.popen.returncode == -9
    assert procs.live("w") == ["stubborn"] and procs.live() == ["stubborn"]
    # SIGTERM ignored: killed after the timeout, and named as such
    assert procs.stop(timeout=0.5) == ["stubborn"]
    assert not stubborn.running and not stubborn.killed  # killed by stop, not by kill()


def test_stop_all_terms_first(tmp_path: Path) -> None:
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    assert stop_all([polite], timeout=60) == []
    assert polite.returncode == -15  # SIGTERM did it
