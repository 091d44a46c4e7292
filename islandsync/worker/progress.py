"""Progress for people: one status line every few seconds in a terminal, one live-updating
display in Jupyter (never a flood of lines), nothing when switched off."""

from __future__ import annotations

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


class NotebookProgress:
    def __init__(self, every: float = 1.0) -> None:
        from IPython.display import display

        self.every = every
        self._handle = display("islandsync: starting…", display_id=True)
        self._next = 0.0

    def update(self, view: dict[str, Any]) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every
            self._handle.update(_line(view))

    def close(self, summary: Any) -> None:
        self._handle.update(_summary_line(summary))


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
