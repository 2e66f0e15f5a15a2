"""Video figures: a clip as a strip of frames, attributions per frame (one strip per model) and the share
of each model's |attribution| that falls on each frame.

A strip is one heatmap: the frames side by side, separated by a one-pixel gap (NaN, drawn blank), with
``t = 0, 1, …`` under each frame — cheap to draw and readable at a glance (a row of frames is how papers
show Moving MNIST). Attribution rows use the same diverging scale as the image maps
(:mod:`kdcore.viz.attributions`), normalised per model over **all** its frames together, so a frame the
model ignores stays blank instead of being blown up.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdcore.viz.attributions import PHASE_COLORS, SIGNED_METHODS, _attr_range, _layout, normalise
from kdcore.viz.fast import IMAGE_SCALE


def frames(clip) -> np.ndarray:
    """``[C, T, H, W]`` / ``[T, H, W]`` → ``[T, H, W]`` (channels summed)."""
    arr = np.asarray(clip, dtype=float)
    if arr.ndim == 4:
        arr = arr.sum(0)
    if arr.ndim != 3:
        raise ValueError(f"a clip is [C, T, H, W] or [T, H, W], got shape {arr.shape}")
    return arr


def strip(clip) -> np.ndarray:
    """The frames side by side, ``[H, T·(W + 1) − 1]`` with a NaN column between frames."""
    f = frames(clip)
    t, h, w = f.shape
    out = np.full((h, t * (w + 1) - 1), np.nan)
    for i in range(t):
        out[:, i * (w + 1):i * (w + 1) + w] = f[i]
    return out


def _frame_axis(fig: go.Figure, t: int, w: int, row: int | None = None) -> None:
    kw = {} if row is None else dict(row=row, col=1)
    fig.update_xaxes(tickvals=[i * (w + 1) + (w - 1) / 2 for i in range(t)], ticktext=[f"t={i}" for i in range(t)],
                     showgrid=False, zeroline=False, **kw)
    fig.update_yaxes(autorange="reversed", showticklabels=False, showgrid=False, zeroline=False,
                     scaleanchor="x" if row in (None, 1) else f"x{row}", **kw)


def clip_strip_figure(clip, title: str, height: int = 180, uirevision: str = "video-strip") -> go.Figure:
    """One clip as a row of frames (grey, as the image inputs are drawn)."""
    f = frames(clip)
    fig = go.Figure(go.Heatmap(z=strip(f), colorscale=IMAGE_SCALE, showscale=False,
                               hovertemplate="%{z:.2f}<extra></extra>"))
    _frame_axis(fig, f.shape[0], f.shape[2])
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=35, b=25), uirevision=uirevision,
                      template="plotly_white")
    return fig


def clip_animation_figure(clip, title: str, height: int = 260, frame_ms: int = 150,
                          uirevision: str = "video-play") -> go.Figure:
    """One clip played in time: a single frame with ▶ Play / ❚❚ Pause buttons and a frame slider
    (plotly animation frames, one per time step; the same grey scale and value range for every
    frame, so brightness means the same throughout)."""
    f = frames(clip)
    lo, hi = float(np.nanmin(f)), float(np.nanmax(f))
    heat = dict(colorscale=IMAGE_SCALE, showscale=False, zmin=lo, zmax=hi, hovertemplate="%{z:.2f}<extra></extra>")
    fig = go.Figure(go.Heatmap(z=f[0], **heat),
                    frames=[go.Frame(data=[go.Heatmap(z=f[i], **heat)], name=f"t={i}") for i in range(f.shape[0])])
    play = dict(frame=dict(duration=frame_ms, redraw=True), fromcurrent=True, transition=dict(duration=0))
    fig.update_layout(
        title=title, height=height, margin=dict(l=10, r=10, t=35, b=10), uirevision=uirevision,
        template="plotly_white",
        xaxis=dict(showticklabels=False, showgrid=False, zeroline=False, constrain="domain"),
        yaxis=dict(autorange="reversed", showticklabels=False, showgrid=False, zeroline=False, scaleanchor="x"),
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=-0.02, xanchor="left", yanchor="top",
                          showactive=False, pad=dict(t=0, r=6),
                          buttons=[dict(label="▶ Play", method="animate", args=[None, play]),
                                   dict(label="❚❚ Pause", method="animate",
                                        args=[[None], dict(frame=dict(duration=0, redraw=False), mode="immediate")])])],
        sliders=[dict(active=0, x=0.32, len=0.68, y=-0.02, yanchor="top", pad=dict(t=0),
                      currentvalue=dict(visible=False),
                      steps=[dict(label=f"t={i}", method="animate",
                                  args=[[f"t={i}"], dict(frame=dict(duration=0, redraw=True), mode="immediate")])
                             for i in range(f.shape[0])])])
    return fig


def video_maps_figure(inp, maps: Mapping[str, object], method: str, modality: str = "video",
                      title: str | None = None, uirevision: str | None = None) -> go.Figure:
    """The input clip on top, then one row of per-frame attribution maps per model (teacher, baseline, kd)."""
    signed = method in SIGNED_METHODS
    names = list(maps)
    f = frames(inp)
    t, _, w = f.shape
    fig = make_subplots(rows=1 + len(names), cols=1, subplot_titles=["input", *names], vertical_spacing=0.06)
    fig.add_trace(go.Heatmap(z=strip(f), colorscale=IMAGE_SCALE, showscale=False,
                             hovertemplate="%{z:.3f}<extra>input</extra>"), row=1, col=1)
    for i, name in enumerate(names):
        a = normalise(frames(maps[name]), signed)
        fig.add_trace(go.Heatmap(z=strip(a), **_attr_range(signed), showscale=(i == len(names) - 1),
                                 colorbar=dict(title="attr.<br>(scaled)"),
                                 hovertemplate="%{z:.3f}<extra>" + name + "</extra>"), row=i + 2, col=1)
    for r in range(1, len(names) + 2):
        _frame_axis(fig, t, w, row=r)
    return _layout(fig, title or f"{modality} (video) — {method}, per frame", uirevision or f"attr-{modality}",
                   height=90 + 110 * (1 + len(names)), axis_title=False)


def frame_shares(attr_map) -> np.ndarray:
    """Share of total |attribution| on each frame, ``[T]`` (sums to 1; zeros when the map is all zero)."""
    per = np.abs(frames(attr_map)).sum((1, 2))
    total = per.sum()
    return per / total if total > 0 else np.zeros_like(per)


def frame_shares_figure(maps: Mapping[str, object], method: str, modality: str = "video",
                        uirevision: str | None = None) -> go.Figure:
    """One line per model: the share of its |attribution| on each frame (a single-frame student puts
    everything on its frame; a model that integrates over time spreads it)."""
    fig = go.Figure()
    for name, a in maps.items():
        s = frame_shares(a)
        fig.add_trace(go.Scatter(x=list(range(len(s))), y=s, mode="lines+markers", name=name,
                                 line=dict(color=PHASE_COLORS.get(name, "#AE3EC9"))))
    fig.update_xaxes(title_text="frame t", dtick=1)
    fig.update_yaxes(title_text="share of |attribution|", rangemode="tozero", tickformat=".0%")
    return _layout(fig, f"{modality}: where in time each model looks ({method})", uirevision or f"attr-t-{modality}",
                   height=300)
