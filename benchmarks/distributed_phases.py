"""The phases of ``benchmarks/distributed.py``: throughput (a measured window per N), faults
(failover, a worker's recovery, a failover after a worker death) and the frugal cadence's
operations. A sibling module of the script."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any

from distributed_runs import Bench, BenchRun, log_times

from islandsync.bucket.records import Assignment, read_head
from islandsync.errors import IslandSyncError, NotFound
from islandsync.store import BlobStore
from islandsync.testing.machine import cpu_times, load_average
from islandsync.testing.observe import scrape
from islandsync.testing.processes import cpu_seconds

# -- phase: throughput ----------------------------------------------------------------------

def sample_checkpoint(store: BlobStore, islands: int) -> dict[str, Any] | None:
    """Sizes of one island's latest checkpoint blob, frame by frame (the workers count only
    the snapshot's arrays as raw bytes; the blob also carries the elite frame)."""
    from islandsync.bucket import codec

    for i in range(islands):
        cur = read_head(store, i)
        if cur is None or not cur[0].checkpoint:
            continue
        try:
            data = store.get(cur[0].checkpoint).data
            _, frames = codec.decode(data, name=cur[0].checkpoint)
        except (IslandSyncError, NotFound):
            continue
        return {"key": cur[0].checkpoint, "blob_bytes": len(data),
                "frames_raw_bytes": sum(v.nbytes for v in frames.values()),
                "elite_frame_raw_bytes": sum(v.nbytes for k, v in frames.items()
                                             if k.startswith("elite."))}
    return None


CHECKPOINT_FIELDS = (("uploads", "uploads"), ("failures", "failures"),
                     ("seconds_sum", "seconds_sum"), ("bytes_raw", "bytes_raw_total"),
                     ("bytes_compressed", "bytes_compressed_total"))


def worker_window(a: dict[str, Any], z: dict[str, Any], ck: dict[str, float],
                  buckets: dict[str, float]) -> dict[str, float] | None:
    """One worker's deltas between two of its heartbeats ``a`` and ``z`` (on its own
    ``written_at`` clock); its checkpoint counts are added to ``ck`` and ``buckets``."""
    dt = (z.get("written_at") or 0) - (a.get("written_at") or 0)
    if dt <= 0:
        return None
    za, aa = z.get("store", {}).get("ops", {}), a.get("store", {}).get("ops", {})
    zc, ac = z.get("checkpoint", {}), a.get("checkpoint", {})
    for k, src in CHECKPOINT_FIELDS:
        ck[k] += (zc.get(src) or 0) - (ac.get(src) or 0)
    for le, n in (zc.get("seconds_buckets") or {}).items():
        buckets[le] = buckets.get(le, 0) + n - (ac.get("seconds_buckets") or {}).get(le, 0)

    def d(key: str) -> float:
        return (z.get(key) or 0) - (a.get(key) or 0)

    return {"dt": dt, "evals": d("evaluations"), "blocked": d("checkpoint_blocked_s"),
            "generations": d("generations"),
            "A": za.get("A", 0) - aa.get("A", 0), "B": za.get("B", 0) - aa.get("B", 0),
            "islands": len(z.get("islands") or [])}


def window_stats(run: BenchRun, h0: dict[str, dict], h1: dict[str, dict],
                 cpu0: dict[str, float | None], cpu1: dict[str, float | None],
                 wall: float) -> dict[str, Any]:
    """The workers' figures over a window, from their heartbeats at its two ends."""
    per_worker = {}
    agg_rate = blocked = worker_s = 0.0
    ops = {"A": 0.0, "B": 0.0}
    ck = {"uploads": 0, "failures": 0, "seconds_sum": 0.0, "bytes_raw": 0, "bytes_compressed": 0}
    buckets: dict[str, float] = {}
    for w in run.live_workers():
        if w not in h0 or w not in h1:
            continue
        d = worker_window(h0[w], h1[w], ck, buckets)
        if d is None:
            continue
        dt = d["dt"]
        cpu = ((cpu1[w] - cpu0[w]) / wall if cpu0.get(w) is not None
               and cpu1.get(w) is not None else None)
        per_worker[w] = {"islands": d["islands"], "window_s": round(dt, 2),
                         "evals_per_s": round(d["evals"] / dt, 1),
                         "blocked_share": d["blocked"] / dt, "ops_A_per_h": d["A"] * 3600 / dt,
                         "ops_B_per_h": d["B"] * 3600 / dt,
                         "cpu_share": None if cpu is None else round(cpu, 3),
                         "generations_per_s": round(d["generations"] / dt, 2)}
        agg_rate += d["evals"] / dt
        blocked += d["blocked"]
        worker_s += dt
        for k in ops:
            ops[k] += d[k]
    return {"per_worker": per_worker, "evals_per_s": agg_rate,
            "checkpoint_blocked_share": blocked / worker_s if worker_s else None,
            "worker_hours": worker_s / 3600, "ops": ops, "checkpoint": ck,
            "upload_buckets": buckets}


def leader_window(m0: dict[str, float], m1: dict[str, float], wall: float) -> dict[str, Any]:
    """The leader's figures over a window, from its /metrics at its two ends."""
    def delta(name: str) -> float:
        return m1.get(name, 0.0) - m0.get(name, 0.0)

    merge_buckets = {}
    for key in m1:
        m = re.match(r'islandsync_merge_seconds_bucket\{le="([^"]+)"\}', key)
        if m:
            merge_buckets[m[1]] = delta(key)
    merge_sum = delta("islandsync_merge_seconds_sum")
    ops = {k: delta(f'islandsync_bucket_operations_total{{class="{k}",worker="coordinator"}}')
           * 3600 / wall for k in ("A", "B")}
    return {"merge_seconds_sum": merge_sum, "merges": delta("islandsync_merge_seconds_count"),
            "merge_share": merge_sum / wall if wall else None, "merge_buckets": merge_buckets,
            "merge_candidates": m1.get("islandsync_merge_candidates"),
            "duplicates_removed": delta("islandsync_duplicates_removed_total"),
            "ops_per_hour": ops, "metrics_scraped": bool(m0) and bool(m1)}


class Window:
    """What is read at each end of a measured window: the leader's /metrics, the workers'
    heartbeats, every process's CPU seconds, the machine's CPU times and load."""

    def __init__(self, run: BenchRun) -> None:
        self.pids = {w: run.proc(w).pid for w in run.workers}
        self.pids[run.leader] = run.proc(run.leader).pid
        self.pids["benchmark"] = os.getpid()  # its recorder and heartbeat reads
        self.port = run.cluster.metrics_ports[run.leader]
        self.run = run

    def read(self) -> dict[str, Any]:
        return {"wall": time.time(), "metrics": scrape(self.port),
                "beats": self.run.heartbeats(), "mono": time.monotonic(),
                "cpu": {k: cpu_seconds(p) for k, p in self.pids.items()},
                "machine": cpu_times(), "load": load_average()}


def cpu_use(start: dict[str, Any], end: dict[str, Any], wall: float) -> dict[str, Any]:
    """How busy the machine's CPUs were over the window, and how much of that was this
    cluster (cores)."""
    ncpu = os.cpu_count() or 1
    m0, m1 = start["machine"], end["machine"]
    busy = None
    if m0 and m1 and m1[1] > m0[1]:
        busy = (m1[0] - m0[0]) / (m1[1] - m0[1]) * ncpu
    c0, c1 = start["cpu"], end["cpu"]
    used = [c1[k] - c0[k] for k in c0 if c0.get(k) is not None and c1.get(k) is not None]
    ours = sum(used) / wall if used else None
    bench = (None if c0.get("benchmark") is None
             else round((c1["benchmark"] - c0["benchmark"]) / wall, 3))
    return {"cores": ncpu, "busy_cores": None if busy is None else round(busy, 2),
            "this_cluster_cores": None if ours is None else round(ours, 2),
            "benchmark_cores": bench,
            "others_cores": None if busy is None or ours is None
            else round(max(0.0, busy - ours), 2)}


def elite_epochs(run: BenchRun, t0: float, t1: float) -> int:
    """Elite epochs written between monotonic ``t0`` and ``t1``: the newest epoch the
    recorder had seen by each (it may not read every one; the epochs count on)."""
    seen = run.recorder.elites()
    before = max((e.epoch for e in seen if e.at < t0), default=None)
    by_end = max((e.epoch for e in seen if e.at < t1), default=None)
    if before is None or by_end is None:
        return sum(1 for e in seen if t0 <= e.at < t1)
    return by_end - before


def measure_window(b: Bench, run: BenchRun, steady: bool) -> dict[str, Any]:
    """The measured window of a throughput phase, after the cluster settled."""
    window = Window(run)
    start = window.read()
    assign0 = len(run.recorder.assignment_records)
    b.tick(run, b.duration, "window")
    end = window.read()
    wall = end["wall"] - start["wall"]
    stats = window_stats(run, start["beats"], end["beats"], start["cpu"], end["cpu"], wall)
    leader = leader_window(start["metrics"], end["metrics"], wall)
    lc0, lc1 = start["cpu"].get(run.leader), end["cpu"].get(run.leader)
    leader["cpu_share"] = None if lc0 is None or lc1 is None else round((lc1 - lc0) / wall, 4)
    first = min(run.proc(w).started_wall for w in run.workers)
    return {
        "workers": run.n, "steady": steady, "window_s": round(wall, 2),
        "islands_per_worker": {w: len(b_.get("islands") or [])
                               for w, b_ in sorted(end["beats"].items())},
        "evals_per_s": round(stats["evals_per_s"], 1), "per_worker": stats["per_worker"],
        "checkpoint_blocked_share": stats["checkpoint_blocked_share"],
        "checkpoint": stats["checkpoint"], "upload_buckets": stats["upload_buckets"],
        "worker_ops_per_hour": {k: (v / stats["worker_hours"] if stats["worker_hours"]
                                    else None) for k, v in stats["ops"].items()},
        "leader": leader,
        "elite_epochs_per_hour": elite_epochs(run, start["mono"], end["mono"]) * 3600 / wall,
        "assignments_written_in_window": len(run.recorder.assignment_records) - assign0,
        "sample_checkpoint": sample_checkpoint(run.store, b.args.islands),
        "loadavg": {"start": start["load"], "end": end["load"]},
        "window_after_worker_start_s": [round(start["wall"] - first, 1),
                                        round(end["wall"] - first, 1)],
        "machine_cpu": cpu_use(start, end, wall),
    }


def throughput_phase(b: Bench, run: BenchRun) -> dict[str, Any]:
    """Warm up until every island is hosted, settle, then measure a window."""
    steady = b.wait_steady(run, b.warmup_timeout)
    if not steady:
        b.say(f"{run.label}: not every island hosted after {b.warmup_timeout:g}s; "
              f"measuring anyway")
        b.notes.append(f"N={run.n}: warm-up did not reach one host per island within "
                       f"{b.warmup_timeout:g}s; the window was measured anyway")
    settle = run.cadence.heartbeat_s + 0.5
    b.say(run.line(f"steady, settling {settle:g}s"))
    time.sleep(settle)
    result = measure_window(b, run, steady)
    b.say(f"{run.label}: {result['evals_per_s']:,.0f} evals/s aggregate over "
          f"{result['window_s']:.0f}s; islands {result['islands_per_worker']}; checkpoint "
          f"blocked {100 * (result['checkpoint_blocked_share'] or 0):.3f}%; merge "
          f"{100 * (result['leader']['merge_share'] or 0):.3f}% of the leader; load "
          f"{result['loadavg']['end']}")
    return result


# -- phase: faults --------------------------------------------------------------------------

def wait_new_term(b: Bench, run: BenchRun, killed_mono: float, killed_wall: float,
                  old_term: int, tag: str) -> Assignment | None:
    """The first assignment of a term above ``old_term`` seen after the kill, or None."""
    c = run.cadence
    limit = 2 * c.lease_s + 4 * c.cycle_s + 30
    next_line = time.monotonic() + b.progress_every
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        news = [a for a in run.assignments_since(killed_mono) if a.term > old_term]
        if news:
            return news[0]
        if time.monotonic() >= next_line:
            next_line += b.progress_every
            b.say(f"{tag}: waiting for a new leader ({time.time() - killed_wall:.0f}s since "
                  f"kill)")
        time.sleep(0.05)
    b.say(f"{tag}: no assignment of a new term within {limit:g}s")
    return None


def wait_hosted_again(run: BenchRun, first: Assignment, killed_wall: float) -> float | None:
    """Seconds after the kill until every island is hosted by a live worker again (by
    heartbeats written after ``first``), or None."""
    c = run.cadence
    t_end = time.monotonic() + c.worker_timeout_s + 4 * c.cycle_s + c.poll_s + 30
    while time.monotonic() < t_end:
        beats = run.heartbeats()
        if run.steady(beats) and all(b_.get("written_at", 0) > first.written_at
                                     for b_ in beats.values()):
            return round(time.time() - killed_wall, 2)
        time.sleep(0.25)
    return None


def failover(b: Bench, run: BenchRun, standby: str, tag: str) -> dict[str, Any]:
    """Kill -9 the leader with ``standby`` watching; until the new term's first assignment."""
    old, old_term = run.leader, run.recorder.lease_term()
    dead = sorted(w for w in run.workers if run.proc(w).killed)
    t_kill = run.kill(old)
    b.say(f"{tag}: kill -9 leader {old} (term {old_term}); candidate {standby} watching")
    first = wait_new_term(b, run, run.proc(old).killed_at, t_kill, old_term, tag)
    run.leader = standby
    out: dict[str, Any] = {"killed": old, "old_term": old_term, "new_leader": standby,
                           "lease_s": run.cadence.lease_s, "cycle_s": run.cadence.cycle_s,
                           "estimate": run.cadence.failover_estimate(
                               b.context().leader_calls_s(len(run.live_workers())))}
    took = log_times(run.proc(standby).log, re.compile(r"took over from .*term (\d+)"))
    took = [t for t, _ in took if t >= t_kill]
    out["takeover_s"] = round(took[0] - t_kill, 2) if took else None
    out["failover_s"] = None if first is None else round(first.written_at - t_kill, 2)
    if first is None:
        return out
    if out["takeover_s"] is not None:
        # The new leader reads heartbeats, HEADs and elites and merges before it writes the
        # assignment: bucket calls at the store's latency.
        out["first_cycle_s"] = round(out["failover_s"] - out["takeover_s"], 2)
    out["new_term"] = first.term
    to_dead = {i: w for i, w in first.islands.items() if w in dead}
    out["first_assignment_workers"] = list(first.workers)
    out["dead_workers_listed_alive"] = [w for w in first.workers if w in dead]
    out["islands_assigned_to_dead_workers"] = {str(i): w for i, w in sorted(to_dead.items())}
    out["dead_workers_before"] = dead
    b.say(f"{tag}: term {first.term} assignment by {standby} {out['failover_s']:.1f}s "
          f"after the kill (lease taken at {out['takeover_s']}s)"
          + (f"; it gives islands {sorted(to_dead)} to dead worker(s) "
             f"{sorted(set(to_dead.values()))}" if to_dead else ""))
    if to_dead or out["dead_workers_listed_alive"]:
        out["all_islands_hosted_again_s"] = wait_hosted_again(run, first, t_kill)
        out["idle_islands_s"] = idle_from_logs(run, sorted(to_dead), t_kill)
        b.say(f"{tag}: every island hosted by a live worker again "
              f"{out['all_islands_hosted_again_s']}s after the kill")
    return out


def idle_from_logs(run: BenchRun, islands: list[int], since: float) -> dict[str, Any]:
    """Per island: seconds from its release by a live owner (after ``since``) to its next
    claim by a live worker, from the workers' logs."""
    released: dict[int, float] = {}
    claimed: dict[int, float] = {}
    rel = re.compile(r"islands \[([0-9, ]+)\] released")
    got = re.compile(r"island (\d+) claimed at generation")
    for w in run.live_workers():
        for when, m in log_times(run.proc(w).log, rel):
            for i in (int(x) for x in m[1].split(",")):
                if when >= since and i in islands and i not in released:
                    released[i] = when
    for w in run.live_workers():
        for when, m in log_times(run.proc(w).log, got):
            i = int(m[1])
            if i in released and when >= released[i] and (i not in claimed
                                                             or when < claimed[i]):
                claimed[i] = when
    return {str(i): round(claimed[i] - released[i], 2) for i in islands
            if i in released and i in claimed}


@dataclass
class Lost:
    """A killed worker's islands, as they come back."""

    victim: str
    generations: dict[int, int]  # island -> its HEAD generation before the kill
    t_kill: float  # wall
    claimed: dict[int, tuple[str, float]]  # island -> (new owner, HEAD written_at)
    hosted: dict[int, float]  # island -> written_at of a heartbeat listing it
    advanced: dict[int, float]  # island -> written_at of a HEAD past the old generation

    def look(self, run: BenchRun) -> None:
        for i, gen in self.generations.items():
            cur = read_head(run.store, i)
            if cur is None:
                continue
            h = cur[0]
            if h.owner in (self.victim, None):
                continue
            self.claimed.setdefault(i, (h.owner, h.written_at))
            if i not in self.advanced and h.generation > gen:
                self.advanced[i] = h.written_at
        beats = run.heartbeats()
        for i, (owner, _) in self.claimed.items():
            hb = beats.get(owner)
            if i not in self.hosted and hb and i in (hb.get("islands") or []) \
                    and hb.get("written_at", 0) > self.t_kill:
                self.hosted[i] = hb["written_at"]


def kill_busiest_worker(b: Bench, run: BenchRun, tag: str) -> tuple[Lost, float | None]:
    beats = run.heartbeats()
    victim = max(run.live_workers(),
                 key=lambda w: (len(beats.get(w, {}).get("islands") or []), w))
    gens: dict[int, int] = {}
    for i in range(b.args.islands):
        cur = read_head(run.store, i)
        if cur is not None and cur[0].owner == victim:
            gens[i] = cur[0].generation
    last_beat = beats.get(victim, {}).get("written_at")
    t_kill = run.kill(victim)
    b.say(f"{tag}: kill -9 worker {victim} (islands {sorted(gens)}; its last heartbeat "
          f"{t_kill - last_beat if last_beat else float('nan'):.1f}s before)")
    return Lost(victim, gens, t_kill, {}, {}, {}), last_beat


def watch_recovery(b: Bench, run: BenchRun, lost: Lost, tag: str, wait_advance: bool) -> float:
    """Until each lost island steps elsewhere (and, with ``wait_advance``, its HEAD is past
    its pre-kill generation, or a little later gave up on that); returns the time limit."""
    c = run.cadence
    limit = c.worker_timeout_s + 4 * c.cycle_s + 2 * c.poll_s + 30
    limit += c.checkpoint_s if wait_advance else 0
    deadline = time.monotonic() + limit
    next_line = time.monotonic() + b.progress_every
    claim_deadline = None
    n = len(lost.generations)
    while time.monotonic() < deadline:
        lost.look(run)
        if len(lost.hosted) == n and claim_deadline is None:
            # Stepping again; wait a little longer to see HEAD generations advance too.
            claim_deadline = time.monotonic() + (
                c.checkpoint_s + 2 * c.heartbeat_s + 5 if wait_advance else 0)
        if len(lost.advanced) == n or (claim_deadline and time.monotonic() > claim_deadline):
            break
        if time.monotonic() >= next_line:
            next_line += b.progress_every
            b.say(f"{tag}: {time.time() - lost.t_kill:4.0f}s since kill: claimed "
                  f"{sorted(lost.claimed)}, stepping {sorted(lost.hosted)}, HEAD advanced "
                  f"{sorted(lost.advanced)} of {sorted(lost.generations)}")
        time.sleep(0.25)
    return limit


def recovery(b: Bench, run: BenchRun, tag: str, wait_advance: bool = True) -> dict[str, Any]:
    """Kill -9 the worker hosting the most islands; until each is stepping elsewhere."""
    lost, last_beat = kill_busiest_worker(b, run, tag)
    limit = watch_recovery(b, run, lost, tag, wait_advance)
    t_kill, islands = lost.t_kill, lost.generations
    # Exact claim times from the new owners' logs ("island N claimed at generation G":
    # logged when the worker loop puts the island into its engine, just before stepping it).
    pattern = re.compile(r"island (\d+) claimed at generation (\d+)")
    taken: dict[int, float] = {}
    for w in run.live_workers():
        for when, m in log_times(run.proc(w).log, pattern):
            if when >= t_kill and int(m[1]) in islands:
                taken.setdefault(int(m[1]), when)
    # When the leader first wrote an assignment without the victim.
    detect = [a for a in run.assignments_since(run.proc(lost.victim).killed_at - 1)
              if a.written_at >= t_kill and lost.victim not in a.workers]
    out: dict[str, Any] = {
        "victim": lost.victim, "islands": sorted(islands),
        "estimate": run.cadence.recovery_estimate(b.context().calls_s(len(run.live_workers()))),
        "cadence": run.cadence.as_dict(),
        "last_heartbeat_before_kill_s": round(t_kill - last_beat, 2) if last_beat else None,
        "declared_dead_s": round(detect[0].written_at - t_kill, 2) if detect else None,
    }
    every = bool(islands)

    def after(times: dict[int, float]) -> float | None:
        return round(max(times.values()) - t_kill, 2) if every and len(times) == len(islands) \
            else None

    if after(taken) is not None:
        out["recovery_s"], out["source"] = after(taken), ("worker logs: island taken into "
                                                          "the new owner's engine")
    elif after({i: s for i, (_, s) in lost.claimed.items()}) is not None:
        out["recovery_s"] = after({i: s for i, (_, s) in lost.claimed.items()})
        out["source"] = "HEAD written_at of the claiming write"
    else:
        out["recovery_s"], out["source"] = None, f"not all islands recovered within {limit:g}s"
    out["per_island_s"] = {str(i): round(taken[i] - t_kill, 2) for i in sorted(taken)}
    out["claimed_by"] = {str(i): lost.claimed[i][0] for i in sorted(lost.claimed)}
    out["confirmed_by_heartbeat_s"] = after(lost.hosted)
    out["head_advanced_s"] = after(lost.advanced)
    b.say(f"{tag}: recovery {out['recovery_s']}s (declared dead at {out['declared_dead_s']}s, "
          f"stepping confirmed by heartbeat at {out['confirmed_by_heartbeat_s']}s, HEAD "
          f"generations advanced by {out['head_advanced_s']}s)")
    return out


def fault_phase(b: Bench, run: BenchRun, with_recovery: bool = True) -> dict[str, Any]:
    """Failover, then (``with_recovery``) a worker's recovery, then unless ``--quick`` a
    failover to a leader that does not know of the dead worker."""
    out: dict[str, Any] = {"cluster": run.label, "workers": run.n}
    standby = f"{run.label}-standby"
    b.candidate(run, standby)
    # The candidate watches the lease from its first cycle; give it one.
    time.sleep(run.cadence.cycle_s + 2.0)
    run.cluster.check_running()
    out["failover"] = failover(b, run, standby, "failover")
    if not with_recovery:
        out["recovery"] = {}
        return out
    if not b.args.quick:
        b.candidate(run, f"{run.label}-standby2")
    settle = run.cadence.heartbeat_s + run.cadence.poll_s + 1
    b.wait_steady(run, 30 + settle)
    time.sleep(settle)
    out["recovery"] = recovery(b, run, "recovery")
    if not b.args.quick:
        time.sleep(run.cadence.cycle_s + 1)
        out["failover_after_worker_death"] = failover(b, run, f"{run.label}-standby2",
                                                      "failover after a worker death")
    return out


def frugal_phase(b: Bench, n: int) -> dict[str, Any]:
    """The frugal cadence's operations over a window long enough to hold a checkpoint, then
    a worker's recovery."""
    c = b.frugal
    run = b.start_run(f"frugal-n{n}", c, n)
    try:
        b.wait_steady(run, b.warmup_timeout + c.heartbeat_s)
        time.sleep(c.heartbeat_s + 0.5)
        window = max(b.duration, c.checkpoint_s + c.heartbeat_s + 10)
        h0, t0 = run.heartbeats(), time.time()
        b.tick(run, window, "window", every=max(b.progress_every, 10))
        h1 = run.heartbeats()
        stats = window_stats(run, h0, h1, {}, {}, time.time() - t0)
        ops = {k: (v / stats["worker_hours"] if stats["worker_hours"] else None)
               for k, v in stats["ops"].items()}
        rec = recovery(b, run, "frugal recovery", wait_advance=False)
    finally:
        b.stop_run(run)
    return {"workers": n, "window_s": round(window, 1), "worker_ops_per_hour": ops,
            "islands_per_worker": {w: len(v.get("islands") or []) for w, v in h1.items()},
            "recovery": rec}
