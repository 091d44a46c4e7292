"""What ``benchmarks/distributed.py`` makes of its measurements: the summary of its phases
(multipliers, overheads, operations and their cost, the targets' verdicts) and its Markdown
report. Imported by the script as a sibling (``python benchmarks/distributed.py`` puts
benchmarks/ on sys.path); the models it holds measurements against are the package's:
:mod:`islandsync.views.pricing` (prices, operations an hour) and :mod:`islandsync.config.cadence`
(recovery and failover estimates)."""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass
from typing import Any

from islandsync.bucket.heads import DEFAULT_READERS
from islandsync.config.cadence import Cadence, claim_calls_s, leader_calls_s
from islandsync.testing.observe import bucket_range, quantile_from_buckets
from islandsync.views.pricing import HOURS_PER_MONTH, PRICING, leader_ops_model, worker_ops_model

#: The bucket whose list prices the report uses, with no free tier counted.
PRICED_ON = "GCS"


@dataclass(frozen=True)
class Context:
    """What a summary needs besides the phases' figures."""

    islands: int
    store_latency: float
    workload: str
    quick: bool
    default: Cadence
    frugal: Cadence

    def calls_s(self, workers: int) -> float:
        """Bucket-call seconds on a recovery's path (the leader's cycle up to its assignment
        write, then the claim)."""
        lat = self.store_latency
        return round(leader_calls_s(lat, workers, DEFAULT_READERS) + claim_calls_s(lat), 2)

    def leader_calls_s(self, workers: int) -> float:
        return leader_calls_s(self.store_latency, workers, DEFAULT_READERS)


def cost_per_month(a_per_h: float, b_per_h: float) -> float:
    """USD a month of this many operations an hour at :data:`PRICED_ON`'s list prices."""
    return PRICING[PRICED_ON].list_monthly(a_per_h, b_per_h)


def prices() -> dict[str, Any]:
    p = PRICING[PRICED_ON]
    return {"class_a_per_1000": p.a_per_million / 1000, "class_b_per_1000": p.b_per_million / 1000,
            "source": f"{PRICED_ON} {p.note} (islandsync.views.pricing; benchmarks/README.md gives "
                      f"the source); no free tier counted here",
            "as_of": _dt.date.today().isoformat() + " (the run's date)"}


def fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


# -- summary ---------------------------------------------------------------------------------

def multipliers(phases: dict[int, dict]) -> dict[str, float | None]:
    ns = sorted(phases)
    base = phases[ns[0]]["evals_per_s"] if ns and ns[0] == 1 else None
    out = {str(n): (round(phases[n]["evals_per_s"] / base, 3) if base else None) for n in ns}
    if base:
        out["1"] = 1.0
    return out


def checkpoint_summary(phases: dict[int, dict]) -> dict[str, Any]:
    ns = sorted(phases)
    by_n = {str(n): phases[n]["checkpoint_blocked_share"] for n in ns}
    ck = {"uploads": 0, "seconds_sum": 0.0, "bytes_raw": 0, "bytes_compressed": 0,
          "failures": 0}
    buckets: dict[str, float] = {}
    for n in ns:
        for k in ck:
            ck[k] += phases[n]["checkpoint"][k]
        for le, v in phases[n]["upload_buckets"].items():
            buckets[le] = buckets.get(le, 0) + v
    shares = [v for v in by_n.values() if v is not None]
    per = (lambda k: ck[k] / ck["uploads"] if ck["uploads"] else None)
    return {
        "share": max(shares) if shares else None,
        "share_by_workers": by_n,
        "definition": "sum over workers of heartbeat checkpoint_blocked_s deltas / sum of "
                      "their window wall times (each worker on its own written_at clock)",
        "uploads": ck["uploads"], "failures": ck["failures"],
        "upload_seconds": {
            "mean": per("seconds_sum"),
            "p50": quantile_from_buckets(buckets, 0.5),
            "p95": quantile_from_buckets(buckets, 0.95),
            "p50_bucket": bucket_range(buckets, 0.5), "p95_bucket": bucket_range(buckets, 0.95),
            "source": "workers' heartbeat histograms (bounds 0.05, 0.1, 0.25, 0.5, 1, ... s) "
                      "over the windows; p50/p95 interpolated as Prometheus "
                      "histogram_quantile does, the mean is exact"},
        "bytes_per_checkpoint": {
            "raw": per("bytes_raw"), "compressed": per("bytes_compressed"),
            "ratio": ck["bytes_raw"] / ck["bytes_compressed"] if ck["bytes_compressed"]
            else None,
            "what": "per island checkpoint; raw = the snapshot's arrays as the worker counts "
                    "them (bytes_raw_total), compressed = the blob written, which also "
                    "carries the elite frame (top min(elite_size, pop) genomes again)",
            "sample": phases[ns[-1]].get("sample_checkpoint") if ns else None},
    }


def merge_summary(phases: dict[int, dict]) -> dict[str, Any]:
    ns = sorted(phases)
    leaders = [phases[n]["leader"] for n in ns]
    shares = {str(n): phases[n]["leader"]["merge_share"] for n in ns}
    buckets: dict[str, float] = {}
    for ld in leaders:
        for le, v in ld["merge_buckets"].items():
            buckets[le] = buckets.get(le, 0) + v
    total = sum(ld["merge_seconds_sum"] for ld in leaders)
    count = sum(ld["merges"] for ld in leaders)
    known = [v for v in shares.values() if v is not None]
    return {
        "share": max(known) if known else None, "share_by_workers": shares,
        "definition": "islandsync_merge_seconds_sum delta from the leader's /metrics / window "
                      "wall time",
        "merges": count,
        "merge_seconds": {"mean": total / count if count else None,
                          "p50": quantile_from_buckets(buckets, 0.5),
                          "p95": quantile_from_buckets(buckets, 0.95)},
        "candidates": max((ld["merge_candidates"] or 0 for ld in leaders), default=None),
        "duplicates_removed_by_merges": sum(ld["duplicates_removed"] for ld in leaders),
    }


def _worker_cost(ops: dict[str, float], source: str, model: dict[str, Any]) -> dict[str, Any]:
    return {"A": round(ops["A"]), "B": round(ops["B"]), "source": source, "model": model,
            "cost_per_worker_month_usd": round(cost_per_month(ops["A"], ops["B"]), 2)}


def default_costs(ctx: Context, phases: dict[int, dict], faults: dict | None) -> dict[str, Any]:
    """The default cadence's operations, measured in the largest cluster's window."""
    ns = sorted(phases)
    big = ns[-1]
    ph = phases[big]
    ipw = ctx.islands / big
    epochs_h = ph["elite_epochs_per_hour"]
    lead = ph["leader"]["ops_per_hour"]
    rec = (faults or {}).get("recovery") or {}
    return {
        "cadence": ctx.default.as_dict(), "workers": big, "islands_per_worker": ipw,
        "worker": _worker_cost(ph["worker_ops_per_hour"], "measured",
                               worker_ops_model(ctx.default, ipw, epochs_h)),
        "by_workers": {str(n): {k: round(v) for k, v in phases[n]["worker_ops_per_hour"].items()
                                if v is not None} for n in ns},
        "leader": {"A": round(lead["A"]), "B": round(lead["B"]), "source": "measured",
                   "model": leader_ops_model(ctx.default, ctx.islands, big, epochs_h),
                   "cost_per_month_usd": round(cost_per_month(lead["A"], lead["B"]), 2)},
        "recovery_s": rec.get("recovery_s"),
        "recovery_source": "measured" if rec.get("recovery_s") is not None else "estimated",
        "recovery_estimate": ctx.default.recovery_estimate(ctx.calls_s(big)),
    }


def frugal_costs(ctx: Context, big: int, frugal: dict | None) -> dict[str, Any]:
    """The frugal cadence's: measured by a frugal phase, else the model's."""
    fr = ctx.frugal
    ipw = ctx.islands / big
    epochs_h = min(3600 / fr.cycle_s, big * 3600 / fr.checkpoint_s)
    model = worker_ops_model(fr, ipw, epochs_h)
    lead = leader_ops_model(fr, ctx.islands, big, epochs_h)
    if frugal is not None and frugal["worker_ops_per_hour"].get("A") is not None:
        ops, src = frugal["worker_ops_per_hour"], "measured"
    else:
        ops, src = model, "estimated (model)"
    rec = (frugal or {}).get("recovery", {}).get("recovery_s")
    estimate = fr.recovery_estimate(ctx.calls_s(big))
    # The leader's own cadence (cycle, lease) does not change; only what it reads does.
    return {
        "cadence": fr.as_dict(), "workers": big, "islands_per_worker": ipw,
        "worker": _worker_cost(ops, src, model),
        "leader": {"A": lead["A"], "B": lead["B"], "source": "estimated (model)",
                   "cost_per_month_usd": round(cost_per_month(lead["A"], lead["B"]), 2)},
        "recovery_s": rec if rec is not None else estimate["expected_s"],
        "recovery_source": "measured" if rec is not None else "estimated",
        "recovery_estimate": estimate,
    }


def target_rows(ctx: Context, multiplier: dict[str, Any], checkpoint_share: float | None,
                faults: dict | None, elite: dict[str, Any], big: int) -> list[dict[str, Any]]:
    rows = []

    def target(measure: str, goal: str, value: Any, ok: bool | None, shown: str) -> None:
        rows.append({"measure": measure, "target": goal, "value": value, "shown": shown,
                     "verdict": "n/a" if ok is None else ("PASS" if ok else "MISS")})

    for n, v in multiplier.items():
        if n != "1":
            target(f"throughput multiplier, N={n}", f">= {0.95 * int(n):.2f} (0.95 x N)", v,
                   None if v is None else v >= 0.95 * int(n), "-" if v is None else f"{v:.2f}")
    cs = checkpoint_share
    target("checkpoint overhead (worst N)", "< 1%", cs, None if cs is None else cs < 0.01,
           "-" if cs is None else f"{100 * cs:.3f}%")
    r = ((faults or {}).get("recovery") or {}).get("recovery_s")
    est = ctx.default.recovery_estimate(ctx.calls_s(big))
    target("recovery (kill -9 a worker)", "< 20 s", r, None if r is None else r < 20,
           "not recovered" if faults and r is None else (
               "-" if r is None else f"{r:.1f} s (one kill; the cadence allows "
                                     f"{est['best_s']:g}-{est['worst_s']:g} s)"))
    f = ((faults or {}).get("failover") or {}).get("failover_s")
    fest = ctx.default.failover_estimate(ctx.leader_calls_s(big))
    lease = ctx.default.lease_s
    target("failover (kill -9 the leader)", f"< {2 * lease:g} s (2 x lease {lease:g} s)", f,
           None if f is None else f < 2 * lease,
           "no new leader" if faults and f is None else (
               "-" if f is None else f"{f:.1f} s (one kill; takeover "
                                     f"{fest['best_s']:g}-{fest['worst_s']:g} s)"))
    target("duplicates in any elite epoch", "0", elite["duplicates"],
           elite["duplicates"] == 0 if elite["epochs_seen"] else None,
           f"{elite['duplicates']} in {elite['epochs_seen']} epochs")
    return rows


def summarise(ctx: Context, phases: dict[int, dict], faults: dict | None, frugal: dict | None,
              elite: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Everything the report shows, from the phases' figures."""
    ns = sorted(phases)
    multiplier = multipliers(phases)
    checkpoint = checkpoint_summary(phases)
    ops = {"default": default_costs(ctx, phases, faults),
           "frugal": frugal_costs(ctx, ns[-1], frugal), "prices": prices(),
           "hours_per_month": HOURS_PER_MONTH,
           "note": "CountingStore counts delete in its own free class; class A here is what "
                   "is billed."}
    conditions = (ctx.workload == "device-bound" and not ctx.quick
                  and abs(ctx.store_latency - 0.05) < 1e-9)
    return {
        "throughput_multiplier": multiplier,
        "checkpoint_overhead": checkpoint,
        "merge_overhead": merge_summary(phases),
        "recovery_s": ((faults or {}).get("recovery") or {}).get("recovery_s"),
        "failover_s": ((faults or {}).get("failover") or {}).get("failover_s"),
        "duplicates": elite["duplicates"],
        "ops_per_worker_hour": ops,
        "targets": {"conditions_match": conditions,
                    "conditions": "device-bound workload, default cadence, 50 ms store "
                                  "latency, not --quick",
                    "rows": target_rows(ctx, multiplier, checkpoint["share"], faults, elite,
                                        ns[-1])},
        "details": {"throughput": {str(n): phases[n] for n in ns}, "faults": faults,
                    "frugal": frugal, "elite": elite, "notes": notes},
    }


# -- the Markdown report ---------------------------------------------------------------------

def _header(result: dict[str, Any]) -> list[str]:
    meta = result["benchmark"]
    s, m = meta["settings"], meta["machine"]
    workload = (f" (a stand-in for a saturated notebook GPU: the fitness sleeps "
                f"{s['device_us_per_row']:g} us per genome of each batch and returns sphere; "
                f"the algorithm's own tensor work still runs on the CPU)"
                if s["workload"] == "device-bound" else
                " (built-in rastrigin, real torch work on the CPU: on 2 shared cores more than "
                "2 workers cannot scale)")
    return [
        "# Distributed benchmark", "", f"`{meta['command']}`", "",
        (f"{meta['started_at']} - {meta['wall_s']:.0f} s on {m['cpu_count']} CPU(s) "
         f"({m.get('processor')}), {m['platform']}, Python {m['python']}, torch "
         f"{m.get('torch')}; load average {m.get('load_avg')} at the start (a machine shared "
         f"with other work)."),
        "",
        (f"Workload **{s['workload']}**{workload}; {s['islands']} islands of {s['pop']}, dim "
         f"{s['dim']}, DE; store {s['store']} with {1000 * s['store_latency_s']:g} ms added per "
         f"bucket call; window {s['duration_s']:g} s per N; one leader (`islandsync "
         f"coordinate`) and N workers (`islandsync worker --no-coordinator --device cpu`) as "
         f"processes."),
    ]


def _targets(result: dict[str, Any]) -> list[str]:
    lines = ["", "## Targets", "", "| measure | target | measured | verdict |",
             "| --- | --- | --- | --- |"]
    for t in result["targets"]["rows"]:
        lines.append(f"| {t['measure']} | {t['target']} | {t['shown']} | {t['verdict']} |")
    if not result["targets"]["conditions_match"]:
        lines += ["", (f"(The targets are set for {result['targets']['conditions']}; this run "
                       "differs, so its verdicts are indicative only.)")]
    return lines


def _throughput_row(n: str, ph: dict[str, Any], multiplier: Any) -> str:
    per = ph["per_worker"]
    cpus = [p["cpu_share"] for p in per.values() if p["cpu_share"] is not None]
    gens = [p["generations_per_s"] for p in per.values()]
    ops = ph["worker_ops_per_hour"]
    mc = ph.get("machine_cpu") or {}
    busy = ("-" if mc.get("others_cores") is None else
            f"{mc['others_cores']:.2f} + {mc['this_cluster_cores']:.2f} (of {mc['cores']})")
    return (f"| {n} | {'/'.join(str(v) for v in ph['islands_per_worker'].values())} | "
            f"{fmt_rate(ph['evals_per_s'])} | "
            f"{', '.join(fmt_rate(p['evals_per_s']) for p in per.values())} | "
            f"{multiplier or '-'} | "
            f"{100 * (ph['checkpoint_blocked_share'] or 0):.3f}% | "
            f"{100 * (ph['leader']['merge_share'] or 0):.3f}% | "
            f"{(100 * sum(cpus) / len(cpus)) if cpus else 0:.0f}% | "
            f"{(sum(gens) / len(gens)) if gens else 0:.1f} | "
            f"{fmt_rate(ops.get('A'))} / {fmt_rate(ops.get('B'))} | {busy} |")


def _throughput(result: dict[str, Any]) -> list[str]:
    s = result["benchmark"]["settings"]
    lines = ["", "## Throughput by N", "",
             ("| N | islands per worker | evals/s (aggregate) | evals/s per worker | "
              "multiplier | checkpoint blocked | leader merging | worker CPU (mean) | "
              "generations/s per worker | ops/worker-h A / B | CPU cores busy: other users "
              "+ this run's processes (of the machine's) |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for n, ph in result["details"]["throughput"].items():
        lines.append(_throughput_row(n, ph, result["throughput_multiplier"].get(n)))
    if s["workload"] == "device-bound":
        lines += ["", (f"A worker's ceiling is {1e6 / s['device_us_per_row']:,.0f} evals/s "
                       f"(one genome per {s['device_us_per_row']:g} us of 'device' time); the "
                       f"rest of each generation (the algorithm's tensor work and the loop, on "
                       f"the CPU here) comes on top, once per generation, so a worker hosting "
                       f"fewer islands pays it more often per genome, and it slows down when "
                       f"other processes hold the machine's cores.")]
    return lines


def _sec(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f} s"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{1000 * v:.2f} ms"


def _checkpoints(result: dict[str, Any]) -> list[str]:
    ck = result["checkpoint_overhead"]
    up, by = ck["upload_seconds"], ck["bytes_per_checkpoint"]
    ratio = "-" if by["ratio"] is None else f"{by['ratio']:.2f}"
    mo = result["merge_overhead"]
    sample = by.get("sample") or {}
    sample_text = ""
    if sample:
        sample_text = (f" One blob read back: {sample['blob_bytes']:,} bytes for "
                       f"{sample['frames_raw_bytes']:,} raw bytes of frames, of which the "
                       f"elite frame is {sample['elite_frame_raw_bytes']:,} "
                       f"({sample['frames_raw_bytes'] / sample['blob_bytes']:.2f}x on what "
                       f"is really written).")
    return [
        "", "## Checkpoints and merges", "",
        (f"- Checkpoint uploads in the windows: {ck['uploads']} ({ck['failures']} failed); "
         f"upload time mean {_sec(up['mean'])}, p50 {_sec(up['p50'])} (bucket "
         f"{up['p50_bucket']}), p95 {_sec(up['p95'])} (bucket {up['p95_bucket']}); each upload "
         f"is two bucket writes (blob, then HEAD by CAS) in the background thread."),
        (f"- Bytes per island checkpoint: {fmt_rate(by['raw'])} raw, "
         f"{fmt_rate(by['compressed'])} compressed "
         f"({ratio}x; raw as the workers count it, without the elite frame).{sample_text}"),
        (f"- Merges in the windows: {mo['merges']:.0f}, mean "
         f"{_ms(mo['merge_seconds']['mean'])} (exact), p95 {_ms(mo['merge_seconds']['p95'])} "
         f"(interpolated in the histogram's first bucket, (0, 5 ms]), "
         f"{mo['candidates'] or 0:.0f} candidate genomes in the last merge; worst share of the "
         f"leader's wall time {100 * (mo['share'] or 0):.3f}%. Duplicate genomes dropped by "
         f"merges (copies from migration, as expected): "
         f"{mo['duplicates_removed_by_merges']:.0f}."),
    ]


def _failover_line(fo: dict[str, Any]) -> str:
    return (f"- Failover: leader killed with one candidate watching; the candidate took "
            f"the lease {fo.get('takeover_s')} s later and wrote the term "
            f"{fo.get('new_term')} assignment at **{fo.get('failover_s')} s** (its first "
            f"cycle's reads and merge before the assignment: {fo.get('first_cycle_s')} "
            f"s). From the lease rules (lease {fo['lease_s']:g} s, renewed every "
            f"{fo['lease_s'] / 3:g} s, cycle {fo['cycle_s']:g} s) and about "
            f"{fo['estimate']['bucket_calls_s']:g} s of first-cycle bucket calls, expect "
            f"{fo['estimate']['best_s']:g}-{fo['estimate']['worst_s']:g} s after the kill.")


def _recovery_line(rc: dict[str, Any]) -> str:
    c, e = rc["cadence"], rc["estimate"]
    return (f"- Recovery: {rc['victim']} killed (islands {rc['islands']}; its last "
            f"heartbeat {rc['last_heartbeat_before_kill_s']} s before). The leader wrote "
            f"an assignment without it at {rc['declared_dead_s']} s; the islands were "
            f"taken into other workers' engines at {rc['per_island_s']} s, so "
            f"**recovery {rc['recovery_s']} s** ({rc['source']}); stepping confirmed by "
            f"heartbeats at {rc['confirmed_by_heartbeat_s']} s, HEAD generations past "
            f"the pre-kill checkpoint by {rc['head_advanced_s']} s. From the cadence "
            f"(worker_timeout {c['worker_timeout_s']:g} s, heartbeat "
            f"{c['heartbeat_interval_s']:g} s, cycle {c['coordinator_cycle_s']:g} s, poll "
            f"{c['assignment_poll_s']:g} s) and about {e['bucket_calls_s']:g} s of bucket calls "
            f"on the way (the leader's cycle up to its assignment write, the claim), expect "
            f"{e['best_s']:g}-{e['worst_s']:g} s, typically {e['expected_s']:g} s.")


def _second_failover_line(fa: dict[str, Any]) -> str:
    gave = fa.get("islands_assigned_to_dead_workers") or {}
    again = fa.get("all_islands_hosted_again_s")
    if gave:
        tail = (f" and gave them islands {sorted(gave)}: their live owners released them "
                f"and they stood idle {fa.get('idle_islands_s')} s (release to re-claim, "
                f"from the workers' logs) until the new leader's own worker timeout ran "
                f"out; every island was hosted by a live worker again (heartbeats) "
                f"{again} s after the kill")
    else:
        tail = (", but gave them no islands (placement gives islands only to workers whose "
                "heartbeat it has seen change): the heartbeats after that assignment (checked "
                f"until {again} s after the kill) still show every island hosted by a live "
                "worker")
    return (f"- Failover after a worker death: the new leader's first assignment "
            f"({fa.get('failover_s')} s after the kill) listed dead worker(s) "
            f"{fa.get('dead_workers_listed_alive')} as alive (a new leader's liveness "
            f"starts empty){tail}.")


def _faults(result: dict[str, Any]) -> list[str]:
    faults = result["details"]["faults"]
    if not faults:
        return []
    lines = ["", "## Faults", "", _failover_line(faults["failover"])]
    if faults["recovery"]:
        lines.append(_recovery_line(faults["recovery"]))
    if faults.get("failover_after_worker_death"):
        lines.append(_second_failover_line(faults["failover_after_worker_death"]))
    return lines


def _cadence_row(name: str, c: dict[str, Any]) -> str:
    cd, w, ld = c["cadence"], c["worker"], c["leader"]
    rec = c["recovery_s"]
    rec_text = "-" if rec is None else f"{rec:.0f} s ({c['recovery_source']})"
    if c["recovery_source"] == "estimated":
        e = c["recovery_estimate"]
        rec_text = f"~{e['expected_s']:.0f} s ({e['best_s']:.0f}-{e['worst_s']:.0f}; estimated)"
    return (f"| {name} | {cd['heartbeat_interval_s']:g} s / {cd['checkpoint_interval_s']:g} s / "
            f"{cd['assignment_poll_s']:g} s / {cd['worker_timeout_s']:g} s | "
            f"{fmt_rate(w['A'])} / {fmt_rate(w['B'])} ({w['source']}) | "
            f"${w['cost_per_worker_month_usd']:.2f} | {fmt_rate(ld['A'])} / {fmt_rate(ld['B'])} "
            f"({ld['source']}) | ${ld['cost_per_month_usd']:.2f} | {rec_text} |")


def _model_line(result: dict[str, Any]) -> str:
    ops = result["ops_per_worker_hour"]
    md = ops["default"]["worker"]["model"]
    ckpt_s = result["benchmark"]["settings"]["cadences"]["default"]["checkpoint_interval_s"]
    early = all(ph.get("window_after_worker_start_s", [0, math.inf])[1] < 3 * ckpt_s
                for ph in result["details"]["throughput"].values())
    return (f"Where a follower worker's operations go at the default cadence (a model read "
            f"off the code, {ops['default']['islands_per_worker']:g} islands per worker; "
            f"measured A {ops['default']['worker']['A']:,} / B "
            f"{ops['default']['worker']['B']:,} per hour, model A {md['A']:,} / B "
            f"{md['B']:,}): "
            + "; ".join(f"{src} A {v['A']:,} B {v['B']:,}" for src, v in
                        md["by_source"].items())
            + (". The windows end before each island's fourth checkpoint, so they hold no "
               "deletes (the uploader keeps 3 checkpoints per island)" if early else
               ". The windows include deletes of old checkpoints (the uploader keeps 3 per "
               "island), counted in their own free class")
            + f"; a long run also makes about {md['A_counted_steady'] - md['A']:,} deletes "
              "an hour, which no bucket bills.")


def _costs(result: dict[str, Any]) -> list[str]:
    ops = result["ops_per_worker_hour"]
    p = ops["prices"]
    lines = ["", "## Bucket operations and cost", "",
             (f"Prices: class A ${p['class_a_per_1000']:g} and class B "
              f"${p['class_b_per_1000']:g} per 1,000 operations ({p['source']}; {p['as_of']}); "
              f"{ops['hours_per_month']:g} hours per month. {ops['note']}"),
             "",
             ("| cadence | heartbeat / checkpoint / poll / worker timeout | worker ops/h A / B "
              "| $ per worker-month | leader ops/h A / B | leader $ per month | recovery |"),
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [_cadence_row(name, ops[name]) for name in ("default", "frugal")]
    return [*lines, "", _model_line(result)]


def markdown(result: dict[str, Any]) -> str:
    """The report of one result (as written by ``--json``, or read back by ``--render``)."""
    lines = [*_header(result), *_targets(result), *_throughput(result), *_checkpoints(result),
             *_faults(result), *_costs(result)]
    if result["details"]["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result["details"]["notes"]]
    lines += ["", f"Machine: {json.dumps(result['benchmark']['machine'])}", ""]
    return "\n".join(lines)


__all__ = ["Context", "cost_per_month", "markdown", "summarise"]
