"""Attention figures: the fusion's modality weights α (class × modality heatmaps teacher vs student,
α over epochs with one animation frame per epoch, per-sample α bars, robustness curves).

Inputs are plain data (lists / dicts as produced by :mod:`kdcore.explain.attention` and the
``AttentionSnapshot`` event dicts); every figure has ``uirevision`` set so live pages keep zoom.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdcore.viz.fast import ALPHA_SCALE, legend_below, legend_rows

MODALITY_COLORS = ["#4C6EF5", "#F03E3E", "#2F9E44", "#F08C00", "#AE3EC9", "#1098AD", "#E64980", "#5C940D"]
MODEL_DASH = {"teacher": "dot", "baseline": "dash", "kd": "solid"}


def modality_color(i: int) -> str:
    return MODALITY_COLORS[i % len(MODALITY_COLORS)]


def _layout(fig: go.Figure, title: str, uirevision: str, height: int = 360, axis_title: bool = True,
            width_px: int = 640) -> go.Figure:
    """Title on top; the legend (if any) horizontal *below* the plot, so it never covers the title or
    the subplot titles."""
    names = [t.name for t in fig.data if t.name and t.showlegend is not False]
    fig.update_layout(title=title, uirevision=uirevision, height=height, template="plotly_white",
                      **legend_below(height, legend_rows(names, width_px), top=60, axis_title=axis_title))
    return fig


def _grid(values) -> np.ndarray:
    arr = np.array([[np.nan if v is None else float(v) for v in row] for row in values], dtype=float)
    return arr


def alpha_heatmaps(panels: Mapping[str, Mapping], class_names: Sequence[str] | None = None,
                   title: str = "Mean attention α per true class", uirevision: str = "alpha-heatmaps") -> go.Figure:
    """Side-by-side class × modality heatmaps of mean α, e.g. ``{"teacher": {...}, "kd": {...}}``
    where each value has ``modalities`` and ``class_mean`` ([C][M]). One shared colour scale 0–1."""
    names = list(panels)
    fig = make_subplots(rows=1, cols=max(1, len(names)), subplot_titles=names, horizontal_spacing=0.08)
    for i, name in enumerate(names):
        p = panels[name]
        z = _grid(p["class_mean"])
        ys = list(class_names or [str(c) for c in range(z.shape[0])])
        text = [["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in z]
        fig.add_trace(go.Heatmap(
            z=z, x=list(p["modalities"]), y=ys, zmin=0.0, zmax=1.0, colorscale=ALPHA_SCALE,
            text=text, texttemplate="%{text}", showscale=(i == len(names) - 1),
            colorbar=dict(title="α"), hovertemplate="class %{y}<br>%{x}: α=%{z:.3f}<extra>" + name + "</extra>",
        ), row=1, col=i + 1)
        fig.update_yaxes(title_text="true class" if i == 0 else None, autorange="reversed", type="category",
                         row=1, col=i + 1)
    if not names:
        fig.add_annotation(text="no attention fusion in these models", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
    return _layout(fig, title, uirevision, height=420)


SLIDER_X = 0.16  # the slider starts right of the play button (paper fraction)


def alpha_epochs_figure(snapshots: Sequence[Mapping], class_names: Sequence[str] | None = None,
                        title: str = "α per class over epochs", uirevision: str = "alpha-epochs") -> go.Figure:
    """One class × modality heatmap per epoch as animation frames with a slider (last epoch shown)."""
    if not snapshots:
        fig = go.Figure()
        fig.add_annotation(text="no attention snapshots yet", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        return _layout(fig, title, uirevision)

    def trace(s):
        z = _grid(s["class_mean"])
        ys = list(class_names or [str(c) for c in range(z.shape[0])])
        return go.Heatmap(z=z, x=list(s["modalities"]), y=ys, zmin=0.0, zmax=1.0, colorscale=ALPHA_SCALE,
                          text=[[f"{v:.2f}" for v in row] for row in z], texttemplate="%{text}",
                          colorbar=dict(title="α"),
                          hovertemplate="class %{y}<br>%{x}: α=%{z:.3f}<extra>epoch " + str(s["epoch"]) + "</extra>")

    last = snapshots[-1]
    fig = go.Figure(data=[trace(last)],
                    frames=[go.Frame(data=[trace(s)], name=str(s["epoch"])) for s in snapshots])
    steps = [dict(method="animate", label=str(s["epoch"]),
                  args=[[str(s["epoch"])], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                                transition=dict(duration=0))]) for s in snapshots]
    # the play button sits left of the slider, on the same line (not on its ticks)
    fig.update_layout(
        sliders=[dict(active=len(snapshots) - 1, currentvalue=dict(prefix="epoch "), steps=steps,
                      x=SLIDER_X, len=1.0 - SLIDER_X, xanchor="left", y=0, yanchor="top", pad=dict(t=40, b=10))],
        updatemenus=[dict(type="buttons", showactive=False, x=0, xanchor="left", y=0, yanchor="top",
                          pad=dict(t=58, r=10), buttons=[
                              dict(label="▶ play", method="animate",
                                   args=[None, dict(frame=dict(duration=500, redraw=True), fromcurrent=False)])])],
    )
    fig.update_yaxes(title_text="true class", autorange="reversed", type="category")
    fig = _layout(fig, title, uirevision, height=500)
    fig.update_layout(margin=dict(l=50, r=20, t=60, b=120))  # room for the slider row
    return fig


def alpha_mean_lines(history: Mapping[str, Sequence[Mapping]], title: str = "Mean α over epochs",
                     uirevision: str = "alpha-lines") -> go.Figure:
    """Mean α per modality over epochs, one line per (phase, modality); colour = modality, dash = phase."""
    fig = go.Figure()
    mods_seen: list[str] = []
    for phase, snaps in history.items():
        if not snaps:
            continue
        mods = list(snaps[-1]["modalities"])
        for j, m in enumerate(mods):
            if m not in mods_seen:
                mods_seen.append(m)
            fig.add_trace(go.Scatter(
                x=[s["epoch"] for s in snaps], y=[s["mean"][j] for s in snaps], mode="lines+markers",
                name=f"{phase} · {m}", line=dict(color=modality_color(mods_seen.index(m)),
                                                 dash=MODEL_DASH.get(phase, "solid")),
                hovertemplate="epoch %{x}: α=%{y:.3f}<extra>" + f"{phase} · {m}" + "</extra>"))
    fig.update_yaxes(range=[0, 1], title_text="mean α (validation split)")
    fig.update_xaxes(title_text="epoch", dtick=1)
    return _layout(fig, title, uirevision)


def sample_alpha_bars(alphas: Mapping[str, Mapping[str, float]], predictions: Mapping[str, str] | None = None,
                      title: str = "α of this sample", uirevision: str = "alpha-sample") -> go.Figure:
    """Grouped bars of one sample's α per modality, one group per model (legend shows the prediction)."""
    fig = go.Figure()
    for i, (model, a) in enumerate(alphas.items()):
        label = model + (f" → {predictions[model]}" if predictions and model in predictions else "")
        fig.add_trace(go.Bar(x=list(a), y=list(a.values()), name=label, marker_color=MODALITY_COLORS[(i + 3) % 8],
                             text=[f"{v:.1f}" for v in a.values()], textposition="inside", insidetextanchor="end",
                             constraintext="inside"))
    # one label size for all bars; a label that does not fit inside its bar is hidden, never overlapped
    fig.update_layout(barmode="group", bargap=0.25, uniformtext=dict(minsize=10, mode="hide"))
    fig.update_yaxes(range=[0, 1.02], title_text="α")
    return _layout(fig, title, uirevision, height=340, axis_title=False, width_px=300)


def robustness_figure(rows: Sequence[Mapping], knob: str, title: str | None = None,
                      uirevision: str = "robustness") -> go.Figure:
    """Accuracy (left) and mean α per modality (right) against the level of one noise knob, per model
    (rows from :func:`kdcore.explain.attention.noise_sweep`)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test accuracy", "mean α"), horizontal_spacing=0.1)
    models = list(dict.fromkeys(r["model"] for r in rows))
    mods: list[str] = []
    for r in rows:
        mods += [m for m in r["alpha"] if m not in mods]
    for mi, model in enumerate(models):
        rs = [r for r in rows if r["model"] == model]
        xs = [r["level"] for r in rs]
        fig.add_trace(go.Scatter(x=xs, y=[r["acc"] for r in rs], mode="lines+markers", name=f"{model} accuracy",
                                 line=dict(color="#495057", dash=MODEL_DASH.get(model, "solid"))), row=1, col=1)
        for m in mods:
            if not any(m in r["alpha"] for r in rs):
                continue
            fig.add_trace(go.Scatter(x=xs, y=[r["alpha"].get(m) for r in rs], mode="lines+markers",
                                     name=f"{model} · α {m}",
                                     line=dict(color=modality_color(mods.index(m)),
                                               dash=MODEL_DASH.get(model, "solid"))), row=1, col=2)
    fig.update_xaxes(title_text=knob)
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    return _layout(fig, title or f"α and accuracy as {knob} rises", uirevision, height=420)


def removal_figure(rows: Sequence[Mapping], title: str = "A modality removed at test time",
                   uirevision: str = "removal") -> go.Figure:
    """Accuracy per removed modality (left, grouped by model) and the α the rest receive (right,
    stacked per model × removal) — rows from :func:`kdcore.explain.attention.removal_sweep`."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test accuracy", "mean α of the remaining modalities"),
                        horizontal_spacing=0.1)
    models = list(dict.fromkeys(r["model"] for r in rows))
    for i, model in enumerate(models):
        rs = [r for r in rows if r["model"] == model]
        fig.add_trace(go.Bar(x=[r["removed"] for r in rs], y=[r["acc"] for r in rs], name=model,
                             marker_color=MODALITY_COLORS[(i + 3) % 8], legendgroup=model), row=1, col=1)
    mods: list[str] = []
    for r in rows:
        mods += [m for m in r["alpha"] if m not in mods]
    xs = [[r["model"] for r in rows], [f"−{r['removed']}" if r["removed"] != "none" else "all" for r in rows]]
    for j, m in enumerate(mods):
        fig.add_trace(go.Bar(x=xs, y=[r["alpha"].get(m, 0.0) for r in rows], name=f"α {m}",
                             marker_color=modality_color(j)), row=1, col=2)
    fig.update_layout(barmode="stack")
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    # grouped accuracy bars: plotly's barmode is figure-wide, so offset the left subplot by hand
    n = max(1, len(models))
    for i, tr in enumerate(t for t in fig.data if t.xaxis == "x"):
        tr.update(offsetgroup=str(i), width=0.8 / n, offset=-0.4 + i * 0.8 / n)
    return _layout(fig, title, uirevision, height=440, axis_title=False)
