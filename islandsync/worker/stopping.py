"""When a worker may start and when the run is over, as the worker judges them.

* :func:`check_id_free`: two live processes under one worker id would each take the other's
  HEAD writes for their own, so a worker refuses an id whose heartbeat is moving.
* :func:`run_deadline`: the run's ``stop.duration_s`` on this process's monotonic clock,
  with the run's age taken from the BUCKET'S clock (never this machine's against another's).
* :func:`stop_reason`: whether the run's ``max_evals`` or ``target`` is reached, from this
  worker's islands, the HEADs of others it read (solo) and the leader's published totals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from islandsync.bucket.layout import RUN_KEY, heartbeat_key
from islandsync.bucket.records import Head, read_heartbeat
from islandsync.config import RunSpec, best_of
from islandsync.errors import CheckpointError, ConfigError, StoreError
from islandsync.store import BlobStore

log = logging.getLogger(__name__)


def check_id_free(store: BlobStore, worker_id: str, heartbeat_interval_s: float) -> None:
    """ConfigError when another live worker heartbeats under ``worker_id``. Live means its
    heartbeat blob changed within a heartbeat interval (on our clock) and does not say it
    exited; a blob left by a killed worker of this id costs one interval of waiting, none at
    all when there is no blob. Best effort when the bucket is down at start."""
    key = heartbeat_key(worker_id)

    def exited() -> bool:
        try:
            found = read_heartbeat(store, worker_id)
        except CheckpointError as err:
            log.warning("heartbeat of worker id %s unreadable: %s", worker_id, err)
            return False
        return found is None or found[0].state == "exited"

    try:
        first = store.stat(key)
        if first is None or exited():
            return
        time.sleep(1.2 * heartbeat_interval_s)
        second = store.stat(key)
        if second is None or second.generation == first.generation or exited():
            return
    except StoreError as err:
        log.warning("could not check that worker id %s is free: %s", worker_id, err)
        return
    raise ConfigError(f"worker id {worker_id} is already in use by a live worker "
                      f"(its heartbeat changed within {heartbeat_interval_s} s); "
                      f"give this worker another id")


def run_deadline(store: BlobStore, worker_id: str, duration: float | None,
                 beat_now: Callable[[], None]) -> float | None:
    """``time.monotonic()`` at which the run's ``duration`` is up, counted from run.json's
    creation on the bucket's clock: ``beat_now`` writes our first heartbeat, and the
    difference of its ``updated`` and run.json's (both stamped by the bucket) is the run's age.
    A notebook whose clock runs ahead therefore does not stop the run. When the bucket cannot
    tell (down, or no times), the duration counts on our own monotonic clock from now."""
    if duration is None:
        return None
    before = time.monotonic()
    try:
        beat_now()
        after = time.monotonic()
        mine = store.stat(heartbeat_key(worker_id))
        run = store.stat(RUN_KEY)
        age = (mine.updated - run.updated).total_seconds()
    except (StoreError, AttributeError, TypeError, ValueError, OverflowError) as err:
        log.warning("run age unknown (%s): the run's %.0f s duration counts from now",
                    err, duration)
        return before + duration
    return (before + after) / 2 + duration - max(0.0, age)


def run_totals(spec: RunSpec, *, own_evals: int, own_best: float | None,
               remote: Mapping[int, Head], hosted: set[int],
               totals: tuple[int | None, float | None] | None) -> tuple[int, float | None]:
    """The run's (evaluations, best) as far as this worker can tell: ``own_evals`` and
    ``own_best`` of the islands it hosts (in the problem's direction), ``remote`` other islands'
    HEADs (a solo worker reads them), ``totals`` the leader's (evaluations, best) for the whole
    run: a follower has no remote HEADs, and the leader's totals count our islands as of their
    last checkpoints, so ours alone may be fresher. The larger count, the better best."""
    others = [h for i, h in remote.items() if i not in hosted]
    leader_evals, leader_best = totals or (None, None)
    evals = max(own_evals + sum(h.evals for h in others), leader_evals or 0)
    return evals, best_of(spec.problem.direction,
                          (own_best, leader_best, *(h.best for h in others)))


def stop_reason(spec: RunSpec, *, own_evals: int, own_best: float | None,
                remote: Mapping[int, Head], hosted: set[int],
                totals: tuple[int | None, float | None] | None) -> tuple[str, int] | None:
    """(``"max_evals"`` or ``"target"``, the run's evaluations) once the run's stop criterion
    is reached, else None; the arguments are :func:`run_totals`'. Judged by the run's
    :meth:`~islandsync.config.StopSpec.reason`, the rule the leader judges by too."""
    stop = spec.stop
    if stop.max_evals is None and stop.target is None:
        return None
    total, best = run_totals(spec, own_evals=own_evals, own_best=own_best, remote=remote,
                             hosted=hosted, totals=totals)
    reason = stop.reason(spec.problem.direction, total, best)
    if reason is None:
        return None
    return reason, total if reason == "max_evals" else own_evals


__all__ = ["check_id_free", "run_deadline", "run_totals", "stop_reason"]
