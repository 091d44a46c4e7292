"""The soak's verdict: what a soak saw (:class:`SoakResult`, the table it prints) and the
invariants it is judged by, from the bucket as it was left and from what the
:class:`~islandsync.testing.recorder.Recorder` saw of it (:mod:`islandsync.testing.soak`
runs the parties)."""

from __future__ import annotations

import bisect
import itertools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from islandsync.bucket.checkpoints import decode_island
from islandsync.bucket.history import read_history
from islandsync.bucket.layout import ELITE_PREFIX, head_key, island_prefix
from islandsync.bucket.records import MAX_TERM, check_protocol, read_head
from islandsync.errors import CheckpointError, IslandSyncError, NotFound
from islandsync.store import LocalStore
from islandsync.testing.invariants import lineage_faults
from islandsync.testing.recorder import HeadSeen, Recorder

SEED_ENV = "ISLANDSYNC_SOAK_SEED"

CHECKS = ("lineage", "checkpoints", "elites", "threads", "progress", "records")

#: How long after a corruption its consequences may show (a claim, a merge): generous, as an
#: exemption must not hide a fault that merely happened to follow some garbage by minutes.
AFTERMATH_S = 10.0

#: How long a forged assignment may stand before the leader's replacement shows: a leader in
#: an outage of its own loses its lease (3 s), a candidate takes over after a lease, and its
#: first cycle replaces it.
FORGED_STANDS_S = 2 * AFTERMATH_S


@dataclass
class SoakResult:
    seed: int
    seconds: float
    faults: Counter = field(default_factory=Counter)
    head_observations: int = 0
    elite_epochs: int = 0
    checkpoints_verified: int = 0
    history_entries: int = 0  # read back at the end
    terms: list[int] = field(default_factory=list)  # every valid lease term observed
    violations: dict[str, list[str]] = field(default_factory=lambda: {c: [] for c in CHECKS})
    notes: list[str] = field(default_factory=list)
    #: What an invariant let pass because the byzantine writer had just corrupted a blob.
    exempted: Counter = field(default_factory=Counter)
    started: float = 0.0  # time.monotonic() when the parties started, and when told to stop
    stopped_at: float = 0.0

    def violation(self, check: str, message: str) -> None:
        if message not in self.violations[check]:  # a live check sees a lasting one often
            self.violations[check].append(message)

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def report(self) -> str:
        """The table benchmarks/soak.py prints, and a failing test shows."""
        lines = [f"soak seed {self.seed}: {self.seconds:.0f} s "
                 f"(replay: {SEED_ENV}={self.seed}, or benchmarks/soak.py --seed {self.seed})",
                 "  faults injected:"]
        lines += [f"    {kind:<28} {n:>7}" for kind, n in sorted(self.faults.items())]
        lines += ["  invariants checked:",
                  f"    {'HEAD observations':<28} {self.head_observations:>7}",
                  f"    {'elite epochs checked':<28} {self.elite_epochs:>7}",
                  f"    {'checkpoints verified':<28} {self.checkpoints_verified:>7}",
                  f"    {'history entries read back':<28} {self.history_entries:>7}",
                  f"    {'lease terms (highest)':<28} {len(self.terms):>7} "
                  f"({max(self.terms, default=0)})"]
        lines += [f"    {'exempted: ' + what:<28} {n:>7}" for what, n in sorted(
            self.exempted.items())]
        for check in CHECKS:
            found = self.violations[check]
            lines.append(f"  {check:<30} {'ok' if not found else f'{len(found)} VIOLATION(S)'}")
            lines += [f"    seed {self.seed}: {v}" for v in found[:8]]
        lines += [f"  note: {n}" for n in self.notes[-8:]]
        return "\n".join(lines)


def verify_live(inner: LocalStore, result: SoakResult, island: int) -> None:
    """HEAD's checkpoint is present; judged only if HEAD did not move while we looked."""
    try:
        found = read_head(inner, island)
    except CheckpointError:
        return
    if found is None or found[0].checkpoint is None:
        return
    present = inner.stat(found[0].checkpoint) is not None
    again = inner.stat(head_key(island))
    if again is None or again.generation != found[1]:
        return
    result.checkpoints_verified += 1
    if not present:
        result.violation("checkpoints", f"island {island}: HEAD (generation "
                                        f"{found[0].generation}, owner {found[0].owner}) names "
                                        f"{found[0].checkpoint}, which is gone")


def judge(inner: LocalStore, result: SoakResult, rec: Recorder,
           corruptions: list[tuple[float, str, str]], islands: int) -> None:
    """``lineage``, ``checkpoints``, ``elites`` and ``progress``: every HEAD version the
    recorder saw, the final checkpoints, and the elite epochs, with the exemptions the
    byzantine writer's own garbage earns."""
    def corrupted_before(prefix: str, at: float) -> bool:
        return any(key.startswith(prefix) and t <= at and at - t <= AFTERMATH_S
                   for t, key, _ in corruptions)

    bad_keys = {key for _, key, _ in corruptions}

    def explained(island: int, before: HeadSeen, after: HeadSeen) -> bool:
        # A step back is the fallback a loader must take when what HEAD named was garbage
        # (corrupted at any time before), or shortly after any garbage in the island's prefix.
        return corrupted_before(island_prefix(island), after.at) or any(
            key == before.checkpoint and t <= after.at for t, key, _ in corruptions)

    for island in range(islands):
        seen = rec.heads[island]
        result.head_observations += len(seen)
        judge_lineage(result, island, seen, lambda a, b, i=island: explained(i, a, b))
        if any(island_of(v) == island for v in result.violations["lineage"]):
            t0 = result.started
            result.notes += [f"island {island}: {kind} garbage at {t - t0:.1f} s: {key}"
                             for t, key, kind in corruptions
                             if key.startswith(island_prefix(island))][:6]
        judge_final_checkpoint(inner, result, island, bad_keys)
    best = float("inf")
    for e in rec.elites():
        result.elite_epochs += 1
        if len(set(e.ids)) != len(e.ids):
            result.violation("elites", f"elite epoch {e.epoch} holds duplicate ids")
        if e.best_score is None:
            continue
        if e.best_score > best + 1e-6:
            if corrupted_before(ELITE_PREFIX, e.at):
                result.exempted["elite regressions after garbage"] += 1
            else:
                result.violation("elites", f"best regressed at elite epoch {e.epoch} (term "
                                           f"{e.term}): {best:.6g} -> {e.best_score:.6g}")
        best = e.best_score if corrupted_before(ELITE_PREFIX, e.at) else min(best, e.best_score)
    advanced = sum(1 for i in range(islands) if any(s.generation > 0 for s in rec.heads[i]))
    if advanced < islands // 2 or result.elite_epochs < 2:
        result.violation("progress", f"only {advanced} of {islands} islands ever checkpointed "
                                     f"and {result.elite_epochs} elite epochs were seen")
    terms = {a.term: a.leader for a in rec.assignments()}
    result.notes.append(f"leaders by term: {terms}")
    # Not an invariant (a byzantine HEAD may stall an island for good), but worth a look.
    half = result.started + result.seconds / 2
    stalled = [i for i in range(islands) if not any(half < h.at < result.stopped_at
                                                    for h in rec.heads[i])]
    if stalled:
        result.notes.append(f"islands whose HEAD never moved in the second half: {stalled}")
    result.notes += rec.errors[-3:]


def judge_records(inner: LocalStore, result: SoakResult, rec: Recorder,
                   corruptions: list[tuple[float, str, str]], leaders: set[str]) -> None:
    """``records``: a late joiner gets in whatever garbage sits in protocol.json; every history
    segment the reader skips is one the byzantine writer wrote; a forged assignment (a term
    above every lease term seen so far, or no candidate's) is replaced within
    :data:`FORGED_STANDS_S`: the leader keeps assigning."""
    try:
        check_protocol(inner)
    except IslandSyncError as err:
        result.violation("records", f"a late joiner is refused: {err}")
    history = read_history(inner)
    result.history_entries = len(history.entries)
    bad = {key for _, key, _ in corruptions}
    for why in history.skipped:
        if not any(key in why for key in bad):
            result.violation("records", f"history segment unreadable, no garbage explains "
                                        f"it: {why[:160]}")
    if result.seconds >= 20 and not history.entries:
        result.violation("records", "no history entry was read back")
    valid = sorted((t, body["term"]) for t, _, body in rec.leases
                   if isinstance(body.get("term"), int) and 0 < body["term"] < MAX_TERM)
    result.terms = sorted({term for _, term in valid})

    times = [t for t, _ in valid]
    highest = list(itertools.accumulate((term for _, term in valid), max))

    def honest(at: float, assignment: Any) -> bool:  # a term some lease seen by then had
        k = bisect.bisect_right(times, at)
        return assignment.leader in leaders and k > 0 and assignment.term <= highest[k - 1]

    records = sorted(rec.assignment_records, key=lambda r: r[0])
    for k, (at, assignment) in enumerate(records):
        if honest(at, assignment) or at > result.stopped_at - FORGED_STANDS_S:
            continue
        if not any(honest(t, a) for t, a in records[k + 1:] if t <= at + FORGED_STANDS_S):
            result.violation("records", f"a forged assignment (term {assignment.term}) stood "
                                        f"{FORGED_STANDS_S:.0f} s at "
                                        f"{at - result.started:.1f} s: the leader stopped "
                                        f"assigning")


def island_of(violation: str) -> int | None:
    m = re.match(r"island (\d+)", violation)
    return int(m[1]) if m else None


def judge_lineage(result: SoakResult, island: int, seen: list[HeadSeen],
                  exempt: Callable[[HeadSeen, HeadSeen], bool]) -> None:
    """``lineage``: :func:`~islandsync.testing.invariants.lineage_faults`, the harness's one
    rule, each fault a violation; a step back ``exempt`` excuses is counted apart."""
    faults, excused = lineage_faults(island, seen, exempt, started=result.started)
    if excused:  # a Counter keeps a key added with 0, and the report would list it
        result.exempted["HEAD step-backs after garbage"] += excused
    for fault in faults:
        result.violation("lineage", fault)


def judge_final_checkpoint(inner: LocalStore, result: SoakResult, island: int,
                            bad_keys: set[str]) -> None:
    try:
        found = read_head(inner, island)
    except CheckpointError:
        if head_key(island) not in bad_keys:
            result.violation("checkpoints", f"island {island}: HEAD unreadable, and no "
                                            f"byzantine write explains it")
        return
    if found is None or found[0].checkpoint is None:
        return
    key = found[0].checkpoint
    result.checkpoints_verified += 1
    try:
        snap = decode_island(inner.get(key).data, key=key)
    except NotFound:
        result.violation("checkpoints", f"island {island}: final HEAD names {key}, which is "
                                        f"gone")
        return
    except IslandSyncError as err:
        snap, why = None, str(err)[:120]
    else:
        why = f"it holds island {snap.island}"
    if (snap is None or snap.island != island) and key not in bad_keys:
        result.violation("checkpoints", f"island {island}: final HEAD's {key} does not load "
                                        f"({why})")


__all__ = ["CHECKS", "SEED_ENV", "SoakResult", "island_of", "judge", "judge_final_checkpoint",
           "judge_lineage", "judge_records", "verify_live"]
