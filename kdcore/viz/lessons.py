"""Figures and the table that carry a preset's lesson (issue 11): per-class accuracy per phase, the
omitted-class accuracy before and after the bias correction, agreement with the teacher against
test accuracy, and the result table with the fidelity / calibration / omitted-class metrics.

Built from an experiment result dict (``phases[name]`` with ``test_acc``, ``per_class_acc``,
``agreement``, ``kl_to_teacher``, ``ece``, ``omitted_acc``, ``omitted_acc_corrected``, ``bias``,
…), no streamlit. Layout rules (issue 10): the legend sits at the bottom of the figure, under the
x-axis title, never on the title; every phase has a fixed colour (teacher grey, baseline orange,
KD blue) whatever the order or the run.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

import kdcore.viz.fast as fast
from kdcore.viz.training import PALETTE, PHASE_COLORS

PHASE_LABELS = {"teacher": "teacher", "baseline": "baseline (no KD)", "kd": "KD student"}  # short: one legend row
MISSING = "–"
LEGEND_MARGIN_B = 110  # px under the plot: tick labels, the x-axis title, then the legend


def phase_colour(phase: str) -> str:
    """A fixed colour per phase name: the three standard phases from ``PHASE_COLORS``, any other
    from a hash of its name (so it does not depend on the order the phases come in)."""
    if phase in PHASE_COLORS:
        return PHASE_COLORS[phase]
    return PALETTE[zlib.crc32(phase.encode("utf-8")) % len(PALETTE)]


def phase_label(phase: str) -> str:
    return PHASE_LABELS.get(phase, phase)


def _layout(title: str, x_title: str, y_title: str, uirevision: str, height: int = 380,
            **more: Any) -> dict[str, Any]:
    """KD Lab's layout with the legend horizontal at the bottom of the figure (container
    coordinates, below the x-axis title) and a top margin that belongs to the title alone."""
    return fast.layout(
        title, x_title, y_title, uirevision, height=height,
        margin={"l": 60, "r": 20, "t": 60, "b": LEGEND_MARGIN_B},
        legend={"orientation": "h", "x": 0.0, "xanchor": "left", "y": 0.0, "yanchor": "bottom",
                "yref": "container"},
        **more)


def _pct(v: Any) -> float | None:
    if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return 100.0 * float(v)


def student_phases(result: Mapping[str, Any]) -> list[str]:
    return [p for p in (result.get("phases") or {}) if p != "teacher"]


def has_omitted(result: Mapping[str, Any]) -> bool:
    return any(r.get("omitted_acc") is not None for r in (result.get("phases") or {}).values())


# ---- per-class accuracy -------------------------------------------------------------------
def per_class_figure(result: Mapping[str, Any], class_names: Sequence[str] | None = None,
                     omitted: Sequence[int] = (), uirevision: str = "per-class") -> go.Figure:
    """Grouped bars: test accuracy (%) of every class (x) for every phase (one colour each).
    A class absent from the test split (``None``) leaves a gap; ``omitted`` classes are shaded."""
    phases = {p: r["per_class_acc"] for p, r in (result.get("phases") or {}).items() if r.get("per_class_acc")}
    n = max((len(v) for v in phases.values()), default=0)
    names = [str(c) for c in (class_names or range(n))][:n]
    names += [str(i) for i in range(len(names), n)]
    traces = [{"type": "bar", "name": phase_label(p), "x": names, "y": [_pct(v) for v in accs],
               "marker": {"color": phase_colour(p)}, "legendgroup": p,
               "hovertemplate": f"{phase_label(p)}<br>class %{{x}}: %{{y:.1f}} %<extra></extra>"}
              for p, accs in phases.items()]
    shapes = [{"type": "rect", "xref": "x", "yref": "y domain", "x0": i - 0.5, "x1": i + 0.5, "y0": 0, "y1": 1,
               "fillcolor": "#FFF3BF", "opacity": 0.6, "line": {"width": 0}, "layer": "below"}
              for i in omitted if 0 <= i < n]
    annotations = [{"x": names[i], "y": 1.0, "yref": "y domain", "yanchor": "bottom", "text": "omitted",
                    "showarrow": False, "font": {"size": 11, "color": "#862E9C"}} for i in omitted if 0 <= i < n]
    lay = _layout("Per-class test accuracy", "class", "test accuracy (%)", uirevision, barmode="group",
                  shapes=shapes, annotations=annotations)
    lay["xaxis"].update({"type": "category", "tickfont": {"size": 13}})
    lay["yaxis"].update({"range": [0, 105], "dtick": 20, "ticksuffix": " %"})
    return fast.figure(traces, lay)


# ---- omitted classes ----------------------------------------------------------------------
OMITTED_X = ["before bias correction", "after bias correction"]


def omitted_figure(result: Mapping[str, Any], uirevision: str = "omitted") -> go.Figure:
    """Accuracy (%) on the omitted classes of every student phase, before and after the bias
    correction of the omitted logits (fitted on validation; the fitted value labels the bar)."""
    traces = []
    for p in student_phases(result):
        r = result["phases"][p]
        if r.get("omitted_acc") is None:
            continue
        before, after = _pct(r.get("omitted_acc")), _pct(r.get("omitted_acc_corrected"))
        bias = r.get("bias")
        texts = [f"{before:.0f} %" if before is not None else MISSING,
                 (f"{after:.0f} %" if after is not None else MISSING)
                 + (f" (bias {bias:+.2f})" if isinstance(bias, (int, float)) else "")]
        traces.append({"type": "bar", "name": phase_label(p), "x": OMITTED_X, "y": [before, after],
                       "text": texts, "textposition": "outside", "cliponaxis": False,
                       "marker": {"color": phase_colour(p)}, "legendgroup": p,
                       "hovertemplate": f"{phase_label(p)}<br>%{{x}}: %{{y:.1f}} %<extra></extra>"})
    lay = _layout("Accuracy on the omitted classes", None, "accuracy on omitted classes (%)", uirevision,
                  barmode="group", uniformtext={"minsize": 10, "mode": "hide"})
    lay["xaxis"] = {"type": "category", "tickfont": {"size": 13}}
    lay["yaxis"].update({"range": [0, 112], "dtick": 20, "ticksuffix": " %"})
    return fast.figure(traces, lay)


# ---- agreement with the teacher -----------------------------------------------------------
def agreement_figure(result: Mapping[str, Any], uirevision: str = "agreement") -> go.Figure:
    """One point per student phase: top-1 agreement with the teacher (x, %) against test
    accuracy (y, %). Fidelity and accuracy can move apart: a noisy teacher raises the first and
    lowers the second."""
    traces = []
    for p in student_phases(result):
        r = result["phases"][p]
        x, y = _pct(r.get("agreement")), _pct(r.get("test_acc"))
        if x is None or y is None:
            continue
        traces.append(fast.scatter(x=[x], y=[y], mode="markers+text", name=phase_label(p), text=[p],
                                   textposition="top center", legendgroup=p,
                                   marker={"color": phase_colour(p), "size": 16, "line": {"width": 1,
                                                                                          "color": "#212529"}},
                                   hovertemplate=f"{phase_label(p)}<br>agreement %{{x:.1f}} %<br>"
                                                 f"test accuracy %{{y:.1f}} %<extra></extra>"))
    t = _pct(((result.get("phases") or {}).get("teacher") or {}).get("test_acc"))
    shapes = []
    if t is not None:
        shapes.append({"type": "line", "xref": "x domain", "yref": "y", "x0": 0, "x1": 1, "y0": t, "y1": t,
                       "line": {"color": phase_colour("teacher"), "dash": "dot", "width": 1}})
    lay = _layout("Agreement with the teacher vs test accuracy", "top-1 agreement with the teacher (%)",
                  "test accuracy (%)", uirevision, shapes=shapes,
                  annotations=[{"x": 0.0, "xref": "x domain", "xanchor": "left", "y": t, "yanchor": "bottom",
                                "text": f"teacher {t:.1f} %", "showarrow": False,
                                "font": {"size": 11, "color": phase_colour("teacher")}}] if t is not None else [])
    lay["xaxis"].update({"range": [0, 105], "dtick": 20, "ticksuffix": " %"})
    lay["yaxis"].update({"range": [0, 105], "dtick": 20, "ticksuffix": " %"})
    return fast.figure(traces, lay)


def lesson_figure(result: Mapping[str, Any], chart: str | None) -> go.Figure | None:
    """The chart that carries the lesson: ``omitted`` or ``agreement`` (None: picked from the
    result — the omitted-class chart when the run omitted classes). None when there is no data."""
    if chart is None:
        chart = "omitted" if has_omitted(result) else "agreement"
    if chart == "omitted":
        return omitted_figure(result) if has_omitted(result) else None
    if chart == "agreement":
        fig = agreement_figure(result)
        return fig if fig.data else None
    return None


# ---- the result table ---------------------------------------------------------------------
def _round(v: Any, scale: float = 1.0, nd: int = 2) -> float | None:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return round(scale * float(v), nd)


def result_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One dict per phase (``None`` where a metric does not apply), before formatting."""
    phases = result.get("phases") or {}
    base = phases.get("baseline", {}).get("test_acc")
    mods = sorted({k[len("acc_without_"):] for r in phases.values() for k in r if k.startswith("acc_without_")})
    rows = []
    for name, r in phases.items():
        gain = None
        if base is not None and name not in ("teacher", "baseline") and r.get("test_acc") is not None:
            gain = round(100 * (r["test_acc"] - base), 2)
        row = {
            "phase": name,
            "test acc (%)": _round(r.get("test_acc"), 100),
            "gain vs baseline (points)": gain,
            "agreement with teacher (%)": _round(r.get("agreement"), 100),
            "KL(teacher‖student)": _round(r.get("kl_to_teacher"), 1, 3),
            "ECE": _round(r.get("ece"), 1, 3),
            "omitted-class acc (%)": _round(r.get("omitted_acc"), 100),
            "omitted-class acc, bias-corrected (%)": _round(r.get("omitted_acc_corrected"), 100),
            "fitted bias": _round(r.get("bias"), 1, 2),
            "test acc, bias-corrected (%)": _round(r.get("test_acc_corrected"), 100),
            "val acc (%)": _round(r.get("val_acc"), 100),
            "best epoch": r.get("best_epoch"),
            "parameters": r.get("params"),
            "seconds": _round(r.get("seconds"), 1, 1),
        }
        for m in mods:
            row[f"without {m} (%)"] = _round(r.get(f"acc_without_{m}"), 100)
        rows.append(row)
    return rows


def display_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A frame without "None" cells: a column empty in every row is left out; a column with gaps
    shows "–" in them (its numbers formatted as text); a full column stays numeric."""
    df = pd.DataFrame(list(rows))
    for col in list(df.columns):
        values = list(df[col])
        present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if not present:
            df = df.drop(columns=col)
        elif len(present) < len(values):
            df[col] = [MISSING if v is None or (isinstance(v, float) and math.isnan(v)) else _text(v)
                       for v in values]
    return df


def _text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def lesson_result_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """The Train page's result table: accuracy, gain, fidelity (agreement, KL), calibration (ECE),
    the omitted-class metrics with the fitted bias, missing-modality accuracy — no "None" cell."""
    return display_table(result_rows(result))


__all__ = ["agreement_figure", "display_table", "has_omitted", "lesson_figure", "lesson_result_table",
           "omitted_figure", "per_class_figure", "phase_colour", "result_rows"]
