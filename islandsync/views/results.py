"""A run's results from Python: ``islandsync.status``, ``islandsync.best`` and
``islandsync.history``, the read-only views of a run.

Each opens the run as :func:`islandsync.run` does (``credentials=`` the same way), refuses a
URL that holds no run with :class:`~islandsync.errors.RunNotFound` and creates nothing there
(as the read-only commands do), and reads through the same boundary as every other reader of
the bucket: a record or blob that is not valid is skipped with one warning.

The run's best genomes are one fact with one home, :func:`best_genomes`: the command line's
``islandsync best``, :func:`best` and the run's best in a worker's
:class:`~islandsync.worker.worker.RunSummary` all come from it.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from typing import Any

import numpy as np

from islandsync.bucket.elites import read_elite
from islandsync.bucket.heads import HeadWatch
from islandsync.bucket.history import History, read_history
from islandsync.bucket.records import read_elite_head
from islandsync.bucket.run import read_spec
from islandsync.config import to_fitness, to_score
from islandsync.errors import CheckpointError, ConfigError, IslandSyncError, NotFound
from islandsync.leader.merge import IslandElites, merge_elites
from islandsync.views.status import collect_status
from islandsync.store import BlobStore

log = logging.getLogger(__name__)

#: Columns of :func:`history`, one row per history entry, oldest first.
HISTORY_COLUMNS = ("time", "elapsed_s", "seq", "term", "leader", "best", "evaluations",
                   "rate", "workers", "islands", "events")


def _open(run: str, credentials: Any) -> BlobStore:
    from islandsync.env.opening import open_run  # the edge that finds credentials

    return open_run(run, credentials=credentials, existing=True)[0]


def status(run: str, *, credentials: Any = None) -> dict[str, Any]:
    """The run as ``islandsync status RUN --json`` shows it (the same dict, described in
    README.md): the spec, whether it finished, the leader, evaluations and best, each island
    and each worker. RunNotFound when ``run`` holds no run."""
    return collect_status(_open(run, credentials))


def best(run: str, *, top: int = 10, credentials: Any = None) -> dict[str, Any]:
    """The run's best ``top`` genomes (:func:`best_genomes`), best first: ``fitness`` (in the
    problem's own direction), ``island`` (where each came from), ``id`` (64-bit genome ids),
    ``genomes`` (a numpy array, one row each), and where they were read (``epoch``, ``term``
    of the merged elite, ``islands_read``). Works on a ``--solo`` run too. RunNotFound when
    ``run`` holds no run; NotFound when it has no checkpoint yet."""
    return best_genomes(_open(run, credentials), top=top)


def history(run: str, *, credentials: Any = None, as_frame: bool | None = None) -> Any:
    """The run's history as the leader records it (``islandsync report`` draws the same), one
    row per entry, oldest first, with the columns of :data:`HISTORY_COLUMNS`: a pandas
    DataFrame when pandas is installed (``as_frame=None``), a list of dicts otherwise or with
    ``as_frame=False``. A run without a leader has no history (no rows). RunNotFound when
    ``run`` holds no run."""
    rows = history_rows(read_history(_open(run, credentials)))
    if as_frame is False:
        return rows
    try:
        import pandas as pd
    except ImportError:
        if as_frame:
            raise ConfigError("islandsync.history(as_frame=True) needs pandas: "
                              "pip install pandas") from None
        return rows
    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))


def history_rows(found: History) -> list[dict[str, Any]]:
    """One dict per history entry: ``time`` (the leader's own wall clock, UTC, for display
    only), ``elapsed_s`` since the first entry, ``seq``, ``term``, ``leader``, ``best`` (the
    run's best in the problem's direction), ``evaluations`` (the run's), ``rate``
    (evaluations/s of the live workers together), ``workers`` (live ones), ``islands`` (those
    with an owner) and ``events`` (dicts: ``kind`` and what else the event carries)."""
    entries = found.entries
    if not entries:
        return []
    t0 = entries[0].t
    rows = []
    for e in entries:
        alive = [w for w in e.workers.values() if w.alive]
        rows.append({
            "time": _dt.datetime.fromtimestamp(e.t, tz=_dt.timezone.utc),
            "elapsed_s": e.t - t0,
            "seq": e.seq,
            "term": e.term,
            "leader": e.leader,
            "best": e.best,
            "evaluations": e.evals,
            "rate": sum(w.rate for w in alive),
            "workers": len(alive),
            "islands": sum(1 for island in e.islands if island[0] is not None),
            "events": [ev.model_dump(exclude_none=True) for ev in e.events],
        })
    return rows


def best_genomes(store: BlobStore, *, top: int = 10) -> dict[str, Any]:
    """The run's best ``top`` genomes as of now, merged as the leader merges (one copy per
    genome id, best first): the newest elite epoch, with the elite frames of the islands'
    HEAD checkpoints that could still enter the top (a HEAD whose best beats the epoch's
    ``top``-th; every island when there is no epoch, as in a ``--solo`` run, which has no
    leader). Costs one listing of ``islands/``, a read per HEAD and a ranged read per island
    read. ``{"epoch", "term", "islands_read", "fitness", "island", "id", "genomes"}``; epoch
    and term are None without an epoch. NotFound when the run has no genome yet."""
    if top < 1:
        raise ConfigError(f"top must be at least 1, got {top}")
    spec = read_spec(store)
    direction = spec.problem.direction
    parts = []
    epoch = term = None
    try:
        current = read_elite_head(store)
        if current is not None:
            parts.append(read_elite(store, current[0].key, spec=spec))
            epoch, term = current[0].epoch, current[0].term
    except (CheckpointError, NotFound) as err:  # the islands' elites still answer
        log.warning("best: the merged elite is skipped: %s", err)
    # Scores are minimisation scores; a HEAD's best is in the problem's direction.
    bar = float(parts[0][1][top - 1]) if parts and parts[0][1].shape[0] >= top else math.inf
    heads = HeadWatch(store, spec.islands, what="best").look().heads
    could = {i: h for i, h in heads.items() if h.checkpoint is not None and h.best is not None
             and to_score(direction, h.best) < bar}
    islands = IslandElites(store, spec)
    islands.refresh(could)
    parts += islands.parts()
    parts = [p for p in parts if p[1].shape[0]]
    if not parts:
        raise NotFound(f"run {store.url} has no genomes yet: its workers write the first with "
                       f"their first checkpoints")
    genomes, scores, ids, origin = merge_elites(parts, top).elite
    return {"epoch": epoch, "term": term, "islands_read": islands.reads,
            "fitness": [to_fitness(direction, v) for v in scores],
            "island": [int(v) for v in origin],
            "id": [int(v) & 0xFFFFFFFFFFFFFFFF for v in ids],
            "genomes": genomes}


def global_best(store: BlobStore) -> tuple[float | None, np.ndarray | None, int | None]:
    """(fitness, genome, island) of the run's best genome (:func:`best_genomes`), or Nones
    when there is none yet or the bucket cannot say (warned once): a worker's summary is
    never lost to a failed look at the run."""
    try:
        found = best_genomes(store, top=1)
    except NotFound:
        return None, None, None
    except Exception as err:  # noqa: BLE001 - see docstring; bucket trouble is the usual one
        why = err if isinstance(err, IslandSyncError) else f"{type(err).__name__}: {err}"
        log.warning("the run's best could not be read: %s", why)
        return None, None, None
    if not found["fitness"]:
        return None, None, None
    return found["fitness"][0], found["genomes"][0], found["island"][0]


__all__ = ["HISTORY_COLUMNS", "best", "best_genomes", "global_best", "history",
           "history_rows", "status"]
