"""Progress for people: one status line every few seconds in a terminal, one live-updating
display in Jupyter (never a flood of lines), nothing when switched off."""

from __future__ import annotations

import html
import math
import sys
import time
from typing import Any, Protocol


class Progress(Protocol):
    def update(self, view: dict[str, Any]) -> None: ...
    def close(self, summary: Any) -> None: ...


def _line(v: dict[str, Any]) -> str:
    best = "-" if v.get("best") is None else f"{v['best']:.6g}"
    pending = f"  uploads pending {v['pending_uploads']}" if v.get("pending_uploads") else ""
    return (f"[{v['worker']}] islands {v['islands']}  gen {v['generation']}  best {best}  "
            f"{v['rate']:,.0f} evals/s  {v['evaluations']:,} evals  "
            f"checkpoint {v['checkpoint_age']:.0f}s ago{pending}")


def _summary_line(s: Any) -> str:
    best = "-" if s.best_fitness is None else f"{s.best_fitness:.6g}"
    return (f"[{s.worker}] stopped ({s.stopped}) after {s.wall_s:.1f}s: best {best} "
            f"(island {s.best_island}), {s.generations} generations, {s.evaluations:,} "
            f"evaluations, checkpoint blocked {s.checkpoint_blocked_s:.3f}s")


class NullProgress:
    def update(self, view: dict[str, Any]) -> None:
        pass

    def close(self, summary: Any) -> None:
        pass


class LineProgress:
    def __init__(self, every: float = 5.0, stream: Any = None) -> None:
        self.every, self.stream = every, stream or sys.stderr
        self._next = time.monotonic() + 1.0

    def update(self, view: dict[str, Any]) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every
            print(_line(view), file=self.stream, flush=True)

    def close(self, summary: Any) -> None:
        print(_summary_line(summary), file=self.stream, flush=True)


class _Live:
    """What the notebook shows: the status line as text (``text/plain``), and in HTML the
    line above a small plot of the worker's best over time (an inline SVG: no matplotlib, no
    network)."""

    def __init__(self, text: str, points: list[tuple[float, float]]) -> None:
        self.text, self.points = text, points

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return (f"<div><pre style='margin:0'>{html.escape(self.text)}</pre>"
                f"{best_plot_svg(self.points)}</div>")


def best_plot_svg(points: list[tuple[float, float]], width: int = 360, height: int = 80) -> str:
    """An SVG line of (seconds, best) points; log scale when every value is positive and they
    span more than a decade. Empty when fewer than two points."""
    if len(points) < 2:
        return ""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    if min(ys) > 0 and max(ys) / min(ys) > 10:
        ys = [math.log10(y) for y in ys]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 8) / ((x1 - x0) or 1.0)
    sy = (height - 8) / ((y1 - y0) or 1.0)
    line = " ".join(f"{4 + (x - x0) * sx:.1f},{height - 4 - (y - y0) * sy:.1f}"
                    for x, y in zip(xs, ys))
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"role='img' aria-label='best fitness over time'>"
            f"<rect width='100%' height='100%' fill='none' stroke='#ccc'/>"
            f"<polyline fill='none' stroke='#1f77b4' stroke-width='1.5' points='{line}'/></svg>")


class NotebookProgress:
    """One display updated in place: the status line and a plot of the best over time."""

    MAX_POINTS = 400  # older points are thinned, so a week of updates stays small

    def __init__(self, every: float = 1.0, handle: Any = None) -> None:
        if handle is None:
            from IPython.display import display

            handle = display("islandsync: starting…", display_id=True)
        self.every, self._handle = every, handle
        self._next = 0.0
        self._started = time.monotonic()
        self._points: list[tuple[float, float]] = []

    def update(self, view: dict[str, Any]) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every
            best = view.get("best")
            if isinstance(best, (int, float)) and math.isfinite(best):
                self._points.append((now - self._started, float(best)))
                if len(self._points) > self.MAX_POINTS:
                    self._points = self._points[::2]
            self._handle.update(_Live(_line(view), list(self._points)))

    def close(self, summary: Any) -> None:
        self._handle.update(_Live(_summary_line(summary), list(self._points)))


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def make_progress(enabled: bool) -> Progress:
    if not enabled:
        return NullProgress()
    return NotebookProgress() if in_notebook() else LineProgress()
