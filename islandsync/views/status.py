"""``islandsync status``: one read-only look at a run. The JSON form is a stable interface.

Ages compare the bucket's timestamps with this machine's clock: fine for display, and never
used for a decision (liveness decisions watch generations on a monotonic clock instead).
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
import unicodedata
from collections.abc import Callable
from typing import Any

from islandsync.bucket.heads import HeadWatch, read_concurrently
from islandsync.bucket.layout import (
    ASSIGNMENT_KEY,
    ELITE_HEAD_KEY,
    FINISHED_KEY,
    LEASE_KEY,
    WORKERS_PREFIX,
    parse_heartbeat_key,
)
from islandsync.bucket.records import (
    Assignment,
    EliteHead,
    Finished,
    Heartbeat,
    LeaseRecord,
    Record,
    read_record,
)
from islandsync.bucket.run import read_spec
from islandsync.config import CADENCES, RunSpec, best_of, cadence_line, spec_hash
from islandsync.errors import CheckpointError, IslandSyncError
from islandsync.store import BlobInfo, BlobStore

#: Unicode categories never printed as they are: controls (escape sequences), format
#: characters (bidi overrides that reorder a line, zero-width ones), surrogates, line and
#: paragraph separators.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
#: At most this many ranges of a worker's islands (``0-7, 9``) are listed on its line.
SHOWN_ISLANDS = 32


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
    could rewrite the screen), bidi overrides and other invisible format characters shown as
    ``?``."""
    text = str(value)
    if text.isascii() and text.isprintable():
        return text
    return "".join("?" if unicodedata.category(c) in _HIDDEN else c for c in text)


def spec_summary(spec: RunSpec) -> dict[str, Any]:
    g = spec.problem.genome
    return {
        "problem": spec.problem.name,
        "direction": spec.problem.direction,
        "genome": g.model_dump(),
        # A portfolio: its names and populations, in the order islands take them.
        "algorithm": ",".join(a.name for a in spec.algorithms),
        "pop": ([a.pop for a in spec.algorithms] if isinstance(spec.algorithm, tuple)
                else spec.algorithm.pop),
        "islands": spec.islands,
        "migration": spec.migration.model_dump(),
        "stop": spec.stop.model_dump(),
        # The preset's name and the values every process acts on (run.json records both).
        "cadence": {"name": spec.cadence, **{k: getattr(spec, k) for k in CADENCES["default"]}},
        "cadence_line": cadence_line(spec),
        "spec_hash": spec_hash(spec),
    }


def collect_status(store: BlobStore) -> dict[str, Any]:
    """One look at the run: its spec, stop decision, leader, islands, workers, elite and
    assignment, as plain values (the JSON form of ``islandsync status``). Each island's
    numbers are the freshest there are: a live worker's heartbeat (every few seconds) when it
    is at or past the island's HEAD (each checkpoint, far less often), else the HEAD's;
    ``source`` says which."""
    spec = read_spec(store)
    finished, _ = _record(store, FINISHED_KEY, Finished)
    lease, lease_age = _record(store, LEASE_KEY, LeaseRecord)
    leader = None
    if lease is not None:
        leader = {"holder": lease.get("holder"), "term": lease.get("term"), "age_s": lease_age}
        if "error" in lease:
            leader["error"] = lease["error"]
    workers, live = _workers(store, spec)
    islands = _islands(store, spec, live)
    elite_head, _ = _record(store, ELITE_HEAD_KEY, EliteHead)
    elite = None
    if elite_head is not None:
        elite = {k: elite_head.get(k) for k in ("epoch", "size", "best", "term", "duplicates",
                                                 "error") if k in elite_head}
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
    # The run's best: the islands' bests now, and the merged elite's (the best ever seen).
    elite_best = elite.get("best") if elite is not None else None
    best = best_of(spec.problem.direction, [
        *(i.get("best") for i in islands),
        elite_best if isinstance(elite_best, (int, float)) else None])
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


#: One island's live numbers as a heartbeat gave them: (worker, heartbeat age, numbers).
Live = dict[int, tuple[str, float, dict[str, Any]]]


def _workers(store: BlobStore, spec: RunSpec) -> tuple[list[dict[str, Any]], Live]:
    """Each heartbeat as a row, and the live numbers of every island a live worker hosts
    (the highest generation where two claim one, as in a handover)."""
    beats = [(wid, info) for info in store.list(WORKERS_PREFIX)
             if (wid := parse_heartbeat_key(info.key)) is not None]

    def heartbeat(item: tuple[str, BlobInfo]) -> dict[str, Any]:
        try:
            found = read_record(store, item[1].key, Heartbeat)
        except CheckpointError as err:
            return {"error": str(err)}
        return found[0].model_dump() if found is not None else {}

    workers: list[dict[str, Any]] = []
    live: Live = {}
    for (wid, info), hb in read_concurrently(heartbeat, beats):
        if isinstance(hb, Exception):
            raise hb  # bucket trouble: the status as a whole cannot be read
        age = _age(info.updated)
        alive = hb.get("state") == "running" and age < spec.worker_timeout_s
        row = {"id": wid, "platform": hb.get("platform"), "device": hb.get("device"),
               "rate": hb.get("rate"), "islands": hb.get("islands", []),
               "generations": hb.get("generations"), "evaluations": hb.get("evaluations"),
               "age_s": age, "alive": alive, "state": hb.get("state"),
               "version": hb.get("version"), "protocol": hb.get("protocol")}
        if "error" in hb:
            row["error"] = hb["error"]
        workers.append(row)
        # A gone worker's numbers are of a lineage another worker may have resumed from
        # an older checkpoint: only live workers' count.
        for island, numbers in (hb.get("live") or {}).items() if alive else ():
            seen = live.get(island)
            if seen is None or numbers["generation"] > seen[2]["generation"]:
                live[island] = (wid, age, numbers)
    return workers, live


def _islands(store: BlobStore, spec: RunSpec, live: Live) -> list[dict[str, Any]]:
    # One listing of islands/, then every HEAD read concurrently: a status of 512 islands
    # costs a few round trips, not 1024 (each HEAD's age is its listing's).
    view = HeadWatch(store, spec.islands, what="status").look()
    islands = []
    for i in range(spec.islands):
        if i in view.invalid:
            islands.append({"id": i, "error": view.invalid[i]})
            continue
        head = view.heads.get(i)
        if head is None or i not in view.fresh:
            row = {"id": i, "generation": 0, "best": None, "owner": None, "head_age_s": None,
                   "evals": 0, "released": False, "source": None, "age_s": None}
            if i in view.listed:
                row["error"] = "unreadable (bucket trouble)"
        else:
            info = view.listed.get(i)
            head_age = _age(info.updated) if info else None
            row = {"id": i, "generation": head.generation, "best": head.best,
                   "owner": head.owner, "head_age_s": head_age, "evals": head.evals,
                   "released": head.released, "source": "checkpoint", "age_s": head_age}
        if i in live and live[i][2]["generation"] >= row["generation"]:
            wid, age, numbers = live[i]
            row.update(generation=numbers["generation"], evals=numbers["evals"],
                       best=numbers["best"], owner=wid, released=False, source="heartbeat",
                       age_s=age)
        islands.append(row)
    return islands


def _ago(age: Any) -> str:
    return "-" if age is None else f"{_number(age, '.0f')}s ago"


def _number(value: Any, fmt: str) -> str:
    # A status must show whatever it got: a value that is not a number is shown, not formatted.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, fmt)
    return "-" if value is None else str(value)


def genome_text(genome: Any) -> str:
    """A genome spec as people write it: ``real dim 100 in [-5.12, 5.12]``, ``tokens length
    24 of 13``."""
    if not isinstance(genome, dict):
        return str(genome)
    if genome.get("kind") == "tokens":
        return f"tokens length {genome.get('length')} of {genome.get('vocab')}"
    ints = genome.get("integer")
    return (f"{genome.get('kind', 'real')} dim {genome.get('dim')} in "
            f"[{_bound(genome.get('lower'))}, {_bound(genome.get('upper'))}]"
            + (f", integer genes {', '.join(str(i) for i in ints)}" if ints else ""))


def _bound(value: Any) -> str:
    """One bound for every gene, or per-gene bounds as their range (``-5..0``): a list of a
    million bounds is no line to read."""
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        low, high = min(value), max(value)
        return format(low, "g") if low == high else f"{low:g}..{high:g}"
    return _number(value, "g")


def islands_text(islands: Any, limit: int = SHOWN_ISLANDS) -> str:
    """Island ids as ranges, ``0-3, 7, 9-11``; past ``limit`` ranges, how many more."""
    ids = sorted({i for i in islands if isinstance(i, int) and not isinstance(i, bool)}) \
        if isinstance(islands, (list, tuple, set)) else []
    if not ids:
        return "none"
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    shown = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit]]
    hidden = sum(b - a + 1 for a, b in runs[limit:])
    return ", ".join(shown) + (f", ... {hidden} more" if hidden else "")


def format_status(st: dict[str, Any]) -> str:
    """``collect_status``'s result as text for a terminal. Never raises on what a bucket
    holds: missing or unreadable records read as such, and every line passes
    :func:`printable`."""
    run = st["run"]
    lines = [f"run {run['url']}: {run['problem']} ({genome_text(run.get('genome'))}), "
             f"{run['algorithm']} pop {run['pop']} x {run['islands']} islands",
             f"cadence {run.get('cadence_line', '-')}"]
    finished = st.get("finished")
    if finished and "error" in finished:
        lines.append(f"{FINISHED_KEY} unreadable: {finished['error']}")
    elif finished:
        lines.append(f"FINISHED: {finished.get('reason')} (by {finished.get('by') or '-'})")
    leader = st.get("leader")
    if leader is None:
        lines.append("leader: none")
    elif "error" in leader:
        lines.append(f"leader: lease unreadable: {leader['error']}")
    else:
        lines.append(f"leader: {leader.get('holder')} term {leader.get('term')} "
                     f"({_ago(leader.get('age_s'))})")
    a = st.get("assignment")
    if a and "error" in a:
        lines.append(f"assignment unreadable: {a['error']}")
    elif a:
        lines.append(f"assignment: epoch {a.get('epoch')} term {a.get('term')} "
                     f"by {a.get('leader')}, {len(a.get('workers') or [])} live workers")
    e = st.get("elite")
    if e and "error" in e:
        lines.append(f"elite unreadable: {e['error']}")
    elif e:
        lines.append(f"elite: epoch {e.get('epoch')} (term {e.get('term')}), "
                     f"{e.get('size')} genomes, best {_number(e.get('best'), '.6g')}")
    lines.append(f"evaluations {_number(st.get('evaluations'), ',')}  "
                 f"best {_number(st.get('best'), '.6g')}")
    lines += _island_lines(st["islands"])
    lines += _worker_lines(st["workers"])
    return "\n".join(printable(line) for line in lines)


#: How a row's numbers were read, as the status table says it.
_SOURCES = {"heartbeat": "live", "checkpoint": "ckpt"}


def _island_lines(islands: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'island':>6} {'gen':>9} {'evals':>13} {'best':>12}  {'owner':<32} "
             f"{'updated':>12}"]
    for i in islands:
        if "error" in i:
            lines.append(f"{i['id']:>6}  {i['error']}")
            continue
        owner = (i.get("owner") or "-") + (" (released)" if i.get("released") else "")
        age = i.get("age_s", i.get("head_age_s"))
        updated = "-" if age is None else (f"{_number(age, '.0f')}s "
                                           f"{_SOURCES.get(i.get('source'), '')}".strip())
        lines.append(f"{i['id']:>6} {_number(i.get('generation'), ','):>9} "
                     f"{_number(i.get('evals'), ','):>13} {_number(i.get('best'), '.6g'):>12}  "
                     f"{owner:<32} {updated:>12}")
    return lines


def _worker_lines(workers: list[dict[str, Any]]) -> list[str]:
    lines = [f"workers: {sum(bool(w.get('alive')) for w in workers)} alive of {len(workers)}"]
    for w in workers:
        if "error" in w:
            lines.append(f"  {w['id']:<32} unreadable heartbeat: {w['error']}")
            continue
        rate = "-" if w.get("rate") is None else f"{_number(w['rate'], ',.0f')}/s"
        lines.append(f"  {w['id']:<32} {'alive' if w.get('alive') else 'gone':<6} "
                     f"{w.get('platform') or '-':<10} {w.get('device') or '-':<12} {rate:>10} "
                     f"islands {islands_text(w.get('islands'))}  {_ago(w.get('age_s'))}")
    return lines


def watch(render: Callable[[], str], every: float, *, title: str) -> None:
    """Print ``render()`` every ``every`` seconds until Ctrl-C (which ends it quietly). In a
    terminal the screen is redrawn in place, as watch(1) does; piped, one block a refresh.
    Bucket trouble in one look is said in one line, and the next look tries again."""
    redraw = sys.stdout.isatty()
    try:
        while True:
            try:
                text = render()
            except IslandSyncError as err:
                text = f"{title}: {err}"
            if redraw:
                print(f"\033[H\033[2J{time.strftime('%H:%M:%S')}  every {every:g}s: {title}  "
                      f"(Ctrl-C to stop)\n")
            print(text, flush=True)
            time.sleep(every)
    except KeyboardInterrupt:
        pass
