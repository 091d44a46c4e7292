"""The soak: three leader candidates and three workers, threads of one process, share one
LocalStore, each through a FaultyStore of its own (seeded from the soak's seed), for a bounded
time; then the invariants are judged. Shared by ``tests/chaos/test_soak.py`` (a short run per
seed in CI) and ``benchmarks/soak.py`` (a long one), so both run exactly this code. The
:class:`~islandsync.testing.recorder.Recorder` watches the shared store from outside every
fault, and skips the byzantine writer's garbage through the read boundary.

Faults each party suffers: errors before a call, lost replies (puts and deletes), latency
spikes, an outage window of its own and one all parties share, and a byzantine writer that
replaces some of what the party writes (heartbeats, leases, assignments, HEADs, elite HEADs,
checkpoints and elite epochs, history segments, protocol.json) with garbage of every kind,
forged terms among it. With ``ISLANDSYNC_SOAK_GARBAGE=all``, also padded and bomb
checkpoints and elites, and a zombie worker with a live worker's id.

The seed fixes every party's fault schedule for a given sequence of calls; threads interleave
differently from run to run, so a replay reproduces the faults' mix and rates, not every
instant. Invariants (each a named check, so a test can mark one known fault):

* ``lineage`` — along the HEAD versions observed, an island's generation never goes back and
  its history is linear (one checkpoint per generation, none returns), except right after the
  byzantine writer corrupted a blob of that island (then the next owner may resume older);
* ``checkpoints`` — the checkpoint each island's current HEAD names is present (checked while
  running and at the end) and loads at the end, unless the byzantine writer replaced it;
* ``elites`` — the best score of the merged elite never regresses from one observed epoch to
  the next, except right after an elite blob was corrupted; no epoch holds a duplicate id;
* ``threads`` — no thread ended in an unhandled exception (``threading.excepthook``), every
  worker's uploader, bucket and heartbeat threads stayed alive, no party stopped early;
* ``progress`` — something happened at all (HEADs advanced and elites were merged), so a soak
  whose parties all stalled at once cannot pass;
* ``records`` — a late joiner gets in whatever garbage sits in protocol.json, every history
  segment the reader skips is the byzantine writer's, and a forged assignment is replaced
  within :data:`FORGED_STANDS_S` (the leader keeps assigning).
"""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from islandsync.bucket import codec
from islandsync.bucket.layout import (
    ELITE_HEAD_KEY,
    ELITE_PREFIX,
    HISTORY_PREFIX,
    PROTOCOL_KEY,
    WORKERS_PREFIX,
    head_key,
)
from islandsync.bucket.records import check_protocol
from islandsync.bucket.run import init_run
from islandsync.errors import StoreError
from islandsync.leader.coordinator import Coordinator
from islandsync.leader.history import HistoryObserver, RunHistory
from islandsync.leader.settings import LeaderSettings
from islandsync.store import LocalStore
from islandsync.testing.cluster import cluster_spec
from islandsync.testing.faulty import (
    ISZ_GARBAGE,
    SIZE_GARBAGE,
    Byzantine,
    ErrorBefore,
    FaultyStore,
    Latency,
    LostReply,
    Outage,
)
from islandsync.testing.recorder import Recorder
from islandsync.testing.soak_judging import (
    CHECKS,
    SEED_ENV,
    SoakResult,
    judge,
    judge_records,
    verify_live,
)

#: ``all``: the soak also writes the garbage whose fixes are issue 18's N4/N5 and the zombie
#: case (padded and bomb checkpoints and elites, a second process with a live worker's id).
GARBAGE_ENV = "ISLANDSYNC_SOAK_GARBAGE"
WORKER_THREADS = ("islandsync-uploader", "islandsync-bucket", "islandsync-heartbeat")

#: A key pattern (FaultyStore's glob) over every island's HEAD.
EVERY_HEAD = head_key("*")  # type: ignore[arg-type]


def soak_spec(islands: int = 6):
    """A small fast run: tiny populations, short cadences and timeouts."""
    return cluster_spec(islands=islands, dim=4, pop=8, checkpoint_interval_s=0.5,
                        heartbeat_interval_s=0.4)


def soak_rules(rng: random.Random, shared_outage: Outage, *, all_garbage: bool = False
               ) -> list:
    """One party's faults (rates per matching call). ``all_garbage``: checkpoints and elites
    get the size garbage too (padded, decompression bombs)."""
    isz = tuple(k for k in ISZ_GARBAGE if all_garbage or k not in SIZE_GARBAGE)
    return [
        ErrorBefore(rate=0.04),
        LostReply(ops=("put", "delete"), rate=0.05),
        # Where a lost reply or an error costs most: HEAD CAS, and a new leader's elite reads.
        LostReply(ops=("put",), keys=EVERY_HEAD, rate=0.1),
        ErrorBefore(ops=("get", "list"), keys=f"{ELITE_PREFIX}*", rate=0.1),
        Latency(rate=0.02, seconds=0.25),
        # Long enough, now and then, for a leader's lease to lapse (3 s): takeovers happen.
        Outage(start=rng.uniform(3, 8), length=rng.uniform(1.5, 4.5), every=rng.uniform(10, 16)),
        shared_outage,
        Byzantine(keys=f"{WORKERS_PREFIX}*", rate=0.01, codec=codec),
        Byzantine(keys="re:^(lease|assignment)\\.json$", rate=0.01, codec=codec),
        Byzantine(keys=EVERY_HEAD, rate=0.0015, codec=codec),
        Byzantine(keys=ELITE_HEAD_KEY, rate=0.02, codec=codec),
        Byzantine(keys="*.isz", rate=0.01, codec=codec, kinds=isz),
        # Forged and runaway terms, where terms live: the leader must keep assigning.
        Byzantine(keys="re:^(lease|assignment|elite/HEAD)\\.json$", rate=0.01,
                  kinds=("forged_term", "term_at_cap")),
        Byzantine(keys=f"{HISTORY_PREFIX}*", rate=0.1, codec=codec),  # oversized among the rest
        Byzantine(keys=PROTOCOL_KEY, rate=1.0),  # each joiner's write: garbage at once
    ]


class _Party:
    """One thread: a coordinator candidate or a worker, with its FaultyStore."""

    def __init__(self, name: str, store: FaultyStore, target: Callable[[], Any]) -> None:
        self.name, self.store = name, store
        self.result: Any = None
        self.thread = threading.Thread(target=self._main, args=(target,), name=f"soak-{name}",
                                       daemon=True)

    def _main(self, target: Callable[[], Any]) -> None:
        self.result = target()


def run_soak(root: Path, *, seed: int, seconds: float = 35.0, workers: int = 3,
             candidates: int = 3, islands: int = 6,
             progress: Callable[[str], None] | None = None,
             rules: Callable[[random.Random, Outage], list] | None = None,
             all_garbage: bool | None = None) -> SoakResult:
    """Run the soak in ``root`` (an empty folder) and judge it; never raises for a violation.
    ``rules(rng, shared_outage)`` makes each party's faults (:func:`soak_rules`).
    ``all_garbage`` (default: ``ISLANDSYNC_SOAK_GARBAGE=all``): size garbage too, and a
    zombie: a second process with a live worker's id, from a third of the way in."""
    import torch  # the workers' engine; one thread each, as on a 2-core notebook

    if all_garbage is None:
        all_garbage = os.environ.get(GARBAGE_ENV) == "all"
    if rules is None:
        rules = functools.partial(soak_rules, all_garbage=all_garbage)
    rng = random.Random(seed)
    spec = soak_spec(islands)
    inner = LocalStore(root / "run")
    init_run(inner, spec)
    shared = Outage(start=rng.uniform(8, 15), length=2.0, every=rng.uniform(20, 30))
    result = SoakResult(seed, seconds)
    uncaught: list[str] = []
    previous_hook, previous_threads = threading.excepthook, torch.get_num_threads()

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread else "?"
        uncaught.append(f"thread {name} died: {args.exc_type.__name__}: {args.exc_value}")
        previous_hook(args)

    def faulty(k: int) -> FaultyStore:
        return FaultyStore(inner, seed=seed * 1000 + k,
                           rules=rules(random.Random(seed * 1000 + k), shared))

    threading.excepthook = hook
    torch.set_num_threads(1)
    stop = threading.Event()
    try:
        parties = _candidates(faulty, spec, candidates, stop)
        joiners = [(f"w{k}", f"w{k}", 0.0) for k in range(workers)]
        if all_garbage:  # the zombie: w0's id in a second process
            joiners.append(("z0", "w0", seconds / 3))
        running, joined = _workers(faulty, spec, joiners, stop)
        parties += joined
        with Recorder(inner, islands, every=0.1) as rec:
            result.started = time.monotonic()
            for p in parties:
                p.thread.start()
            _watch(inner, result, rec, parties, seconds, islands, workers, progress)
            result.stopped_at = time.monotonic()
            stop.set()
            for w in running:
                w.request_stop("soak over")
            for p in parties:
                p.thread.join(timeout=120)
                if p.thread.is_alive():
                    result.violation("threads", f"{p.name} did not stop within 120 s")
            time.sleep(0.3)  # the recorder sees the final HEADs
        corruptions = sorted(e for p in parties for e in p.store.corruptions())
        for p in parties:
            result.faults.update(p.store.counts())
        judge(inner, result, rec, corruptions, islands)
        judge_records(inner, result, rec, corruptions, {f"c{k}" for k in range(candidates)})
        for p in parties:
            if p.name.startswith("w") and p.result is not None \
                    and p.result.stopped != "soak over":
                result.violation("threads", f"{p.name} stopped early: {p.result.stopped}")
        result.violations["threads"][:0] = uncaught
    finally:
        stop.set()
        threading.excepthook = previous_hook
        torch.set_num_threads(previous_threads)
    return result


def _candidates(faulty: Callable[[int], FaultyStore], spec: Any, count: int,
                stop: threading.Event) -> list[_Party]:
    """The leader candidates, each a real Coordinator on a FaultyStore of its own."""
    parties = []
    for k in range(count):
        store = faulty(k)
        # Each leader keeps the run's history, small and fast, so that compaction and the
        # byzantine writer's segments show within a short soak.
        history = RunHistory(store, every_s=0.5, flush_s=2.0, per_segment=8, max_segments=8,
                             compact_group=3)
        c = Coordinator(store, candidate=f"c{k}", spec=spec,
                        settings=LeaderSettings(lease_s=3.0, cycle_s=0.5, housekeeping_s=5.0),
                        observer=HistoryObserver(history))
        # The run flushes the history as it stops (the observer's on_stop).
        parties.append(_Party(f"c{k}", store, lambda c=c: c.run(stop)))
    return parties


def _workers(faulty: Callable[[int], FaultyStore], spec: Any,
             joiners: list[tuple[str, str, float]],
             stop: threading.Event) -> tuple[list[Any], list[_Party]]:
    """The workers (``(name, worker id, delay)``), each on a FaultyStore of its own: the
    Worker objects, and their parties."""
    from islandsync.worker.worker import Worker  # torch: imported when a soak runs

    running, parties = [], []
    for k, (name, worker_id, delay) in enumerate(joiners):
        store = faulty(100 + k)
        # The zombie is an old incarnation: it passed its id check long ago.
        w = Worker(store, spec=spec, device="cpu", worker_id=worker_id, progress=False,
                   check_id=name == worker_id)
        running.append(w)
        parties.append(_Party(name, store, lambda s=store, w=w, d=delay: _join(s, w, d, stop)))
    return running, parties


def _join(store: FaultyStore, worker: Any, delay: float, stop: threading.Event) -> Any:
    """A worker joining as ``islandsync.run`` has it join: the protocol checked first (its
    own write of protocol.json is turned to garbage at once, which the next joiner replaces),
    retried through the injected store errors."""
    if stop.wait(delay):
        return None
    for _ in range(20):
        try:
            check_protocol(store)
            break
        except StoreError:
            time.sleep(0.1)
    return worker.run()


def _watch(inner: LocalStore, result: SoakResult, rec: Recorder, parties: list[_Party],
           seconds: float, islands: int, workers: int,
           progress: Callable[[str], None] | None) -> None:
    """Wait out the soak, checking live what only a live run shows: threads and the presence
    of each current HEAD's checkpoint."""
    started = time.monotonic()
    next_report = started + 10.0
    dead: set[str] = set()
    while (now := time.monotonic()) - started < seconds:
        time.sleep(0.5)
        alive = Counter(t.name for t in threading.enumerate())
        for name in WORKER_THREADS:
            if alive[name] < workers and name not in dead:
                dead.add(name)
                result.violation("threads", f"only {alive[name]} of {workers} {name} threads "
                                            f"alive at {now - started:.0f} s")
        for p in parties:
            if not p.thread.is_alive() and p.name not in dead:
                dead.add(p.name)
                result.violation("threads", f"{p.name} ended at {now - started:.0f} s")
        for island in range(islands):
            verify_live(inner, result, island)
        if progress is not None and now >= next_report:
            next_report = now + 10.0
            faults = sum(sum(p.store.counts().values()) for p in parties)
            heads = sum(len(v) for v in rec.heads.values())
            progress(f"  {now - started:5.0f} s: {faults} faults, {heads} HEAD versions, "
                     f"{len(rec.elite_epochs)} elite epochs, "
                     f"{sum(map(len, result.violations.values()))} violations")


def quiet_logs() -> None:
    """The parties warn about every injected fault: keep a long soak's output readable."""
    logging.getLogger("islandsync").setLevel(logging.ERROR)


__all__ = ["CHECKS", "SEED_ENV", "SoakResult", "quiet_logs", "run_soak", "soak_spec"]
