"""The invariants every chaos scenario ends with, judged on the evidence a
:class:`~islandsync.testing.recorder.Recorder` gathered:

* lineage: an island's HEAD generation never goes backwards, its (generation, checkpoint)
  history is linear, and no blob above HEAD by a non-owner ever became HEAD;
* resumption: after a kill, the island's first new checkpoint is at or above the last HEAD seen
  before the kill (HEAD moves only by CAS, so this is "resumed from its checkpoint"), never 0;
* elites: the global best never regresses, no epoch holds a duplicate id or a non-finite score;
* processes: each one still running keeps working (heartbeats or lease renewals advance), and
  each one that exited did so with the expected code and without a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from islandsync.bucket.checkpoints import load_island
from islandsync.bucket.layout import parse_checkpoint_key
from islandsync.bucket.records import Head, read_head
from islandsync.store import BlobStore
from islandsync.testing.processes import wait_for
from islandsync.testing.recorder import HeadSeen, Recorder


@dataclass(frozen=True)
class Fallback:
    """An island whose HEAD checkpoint a test corrupted: the next owner resumes from an older
    checkpoint, so its HEAD may step back once, to no less than ``floor`` (the generation of
    the newest readable checkpoint below the corrupted one)."""

    bad_keys: frozenset[str]
    floor: int


# -- judging -------------------------------------------------------------------------------


def lineage_faults(island: int, seen: list[HeadSeen],
                   step_back_ok: Callable[[HeadSeen, HeadSeen], bool],
                   started: float | None = None) -> tuple[list[str], int]:
    """What is wrong with one island's HEAD versions in the order seen, and how many step
    backs ``step_back_ok(before, after)`` excused: a HEAD generation that went back (each
    starts a new segment, judged from there), two checkpoints at one generation (a fork), or
    HEAD back on a checkpoint it had left. ``started``: times in the messages from there."""
    faults: list[str] = []
    excused = 0
    by_generation: dict[int, str | None] = {}
    order: list[str | None] = []
    for a, b in zip([None, *seen], seen):
        if a is not None and b.generation < a.generation:
            if step_back_ok(a, b):
                excused += 1
            else:
                when = "" if started is None else f" at {b.at - started:.1f} s"
                faults.append(f"island {island}: HEAD generation went back from "
                              f"{a.generation} ({a.checkpoint}, {a.owner}) to {b.generation} "
                              f"({b.checkpoint}, {b.owner}){when}")
            by_generation, order = {}, []
        other = by_generation.setdefault(b.generation, b.checkpoint)
        if other != b.checkpoint:
            faults.append(f"island {island} forked: two checkpoints at generation "
                          f"{b.generation}: {other} and {b.checkpoint}")
        if not order or order[-1] != b.checkpoint:
            if b.checkpoint in order:
                faults.append(f"island {island}: HEAD went back to {b.checkpoint} after "
                              f"{order[order.index(b.checkpoint) + 1:]}")
            order.append(b.checkpoint)
    return faults, excused


def check_lineage(rec: Recorder, fallbacks: dict[int, Fallback] | None = None) -> None:
    """No island's lineage forked (see module doc). ``fallbacks`` name islands whose HEAD
    checkpoint the test corrupted on purpose."""
    fallbacks = fallbacks or {}
    for island, seen in rec.heads.items():
        fb = fallbacks.get(island)
        faults, _ = lineage_faults(island, seen, lambda a, b, fb=fb: fb is not None
                                   and a.checkpoint in fb.bad_keys and b.generation >= fb.floor)
        assert not faults, faults[0]
        for s in seen:
            if s.checkpoint is None:
                assert s.generation == 0, f"island {island}: HEAD at {s.generation} names no blob"
                continue
            parsed = parse_checkpoint_key(s.checkpoint)
            assert parsed is not None and parsed[0] == island and parsed[1] == s.generation, (
                f"island {island}: HEAD at generation {s.generation} names {s.checkpoint}")
            orphaned_at = rec.orphans[island].get(s.checkpoint)
            assert orphaned_at is None or s.at <= orphaned_at, (
                f"island {island}: {s.checkpoint} was seen above HEAD, written by a worker "
                f"that did not own the island, and later became HEAD (owner {s.owner})")


def check_resumed(rec: Recorder, before: dict[int, Head], victim: str, killed_at: float,
                  floor: dict[int, int] | None = None) -> None:
    """Each island the victim held, as HEAD said after the kill (``before``), was taken over
    by another worker whose first new checkpoint is at or above that HEAD's generation (or
    ``floor[island]`` for an island whose checkpoint was corrupted), never from scratch."""
    floor = floor or {}
    for island, last in before.items():
        later = [s for s in rec.heads[island] if s.at > killed_at]
        new = [s for s in later if s.checkpoint != last.checkpoint]
        assert new, f"island {island}: no new checkpoint after {victim} was killed"
        first = new[0]
        assert first.owner != victim, f"island {island}: {victim} wrote after its kill: {first}"
        assert first.generation >= floor.get(island, last.generation), (
            f"island {island}: resumed at generation {first.generation}, below the "
            f"{floor.get(island, last.generation)} of its last checkpoint before the kill")
        assert first.generation > 0, f"island {island} restarted from scratch"
        claims = [s for s in later if s.owner != victim and s.checkpoint == last.checkpoint]
        for c in claims:  # a claim moves the owner, never the generation
            assert c.generation == last.generation, (island, c, last)


def check_elites(rec: Recorder, *, min_epochs: int = 1,
                 unreadable_ok: set[str] | None = None) -> None:
    """The global best never regresses; no epoch holds a duplicate id or a non-finite score;
    every elite HEAD named a readable epoch except those the test corrupted itself."""
    rec.check_elites()
    assert len(rec.elite_epochs) >= min_epochs, (
        f"only {len(rec.elite_epochs)} elite epochs seen, wanted {min_epochs}")
    for e in rec.elite_epochs:
        assert e.unique, f"elite epoch {e.epoch} holds duplicate ids"
        assert e.finite, f"elite epoch {e.epoch} holds a NaN or infinite score"
    unexpected = set(rec.unreadable_elites) - (unreadable_ok or set())
    assert not unexpected, {k: rec.unreadable_elites[k] for k in unexpected}


def check_heads_readable(store: BlobStore, islands: int) -> dict[int, Head]:
    """Every island has a HEAD whose own checkpoint blob loads (no fallback needed)."""
    heads: dict[int, Head] = {}
    for island in range(islands):
        current = read_head(store, island)
        assert current is not None, f"island {island} has no HEAD"
        head = current[0]
        snap = load_island(store, island, head)
        assert snap is not None and snap.meta.get("key") == head.checkpoint, (
            f"island {island}: HEAD's checkpoint {head.checkpoint} does not load")
        assert snap.generation == head.generation
        heads[island] = head
    return heads


def check_working(rec: Recorder, workers: list[str], *, leader: bool = True,
                  timeout: float = 8.0) -> None:
    """Each named worker's heartbeat advances, and (``leader``) someone renews the lease."""
    start = {w: rec.heartbeat_generation(w) for w in workers}
    lease_start = len(rec.leases)
    wait_for(lambda: all(rec.heartbeat_generation(w) not in (None, start[w]) for w in workers)
             and (not leader or len(rec.leases) > lease_start), timeout,
             f"heartbeats of {workers}" + (" and a lease renewal" if leader else ""))


def wait_islands_advance(rec: Recorder, store: BlobStore, islands: int, *,
                         owners: set[str] | None = None, timeout: float = 30.0,
                         what: str = "every island checkpointing") -> dict[int, Head]:
    """Wait until every island's HEAD names a checkpoint above the one it named when called,
    owned (and not released) by one of ``owners`` when given; returns the HEADs then."""
    base = {i: (h.generation if (h := rec.latest(i)) else -1) for i in range(islands)}

    def ok() -> bool:
        for i in range(islands):
            h = rec.latest(i)
            if h is None or h.checkpoint is None or h.generation <= base[i]:
                return False
            if owners is not None and (h.owner not in owners or h.released):
                return False
        return True

    wait_for(ok, timeout, what)
    out = {}
    for i in range(islands):
        current = read_head(store, i)
        assert current is not None
        out[i] = current[0]
    return out


def wait_hosting(rec: Recorder, islands: int, workers: set[str], *,
                 timeout: float = 30.0) -> None:
    """Wait until the owners of the islands' HEADs (not released) are exactly ``workers``:
    every one of them hosts at least one island and no one else hosts any."""
    def owners() -> set[str | None]:
        return {h.owner if not h.released else None
                for i in range(islands) if (h := rec.latest(i)) is not None}

    wait_for(lambda: owners() == workers, timeout, f"islands hosted by exactly {sorted(workers)}")


__all__ = [
    "Fallback", "check_elites", "check_heads_readable", "check_lineage", "check_resumed",
    "check_working", "wait_hosting", "wait_islands_advance",
]
