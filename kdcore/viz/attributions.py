"""Attribution figures: image / spectrogram maps next to the input, character tokens coloured by
their score (a plotly heatmap with the characters as cell text — no HTML), feature bars for vector
views, per-modality shares of |attribution|, and teacher–student agreement over epochs / samples.

Maps are normalised per panel by their largest |value| (Captum's own visualiser asserts on all-zero
maps; here an all-zero map is drawn as zeros). Every attribution uses one diverging red–blue scale
centred at 0: signed methods (IG, occlusion) use both halves, unsigned ones (saliency, SmoothGrad,
Grad-CAM) the red half. Inputs use the app's colour maps (spectrograms Viridis, images grey).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kdcore.viz.fast import ATTRIBUTION_SCALE, IMAGE_SCALE, SPECTROGRAM_SCALE, legend_below, legend_rows

SIGNED_METHODS = ("ig", "occlusion")
PHASE_COLORS = {"teacher": "#495057", "baseline": "#F08C00", "kd": "#4C6EF5"}
MODALITY_COLORS = ["#4C6EF5", "#F03E3E", "#2F9E44", "#F08C00", "#AE3EC9", "#1098AD", "#E64980", "#5C940D"]


def _layout(fig: go.Figure, title: str, uirevision: str, height: int = 340, axis_title: bool = True) -> go.Figure:
    """Title on top; the legend (if any) horizontal below the plot, never on the title."""
    names = [t.name for t in fig.data if t.name and t.showlegend is not False]
    fig.update_layout(title=title, uirevision=uirevision, height=height, template="plotly_white",
                      **legend_below(height, legend_rows(names), top=60, axis_title=axis_title))
    fig.update_layout(margin_l=40)
    return fig


def _attr_range(signed: bool) -> dict:
    """One diverging colour map for every attribution, centred at 0 (unsigned maps use its upper half)."""
    return dict(zmin=-1.0, zmax=1.0, zmid=0.0, colorscale=ATTRIBUTION_SCALE)


def normalise(a, signed: bool = True) -> np.ndarray:
    """Scale to [−1, 1] (signed) or [0, 1] (magnitude) by the largest |value|; zeros stay zeros."""
    x = np.asarray(a, dtype=float)
    if not signed:
        x = np.abs(x)
    m = float(np.nanmax(np.abs(x))) if x.size else 0.0
    return x / m if m > 0 else np.zeros_like(x)


def _to2d(x) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    while arr.ndim > 2:
        arr = arr.sum(0) if arr.shape[0] > 1 else arr[0]
    return arr


def image_maps_figure(inp, maps: Mapping[str, object], method: str, modality: str = "image",
                      spectrogram: bool = False, title: str | None = None,
                      uirevision: str | None = None) -> go.Figure:
    """The input (grey) and one attribution map per model (e.g. teacher, baseline, kd), side by side.

    ``inp`` is [C, H, W] or [H, W]; each map the same shape. Spectrograms are drawn with low
    frequencies at the bottom (mel bins on y, frames on x)."""
    signed = method in SIGNED_METHODS
    names = list(maps)
    fig = make_subplots(rows=1, cols=1 + len(names), subplot_titles=["input", *names], horizontal_spacing=0.04)
    x = _to2d(inp)
    fig.add_trace(go.Heatmap(z=x, colorscale=SPECTROGRAM_SCALE if spectrogram else IMAGE_SCALE, showscale=False,
                             hovertemplate="(%{x}, %{y}) = %{z:.3f}<extra>input</extra>"), row=1, col=1)
    for i, name in enumerate(names):
        z = normalise(_to2d(maps[name]), signed)
        fig.add_trace(go.Heatmap(
            z=z, **_attr_range(signed), showscale=(i == len(names) - 1),
            colorbar=dict(title="attr.<br>(scaled)"),
            hovertemplate="(%{x}, %{y}) = %{z:.3f}<extra>" + name + "</extra>"), row=1, col=i + 2)
    for c in range(1, len(names) + 2):
        fig.update_yaxes(autorange=True if spectrogram else "reversed", scaleanchor=f"x{c if c > 1 else ''}",
                         showticklabels=False, row=1, col=c)
        fig.update_xaxes(showticklabels=False, row=1, col=c)
    kind = "spectrogram" if spectrogram else "image"
    return _layout(fig, title or f"{modality} ({kind}) — {method}", uirevision or f"attr-{modality}", height=300,
                   axis_title=False)


def token_figure(tokens: Mapping[str, Sequence[tuple[str, float]]], method: str, modality: str = "text",
                 title: str | None = None, uirevision: str | None = None) -> go.Figure:
    """Characters as cells coloured by their attribution, one row per model (the characters are the
    cell text). ``tokens`` maps model → [(character, score), ...]."""
    signed = method in SIGNED_METHODS
    names = list(tokens)
    width = max([len(v) for v in tokens.values()] + [1])
    z = np.full((len(names), width), np.nan)
    text = [[""] * width for _ in names]
    for r, name in enumerate(names):
        pairs = list(tokens[name])
        scores = normalise([s for _, s in pairs], signed) if pairs else np.zeros(0)
        for c, ((ch, _), s) in enumerate(zip(pairs, scores)):
            z[r, c] = s
            text[r][c] = ch
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(1, width + 1)), y=names, text=text, texttemplate="%{text}",
        textfont=dict(size=20), **_attr_range(signed), xgap=3, ygap=3, colorbar=dict(title="scaled"),
        hovertemplate="'%{text}' (position %{x}): %{z:.3f}<extra>%{y}</extra>"))
    fig.update_xaxes(title_text="character position", dtick=1)
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title or f"{modality}: characters coloured by {method} attribution",
                   uirevision or f"attr-{modality}", height=120 + 60 * len(names))


def feature_bars_figure(maps: Mapping[str, Sequence[float]], method: str, modality: str,
                        feature_names: Sequence[str] | None = None, title: str | None = None,
                        uirevision: str | None = None) -> go.Figure:
    """Attribution per feature of a vector view as bars, one colour per model (scaled per model)."""
    signed = method in SIGNED_METHODS
    fig = go.Figure()
    for i, (name, a) in enumerate(maps.items()):
        v = normalise(np.asarray(a, dtype=float).ravel(), signed)
        xs = list(feature_names) if feature_names is not None else list(range(len(v)))
        fig.add_trace(go.Bar(x=xs, y=v, name=name, marker_color=PHASE_COLORS.get(name, MODALITY_COLORS[i % 8])))
    fig.update_layout(barmode="group", bargap=0.1)
    fig.update_xaxes(title_text=f"{modality} feature")
    fig.update_yaxes(title_text="attribution (scaled)", range=[-1.05 if signed else 0, 1.05])
    return _layout(fig, title or f"{modality} (vector view) — {method}", uirevision or f"attr-{modality}")


def shares_figure(shares: Mapping[str, Mapping[str, float]], title: str = "Share of total |attribution| per modality",
                  uirevision: str = "attr-shares") -> go.Figure:
    """Horizontal stacked bars: one bar per model, segments = modalities (sum to 1)."""
    fig = go.Figure()
    mods: list[str] = []
    for s in shares.values():
        mods += [m for m in s if m not in mods]
    names = list(shares)
    for j, m in enumerate(mods):
        vals = [shares[n].get(m, 0.0) for n in names]
        fig.add_trace(go.Bar(y=names, x=vals, name=m, orientation="h", marker_color=MODALITY_COLORS[j % 8],
                             text=[f"{v:.0%}" if v >= 0.04 else "" for v in vals], textposition="inside"))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, uirevision, height=170 + 45 * len(names), axis_title=False)


def agreement_epochs_figure(history: Mapping[str, Sequence[Mapping]], metric: str = "spearman",
                            modality: str = "all", title: str | None = None,
                            uirevision: str = "agreement-epochs") -> go.Figure:
    """Teacher–student agreement (mean over the probe set) after every epoch, one line per student
    phase — from the ``AttributionSnapshot`` events."""
    label = {"spearman": "Spearman ρ", "topk": "top-k overlap"}.get(metric, metric)
    fig = go.Figure()
    for phase, snaps in history.items():
        pts = [(s["epoch"], s[metric].get(modality)) for s in snaps if s[metric].get(modality) is not None]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=phase,
                                 line=dict(color=PHASE_COLORS.get(phase, "#AE3EC9"))))
    if not history:
        fig.add_annotation(text="no agreement snapshots yet (computed after each student epoch)",
                           showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text=label, range=[-0.2 if metric == "spearman" else 0, 1.02])
    return _layout(fig, title or f"Teacher–student attribution agreement ({label}, {modality})", uirevision)


def agreement_samples_figure(per_sample: Mapping[str, Sequence[float]], metric: str = "Spearman ρ",
                             title: str | None = None, uirevision: str = "agreement-samples") -> go.Figure:
    """Per-sample agreement with the teacher, one box (with the points) per student."""
    fig = go.Figure()
    for phase, vals in per_sample.items():
        v = [x for x in np.asarray(vals, dtype=float).ravel() if np.isfinite(x)]
        fig.add_trace(go.Box(y=v, name=phase, boxpoints="all", jitter=0.4, pointpos=0,
                             marker_color=PHASE_COLORS.get(phase, "#AE3EC9")))
    fig.update_yaxes(title_text=metric)
    return _layout(fig, title or f"Per-sample agreement with the teacher ({metric})", uirevision, axis_title=False)
