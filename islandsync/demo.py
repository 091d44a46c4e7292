"""``islandsync demo``: a whole run on this machine, no account needed.

One coordinator and N workers as separate processes on a local directory (the embedded
default store), a built-in problem that keeps improving for the whole minute (Rosenbrock in
100 dimensions: its long curved valley takes DE far longer than a minute, where Rastrigin-100
reached 0 after 30 s and the second half showed nothing moving), a live line every few
seconds with a sparkline of the global best, optionally a kill -9 of the busiest worker
mid-run to show its islands moving, and a closing summary. The coordinator writes the run's
history every second, and the demo ends by writing ``islandsync report``'s page of it (when
matplotlib, the ``plot`` extra, is installed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from islandsync.bucket.records import read_head
from islandsync.bucket.run import init_run
from islandsync.config import spec_from_flags
from islandsync.errors import ConfigError, IslandSyncError
from islandsync.views.report import PLOT_EXTRA, build_report, sparkline
from islandsync.views.status import collect_status, islands_text
from islandsync.views.results import best_genomes
from islandsync.store import open_store
from islandsync.store.probe import check_fencing

# Faster than the defaults, so that a one-minute demo shows a failure and its recovery.
DEMO_TIMINGS = {"checkpoint_interval_s": 3.0, "heartbeat_interval_s": 1.0,
                "assignment_poll_s": 0.5, "worker_timeout_s": 4.0}
LEASE, CYCLE = "6s", "1s"
#: The run's history (islandsync report): an entry a second, a segment every 5 s.
HISTORY = ("--history-every", "1s", "--history-flush", "5s")


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # N workers, few cores
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "islandsync", *args], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def _owners(store, islands: int) -> dict[int, tuple[str | None, int]]:
    out = {}
    for i in range(islands):
        try:
            current = read_head(store, i)
        except IslandSyncError:
            continue
        if current is not None:
            out[i] = (current[0].owner, current[0].generation)
    return out


def run_demo(*, workers: int = 3, duration: float = 60.0, directory: str | None = None,
             kill_one: bool = False, problem: str = "rosenbrock", dim: int = 100,
             url: str | None = None, credentials: str | None = None, out=sys.stdout) -> int:
    """Run the demo; returns the process exit code. Prints progress and a summary to ``out``.

    ``url``: the run's store (a ``gs://`` or ``s3://`` prefix, say, to see a bucket carry a
    whole run; ``credentials`` as for ``islandsync worker``); default ``DIRECTORY/run``. Logs
    and the report stay in ``directory`` either way."""
    if workers < 1:
        raise IslandSyncError("islandsync demo: --workers must be at least 1")
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="islandsync-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    url = url or str(root / "run")
    islands = max(4, 2 * workers)
    spec = spec_from_flags(problem=problem, dim=dim, islands=islands, pop=64, algorithm="de",
                           seed=1).model_copy(update=DEMO_TIMINGS)
    store = open_store(url, credentials=credentials)
    if url != str(root / "run"):
        check_fencing(store)  # as init does: never start a run on a bucket that cannot fence
    init_run(store, spec)
    # Every process reaches the store as this one did: the same credentials, if given.
    creds = ["--credentials", credentials] if credentials else []
    say = lambda text: print(text, file=out, flush=True)
    say(f"islandsync demo: {problem}-{dim}, {islands} islands of 64, DE; 1 coordinator and "
        f"{workers} workers as processes for {duration:g}s on {url}")
    say(f"  (demo timings: checkpoint every {DEMO_TIMINGS['checkpoint_interval_s']:g}s, "
        f"heartbeat {DEMO_TIMINGS['heartbeat_interval_s']:g}s, worker timeout "
        f"{DEMO_TIMINGS['worker_timeout_s']:g}s, lease {LEASE}; logs in {root})")
    procs = {"coordinator": _spawn(["coordinate", url, "--lease", LEASE, "--interval", CYCLE,
                                    "--candidate-id", "demo-coordinator", *HISTORY, *creds],
                                   root / "coordinator.log")}
    for k in range(workers):
        wid = f"demo-w{k}"
        procs[wid] = _spawn(["worker", url, "--no-coordinator", "--quiet", "--device", "cpu",
                             "--worker-id", wid, *creds], root / f"{wid}.log")
    started = time.monotonic()
    kill = _KillOne(store, islands, procs, started, say,
                    kill_at=started + duration / 3 if kill_one and workers > 1 else None)
    best_over_time: list[tuple[float, float | None]] = []
    next_line = started + 5.0
    try:
        while (now := time.monotonic()) < started + duration:
            kill.look(now)
            if now >= next_line:
                next_line = now + 5.0
                line, best = _progress_line(store, now - started)
                best_over_time.append((now - started, best))
                say(f"{line}  {sparkline([b for _, b in best_over_time], width=24)}")
            time.sleep(0.25)
    except KeyboardInterrupt:
        say("interrupted: stopping the processes")
    finally:
        _stop(procs)
    _summary(store, say, best_over_time, kill.victim, kill.killed_at, kill.recovered_at, url)
    _report(store, root, say)
    return 0


class _KillOne:
    """``--kill-one``: at ``kill_at`` kill -9 the worker hosting the most islands, then watch
    until each of its islands has an owner other than it and a generation past the one it had
    (evolving elsewhere): the recovery the demo shows. ``kill_at`` None: nothing happens."""

    def __init__(self, store, islands: int, procs: dict[str, subprocess.Popen],
                 started: float, say, *, kill_at: float | None) -> None:
        self.store, self.islands, self.procs, self.say = store, islands, procs, say
        self.started, self.kill_at = started, kill_at
        self.victim: str | None = None
        self.lost: dict[int, int] = {}  # the victim's islands and their generations then
        self.killed_at: float | None = None
        self.recovered_at: float | None = None

    def look(self, now: float) -> None:
        if self.kill_at is not None and now >= self.kill_at and self.victim is None:
            self._kill(now)
        if self.victim is not None and self.recovered_at is None:
            self._watch(now)

    def _kill(self, now: float) -> None:
        owners = _owners(self.store, self.islands)
        counts: dict[str, int] = {}
        for owner, _ in owners.values():
            if owner in self.procs:
                counts[owner] = counts.get(owner, 0) + 1
        if not counts:
            return
        victim = self.victim = max(counts, key=lambda w: (counts[w], w))
        self.lost = {i: g for i, (o, g) in owners.items() if o == victim}
        self.procs[victim].send_signal(signal.SIGKILL)
        self.killed_at = now
        self.say(f"[{now - self.started:5.1f}s] kill -9 {victim} (islands "
                 f"{islands_text(list(self.lost))})")

    def _watch(self, now: float) -> None:
        owners = _owners(self.store, self.islands)
        if all(i in owners and owners[i][0] not in (self.victim, None)
               and owners[i][1] > g for i, g in self.lost.items()):
            self.recovered_at = now
            moved = ", ".join(f"{i} -> {owners[i][0]}" for i in sorted(self.lost))
            self.say(f"[{now - self.started:5.1f}s] recovered in "
                     f"{now - (self.killed_at or now):.1f}s: islands {moved} evolving again")


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    """SIGTERM every process still running, then wait for each (a minute at most: kill)."""
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


def _report(store, root: Path, say) -> None:
    try:
        path = build_report(store, html_path=root / "report.html")
    except ConfigError:
        say(f"  report: needs matplotlib: {PLOT_EXTRA}; then islandsync report {store.url}")
        return
    except IslandSyncError as err:
        say(f"  report: not written: {err}")
        return
    say(f"  report: {path} (open it in a browser: the whole run, no network needed)")


def _progress_line(store, elapsed: float) -> tuple[str, float | None]:
    try:
        st = collect_status(store)
    except IslandSyncError as err:
        return f"[{elapsed:5.1f}s] status unavailable: {err}", None
    per: dict[str, int] = {}
    for w in st["workers"]:
        if w["alive"]:
            per[w["id"]] = len(w["islands"] or [])
    rate = sum(w["rate"] or 0 for w in st["workers"] if w["alive"])
    leader = st["leader"]["holder"] if st["leader"] else "none"
    elite = st["elite"] or {}
    best = elite.get("best", st["best"])
    best_text = "-" if best is None else f"{best:.6g}"
    shares = ", ".join(f"{w} {n}" for w, n in sorted(per.items())) or "none"
    return (f"[{elapsed:5.1f}s] best {best_text}  {rate:,.0f} evals/s  "
            f"{st['evaluations']:,} evals  leader {leader}  elite epoch {elite.get('epoch', '-')}  "
            f"islands per worker {shares}"), best


def _summary(store, say, best_over_time, victim, killed_at, recovered_at, url) -> None:
    st = collect_status(store)
    say("")
    say("summary")
    best_text = "-" if st["best"] is None else f"{st['best']:.6g}"
    say(f"  evaluations {st['evaluations']:,}; best {best_text}")
    known = [(t, b) for t, b in best_over_time if b is not None]
    if known:
        say(f"  global best over time ({known[0][0]:.0f}s to {known[-1][0]:.0f}s): "
            f"{known[0][1]:.6g} -> {known[-1][1]:.6g}")
        say(f"    {sparkline([b for _, b in best_over_time], width=60)}")
    per: dict[str, list[int]] = {}
    for i in st["islands"]:
        per.setdefault(i.get("owner") or "-", []).append(i["id"])
    say("  islands per worker (last owners): "
        + "; ".join(f"{w} {islands_text(ids)}" for w, ids in sorted(per.items())))
    if victim is not None:
        if recovered_at is not None:
            say(f"  recovery: {victim} killed; its islands were evolving elsewhere "
                f"{recovered_at - killed_at:.1f}s later")
        else:
            say(f"  recovery: {victim} killed; its islands had not moved by the end")
    try:
        best = best_genomes(store, top=3)
        say(f"  top genomes (elite epoch {best['epoch']}): "
            + ", ".join(f"{f:.6g} (island {i})" for f, i in zip(best["fitness"], best["island"])))
    except IslandSyncError:
        pass
    say(f"  look again: islandsync status {url}; islandsync best {url}")
