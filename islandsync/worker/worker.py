"""The worker: steps its islands on one device while the bucket is handled around it.

The loop of docs/design.md. Only two things ever block it: the device-to-host copy of a
checkpoint snapshot (measured as ``checkpoint_blocked_s``) and the final flush on exit.
Uploads run in :mod:`islandsync.worker.uploader`, every other bucket call in
:mod:`islandsync.worker.bucket_thread`; the start check and the stop rules are in
:mod:`islandsync.worker.stopping`.

The loop notes the time of every iteration; the heartbeat thread stops vouching for it when
that is older than ``stall_s``, or when the uploader or the poll thread has died. A thread that
keeps failing stops the worker, and :meth:`Worker.run` raises :class:`WorkerFailed` naming it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from islandsync import __version__
from islandsync.bucket.layout import PROTOCOL_VERSION, WORKER_ID_RE
from islandsync.bucket.records import MAX_LIVE_ISLANDS, Head
from islandsync.bucket.run import read_spec
from islandsync.config import RunSpec, check_fitness, spec_hash, to_fitness
from islandsync.errors import ConfigError, IslandSyncError
from islandsync.search.problems import make_problem
from islandsync.store import BlobStore
from islandsync.store.counting import CountingStore
from islandsync.worker.devices import device_label
from islandsync.worker.engine import Engine, FitnessError, resolve_devices
from islandsync.worker.bucket_thread import BucketLink, default_worker_id
from islandsync.worker.options import WorkerOptions
from islandsync.worker.progress import RateMeter, UserCallback, make_progress
from islandsync.worker.stopping import check_id_free, run_deadline, run_totals, stop_reason
from islandsync.worker.uploader import Uploader, checkpoint_tag

log = logging.getLogger(__name__)

#: Started with (store, worker id) when the loop starts; returns the function that stops it.
Companion = Callable[[BlobStore, str], Callable[[], None]]
#: The run's best (fitness, genome, island) read from the bucket once the worker has stopped;
#: composed at the edges (it merges as the leader does, and this role never imports it).
RunBest = Callable[[BlobStore], tuple[float | None, np.ndarray | None, int | None]]


@dataclass
class RunSummary:
    """What a worker did, returned by :func:`islandsync.run`. ``best_*`` are THIS worker's
    best (among the islands it hosted at the end); ``global_best_*`` the whole run's, read
    from the bucket after the final checkpoints (the merged elite and the islands' latest
    checkpoints; None when it could not be read)."""

    worker: str
    best_fitness: float | None
    best_genome: np.ndarray | None
    best_island: int | None
    generations: int  # steps this worker made
    evaluations: int  # evaluations this worker made
    islands: list[int]
    stopped: str  # why the worker stopped
    wall_s: float
    checkpoint_blocked_s: float
    island_generations: dict[int, int] = field(default_factory=dict)
    global_best_fitness: float | None = None
    global_best_genome: np.ndarray | None = None
    global_best_island: int | None = None
    callback_error: str | None = None  # what the user's callback raised (it was then dropped)


class WorkerFailed(IslandSyncError):
    """A background thread of the worker kept failing, so the worker stopped; ``summary`` is
    what it did until then (its final checkpoints were attempted as on any stop)."""

    def __init__(self, reason: str, summary: RunSummary | None = None) -> None:
        super().__init__(reason)
        self.summary = summary


class Worker:
    """One worker process hosting islands of one run on one device."""

    def __init__(self, store: BlobStore, options: WorkerOptions | None = None, *,
                 spec: RunSpec | None = None, fitness: Callable | None = None,
                 companion: Companion | None = None, deadline: float | None = None,
                 on_heartbeat: Callable[[dict[str, Any]], None] | None = None,
                 callback: Callable[[dict[str, Any]], Any] | None = None,
                 run_best: RunBest | None = None, **settings: Any) -> None:
        """``options``: this worker's settings (:class:`WorkerOptions`; any field may be
        given by keyword too). Handed in rather than configured: ``spec`` (default: the
        run's), the user's ``fitness`` function, a ``companion`` started beside the loop (a
        leader candidate, composed at the edges: this role never imports the other; started
        with (store, worker id), it returns the function that stops it), the session
        ``deadline`` (``time.monotonic()`` at which it must be wound up), ``on_heartbeat``
        (each heartbeat's body), the user's progress ``callback``
        (:class:`~islandsync.worker.progress.UserCallback`) and ``run_best``, which reads
        the run's best for the summary (:data:`RunBest`)."""
        self.options = opts = WorkerOptions.of(options, **settings)
        # Counted, so that heartbeats say what this worker costs in bucket operations.
        self.store = store = store if isinstance(store, CountingStore) else CountingStore(store)
        self.spec = spec or read_spec(store)
        check_fitness(self.spec, fitness)
        self.platform = opts.platform or "local"  # the edges (api, cli) detect it
        self.worker_id = opts.worker_id or default_worker_id(self.platform)
        if not WORKER_ID_RE.match(self.worker_id):
            raise ConfigError(f"worker id {self.worker_id[:200]!r} is not valid: 1 to 128 "
                              f"letters, digits, '_', '.' or '-'")
        self.check_id, self.duration, self.solo = opts.check_id, opts.duration, opts.solo
        # One slow generation must not look like a hang.
        self.stall_s = opts.stall_s or max(300.0, 10 * self.spec.worker_timeout_s)
        self.max_islands = opts.max_islands or self.spec.islands
        self.deadline, self.companion, self.run_best = deadline, companion, run_best
        self._build_engine(opts.device, fitness)
        self.progress = make_progress(opts.progress)
        self.callback = UserCallback(callback, opts.callback_every_s)
        self._init_state()
        # Unique per process, so a restarted worker of the same id never collides with the
        # blobs of its former self (and the uploader can recognise its own HEAD writes).
        self.tag = checkpoint_tag(self.worker_id)
        self.uploader = Uploader(
            store, owner=self.worker_id, tag=self.tag,
            elite=min(self.spec.elite_size, self.spec.max_pop),
            meta={"spec_hash": spec_hash(self.spec), "direction": self.spec.problem.direction},
            to_user=self.to_user, on_lost=self._on_lost, on_fatal=self._thread_failed,
        )
        self.link = BucketLink(store, self.spec, worker_id=self.worker_id, solo=self.solo,
                               max_islands=self.max_islands, stats=self._heartbeat_stats,
                               hosted=self.hosted, on_heartbeat=on_heartbeat,
                               health=self._health, on_fatal=self._thread_failed)

    def _build_engine(self, device: str, fitness: Callable | None) -> None:
        # auto: every visible GPU, each hosting its share of the islands (Engine).
        self.devices = resolve_devices(device)
        self.device = self.devices[0]
        # The engine applies the run's direction; a built-in is always defined as minimised.
        # The params were checked by the spec (config.problems) before run.json was written.
        problem = make_problem(self.spec.problem.name, dict(self.spec.problem.params),
                               fitness=fitness,
                               direction=self.spec.problem.direction if fitness else "minimize")
        self.engine = Engine(self.spec, problem, self.devices)

    def _init_state(self) -> None:
        """The loop's own counters and what the threads share with it."""
        self.blocked_s = 0.0
        self.steps = 0
        self.evaluations = 0
        self.rate = RateMeter()
        self._lost: list[int] = []
        self._lost_lock = threading.Lock()
        self._stop_reason: str | None = None
        self._failure: str | None = None  # a background thread that gave up
        # The loop mutates _hosted, the bucket thread copies it: under one lock, so that a
        # copy never meets a set changing size (see BucketLink._poll for the claim handover).
        self._hosted: set[int] = set()
        self._hosted_lock = threading.Lock()
        self._progress_at = time.monotonic()  # the loop's last iteration
        self._foreign_epoch = -1
        self._foreign: tuple[torch.Tensor, ...] | None = None
        self._last_checkpoint = time.monotonic()
        self._remote: dict[int, Head] = {}
        self._totals: tuple[int | None, float | None] | None = None  # the leader's
        self._run_ends_at: float | None = None  # time.monotonic() when stop.duration_s is up
        self._next_look = 0.0
        # Each hosted island's numbers as of the last look (the loop replaces the dict
        # whole; the heartbeat thread only reads it): status is current between checkpoints.
        self._live: dict[int, dict[str, Any]] = {}
        self.assignment_epoch = 0
        self._stop_companion: Callable[[], None] | None = None

    # -- helpers -------------------------------------------------------------------------

    def to_user(self, score: float) -> float | None:
        if not np.isfinite(score):
            return None
        return to_fitness(self.spec.problem.direction, score)

    def _on_lost(self, island: int) -> None:
        with self._lost_lock:
            self._lost.append(island)

    def request_stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason

    def hosted(self) -> set[int]:
        """A copy of the islands the loop hosts (safe from any thread)."""
        with self._hosted_lock:
            return set(self._hosted)

    def _thread_failed(self, reason: str) -> None:
        if self._failure is None:
            self._failure = reason
        self.request_stop(reason)

    def _health(self) -> str | None:
        """What keeps this worker from doing the work its heartbeat vouches for, or None."""
        stalled = time.monotonic() - self._progress_at
        if stalled > self.stall_s:
            return f"the worker loop made no progress for {stalled:.0f} s"
        if not self.uploader.alive():
            return self.uploader.error or "the checkpoint uploader has stopped"
        return None

    def _heartbeat_stats(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "device": device_label(self.devices, self.spec),
            "islands": sorted(self.hosted()),
            "rate": round(self.rate.rate, 3),
            "generations": self.steps,
            "evaluations": self.evaluations,
            "checkpoint_blocked_s": round(self.blocked_s, 6),
            "checkpoint": self.uploader.stats.heartbeat(),
            "store": self.store.counts(),
            "max_islands": self.max_islands,
            "deadline_in_s": (None if self.deadline is None
                              else round(self.deadline - time.monotonic(), 1)),
            "assignment_epoch": self.assignment_epoch,
            "solo": self.solo,
            "live": self._live,
        }

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> RunSummary:
        """Evolve until a stop; the summary says why. Raises FitnessError when the fitness
        function raised, WorkerFailed when a background thread kept failing, ConfigError when
        another live worker uses this worker id."""
        try:
            if self.check_id:
                check_id_free(self.store, self.worker_id, self.spec.heartbeat_interval_s)
            self._run_ends_at = run_deadline(self.store, self.worker_id,
                                             self.spec.stop.duration_s, self.link.beat_now)
        except BaseException:
            self.uploader.close(timeout=1)
            raise
        started = time.monotonic()
        restore = _install_signal_handlers(self.request_stop)
        self._progress_at = started
        self.link.start()
        if self.companion is not None:
            self._stop_companion = self.companion(self.store, self.worker_id)
        error: BaseException | None = None
        try:
            self._loop(started)
        except KeyboardInterrupt:
            self.request_stop("interrupted")
        except FitnessError as err:
            error = err
            self.request_stop("fitness error")
        finally:
            restore()
            self._shutdown()
        summary = self._summary(started)
        if self.run_best is not None and self._failure is None:  # not after bucket trouble
            (summary.global_best_fitness, summary.global_best_genome,
             summary.global_best_island) = self.run_best(self.store)
        now = time.monotonic()
        self.callback.call(self._callback_view(started, now, stopped=summary.stopped), now)
        summary.callback_error = self.callback.error
        self.progress.close(summary)
        if error is not None:
            raise error
        if self._failure is not None:
            raise WorkerFailed(f"worker {self.worker_id} stopped: {self._failure}", summary)
        return summary

    def _loop(self, started: float) -> None:
        spec = self.spec
        since_migration = 0
        while self._stop_reason is None:
            self._progress_at = time.monotonic()
            self._apply_inbox()
            if self._stop_reason is not None:
                break
            if self.duration is not None and time.monotonic() - started >= self.duration:
                self.request_stop("duration elapsed")
                break
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.request_stop("session deadline")
                break
            if not self._hosted:
                self.progress.update(self._view())
                self._maybe_call_back(started)
                time.sleep(0.1)
                continue
            made = self.engine.step()
            self.steps += 1
            self.evaluations += made
            self.rate.add(made)
            since_migration += 1
            if since_migration >= spec.migration.interval:
                since_migration = 0
                self.engine.migrate(self._foreign)
            now = time.monotonic()
            if now - self._last_checkpoint >= spec.checkpoint_interval_s:
                self._checkpoint()
            # Both read values off the device, so not every generation: a sync per step
            # would cost a GPU much of its throughput.
            if now >= self._next_look:
                self._next_look = now + 0.25
                self._check_stop_criteria()
                self.progress.update(self._view())
                self._maybe_call_back(started)

    def _apply_inbox(self) -> None:
        inbox = self.link.take()
        with self._lost_lock:
            lost, self._lost = self._lost, []
        if lost:
            self.engine.remove(lost)
            with self._hosted_lock:
                self._hosted -= set(lost)
        for claim in inbox.claims:
            if claim.island in self._hosted:
                # Never host an island twice: the engine would step two copies and the
                # uploader fence one out. The claim's write is this process's: the uploader
                # learns its nonce, so that reading HEAD back it takes the claim as its own.
                log.warning("island %d claimed again while hosted; keeping the hosted one",
                            claim.island)
                self.uploader.also_ours(claim.island, claim.nonce)
                self.link.claimed(claim.island)
                continue
            if claim.snapshot is not None:
                self.engine.add_snapshot(claim.snapshot)
            else:
                self.engine.add_fresh([claim.island])
            resumed = None
            if claim.snapshot is not None and claim.snapshot_key is not None:
                resumed = (claim.snapshot.generation, claim.snapshot_key)
            self.uploader.adopt(claim.island, claim.head_generation, claim.keys, resumed,
                                claim.lineage)
            with self._hosted_lock:  # hosted first, then claimed(): see BucketLink._poll
                self._hosted.add(claim.island)
            self.link.claimed(claim.island)
            log.info("island %d claimed at generation %d", claim.island,
                     self.engine.generations[claim.island])
        release = sorted(inbox.release & self._hosted)
        if release:
            self._checkpoint(release, release=True)
            self.engine.remove(release)
            with self._hosted_lock:
                self._hosted -= set(release)
            log.info("islands %s released: assigned to another worker", release)
        self.assignment_epoch = inbox.assignment_epoch
        self._remote = inbox.remote
        self._totals = inbox.totals
        if inbox.finished is not None:
            self.request_stop(f"run finished: {inbox.finished.reason}")
        if inbox.foreign is not None and inbox.foreign_epoch != self._foreign_epoch:
            self._foreign_epoch = inbox.foreign_epoch
            g, s, ids, origin = inbox.foreign
            mine = np.isin(origin, list(self._hosted))  # ours are fresher on the device
            self._foreign = tuple(
                torch.as_tensor(a[~mine], device=self.device) for a in (g, s, ids, origin))

    def _checkpoint(self, islands: list[int] | None = None, *, release: bool = False) -> None:
        """Hand host copies of ``islands`` (all hosted ones by default) to the uploader;
        ``release`` gives them up in their HEADs once written."""
        t0 = time.perf_counter()
        snaps = self.engine.snapshot(islands)
        self.blocked_s += time.perf_counter() - t0
        for snap in snaps:
            self.uploader.submit(snap, release=release)
        if islands is None:
            self._last_checkpoint = time.monotonic()

    def _check_stop_criteria(self) -> None:
        own = sum(self.engine.evals.values())
        if self._run_ends_at is not None and time.monotonic() >= self._run_ends_at:
            self._finish("duration", own)
            return
        # The best only when a target needs it: it costs a device sync.
        best = self._best_user() if self.spec.stop.target is not None else None
        reached = stop_reason(self.spec, own_evals=own, own_best=best, remote=self._remote,
                              hosted=self._hosted, totals=self._totals)
        if reached is not None:
            self._finish(*reached)

    def _finish(self, reason: str, evals: int) -> None:
        self.link.declare_finished(reason, {"evals": int(evals), "best": self._best_user()})
        self.request_stop(f"run finished: {reason}")

    def _best_user(self) -> float | None:
        scores = self.engine.best_scores()
        return self.to_user(min(scores.values())) if scores else None

    def _shutdown(self) -> None:
        try:
            # First: no new claims, and no heartbeat vouches for a loop that has ended.
            self.link.stop()
            if self._hosted:
                self._checkpoint(release=True)
        finally:
            if self._stop_companion is not None:
                self._stop_companion()  # a candidate gives the lease up on its way out
            if not self.uploader.close(timeout=60):
                if self.uploader.error is not None:
                    log.error("final checkpoints not written: %s", self.uploader.error)
                else:
                    log.warning("final checkpoints not all written: the bucket is unreachable")
            self.link.final_heartbeat()

    # -- reporting -----------------------------------------------------------------------

    def _view(self) -> dict[str, Any]:
        gens, evals = self.engine.generations, self.engine.evals
        scores = self.engine.best_scores()  # one read off the device, for both uses
        self._live = {i: {"generation": gens[i], "evals": evals[i], "best": self.to_user(s)}
                      for i, s in sorted(scores.items())[:MAX_LIVE_ISLANDS]}
        return {
            "worker": self.worker_id,
            "islands": len(self._hosted),
            "generation": max(gens.values()) if gens else 0,
            "best": self.to_user(min(scores.values())) if scores else None,
            "rate": self.rate.rate,
            "evaluations": self.evaluations,
            "checkpoint_age": time.monotonic() - self._last_checkpoint,
            "pending_uploads": self.uploader.pending(),
        }

    def _maybe_call_back(self, started: float) -> None:
        now = time.monotonic()
        if self.callback.due(now):
            self.callback.call(self._callback_view(started, now), now)

    def _callback_view(self, started: float, now: float,
                       stopped: str | None = None) -> dict[str, Any]:
        """What the user's callback gets (README.md, "Progress in your own code"): this
        worker's numbers, the run's as far as it can tell (:func:`run_totals`), and each
        hosted island's. Reads the islands' bests off the device: not every generation."""
        scores = self.engine.best_scores()
        best = self.to_user(min(scores.values())) if scores else None
        run_evals, run_best = run_totals(
            self.spec, own_evals=sum(self.engine.evals.values()), own_best=best,
            remote=self._remote, hosted=self._hosted, totals=self._totals)
        return {
            "worker": self.worker_id,
            "elapsed_s": now - started,
            "evaluations": self.evaluations,
            "generations": self.steps,
            "rate": self.rate.rate,
            "best": best,
            "run_evaluations": run_evals,
            "run_best": run_best,
            "islands": {i: {"generation": self.engine.generations[i],
                            "evaluations": self.engine.evals[i],
                            "best": self.to_user(scores[i]) if i in scores else None}
                        for i in sorted(self.engine.generations)},
            "stopped": stopped,
        }

    def _summary(self, started: float) -> RunSummary:
        best_fit = best_genome = best_island = None
        if (best := self.engine.best()) is not None:
            score, best_genome, best_island = best
            best_fit = self.to_user(score)
        return RunSummary(
            worker=self.worker_id, best_fitness=best_fit, best_genome=best_genome,
            best_island=best_island, generations=self.steps, evaluations=self.evaluations,
            islands=sorted(self.hosted()), stopped=self._stop_reason or "stopped",
            wall_s=time.monotonic() - started, checkpoint_blocked_s=self.blocked_s,
            island_generations=dict(self.engine.generations),
        )


def _install_signal_handlers(on_signal: Callable[[str], None]) -> Callable[[], None]:
    """SIGTERM/SIGINT ask the loop to stop after this generation (final checkpoints follow).
    Only in the main thread: elsewhere Python refuses handlers, and the caller owns signals."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, lambda num, _frame: on_signal(signal.Signals(num).name))
    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return restore
