"""Sweep figures (kdcore.viz.sweep): the plotted data equals GridResult.summary(), error bars are the
std over seeds, a second knob gives one line per value, legends sit below the plot, log x axis with
explicit ticks when the values span ≥ 8×."""

from __future__ import annotations

import itertools

import plotly.graph_objects as go
import pytest

from kdcore.pipeline.grid import GridResult
from kdcore.viz.sweep import accuracy_figure, agreement_figure, gain_figure, rows_table, verdict_rows, x_axis


def _rows(axes, seeds):
    rows = []
    keys = list(axes)
    for combo in itertools.product(*axes.values()):
        for s in range(seeds):
            x = float(combo[0])
            base = 0.5 + 0.01 * s
            kd = base + 0.01 * x + 0.003 * s * (1 + len(combo) - 1) + (0.02 * combo[1] if len(combo) > 1 else 0)
            rows.append({"point": dict(zip(keys, combo)), "seed": s,
                         "acc": {"teacher": 0.9, "baseline": base, "kd": kd, "kd.agreement": 0.7 + 0.01 * x,
                                 "baseline.agreement": 0.6}, "shared": ["teacher", "baseline"]})
    return rows


def _summary(axes, seeds=3):
    res = GridResult("t", axes, seeds, ("teacher", "baseline"), rows=_rows(axes, seeds))
    return res, res.summary()


def _validated(fig: go.Figure) -> go.Figure:
    return go.Figure(fig.to_dict())  # plotly's validation: a misspelt property fails here


def test_gain_figure_equals_the_summary_with_std_error_bars():
    axes = {"distill.temperature": [1, 2, 4, 8]}
    _, summary = _summary(axes)
    fig = _validated(gain_figure(summary, axes, {"distill.temperature": "temperature T"}))
    assert len(fig.data) == 1
    tr = fig.data[0]
    assert list(tr.x) == [1.0, 2.0, 4.0, 8.0]
    assert list(tr.y) == pytest.approx([e["gain"]["mean"] for e in summary])
    assert list(tr.error_y.array) == pytest.approx([e["gain"]["std"] for e in summary])
    assert all(s > 0 for s in tr.error_y.array)  # the per-seed gains differ
    assert fig.layout.title.text == "KD gain vs temperature T"
    assert fig.layout.yaxis.title.text == "KD − baseline (points)"
    # 1..8 spans 8×: log axis with the values as explicit ticks
    assert fig.layout.xaxis.type == "log"
    assert list(fig.layout.xaxis.tickvals) == [1, 2, 4, 8] and list(fig.layout.xaxis.ticktext) == ["1", "2", "4", "8"]
    # a dashed zero line
    assert any(s.y0 == 0 and s.y1 == 0 for s in fig.layout.shapes)


def test_linear_axis_below_8x_and_partial_summary():
    axes = {"data.noise.gamma": [0, 0.33, 0.67, 1]}
    _, summary = _summary(axes)
    fig = _validated(gain_figure(summary[:2], axes))  # a live chart: only two points finished
    assert fig.layout.xaxis.type in (None, "linear", "-")
    assert list(fig.layout.xaxis.tickvals) == [0, 0.33, 0.67, 1]
    assert list(fig.data[0].x) == [0, 0.33]
    assert x_axis([2, 4, 8], "w").get("type") is None  # 4× span: linear
    assert x_axis([0.1, 1.0], "f")["type"] == "log"


def test_two_knobs_give_one_line_per_value_with_its_own_colour_and_legend_below():
    axes = {"distill.temperature": [1, 4], "student.encoder.width": [4, 8, 16]}
    _, summary = _summary(axes, seeds=3)
    fig = _validated(gain_figure(summary, axes, {"student.encoder.width": "width"}))
    assert [t.name for t in fig.data] == ["width = 4", "width = 8", "width = 16"]
    assert len({t.line.color for t in fig.data}) == 3
    for tr, w in zip(fig.data, [4, 8, 16]):
        mine = [e for e in summary if e["point"]["student.encoder.width"] == w]
        assert list(tr.y) == pytest.approx([e["gain"]["mean"] for e in mine])
        assert list(tr.error_y.array) == pytest.approx([e["gain"]["std"] for e in mine])
    for f in (fig, accuracy_figure(summary, axes), agreement_figure(summary, axes)):
        leg = f.layout.legend
        assert leg.orientation == "h" and leg.y < 0 and leg.yanchor == "top"  # under the plot, not on the title
        assert f.layout.margin.b >= 60 and f.layout.title.text


def test_accuracy_and_agreement_panels():
    axes = {"data.regime.labels_per_class": [2, 5, 10, 20]}
    _, summary = _summary(axes)
    acc = _validated(accuracy_figure(summary, axes))
    by = {t.name: t for t in acc.data}
    assert set(by) == {"teacher", "baseline (no KD)", "KD student"}
    assert list(by["KD student"].y) == pytest.approx([e["kd"]["mean"] for e in summary])
    assert list(by["baseline (no KD)"].error_y.array) == pytest.approx([e["baseline"]["std"] for e in summary])
    agr = _validated(agreement_figure(summary, axes))
    by = {t.name: t for t in agr.data}
    assert list(by["KD student"].y) == pytest.approx([e["kd.agreement"] for e in summary])
    assert list(by["baseline (no KD)"].y) == pytest.approx([60.0] * 4)
    assert acc.layout.xaxis.type == "log"  # 2..20


def test_verdict_rows_and_csv_rows():
    axes = {"distill.temperature": [1, 2]}
    res, summary = _summary(axes)
    rows = verdict_rows(summary, axes, {"distill.temperature": "T"})
    assert [r["T"] for r in rows] == ["1", "2"]
    assert rows[0]["verdict"] == summary[0]["verdict"] and rows[0]["seeds"] == 3
    assert rows[0]["KD gain (points)"] == f"{summary[0]['gain']['mean']:+.1f} ± {summary[0]['gain']['std']:.1f}"
    flat = rows_table(res.rows)
    assert len(flat) == 6 and flat[0]["distill.temperature"] == 1 and flat[0]["seed"] == 0
    assert flat[0]["kd_gain_points"] == pytest.approx(100 * (flat[0]["kd"] - flat[0]["baseline"]))
    assert flat[0]["shared"] == "teacher baseline"
