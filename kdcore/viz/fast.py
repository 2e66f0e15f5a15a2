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


def layout(title: str | None, x_title: str | None, y_title: str | None, uirevision: str, height: int = 340,
           template: str = "plotly_white", **more: Any) -> dict[str, Any]:
    """The shared layout of KD Lab's charts (``None`` leaves a title out); ``more`` adds or
    overrides top-level keys."""
    out: dict[str, Any] = {
        "uirevision": uirevision, "height": height, "margin": {"l": 50, "r": 20, "t": 50, "b": 40},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        "template": _template(template),
    }
    for key, text in (("title", title), ("xaxis", x_title), ("yaxis", y_title)):
        if text is not None:
            out[key] = {"text": text} if key == "title" else {"title": {"text": text}}
    out.update(more)
    return out


def figure(traces: list[dict[str, Any]], layout_: dict[str, Any]) -> go.Figure:
    return go.Figure(data=traces, layout=layout_, _validate=False)


__all__ = ["figure", "layout", "scatter", "vline"]
