"""The notebook's live display: the status line as text, and a plot of the best over time."""

from __future__ import annotations

from types import SimpleNamespace

from islandsync.worker.progress import NotebookProgress, best_plot_svg


class Handle:
    def __init__(self) -> None:
        self.shown: list = []

    def update(self, obj) -> None:
        self.shown.append(obj)


def _view(best):
    return {"worker": "w", "islands": 2, "generation": 5, "best": best, "rate": 10.0,
            "evaluations": 100, "checkpoint_age": 1.0, "pending_uploads": 0}


def test_the_notebook_display_plots_the_best_over_time() -> None:
    handle = Handle()
    progress = NotebookProgress(every=0.0, handle=handle)
    for best in (100.0, 50.0, float("nan"), 10.0, 1.0, None):
        progress.update(_view(best))
    last = handle.shown[-1]
    assert repr(last).startswith("[w] islands 2")  # text/plain: the status line
    page = last._repr_html_()
    assert "<svg" in page and "polyline" in page
    assert len(last.points) == 4  # NaN and None are not plotted
    progress.close(SimpleNamespace(worker="w", best_fitness=1.0, stopped="duration elapsed",
                                   wall_s=3.0, best_island=0, generations=5, evaluations=100,
                                   checkpoint_blocked_s=0.0))
    assert "stopped (duration elapsed)" in repr(handle.shown[-1])
    assert "<svg" in handle.shown[-1]._repr_html_()


def test_the_plot_is_empty_until_there_are_two_points_and_escapes_nothing_raw() -> None:
    assert best_plot_svg([]) == "" and best_plot_svg([(0.0, 1.0)]) == ""
    svg = best_plot_svg([(0.0, 1000.0), (1.0, 1.0), (2.0, 0.001)])  # log scale: decades
    assert svg.count(",") == 3 and "<script" not in svg
