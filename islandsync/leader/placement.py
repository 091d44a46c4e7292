"""Where each island runs: islands per live worker in proportion to its measured rate.

Pure functions, no I/O. The model behind the numbers: a worker that does ``rate`` evaluations
per second spreads them over the islands it hosts, so an island on it advances at
``rate / islands``. The search wants every island to advance, and the slowest island to be as
fast as it can, so islands go to workers in proportion to their rates (largest-remainder
rounding, within each worker's maximum). Moving an island costs a checkpoint round trip, so a
move for balance alone happens only when it speeds the slowest island up by more than
``gain_threshold`` and the island has stayed put for ``min_stay_s``; islands of dead or
draining workers, and islands nobody hosts, are placed at once.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerView:
    worker: str
    rate: float  # evaluations/s; <= 0 means not measured yet
    max_islands: int
    draining: bool = False  # near its session deadline: gets nothing new, loses what it has
    # Seen beating by this leader: a leader that just took over cannot tell a live worker from
    # the stale heartbeat of a dead one until the blob changes, so until then a worker keeps
    # what it hosts but receives nothing.
    confirmed: bool = True


@dataclass(frozen=True)
class Policy:
    gain_threshold: float = 0.2
    min_stay_s: float = 60.0


@dataclass
class Placement:
    islands: dict[int, str]
    moves: Counter = field(default_factory=Counter)  # reason -> islands moved or placed
    unplaced: list[int] = field(default_factory=list)  # no live worker had room


def weights_of(workers: Sequence[WorkerView]) -> dict[str, float]:
    """A worker not measured yet counts as the median measured one (all equal when none is)."""
    measured = sorted(w.rate for w in workers if w.rate > 0 and math.isfinite(w.rate))
    prior = measured[len(measured) // 2] if measured else 1.0
    return {w.worker: (w.rate if w.rate > 0 and math.isfinite(w.rate) else prior)
            for w in workers}


def target_counts(islands: int, weights: Mapping[str, float],
                  caps: Mapping[str, int]) -> dict[str, int]:
    """Integer island counts proportional to ``weights`` within ``caps``: water-filling for
    the real-valued shares, then largest-remainder rounding. Each count is within one of its
    share, and the counts sum to ``min(islands, sum(caps))``."""
    total = min(islands, sum(max(0, c) for c in caps.values()))
    share = {w: 0.0 for w in weights}
    free = {w for w in weights if caps.get(w, 0) > 0}
    left = float(total)
    while free and left > 1e-9:
        wsum = sum(weights[w] for w in free)
        quota = {w: left * weights[w] / wsum for w in free}
        over = {w for w in free if share[w] + quota[w] >= caps[w]}
        if not over:
            for w in free:
                share[w] += quota[w]
            break
        for w in over:  # fill these to their cap and share the rest among the others
            left -= caps[w] - share[w]
            share[w] = float(caps[w])
        free -= over
    counts = {w: min(caps.get(w, 0), math.floor(s + 1e-9)) for w, s in share.items()}
    rest = total - sum(counts.values())
    by_remainder = sorted(share, key=lambda w: (-(share[w] - counts[w]), w))
    for w in by_remainder:
        if rest <= 0:
            break
        if counts[w] < caps.get(w, 0):
            counts[w] += 1
            rest -= 1
    return counts


def _slowest(counts: Mapping[str, int], weights: Mapping[str, float]) -> float:
    speeds = [weights[w] / n for w, n in counts.items() if n > 0]
    return min(speeds) if speeds else 0.0


def place(
    islands: int,
    current: Mapping[int, str],
    workers: Sequence[WorkerView],
    *,
    placed_at: Mapping[int, float] | None = None,
    now: float = 0.0,
    policy: Policy = Policy(),
) -> Placement:
    """The next assignment of islands ``0..islands-1`` (see module doc). ``current`` maps
    islands to their workers as last assigned; ``placed_at`` says since when (same clock as
    ``now``). Every island is placed whenever the live workers have room for it, none twice;
    a worker not yet confirmed keeps what it has and receives nothing."""
    placed_at = placed_at or {}
    live = {w.worker: w for w in workers}
    eligible = [w for w in workers if not w.draining and w.max_islands > 0]
    if not eligible:  # better a worker about to leave than none
        eligible = [w for w in workers if w.max_islands > 0]
    names = {w.worker for w in eligible}
    confirmed = {w.worker for w in eligible if w.confirmed}
    caps = {w.worker: w.max_islands for w in eligible}
    weights = weights_of(eligible)
    result = Placement({})
    pending: list[tuple[int, str]] = []
    for island in range(islands):
        owner = current.get(island)
        if owner in names:
            result.islands[island] = owner
        else:
            reason = ("new" if owner is None else "drain" if owner in live else "dead")
            pending.append((island, reason))
    counts = Counter({w: 0 for w in names})
    counts.update(result.islands.values())
    # A worker over its (possibly lowered) maximum gives back its newest islands.
    for w in names:
        while counts[w] > caps[w]:
            island = max((i for i, o in result.islands.items() if o == w),
                         key=lambda i: (placed_at.get(i, 0.0), i))
            del result.islands[island]
            counts[w] -= 1
            pending.append((island, "balance"))
    target = target_counts(islands, weights, caps)

    def receiver() -> str | None:
        room = [w for w in confirmed if counts[w] < caps[w]]
        if not room:
            return None
        return max(room, key=lambda w: (target[w] - counts[w], weights[w], w))

    for island, reason in sorted(pending):
        w = receiver()
        if w is None:
            result.unplaced.append(island)
            continue
        result.islands[island] = w
        counts[w] += 1
        result.moves[reason] += 1

    # A worker that hosted nothing before (it just joined) takes its share now, whatever the
    # minimum stay says: otherwise a notebook that joined would sit idle for min_stay_s.
    fresh = sorted(confirmed - set(current.values()), key=lambda w: (-weights[w], w))
    for dst in fresh:
        while counts[dst] < target[dst]:
            src = max((w for w in names if counts[w] > target[w]),
                      key=lambda w: (counts[w] - target[w], w), default=None)
            if src is None:
                break
            _move(result, counts, src, dst, placed_at, "new")
    _balance(result, counts, target, weights, receiver, placed_at, now, policy)
    return result


def _balance(result: Placement, counts: Counter, target: Mapping[str, int],
             weights: Mapping[str, float], receiver: Callable[[], str | None],
             placed_at: Mapping[int, float], now: float, policy: Policy) -> None:
    """Move islands from workers over target to those under it, when it pays: when the
    slowest worker's speed per island would gain more than ``policy.gain_threshold``, and
    only islands that have stayed ``policy.min_stay_s``, longest-placed first."""
    if _slowest(target, weights) <= _slowest(counts, weights) * (1 + policy.gain_threshold):
        return
    movable = sorted(
        (i for i, w in result.islands.items()
         if counts[w] > target[w] and now - placed_at.get(i, float("-inf")) >= policy.min_stay_s),
        key=lambda i: (placed_at.get(i, float("-inf")), i))
    for island in movable:
        src = result.islands[island]
        dst = receiver()
        if counts[src] <= target[src] or dst is None or counts[dst] >= target[dst]:
            continue
        result.islands[island] = dst
        counts[src] -= 1
        counts[dst] += 1
        result.moves["balance"] += 1


def _move(result: Placement, counts: Counter, src: str, dst: str,
          placed_at: Mapping[int, float], reason: str) -> None:
    """Move the island that has stayed longest on ``src`` to ``dst``."""
    island = min((i for i, o in result.islands.items() if o == src),
                 key=lambda i: (placed_at.get(i, float("-inf")), i))
    result.islands[island] = dst
    counts[src] -= 1
    counts[dst] += 1
    result.moves[reason] += 1


__all__ = ["Placement", "Policy", "WorkerView", "place", "target_counts", "weights_of"]
