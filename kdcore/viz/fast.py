"""Plotly figures assembled from plain dicts, without plotly's per-property validation.

The live charts are rebuilt on every poll of the Train page (and every step of a slider), so their
build time is UI latency. ``benchmarks/figure_build.py``: the Train page's four charts take 8.5 ms
built from dicts with ``_validate=False`` against 67.6 ms for plotly's validated construction of
the same figures; the explorer's four 4.3 ms against 55.2 ms.

The result is still a ``go.Figure`` (``fig.data[i]`` are trace objects, ``fig.layout`` works), and
a test rebuilds every live figure *with* validation, so a misspelt property still fails a test.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio


@lru_cache(maxsize=None)
def _template(name: str) -> dict[str, Any]:
    """A named template as a plain dict (plotly.js needs the object, not its name)."""
    return pio.templates[name].to_plotly_json()


def scatter(**props: Any) -> dict[str, Any]:
    return {"type": "scatter", **props}


def vline(x: float, **line: Any) -> dict[str, Any]:
    """A vertical line across the plot (what ``fig.add_vline`` adds), as a layout shape."""
    return {"type": "line", "xref": "x", "yref": "y domain", "x0": x, "x1": x, "y0": 0, "y1": 1, "line": line}


# One colour map per kind of data, on every page: spectrograms, images, attention weights α, and
# attribution maps (one diverging map, centred at 0; unsigned methods use its positive half).
SPECTROGRAM_SCALE = "Viridis"
IMAGE_SCALE = "gray_r"
ALPHA_SCALE = "Blues"
ATTRIBUTION_SCALE = "RdBu_r"

_AXIS_PX = 52  # below the plot area: tick labels and an axis title
_ROW_PX = 24  # one row of a horizontal legend
_TOP_PX = 50


def legend_below(height: int, rows: int = 1, top: int = _TOP_PX, axis_title: bool = True) -> dict[str, Any]:
    """Layout keys that put a horizontal legend *below* the plot area, under the x axis's tick labels
    (and title), with the bottom margin grown to hold ``rows`` legend rows (0: no legend) — never on
    the chart title or on subplot titles. Plotly still grows the margin if the legend wraps further."""
    gap = _AXIS_PX if axis_title else 30
    bottom = gap + (_ROW_PX * rows + 6 if rows > 0 else 0)
    plot_h = max(60, height - top - bottom)
    return {"legend": {"orientation": "h", "xanchor": "left", "x": 0, "yanchor": "top", "y": -gap / plot_h},
            "margin": {"l": 50, "r": 20, "t": top, "b": bottom}}


def legend_rows(names: list[str], width_px: int = 640) -> int:
    """A guess at how many rows a horizontal legend of ``names`` takes in a chart ``width_px`` wide."""
    if not names:
        return 0
    used, rows = 0, 1
    for n in names:
        w = 40 + 7 * len(n)
        if used and used + w > width_px:
            rows, used = rows + 1, 0
        used += w
    return rows


def log_ticks(lo: float, hi: float, max_ticks: int = 8) -> list[float]:
    """Readable tick values for a log axis over [lo, hi]: 1-2-5 (or 1-2-4-8 where that fits better)
    steps per decade, thinned to powers of ten when there would be more than ``max_ticks``."""
    import math

    if not (lo > 0 and hi > lo):
        return [lo] if lo > 0 else []
    e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for mantissas in ((1, 2, 5), (1, 3), (1,)):
        vals = [round(m * 10.0 ** e, 12) for e in range(e0, e1 + 1) for m in mantissas]
        vals = [v for v in vals if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]
        if len(vals) <= max_ticks or mantissas == (1,):
            if len(vals) >= 2:
                return vals
    return [lo, hi]


def tick_text(values: list[float]) -> list[str]:
    return [f"{v:g}" for v in values]


def layout(title: str | None, x_title: str | None, y_title: str | None, uirevision: str, height: int = 340,
           template: str = "plotly_white", legend_lines: int = 1, top: int = _TOP_PX, **more: Any) -> dict[str, Any]:
    """The shared layout of KD Lab's charts (``None`` leaves a title out); ``more`` adds or
    overrides top-level keys. The legend sits below the plot (:func:`legend_below`), so it never
    covers the title; ``legend_lines`` is the room it gets (rows), ``top`` the top margin (px)."""
    out: dict[str, Any] = {
        "uirevision": uirevision, "height": height,
        **legend_below(height, legend_lines, top=top, axis_title=x_title is not None or "xaxis" in more),
        "template": _template(template),
    }
    for key, text in (("title", title), ("xaxis", x_title), ("yaxis", y_title)):
        if text is not None:
            out[key] = {"text": text} if key == "title" else {"title": {"text": text}}
    out.update(more)
    return out


def figure(traces: list[dict[str, Any]], layout_: dict[str, Any]) -> go.Figure:
    return go.Figure(data=traces, layout=layout_, _validate=False)


__all__ = ["ALPHA_SCALE", "ATTRIBUTION_SCALE", "IMAGE_SCALE", "SPECTROGRAM_SCALE", "figure", "layout",
           "legend_below", "legend_rows", "log_ticks", "scatter", "tick_text", "vline"]
