"""Figures of a grid sweep (``kdcore.pipeline.grid``): the paired KD gain against the swept knob with
± std error bars over seeds, test accuracy of the baseline and the KD student, and agreement with
the teacher. No streamlit.

Every builder takes the plain data of :meth:`GridResult.summary` (one dict per grid point:
``point``, ``n``, ``teacher`` / ``baseline`` / ``kd`` / ``gain`` as ``{"mean", "std"}``,
``verdict``, ``kd.agreement``, ``baseline.agreement``) and the sweep's ``axes``
(``{field: [values]}``, one or two fields, in the order of the grid). The first field is the x
axis; a second field gives one line per value, one colour each. Grid points that have not finished
yet are simply absent, so a live chart fills in as rows arrive.

Layout: the legend is horizontal at the bottom of the figure (never on the title); the x ticks are
the swept values themselves; a knob whose values span ≥ 8× gets a log axis with those values as
explicit ticks.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import plotly.graph_objects as go

import kdcore.viz.fast as fast
from kdcore.viz.training import PALETTE, PHASE_COLORS

LOG_SPAN = 8.0  # values spanning at least this ratio get a log x axis
PHASE_NAMES = {"teacher": "teacher", "baseline": "baseline (no KD)", "kd": "KD student"}
DASHES = {"teacher": "dot", "baseline": "dash", "kd": "solid"}


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v: Any) -> str:
    return f"{v:g}" if _num(v) else str(v)


def x_axis(values: Sequence[Any], title: str) -> dict[str, Any]:
    """The x axis for the swept values: explicit ticks at the values; log when they span ≥ 8×."""
    vals = list(dict.fromkeys(values))
    if vals and all(_num(v) for v in vals):
        ordered = sorted(float(v) for v in vals)
        axis: dict[str, Any] = {"title": {"text": title}, "tickmode": "array", "tickvals": ordered,
                                "ticktext": fast.tick_text(ordered)}
        if ordered[0] > 0 and ordered[-1] / ordered[0] >= LOG_SPAN:
            axis["type"] = "log"
        return axis
    return {"title": {"text": title}, "type": "category", "categoryorder": "array",
            "categoryarray": [str(v) for v in vals]}


def _x(v: Any) -> Any:
    return float(v) if _num(v) else str(v)


def _series(summary: Sequence[Mapping[str, Any]], axes: Mapping[str, Sequence[Any]]) -> list[tuple[Any, list]]:
    """``[(value of the 2nd knob or None, [summary entries in the order of the 1st knob's values])]``."""
    fields = list(axes)
    first = fields[0]
    order = {json_key(v): i for i, v in enumerate(axes[first])}

    def sort(entries: list) -> list:
        return sorted(entries, key=lambda e: order.get(json_key(e["point"][first]), len(order)))

    if len(fields) == 1:
        return [(None, sort(list(summary)))]
    second = fields[1]
    return [(v, sort([e for e in summary if json_key(e["point"][second]) == json_key(v)])) for v in axes[second]]


def json_key(v: Any) -> str:
    import json

    return json.dumps(v, sort_keys=True, default=str)


def _legend_rows(names: list[str]) -> int:
    return fast.legend_rows(names) if names else 0


def _layout(title: str, axes: Mapping[str, Sequence[Any]], labels: Mapping[str, str], y_title: str,
            uirevision: str, names: list[str], **more: Any) -> dict[str, Any]:
    first = list(axes)[0]
    rows = _legend_rows(names)
    return fast.layout(title, labels.get(first, first), y_title, uirevision, height=380 + 24 * max(0, rows - 1),
                       legend_lines=rows, xaxis=x_axis(axes[first], labels.get(first, first)),
                       yaxis={"title": {"text": y_title}, "zeroline": False}, **more)


def _line_name(second: str | None, value: Any, labels: Mapping[str, str], prefix: str = "") -> str:
    if second is None:
        return prefix or "KD gain"
    return (f"{prefix} · " if prefix else "") + f"{labels.get(second, second)} = {_fmt(value)}"


def gain_figure(summary: Sequence[Mapping[str, Any]], axes: Mapping[str, Sequence[Any]],
                labels: Mapping[str, str] | None = None, uirevision: str = "sweep-gain") -> go.Figure:
    """KD − baseline (test accuracy points, paired per seed): mean with ± std error bars over seeds,
    against the first knob; one line (one colour) per value of the second knob. Each marker's
    ``customdata`` is ``[std, seeds, verdict, the grid point as JSON]`` (:func:`clicked_point`)."""
    labels = dict(labels or {})
    fields = list(axes)
    second = fields[1] if len(fields) > 1 else None
    traces, names = [], []
    for i, (value, entries) in enumerate(_series(summary, axes)):
        entries = [e for e in entries if e.get("gain") and _num(e["gain"].get("mean"))]
        name = _line_name(second, value, labels)
        colour = PALETTE[i % len(PALETTE)] if second else PHASE_COLORS["kd"]
        traces.append(fast.scatter(
            x=[_x(e["point"][fields[0]]) for e in entries], y=[e["gain"]["mean"] for e in entries],
            error_y={"type": "data", "array": [e["gain"]["std"] for e in entries], "visible": True,
                     "thickness": 1.5, "width": 6},
            # the 4th item names the grid point (its JSON), so a clicked point says which it is
            customdata=[[e["gain"]["std"], e["n"], e.get("verdict", ""), json_key(e["point"])] for e in entries],
            hovertemplate=("%{x}: %{y:+.1f} ± %{customdata[0]:.1f} points over %{customdata[1]} seeds"
                           "<br>%{customdata[2]}<extra>" + name + "</extra>"),
            mode="lines+markers", name=name, showlegend=second is not None,
            line={"color": colour, "width": 2}, marker={"color": colour, "size": 8}))
        names.append(name)
    zero = {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": 0, "y1": 0,
            "line": {"color": "#868E96", "width": 1, "dash": "dash"}}
    return fast.figure(traces, _layout("KD gain vs " + labels.get(fields[0], fields[0]), axes, labels,
                                       "KD − baseline (points)", uirevision, names if second else [],
                                       shapes=[zero]))


def accuracy_figure(summary: Sequence[Mapping[str, Any]], axes: Mapping[str, Sequence[Any]],
                    labels: Mapping[str, str] | None = None, uirevision: str = "sweep-acc",
                    phases: Sequence[str] = ("teacher", "baseline", "kd")) -> go.Figure:
    """Test accuracy (%) of each phase, mean ± std over seeds, against the first knob. One knob: a
    colour per phase; two knobs: a colour per value of the second knob and a dash per phase."""
    labels = dict(labels or {})
    fields = list(axes)
    second = fields[1] if len(fields) > 1 else None
    traces, names = [], []
    for i, (value, entries) in enumerate(_series(summary, axes)):
        for phase in phases:
            pts = [e for e in entries if isinstance(e.get(phase), Mapping) and _num(e[phase].get("mean"))]
            if not pts:
                continue
            name = _line_name(second, value, labels, PHASE_NAMES.get(phase, phase))
            colour = PALETTE[i % len(PALETTE)] if second else PHASE_COLORS.get(phase, PALETTE[0])
            traces.append(fast.scatter(
                x=[_x(e["point"][fields[0]]) for e in pts], y=[e[phase]["mean"] for e in pts],
                error_y={"type": "data", "array": [e[phase]["std"] for e in pts], "visible": True,
                         "thickness": 1.2, "width": 4},
                hovertemplate="%{x}: %{y:.1f} %<extra>" + name + "</extra>", mode="lines+markers", name=name,
                line={"color": colour, "width": 2, "dash": DASHES.get(phase, "solid")},
                marker={"color": colour, "size": 7}, legendgroup=phase))
            names.append(name)
    return fast.figure(traces, _layout("Test accuracy vs " + labels.get(fields[0], fields[0]), axes, labels,
                                       "test accuracy (%)", uirevision, names))


def agreement_figure(summary: Sequence[Mapping[str, Any]], axes: Mapping[str, Sequence[Any]],
                     labels: Mapping[str, str] | None = None, uirevision: str = "sweep-agree") -> go.Figure:
    """Agreement with the teacher (% of test samples where the student's top class is the
    teacher's), mean over seeds, of the baseline and the KD student against the first knob."""
    labels = dict(labels or {})
    fields = list(axes)
    second = fields[1] if len(fields) > 1 else None
    traces, names = [], []
    for i, (value, entries) in enumerate(_series(summary, axes)):
        for phase in ("baseline", "kd"):
            key = f"{phase}.agreement"
            pts = [e for e in entries if _num(e.get(key))]
            if not pts:
                continue
            name = _line_name(second, value, labels, PHASE_NAMES[phase])
            colour = PALETTE[i % len(PALETTE)] if second else PHASE_COLORS[phase]
            traces.append(fast.scatter(
                x=[_x(e["point"][fields[0]]) for e in pts], y=[e[key] for e in pts],
                hovertemplate="%{x}: %{y:.1f} %<extra>" + name + "</extra>", mode="lines+markers", name=name,
                line={"color": colour, "width": 2, "dash": DASHES[phase]}, marker={"color": colour, "size": 7},
                legendgroup=phase))
            names.append(name)
    return fast.figure(traces, _layout("Agreement with the teacher vs " + labels.get(fields[0], fields[0]), axes,
                                       labels, "agreement with the teacher (%)", uirevision, names))


def clicked_point(point: Any) -> dict[str, Any] | None:
    """The grid point of a selected marker of :func:`gain_figure` (one item of a plotly selection's
    ``points``, as Streamlit reports it), or None when it is not one of those markers."""
    import json

    data = point.get("customdata") if isinstance(point, Mapping) else None
    if not isinstance(data, (list, tuple)) or len(data) < 4 or not isinstance(data[3], str):
        return None
    try:
        value = json.loads(data[3])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def verdict_rows(summary: Sequence[Mapping[str, Any]], axes: Mapping[str, Sequence[Any]],
                 labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per finished grid point: the knob values, accuracy mean ± std, the paired gain and
    the 2-std verdict (for a table under the charts)."""
    labels = dict(labels or {})

    def pm(e: Mapping[str, Any], phase: str) -> str:
        v = e.get(phase)
        return f"{v['mean']:.1f} ± {v['std']:.1f}" if isinstance(v, Mapping) else "–"

    rows = []
    for e in summary:
        row: dict[str, Any] = {labels.get(f, f): _fmt(e["point"][f]) for f in axes}
        row.update({"seeds": e["n"], "teacher %": pm(e, "teacher"), "baseline %": pm(e, "baseline"),
                    "KD %": pm(e, "kd"),
                    "KD gain (points)": f"{e['gain']['mean']:+.1f} ± {e['gain']['std']:.1f}" if e.get("gain") else "–",
                    "verdict": e.get("verdict", ""),
                    "agreement KD %": f"{e['kd.agreement']:.1f}" if _num(e.get("kd.agreement")) else "–"})
        rows.append(row)
    return rows


def rows_table(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The raw (grid point, seed) rows flattened for CSV: one column per knob, the seed, then every
    accuracy / agreement metric (fractions, as the engine stores them), what was shared and the
    row's stored run ("" when the sweep did not store its runs)."""
    out = []
    for r in rows:
        flat: dict[str, Any] = dict(r["point"])
        flat["seed"] = r["seed"]
        flat.update({k: v for k, v in (r.get("acc") or {}).items()})
        if "kd" in flat and "baseline" in flat:
            flat["kd_gain_points"] = 100 * (flat["kd"] - flat["baseline"])
        flat["shared"] = " ".join(r.get("shared") or [])
        flat["run_id"] = r.get("run_id") or ""  # the stored run of a saved sweep's row
        out.append(flat)
    return out


__all__ = ["accuracy_figure", "agreement_figure", "clicked_point", "gain_figure", "rows_table", "verdict_rows",
           "x_axis"]
