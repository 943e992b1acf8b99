"""Checks every figure povsim draws must pass, on the matplotlib objects (imported as ``figure_checks``)."""

from __future__ import annotations

import numpy as np


def drawn_lines(fig) -> list:
    """Every line of ``fig`` drawn as a line (not markers alone) through two points or more, in every axes."""
    out = []
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_linestyle() in ("None", "none", "", " ") or len(line.get_xdata()) < 2:
                continue
            out.append(line)
    return out


def assert_lines_run_forward(fig, name: str) -> int:
    """The x data of every line of ``fig`` is non-decreasing (no line doubles back); returns how many lines."""
    lines = drawn_lines(fig)
    for line in lines:
        x = np.asarray(line.get_xdata(orig=False), dtype=float)
        x = x[np.isfinite(x)]
        back = np.flatnonzero(np.diff(x) < 0)
        assert not len(back), (
            f"{name}: line {line.get_label()!r} in {line.axes.get_title() or 'an axes'} runs backwards at point "
            f"{back[0] + 1} of {len(x)} (x {x[back[0]]} then {x[back[0] + 1]})"
        )
    return len(lines)


def assert_inside_figure(fig, artist, name: str) -> None:
    """``artist`` (a title, a legend) is drawn wholly inside ``fig``: nothing of it clipped at an edge."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    box = artist.get_window_extent(canvas.get_renderer())
    width, height = fig.bbox.width, fig.bbox.height
    assert box.x0 >= -0.5 and box.y0 >= -0.5 and box.x1 <= width + 0.5 and box.y1 <= height + 0.5, (
        f"{name}: {artist!r} reaches outside the figure: {box.bounds} in {width} x {height} pixels"
    )
