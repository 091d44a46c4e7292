"""``islandsync.run``: the one call a notebook makes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from islandsync.bucket.records import check_protocol
from islandsync.bucket.run import init_run
from islandsync.config import load_fitness
from islandsync.env.opening import open_run
from islandsync.env.platforms import session_deadline
from islandsync.errors import ConfigError
from islandsync.leader.observer import CompositeObserver, CycleSeen, LeaderObserver
from islandsync.store import BlobStore
from islandsync.worker.options import WorkerOptions

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from islandsync.config import RunSpec
    from islandsync.leader.settings import LeaderSettings
    from islandsync.views.metrics import CoordinatorMetrics
    from islandsync.worker.worker import RunSummary, Worker


def run(
    run: str,
    *,
    fitness: Callable | str | None = None,
    spec: RunSpec | None = None,
    device: str = "auto",
    max_islands: int | None = None,
    duration: float | None = None,
    solo: bool = False,
    coordinator: bool = True,
    progress: bool = True,
    worker_id: str | None = None,
    credentials: Any = None,
    platform: str | None = None,
    session_limit: float | None = None,
    callback: Callable[[dict[str, Any]], Any] | None = None,
    callback_every_s: float = 5.0,
) -> RunSummary:
    """Join the run at URL ``run`` as a worker and evolve until it finishes, ``duration``
    seconds pass, or the cell is interrupted; final checkpoints are written either way.

    ``spec`` creates the run when it does not exist yet (and must match when it does).
    ``fitness`` is your own function for a run with a custom problem (or a reference to it:
    ``"fit.py:score"``, ``"module:score"``, ``"__main__:score"``); it never comes from the
    bucket, and must have the fingerprint run.json records. A function of one solution is
    wrapped: ``fitness=islandsync.per_solution(fn)``. The worker follows the run's leader;
    with ``coordinator=True`` it also stands as a candidate for leader, so notebooks alone
    make a complete run (one of them leads, and takes over when the leader's session dies).
    ``solo=True`` instead claims every island that has no live owner, with no leader needed
    (and no candidate).

    The platform (Kaggle, Colab, Paperspace or local) is detected unless ``platform`` names
    it; its profile gives the session limit (``session_limit`` seconds overrides it), before
    which the worker writes final checkpoints and stops, and the leader moves its islands
    away in time. For a ``gs://`` run, credentials are found in order: ``credentials`` (a
    path, JSON content or a google.auth object), GOOGLE_APPLICATION_CREDENTIALS, the
    platform's secret ``GCS_SERVICE_ACCOUNT`` (Kaggle/Colab secrets), Colab's sign-in, then
    Google default credentials.

    ``callback(progress)``, when given, is called from this loop's thread at most every
    ``callback_every_s`` seconds, and once more at the end, with a dict of this worker's,
    the run's and each hosted island's numbers (README.md, "Progress in your own code"); if
    it raises, the error is logged once with its traceback and the callback is dropped, and
    the search goes on (``RunSummary.callback_error`` says so).

    Returns a :class:`~islandsync.worker.worker.RunSummary`: this worker's best
    (``best_fitness``) and the run's (``global_best_fitness``), among others.
    """
    # The keyword arguments above are the documented surface; WorkerOptions checks them.
    options = WorkerOptions.of(
        device=device, max_islands=max_islands, duration=duration, solo=solo,
        coordinator=coordinator, progress=progress, worker_id=worker_id, platform=platform,
        session_limit=session_limit, callback_every_s=callback_every_s)
    return make_worker(run, options, fitness=fitness, spec=spec, credentials=credentials,
                       callback=callback).run()


#: What make_worker hands to the Worker as it is (not a setting of WorkerOptions).
_HANDED = frozenset({"callback", "on_heartbeat"})


def make_worker(run: str, options: WorkerOptions | None = None, *,
                spec: RunSpec | None = None, credentials: Any = None,
                fitness: Callable | str | None = None, **handed: Any) -> Worker:
    """The worker :func:`run` runs, not started yet: the store opened with credentials found,
    the run created from ``spec`` if given, and the platform's defaults and session deadline
    applied. ``options`` (:class:`~islandsync.worker.options.WorkerOptions`; any of its
    fields may also be given by keyword) and what is ``handed`` to the worker
    (``callback``, ``on_heartbeat``) go to :class:`~islandsync.worker.worker.Worker`."""
    from islandsync import __version__
    from islandsync.views.results import global_best
    from islandsync.worker.worker import Worker  # torch is imported only by those who step islands

    # Checked before anything is written: a misspelt option must not leave a run behind.
    settings = {k: handed.pop(k) for k in list(handed) if k not in _HANDED}
    options = WorkerOptions.of(options, **settings)
    if isinstance(fitness, str):
        fitness = load_fitness(fitness)
    started = time.monotonic()
    # Without a spec, the run must exist: a mistyped URL is refused before anything is written.
    store, profile = open_run(run, credentials=credentials, platform=options.platform,
                              existing=spec is None)
    if spec is not None:
        init_run(store, spec)
    # A worker of another bucket protocol must not write to this run: refuse, clearly.
    check_protocol(store, version=__version__)
    _say_if_not_the_published_version(store)
    companion = None
    if options.coordinator and not options.solo:
        from islandsync.leader.settings import LeaderSettings

        companion = leader_candidate(LeaderSettings(lease_s=options.lease_s))
    options = options.model_copy(update={
        "max_islands": options.max_islands or profile.default_max_islands,
        "platform": profile.name})
    return Worker(store, options, fitness=fitness, companion=companion, run_best=global_best,
                  deadline=session_deadline(profile, started=started,
                                            override_s=options.session_limit), **handed)


def _say_if_not_the_published_version(store: BlobStore) -> None:
    """One warning line when this islandsync is not the run's newest published wheel. Only a
    listing of the published wheels (nothing is downloaded); a failure to look never stops
    a worker."""
    from islandsync.errors import StoreError
    from islandsync.publish import version_note

    try:
        note = version_note(store)
    except StoreError as err:
        log.debug("published wheels not listed: %s", err)
        return
    if note:
        log.warning("islandsync: %s", note)


class MetricsObserver(LeaderObserver):
    """The leader observer that feeds the Prometheus exposition
    (:class:`~islandsync.views.metrics.CoordinatorMetrics`). Composed here, at the edge: the
    leader may not import the views, nor the views the leader's observer."""

    def __init__(self, metrics: CoordinatorMetrics) -> None:
        self.metrics = metrics

    def on_lease(self, term: int, leading: bool, renewal_failures: int) -> None:
        self.metrics.set_leader(term, leading)
        self.metrics.lease_renewal_failures(renewal_failures)

    def on_store_ops(self, counts: Mapping[str, Any]) -> None:
        self.metrics.observe_store(dict(counts))

    def on_islands_moved(self, reason: str, count: int) -> None:
        self.metrics.reassignment(reason, count)

    def on_merge(self, seconds: float, candidates: int, duplicates: int) -> None:
        self.metrics.observe_merge(seconds, candidates, duplicates)

    def on_global_best(self, best: float | None) -> None:
        self.metrics.observe_global_best(best)

    def on_cycle(self, seen: CycleSeen) -> None:
        self.metrics.observe_workers({w: hb.model_dump() for w, hb in seen.heartbeats.items()},
                                     set(seen.alive))
        self.metrics.observe_islands({i: {"generation": h.generation, "best": h.best,
                                          "owner": h.owner} for i, h in seen.heads.items()})


def leader_observers(store: BlobStore, spec: RunSpec,
                     settings: LeaderSettings) -> tuple[CompositeObserver, str | None]:
    """What a leader candidate reports to, as ``settings`` say: the Prometheus metrics
    served on ``metrics_port`` (leading matters more than being scraped: an address that
    cannot be bound is one warning, and no metrics) and the run's history (``islandsync
    report``) on ``store``, every ``history_every_s`` (0: none). The one composition, for
    ``islandsync coordinate`` and a worker's companion candidate alike. Returns the observer
    and the /metrics URL (None: not served)."""
    from islandsync.leader.history import HistoryObserver, RunHistory

    observers: list[LeaderObserver] = []
    url = None
    if settings.metrics_port is not None:
        from islandsync.views.metrics import DEFAULT_HOST, CoordinatorMetrics, serve

        metrics, host = CoordinatorMetrics(), settings.metrics_host or DEFAULT_HOST
        try:
            server, _ = serve(metrics.registry, settings.metrics_port, host)
        except ConfigError as err:
            log.warning("leader: no metrics: %s", err)
        else:
            observers.append(MetricsObserver(metrics))
            url = f"http://{host}:{server.server_port}/metrics"
    if settings.history_every_s > 0:
        observers.append(HistoryObserver(RunHistory(
            store, direction=spec.problem.direction, every_s=settings.history_every_s,
            flush_s=settings.history_flush_s)))
    return CompositeObserver(*observers), url


def leader_candidate(settings: LeaderSettings | None = None) -> Callable[[BlobStore, str],
                                                                       Callable[[], None]]:
    """A worker's companion that stands as a leader candidate in a background thread of the
    worker process (so a run of notebooks alone has a leader); stopping it gives the lease up.
    Composed here, at the edges, so that neither role imports the other. While it leads, it
    keeps the run's history too (:func:`leader_observers`), as ``islandsync coordinate``
    does: a run of notebooks alone is seen whole."""
    def start(store: BlobStore, worker_id: str) -> Callable[[], None]:
        from islandsync.bucket.run import read_spec
        from islandsync.leader.coordinator import start_candidate
        from islandsync.leader.settings import DEFAULTS
        from islandsync.store.counting import CountingStore

        # The leader's bucket operations are counted apart from the worker's (the history
        # and the report keep them by role).
        store = CountingStore.apart(store)
        spec, chosen = read_spec(store), settings or DEFAULTS
        observer, _ = leader_observers(store, spec, chosen)
        _, stop, thread = start_candidate(store, candidate=worker_id, spec=spec,
                                          settings=chosen, observer=observer)

        def stop_candidate() -> None:
            stop.set()  # the candidate flushes the history as it stops (on_stop)
            thread.join(timeout=30)
        return stop_candidate
    return start
