"""``islandsync.run``: the one call a notebook makes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import RunSpec
    from .worker import RunSummary


def run(
    run: str,
    *,
    fitness: Callable | None = None,
    spec: RunSpec | None = None,
    device: str = "auto",
    max_islands: int | None = None,
    duration: float | None = None,
    solo: bool = False,
    coordinator: bool = True,
    progress: bool = True,
    worker_id: str | None = None,
    credentials: Any = None,
) -> RunSummary:
    """Join the run at URL ``run`` as a worker and evolve until it finishes, ``duration``
    seconds pass, or the cell is interrupted; final checkpoints are written either way.

    ``spec`` creates the run when it does not exist yet (and must match when it does).
    ``fitness`` is your own function for a run with a custom problem: it never comes from the
    bucket. The worker follows the run's leader; with ``coordinator=True`` it also stands as a
    candidate for leader, so notebooks alone make a complete run (one of them leads, and takes
    over when the leader's session dies). ``solo=True`` instead claims every island that has
    no live owner, with no leader needed (and no candidate). Returns a :class:`~islandsync.worker.RunSummary`.
    """
    from .config import init_run
    from .store import open_store
    from .worker import Worker

    store = open_store(run, credentials=credentials) if credentials else open_store(run)
    if spec is not None:
        init_run(store, spec)
    worker = Worker(store, fitness=fitness, device=device, max_islands=max_islands,
                    duration=duration, solo=solo, worker_id=worker_id, progress=progress,
                    coordinator=coordinator and not solo)
    return worker.run()
