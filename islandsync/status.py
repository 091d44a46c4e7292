"""``islandsync status``: one read-only look at a run. The JSON form is a stable interface.

Ages compare the bucket's timestamps with this machine's clock: fine for display, and never
used for a decision (liveness decisions watch generations on a monotonic clock instead).
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

from islandsync.bucket.elites import read_elite
from islandsync.bucket.layout import (
    ASSIGNMENT_KEY,
    ELITE_HEAD_KEY,
    FINISHED_KEY,
    LEASE_KEY,
    WORKERS_PREFIX,
    head_key,
    parse_heartbeat_key,
)
from islandsync.bucket.records import (
    Assignment,
    EliteHead,
    Finished,
    Heartbeat,
    LeaseRecord,
    Record,
    read_elite_head,
    read_head,
    read_record,
)
from islandsync.bucket.run import read_spec
from islandsync.config import RunSpec, spec_hash
from islandsync.errors import CheckpointError, NotFound
from islandsync.store import BlobStore

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _age(updated: _dt.datetime) -> float:
    return round((_dt.datetime.now(_dt.timezone.utc) - updated).total_seconds(), 1)


def _record(store: BlobStore, key: str, model: type[Record]
            ) -> tuple[dict[str, Any] | None, float | None]:
    """A record as a dict of validated values (``{"error": ...}`` when it is not valid), and
    its age by the bucket's clock; (None, None) when it does not exist."""
    try:
        found = read_record(store, key, model)
    except CheckpointError as err:
        return {"error": str(err)}, None
    if found is None:
        return None, None
    info = store.stat(key)
    return found[0].model_dump(), _age(info.updated) if info else None


def printable(value: Any) -> str:
    """A bucket string made safe for a terminal: control characters (escape sequences that
    could rewrite the screen) shown as ``?``."""
    return _CONTROL.sub("?", str(value))


def spec_summary(spec: RunSpec) -> dict[str, Any]:
    g = spec.problem.genome
    return {
        "problem": spec.problem.name,
        "direction": spec.problem.direction,
        "genome": g.model_dump(),
        "algorithm": spec.algorithm.name,
        "pop": spec.algorithm.pop,
        "islands": spec.islands,
        "migration": spec.migration.model_dump(),
        "stop": spec.stop.model_dump(),
        "spec_hash": spec_hash(spec),
    }


def collect_status(store: BlobStore) -> dict[str, Any]:
    spec = read_spec(store)
    finished, _ = _record(store, FINISHED_KEY, Finished)
    lease, lease_age = _record(store, LEASE_KEY, LeaseRecord)
    leader = None
    if lease is not None:
        leader = {"holder": lease.get("holder"), "term": lease.get("term"), "age_s": lease_age}
    islands = []
    for i in range(spec.islands):
        try:
            current = read_head(store, i)
        except CheckpointError as err:
            islands.append({"id": i, "error": str(err)})
            continue
        if current is None:
            islands.append({"id": i, "generation": 0, "best": None, "owner": None,
                            "head_age_s": None, "evals": 0, "released": False})
            continue
        head, _ = current
        info = store.stat(head_key(i))
        islands.append({"id": i, "generation": head.generation, "best": head.best,
                        "owner": head.owner, "head_age_s": _age(info.updated) if info else None,
                        "evals": head.evals, "released": head.released})
    workers = []
    for info in store.list(WORKERS_PREFIX):
        wid = parse_heartbeat_key(info.key)
        if wid is None:
            continue
        hb, age = _record(store, info.key, Heartbeat)
        hb = hb or {}
        alive = hb.get("state") == "running" and age is not None and age < spec.worker_timeout_s
        workers.append({"id": wid, "platform": hb.get("platform"), "device": hb.get("device"),
                        "rate": hb.get("rate"), "islands": hb.get("islands", []),
                        "age_s": age, "alive": alive, "state": hb.get("state")})
    elite_head, _ = _record(store, ELITE_HEAD_KEY, EliteHead)
    elite = None
    if elite_head is not None:
        elite = {k: elite_head.get(k) for k in ("epoch", "size", "best", "term", "duplicates")}
    assignment_record, assignment_age = _record(store, ASSIGNMENT_KEY, Assignment)
    assignment = None
    if assignment_record is not None:
        assignment = {k: assignment_record.get(k)
                      for k in ("epoch", "term", "leader", "workers", "draining", "error")
                      if k in assignment_record}
        assignment["age_s"] = assignment_age
        islands_map = assignment_record.get("islands")
        if isinstance(islands_map, dict):
            for row in islands:
                row["assigned"] = islands_map.get(row["id"])
    bests = [i["best"] for i in islands if i.get("best") is not None]
    best = (min(bests) if spec.problem.direction == "minimize" else max(bests)) if bests else None
    return {
        "run": {"url": store.url, **spec_summary(spec)},
        "finished": finished,
        "leader": leader,
        "evaluations": sum(i.get("evals", 0) for i in islands),
        "best": best,
        "islands": islands,
        "workers": workers,
        "elite": elite,
        "assignment": assignment,
    }


def best_genomes(store: BlobStore, *, top: int = 10) -> dict[str, Any]:
    """The best ``top`` genomes of the newest elite epoch, in the problem's own direction:
    ``{"epoch", "term", "fitness": [...], "island": [...], "id": [...], "genomes": ndarray}``.
    """
    spec = read_spec(store)
    current = read_elite_head(store)
    if current is None:
        raise NotFound(f"run {store.url} has no elite yet: a coordinator writes the first "
                       f"one after the first checkpoints")
    head = current[0]
    genomes, scores, ids, origin = read_elite(store, head.key, width=spec.problem.genome.width)
    n = min(top, scores.shape[0])
    sign = 1.0 if spec.problem.direction == "minimize" else -1.0
    return {"epoch": head.epoch, "term": head.term,
            "fitness": [sign * float(v) for v in scores[:n]],
            "island": [int(v) for v in origin[:n]],
            "id": [int(v) & 0xFFFFFFFFFFFFFFFF for v in ids[:n]],
            "genomes": genomes[:n]}


def format_status(st: dict[str, Any]) -> str:
    run = st["run"]
    lines = [f"run {run['url']}: {run['problem']} {run['genome']}, {run['algorithm']} "
             f"pop {run['pop']} x {run['islands']} islands"]
    if st["finished"]:
        lines.append(f"FINISHED: {st['finished'].get('reason')} "
                     f"(by {st['finished'].get('by')})")
    leader = st["leader"]
    lines.append("leader: none" if leader is None else
                 f"leader: {leader['holder']} term {leader['term']} ({leader['age_s']}s ago)")
    a = st.get("assignment")
    if a:
        lines.append(f"assignment: epoch {a.get('epoch')} term {a.get('term')} "
                     f"by {a.get('leader')}, {len(a.get('workers') or [])} live workers")
    e = st.get("elite")
    if e:
        lines.append(f"elite: epoch {e.get('epoch')} (term {e.get('term')}), "
                     f"{e.get('size')} genomes, best {e.get('best')}")
    lines.append(f"evaluations {st['evaluations']:,}  best {st['best']}")
    lines.append(f"{'island':>6} {'gen':>8} {'best':>14} {'owner':<32} {'head age':>9}")
    for i in st["islands"]:
        if "error" in i:
            lines.append(f"{i['id']:>6}  {i['error']}")
            continue
        best = "-" if i["best"] is None else f"{i['best']:.6g}"
        owner = (i["owner"] or "-") + (" (released)" if i["released"] else "")
        age = "-" if i["head_age_s"] is None else f"{i['head_age_s']:.0f}s"
        lines.append(f"{i['id']:>6} {i['generation']:>8} {best:>14} {owner:<32} {age:>9}")
    lines.append(f"workers: {sum(w['alive'] for w in st['workers'])} alive of "
                 f"{len(st['workers'])}")
    for w in st["workers"]:
        rate = "-" if w["rate"] is None else f"{w['rate']:,.0f}/s"
        lines.append(f"  {w['id']:<32} {'alive' if w['alive'] else 'gone':<6} "
                     f"{w['platform'] or '-':<10} {w['device'] or '-':<12} {rate:>10} "
                     f"islands {w['islands']}  {w['age_s']}s ago")
    return "\n".join(printable(line) for line in lines)
