"""``islandsync report RUN``: the whole run as one self-contained HTML page.

Read from the run's history (``history/``, written by the leader; see
islandsync.leader.history) and its spec: the global best over time with each island's best,
evaluations/s per worker stacked, a timeline of which worker hosted each island (recoveries,
deaths and drains marked), and a summary table (platforms, worker-hours, evaluations, bucket
operations and what they cost). Figures are PNGs drawn with matplotlib (the ``plot`` extra)
and inlined as base64, so the page needs no network to view; ``--png DIR`` also writes them.

Times are the leaders' own wall clocks, shown as elapsed time from the first entry: for
display only (a failover to a leader with a skewed clock shows as a jump, nothing worse).
Every string from the bucket is HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from islandsync.bucket.history import History, HistoryEntry, read_history
from islandsync.bucket.run import read_spec
from islandsync.config import cadence_line
from islandsync.errors import ConfigError
from islandsync.views.pricing import PRICING
from islandsync.views.status import genome_text
from islandsync.store.base import BlobStore

PLOT_EXTRA = "pip install 'islandsync[plot]'  (matplotlib)"
FIGURES = ("best", "rate", "timeline")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(f"islandsync report draws with matplotlib, which is not installed: "
                          f"{PLOT_EXTRA}") from None
    matplotlib.use("Agg")  # no display: a notebook kernel or a server
    import matplotlib.pyplot as plt

    return plt


@dataclass
class Summary:
    """What the table shows; every number derived from the history entries."""

    span_s: float = 0.0
    entries: int = 0
    best: float | None = None
    evaluations: int = 0
    terms: list[int] = field(default_factory=list)
    platforms: dict[str, dict[str, float]] = field(default_factory=dict)
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=lambda: {"A": 0, "B": 0})
    #: The same operations by role: ``{"leader": {"A", "B"}, "workers": {"A", "B"}}``.
    role_ops: dict[str, dict[str, int]] = field(default_factory=lambda: {
        "leader": {"A": 0, "B": 0}, "workers": {"A": 0, "B": 0}})
    leader_hours: float = 0.0
    events: dict[str, int] = field(default_factory=dict)
    recoveries_s: list[float] = field(default_factory=list)

    @property
    def cost(self) -> float:
        gcs = PRICING["GCS"]  # list prices, before its free tier
        return (self.ops["A"] * gcs.a_per_million + self.ops["B"] * gcs.b_per_million) / 1e6

    @property
    def worker_hours(self) -> float:
        return sum(row["hours"] for row in self.workers.values())

    def per_hour(self) -> dict[str, dict[str, float]]:
        """Operations an hour: of the leader (per leader-hour), of one worker (per
        worker-hour), and of the run's shape as it ran (everything per hour of span)."""
        def rate(ops: dict[str, int], hours: float) -> dict[str, float]:
            return {c: (ops[c] / hours if hours > 0 else 0.0) for c in ("A", "B")}
        total = {c: self.role_ops["leader"][c] + self.role_ops["workers"][c] for c in "AB"}
        return {"leader": rate(self.role_ops["leader"], self.leader_hours),
                "worker": rate(self.role_ops["workers"], self.worker_hours),
                "run": rate(total, self.span_s / 3600)}

    def as_json(self) -> dict[str, Any]:
        """``islandsync report RUN --json``: the machine-readable summary."""
        rates = self.per_hour()
        run = rates["run"]
        return {
            "span_s": round(self.span_s, 3), "entries": self.entries,
            "ops": self.role_ops, "worker_hours": round(self.worker_hours, 6),
            "leader_hours": round(self.leader_hours, 6),
            "ops_per_hour": {k: {c: round(v, 1) for c, v in r.items()}
                             for k, r in rates.items()},
            "month": {name: {"usd": round(p.monthly(run["A"], run["B"]), 2),
                             "free_hours": round(p.free_hours(run["A"], run["B"]), 1)}
                      for name, p in PRICING.items()},
            "evaluations": self.evaluations, "best": self.best, "terms": self.terms,
            "workers": len(self.workers), "events": self.events,
            "recoveries_s": [round(r, 3) for r in self.recoveries_s],
        }


class _Counter:
    """Sum of a per-process counter seen over time: a drop means the process restarted."""

    def __init__(self) -> None:
        self.total, self.last = 0, 0

    def see(self, value: int) -> None:
        self.total += value - self.last if value >= self.last else value
        self.last = value


def summarize(entries: Sequence[HistoryEntry]) -> Summary:
    s = Summary(entries=len(entries))
    if not entries:
        return s
    s.span_s = max(0.0, entries[-1].t - entries[0].t)
    s.best = entries[-1].best
    s.evaluations = max(e.evals for e in entries)
    counters: dict[tuple[str, str], _Counter] = {}
    for prev, entry in zip([None, *entries[:-1]], entries):
        if entry.term and entry.term not in s.terms:
            s.terms.append(entry.term)
        # Interval weights: each entry stands for the time since the previous one (capped,
        # so a gap of missing history is not billed as work).
        dt = 0.0 if prev is None else min(max(0.0, entry.t - prev.t), 3600.0)
        s.leader_hours += dt / 3600  # every entry is written by the leader of its term
        for wid, w in entry.workers.items():
            row = s.workers.setdefault(wid, {"platform": w.platform or "?", "hours": 0.0,
                                             "evals": 0, "versions": set(), "islands": 0})
            row["platform"] = w.platform or row["platform"]
            if w.version or w.protocol is not None:
                row["versions"].add(f"{w.version or '?'} (protocol {w.protocol or '?'})")
            if w.alive:
                row["hours"] += dt / 3600
                row["islands"] = max(row["islands"], w.islands)
            for key, value in (("evals", w.evals), ("A", w.ops_a), ("B", w.ops_b)):
                counters.setdefault((wid, key), _Counter()).see(value)
        leader = f"leader:{entry.leader}"
        counters.setdefault((leader, "A"), _Counter()).see(entry.leader_ops_a)
        counters.setdefault((leader, "B"), _Counter()).see(entry.leader_ops_b)
        for ev in entry.events:
            s.events[ev.kind] = s.events.get(ev.kind, 0) + 1
            if ev.kind == "recovery" and ev.seconds is not None:
                s.recoveries_s.append(ev.seconds)
    for (who, key), counter in counters.items():
        if key in ("A", "B"):
            s.ops[key] += counter.total
            s.role_ops["leader" if who.startswith("leader:") else "workers"][key] += \
                counter.total
        elif who in s.workers:
            s.workers[who]["evals"] = counter.total
    for row in s.workers.values():
        p = s.platforms.setdefault(row["platform"], {"workers": 0, "hours": 0.0, "evals": 0})
        p["workers"] += 1
        p["hours"] += row["hours"]
        p["evals"] += row["evals"]
    return s


def _elapsed(entries: Sequence[HistoryEntry]) -> tuple[list[float], str, float]:
    """x values (elapsed from the first entry) in a readable unit, the unit's name, scale."""
    t0 = entries[0].t
    span = entries[-1].t - t0
    unit, scale = ("h", 3600.0) if span > 3 * 3600 else ("min", 60.0) if span > 180 else ("s", 1.0)
    return [(e.t - t0) / scale for e in entries], unit, scale


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _best_figure(plt: Any, entries: Sequence[HistoryEntry], direction: str) -> bytes:
    xs, unit, _ = _elapsed(entries)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    islands = max((len(e.islands) for e in entries), default=0)
    for i in range(islands):
        pts = [(x, e.islands[i][2]) for x, e in zip(xs, entries)
               if i < len(e.islands) and e.islands[i][2] is not None]
        if pts:
            ax.plot(*zip(*pts), lw=0.8, alpha=0.45, label=f"island {i}" if i < 8 else None)
    pts = [(x, e.best) for x, e in zip(xs, entries) if e.best is not None]
    if pts:
        ax.plot(*zip(*pts), color="black", lw=2.2, label="global best")
    values = [v for _, v in pts] + [e.islands[i][2] for e in entries for i in range(len(e.islands))
                                    if e.islands[i][2] is not None]
    positive = [v for v in values if v > 0]
    if positive and min(values) >= 0 and max(positive) / min(positive) > 100:
        # The best spans decades: a linear axis would hide its tail (symlog reaches 0 too).
        if len(positive) == len(values):
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=min(positive))
    for x, e in zip(xs, entries):
        if any(ev.kind == "term" for ev in e.events):
            ax.axvline(x, color="grey", ls=":", lw=1)
    ax.set_xlabel(f"elapsed ({unit}, leader's clock); dotted: a new leader's term")
    ax.set_ylabel(f"fitness ({direction})")
    ax.set_title("Global best over time, with each island's best")
    ax.grid(alpha=0.3)
    if pts:
        ax.legend(loc="upper right", fontsize=8, ncol=3)
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def _rate_figure(plt: Any, entries: Sequence[HistoryEntry]) -> bytes:
    xs, unit, _ = _elapsed(entries)
    workers = sorted({w for e in entries for w in e.workers})
    series = [[e.workers[w].rate if w in e.workers and e.workers[w].alive else 0.0
               for e in entries] for w in workers]
    fig, ax = plt.subplots(figsize=(10, 3.6))
    if workers:
        labels = [f"{w} ({_platform(entries, w)})" for w in workers]
        ax.stackplot(xs, series, labels=labels, alpha=0.85)
        ax.legend(loc="upper left", fontsize=8, ncol=2)
    ax.set_xlabel(f"elapsed ({unit}, leader's clock)")
    ax.set_ylabel("evaluations / s")
    ax.set_title("Evaluations per second, stacked by worker")
    ax.grid(alpha=0.3)
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def _platform(entries: Sequence[HistoryEntry], worker: str) -> str:
    for e in reversed(entries):
        w = e.workers.get(worker)
        if w is not None and w.platform:
            return w.platform
    return "?"


def _timeline_figure(plt: Any, entries: Sequence[HistoryEntry]) -> bytes:
    xs, unit, _ = _elapsed(entries)
    islands = max((len(e.islands) for e in entries), default=0)
    workers = sorted({e.islands[i][0] for e in entries for i in range(len(e.islands))
                      if e.islands[i][0] is not None})
    colours = {w: plt.get_cmap("tab10")(k % 10) for k, w in enumerate(workers)}
    fig, ax = plt.subplots(figsize=(10, 0.9 + 0.32 * max(islands, 1)))
    end = xs[-1] + (xs[-1] - xs[-2] if len(xs) > 1 else 1.0)
    for i in range(islands):
        runs: list[tuple[float, float, str]] = []
        for k, e in enumerate(entries):
            owner = e.islands[i][0] if i < len(e.islands) else None
            x_next = xs[k + 1] if k + 1 < len(xs) else end
            if owner is None:
                continue
            if runs and runs[-1][2] == owner and abs(runs[-1][0] + runs[-1][1] - xs[k]) < 1e-9:
                runs[-1] = (runs[-1][0], x_next - runs[-1][0], owner)
            else:
                runs.append((xs[k], x_next - xs[k], owner))
        for start, width, owner in runs:
            ax.broken_barh([(start, width)], (i - 0.4, 0.8), color=colours[owner])
    marks = {"recovery": ("X", "red", "recovery"), "moved": ("o", "black", "moved"),
             "restart": ("s", "orange", "restart from older checkpoint/seed")}
    labelled: set[str] = set()
    for x, e in zip(xs, entries):
        for ev in e.events:
            if ev.kind in marks and ev.island is not None:
                m, c, label = marks[ev.kind]
                ax.plot([x], [ev.island], marker=m, color=c, ms=8, ls="",
                        label=None if label in labelled else label)
                labelled.add(label)
            elif ev.kind in ("drain", "dead", "term"):
                style = {"drain": ("tab:purple", "--"), "dead": ("red", ":"),
                         "term": ("grey", ":")}[ev.kind]
                label = {"drain": "drain", "dead": "worker lost", "term": "new term"}[ev.kind]
                ax.axvline(x, color=style[0], ls=style[1], lw=1,
                           label=None if label in labelled else label)
                labelled.add(label)
    for w in workers:
        ax.plot([], [], color=colours[w], lw=8, label=w)
    labelled |= set(workers)
    ax.set_yticks(range(islands))
    ax.set_yticklabels([f"island {i}" for i in range(islands)], fontsize=8)
    ax.set_ylim(-0.6, islands - 0.4 if islands else 0.6)
    ax.set_xlabel(f"elapsed ({unit}, leader's clock)")
    ax.set_title("Which worker hosted each island")
    if labelled:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def render_figures(history: History) -> dict[str, bytes]:
    """PNG bytes of each figure (``best``, ``rate``, ``timeline``); {} without entries."""
    plt = _pyplot()
    entries = history.entries
    if not entries:
        return {}
    return {"best": _best_figure(plt, entries, history.direction),
            "rate": _rate_figure(plt, entries),
            "timeline": _timeline_figure(plt, entries)}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


_CAPTIONS = {
    "best": "Global best over time (thick), each island's best (thin)",
    "rate": "Evaluations per second, stacked by worker",
    "timeline": "Island hosts over time: recoveries, moves, restarts, drains and lost "
                "workers marked",
}
_STYLE = """body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 10px;
text-align:left}th{background:#f3f3f3}figure{margin:18px 0}img{max-width:100%}
figcaption{color:#555;font-size:90%}.note{color:#666;font-size:90%}"""


def render_html(store_url: str, spec_rows: dict[str, Any], history: History,
                figures: dict[str, bytes]) -> str:
    esc = html.escape
    s = summarize(history.entries)
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           # An empty icon: a file:// page must request nothing, not even /favicon.ico.
           '<link rel="icon" href="data:,">',
           f"<title>islandsync report: {esc(store_url)}</title>",
           f"<style>{_STYLE}</style></head><body>",
           f"<h1>islandsync run report</h1><p><code>{esc(store_url)}</code></p>"]
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out.append(f'<p class="note">Generated {generated} from {len(history.entries)} history '
               f"entries in {history.segments} segment(s)"
               + (f"; {len(history.skipped)} unreadable segment(s) skipped" if history.skipped
                  else "") + ". Times are the leaders' own clocks (display only).</p>")
    out.append("<h2>Summary</h2><table>")
    rows = {**spec_rows,
            "history span": _duration(s.span_s),
            "leader terms": ", ".join(map(str, s.terms)) or "-",
            "global best": _fmt(s.best),
            "evaluations": f"{s.evaluations:,}",
            "worker-hours": f"{sum(p['hours'] for p in s.platforms.values()):.3f}",
            "recoveries": (f"{len(s.recoveries_s)}, mean "
                           f"{sum(s.recoveries_s) / len(s.recoveries_s):.1f} s"
                           if s.recoveries_s else str(s.events.get("recovery", 0))),
            "events": ", ".join(f"{k} {v}" for k, v in sorted(s.events.items())) or "-",
            "bucket operations": f"class A {s.ops['A']:,}, class B {s.ops['B']:,}",
            "bucket cost (GCS list prices)": f"${s.cost:.4f} (class A "
                                             f"${PRICING['GCS'].a_per_million:g}, class B "
                                             f"${PRICING['GCS'].b_per_million:g} per million)"}
    for key, value in rows.items():
        out.append(f"<tr><th>{esc(key)}</th><td>{esc(str(value))}</td></tr>")
    out.append("</table>")
    out += _cost_table(s)
    out.append("<h2>Platforms</h2><table><tr><th>platform</th><th>workers</th>"
               "<th>worker-hours</th><th>evaluations</th></tr>")
    for name, p in sorted(s.platforms.items()):
        out.append(f"<tr><td>{esc(name)}</td><td>{p['workers']}</td><td>{p['hours']:.3f}</td>"
                   f"<td>{p['evals']:,}</td></tr>")
    out.append("</table><h2>Workers</h2><table><tr><th>worker</th><th>platform</th>"
               "<th>worker-hours</th><th>evaluations</th><th>most islands</th>"
               "<th>islandsync (protocol)</th></tr>")
    for wid, w in sorted(s.workers.items()):
        out.append(f"<tr><td>{esc(wid)}</td><td>{esc(w['platform'])}</td>"
                   f"<td>{w['hours']:.3f}</td><td>{w['evals']:,}</td><td>{w['islands']}</td>"
                   f"<td>{esc(', '.join(sorted(w['versions'])) or '-')}</td></tr>")
    out.append("</table><h2>Figures</h2>")
    if not figures:
        out.append("<p>No history yet: the run's leader writes it as it runs.</p>")
    for name in FIGURES:
        if name in figures:
            data = base64.b64encode(figures[name]).decode()
            out.append(f'<figure id="fig-{name}"><img alt="{esc(_CAPTIONS[name])}" '
                       f'src="data:image/png;base64,{data}"><figcaption>'
                       f"{esc(_CAPTIONS[name])}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def _cost_table(s: Summary) -> list[str]:
    """Bucket operations by role, and what a month of this run's shape costs on each bucket
    after its free tier (the run as it ran: its average number of workers and its leader)."""
    rates = s.per_hour()
    out = ["<h2>Bucket operations and cost</h2>",
           "<table><tr><th>role</th><th>class A</th><th>class B</th><th>hours</th>"
           "<th>class A / h</th><th>class B / h</th></tr>"]
    rows = (("leader", s.role_ops["leader"], s.leader_hours, rates["leader"]),
            ("workers (per worker-hour)", s.role_ops["workers"], s.worker_hours,
             rates["worker"]))
    for name, ops, hours, rate in rows:
        out.append(f"<tr><td>{name}</td><td>{ops['A']:,}</td><td>{ops['B']:,}</td>"
                   f"<td>{hours:.3f}</td><td>{rate['A']:,.0f}</td><td>{rate['B']:,.0f}</td></tr>")
    run = rates["run"]
    workers = s.worker_hours / (s.span_s / 3600) if s.span_s > 0 else 0.0
    out.append(f"</table><p>This run's shape ({workers:.1f} workers on average and a leader) "
               f"makes {run['A']:,.0f} class A and {run['B']:,.0f} class B operations an hour. "
               f"A month (730 h) of it, after each bucket's free tier:</p>")
    out.append("<table><tr><th>bucket</th><th>per month</th><th>hours a month in the free "
               "tier</th><th>prices</th></tr>")
    for name, p in PRICING.items():
        out.append(f"<tr><td>{name}</td><td>${p.monthly(run['A'], run['B']):,.2f}</td>"
                   f"<td>{p.free_hours(run['A'], run['B']):,.0f}</td><td>class A "
                   f"${p.a_per_million:g}, class B ${p.b_per_million:g} per million; "
                   f"{html.escape(p.note)}</td></tr>")
    out.append("</table>")
    return out


def _spec_rows(store: BlobStore) -> dict[str, Any]:
    try:
        spec = read_spec(store)
    except ConfigError as err:
        return {"run spec": f"unreadable: {err}"}
    return {"problem": f"{spec.problem.name} ({spec.problem.direction})",
            "genome": genome_text(spec.problem.genome.model_dump(mode="json")),
            "algorithm": ", ".join(f"{a.name} (population {a.pop})" for a in spec.algorithms)
            + (" round-robin" if len(spec.algorithms) > 1 else ""),
            "islands": spec.islands, "cadence": cadence_line(spec)}


def report_json(store: BlobStore) -> dict[str, Any]:
    """The run's history summarised for machines (``islandsync report RUN --json``); needs no
    matplotlib."""
    return summarize(read_history(store).entries).as_json()


def build_report(store: BlobStore, *, html_path: str | Path | None = None,
                 png_dir: str | Path | None = None) -> Path:
    """Write the report of the run in ``store``; returns the HTML file's path (default
    ``islandsync-report.html`` in the working directory). ConfigError without matplotlib."""
    _pyplot()  # before reading anything: say which extra to install first
    history = read_history(store)
    figures = render_figures(history)
    path = Path(html_path) if html_path else Path("islandsync-report.html")
    path.write_text(render_html(store.url, _spec_rows(store), history, figures),
                    encoding="utf-8")
    if png_dir is not None:
        Path(png_dir).mkdir(parents=True, exist_ok=True)
        for name, data in figures.items():
            (Path(png_dir) / f"{name}.png").write_bytes(data)
    return path


def sparkline(values: Sequence[float | None], width: int = 60) -> str:
    """A terminal sparkline (▁..█) of ``values``, log-scaled when they are positive and span
    decades; None shows as a space."""
    bars = "▁▂▃▄▅▆▇█"
    vals = list(values)[-width:]
    known = [v for v in vals if v is not None and math.isfinite(v)]
    if not known:
        return " " * len(vals)
    log = min(known) > 0 and max(known) / min(known) > 100
    f = (lambda v: math.log10(v)) if log else (lambda v: v)
    lo, hi = f(min(known)), f(max(known))
    span = hi - lo or 1.0
    return "".join(" " if v is None or not math.isfinite(v)
                   else bars[min(7, int((f(v) - lo) / span * 7.999))] for v in vals)


__all__ = ["FIGURES", "PLOT_EXTRA", "Summary", "report_json", "build_report", "render_figures",
           "render_html", "sparkline", "summarize"]
