"""Progress for people: one status line every few seconds in a terminal, one live-updating
display in Jupyter (never a flood of lines), nothing when switched off; and for programs,
the user's own callback (:class:`UserCallback`)."""

from __future__ import annotations

import html
import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from islandsync.errors import ConfigError

log = logging.getLogger(__name__)


class RateMeter:
    """Evaluations per second, smoothed over a few seconds."""

    def __init__(self, halflife: float = 5.0) -> None:
        self.halflife, self.rate = halflife, 0.0
        self._t = time.monotonic()
        self._count = 0

    def add(self, evals: int) -> None:
        self._count += evals
        now = time.monotonic()
        dt = now - self._t
        if dt >= 0.5:
            inst = self._count / dt
            w = 0.5 ** (dt / self.halflife)
            self.rate = inst if self.rate == 0 else w * self.rate + (1 - w) * inst
            self._t, self._count = now, 0


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
    run_best = getattr(s, "global_best_fitness", None)
    run = "" if run_best is None else f"; the run's best {run_best:.6g}"
    return (f"[{s.worker}] stopped ({s.stopped}) after {s.wall_s:.1f}s: best {best} "
            f"(island {s.best_island}){run}, {s.generations} generations, {s.evaluations:,} "
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


class UserCallback:
    """The user's progress function (``islandsync.run(callback=fn)``): ``fn(progress)`` with
    a dict of numbers, called from the worker loop's own thread (the one that called
    ``run``, so a notebook's plotting or a TensorBoard writer needs no lock) at most every
    ``every_s`` seconds, and once more when the worker stops (``progress["stopped"]`` then
    says why; None before). It runs inside the loop: keep it quick.

    An exception from ``fn`` is logged once, with its traceback, and the callback is not
    called again in this run; the search goes on (a plotting bug must not cost hours of
    search) and :attr:`error` (``RunSummary.callback_error``) says what happened. Without a
    function, this does nothing."""

    def __init__(self, fn: Callable[[dict[str, Any]], Any] | None, every_s: float = 5.0) -> None:
        if fn is not None and not callable(fn):
            raise ConfigError(f"callback must be a function of one argument, got "
                              f"{type(fn).__name__}")
        if not (isinstance(every_s, (int, float)) and math.isfinite(every_s) and every_s >= 0):
            raise ConfigError(f"callback_every_s must be a number of seconds >= 0, got "
                              f"{every_s!r}")
        self.fn, self.every_s = fn, float(every_s)
        self.error: str | None = None
        self._next = 0.0  # the first call comes with the loop's first look

    def due(self, now: float) -> bool:
        return self.fn is not None and now >= self._next

    def call(self, progress: dict[str, Any], now: float) -> None:
        fn = self.fn
        if fn is None:
            return
        self._next = now + self.every_s
        try:
            fn(progress)
        except Exception as err:  # noqa: BLE001 - the user's code: any error, reported once
            self.fn = None
            self.error = f"{type(err).__name__}: {err}"[:500]
            log.error("islandsync: the progress callback %s raised %s; it is not called again "
                      "in this run (the search goes on)", getattr(fn, "__name__", repr(fn)),
                      self.error, exc_info=True)


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
