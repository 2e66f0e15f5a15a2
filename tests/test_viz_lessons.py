"""kdcore/viz/lessons.py: the lesson charts hold exactly the result's numbers, keep fixed phase colours,
put the legend at the bottom (never on the title), and the result table has no "None" cell."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import pytest

from kdcore.viz.lessons import (
    agreement_figure,
    display_table,
    lesson_figure,
    lesson_result_table,
    omitted_figure,
    per_class_figure,
    phase_colour,
)
from kdcore.viz.training import PHASE_COLORS

RESULT = {
    "status": "finished",
    "data": {"test_size": 40, "num_classes": 4, "chance": 0.25},
    "phases": {
        "teacher": {"test_acc": 0.95, "val_acc": 0.94, "best_epoch": 3, "params": 1000, "seconds": 2.0,
                    "ece": 0.05, "per_class_acc": [1.0, 0.9, 1.0, 0.9], "omitted_acc": 0.9,
                    "omitted_acc_corrected": 0.9, "bias": 0.0, "test_acc_corrected": 0.95,
                    "acc_without_audio": 0.5},
        "baseline": {"test_acc": 0.70, "val_acc": 0.69, "best_epoch": 2, "params": 100, "seconds": 1.0,
                     "ece": 0.2, "per_class_acc": [0.9, 1.0, 0.0, None], "agreement": 0.71, "kl_to_teacher": 1.2,
                     "omitted_acc": 0.0, "omitted_acc_corrected": 0.1, "bias": 0.3, "test_acc_corrected": 0.72},
        "kd": {"test_acc": 0.85, "val_acc": 0.84, "best_epoch": 2, "params": 100, "seconds": 1.5, "ece": 0.1,
               "per_class_acc": [0.9, 0.8, 0.75, None], "agreement": 0.88, "kl_to_teacher": 0.4,
               "omitted_acc": 0.75, "omitted_acc_corrected": 0.8, "bias": -0.2, "test_acc_corrected": 0.86},
    },
}


def validated(fig: go.Figure) -> go.Figure:
    """Rebuild with plotly's validation: a misspelt property fails here."""
    return go.Figure(fig.to_dict())


def legend_at_bottom(fig: go.Figure) -> None:
    lay = fig.to_dict()["layout"]
    legend, margin = lay["legend"], lay["margin"]
    assert legend["orientation"] == "h"
    # below the plot area: container coordinates at the figure's bottom edge, inside the bottom margin
    assert legend.get("yref") == "container" and legend["y"] <= 0.0 + 1e-9 and legend["yanchor"] == "bottom"
    assert margin["b"] >= 100, "room for the ticks, the x-axis title and the legend"
    # the title lives in the top margin, away from the legend
    assert lay["title"]["text"] and margin["t"] >= 50
    assert lay.get("title", {}).get("y", 1.0) > 0.5


def test_per_class_figure_holds_the_input():
    fig = validated(per_class_figure(RESULT, omitted=[2]))
    assert [t.name for t in fig.data] == ["teacher", "baseline (no KD)", "KD student"]
    for tr, phase in zip(fig.data, ("teacher", "baseline", "kd")):
        want = [None if v is None else pytest.approx(100 * v) for v in RESULT["phases"][phase]["per_class_acc"]]
        assert list(tr.y) == want
        assert list(tr.x) == ["0", "1", "2", "3"]
        assert tr.marker.color == PHASE_COLORS[phase]
    assert fig.layout.barmode == "group"
    assert [s.x0 for s in fig.layout.shapes] == [1.5]  # the omitted class is shaded
    legend_at_bottom(fig)


def test_per_class_figure_class_names():
    fig = per_class_figure(RESULT, class_names=["a", "b", "c", "d"])
    assert list(fig.data[0].x) == ["a", "b", "c", "d"]


def test_omitted_figure_before_and_after_with_the_bias():
    fig = validated(omitted_figure(RESULT))
    assert [t.name for t in fig.data] == ["baseline (no KD)", "KD student"]  # students only
    base, kd = fig.data
    assert list(base.y) == pytest.approx([0.0, 10.0]) and list(kd.y) == pytest.approx([75.0, 80.0])
    assert list(base.x) == ["before bias correction", "after bias correction"]
    assert "bias +0.30" in base.text[1] and "bias -0.20" in kd.text[1]
    assert base.marker.color == PHASE_COLORS["baseline"] and kd.marker.color == PHASE_COLORS["kd"]
    assert fig.layout.title.text == "Accuracy on the omitted classes"
    legend_at_bottom(fig)


def test_agreement_figure_one_point_per_student():
    fig = validated(agreement_figure(RESULT))
    assert len(fig.data) == 2
    for tr, phase in zip(fig.data, ("baseline", "kd")):
        r = RESULT["phases"][phase]
        assert list(tr.x) == pytest.approx([100 * r["agreement"]])
        assert list(tr.y) == pytest.approx([100 * r["test_acc"]])
        assert tr.marker.color == PHASE_COLORS[phase]
    assert fig.layout.shapes[0].y0 == pytest.approx(95.0)  # the teacher's accuracy as a reference line
    assert "Agreement with the teacher" in fig.layout.title.text
    legend_at_bottom(fig)


def test_colours_do_not_depend_on_the_order_of_the_phases():
    flipped = {**RESULT, "phases": dict(reversed(list(RESULT["phases"].items())))}
    a = {t.name: t.marker.color for t in per_class_figure(RESULT).data}
    b = {t.name: t.marker.color for t in per_class_figure(flipped).data}
    assert a == b
    assert phase_colour("ard-extra") == phase_colour("ard-extra")


def test_lesson_figure_picks_the_chart():
    assert lesson_figure(RESULT, "omitted").layout.title.text == "Accuracy on the omitted classes"
    assert "Agreement" in lesson_figure(RESULT, "agreement").layout.title.text
    assert lesson_figure(RESULT, None).layout.title.text == "Accuracy on the omitted classes"
    plain = {"phases": {p: {k: v for k, v in r.items() if not k.startswith("omitted")}
                        for p, r in RESULT["phases"].items()}}
    assert lesson_figure(plain, "omitted") is None
    assert "Agreement" in lesson_figure(plain, None).layout.title.text
    assert lesson_figure({"phases": {"teacher": {"test_acc": 0.9}}}, "agreement") is None


def test_result_table_has_the_new_metrics_and_no_none_cell():
    df = lesson_result_table(RESULT)
    assert list(df["phase"]) == ["teacher", "baseline", "kd"]
    for col in ("agreement with teacher (%)", "KL(teacher‖student)", "ECE", "omitted-class acc (%)",
                "omitted-class acc, bias-corrected (%)", "fitted bias", "gain vs baseline (points)"):
        assert col in df.columns, col
    assert list(df["ECE"]) == pytest.approx([0.05, 0.2, 0.1])
    assert list(df["agreement with teacher (%)"]) == ["–", "71", "88"]
    assert list(df["gain vs baseline (points)"]) == ["–", "–", "15"]
    assert list(df["fitted bias"]) == pytest.approx([0.0, 0.3, -0.2])
    assert list(df["without audio (%)"]) == ["50", "–", "–"]
    for v in df.to_numpy().ravel():
        assert v is not None and not (isinstance(v, float) and math.isnan(v)) and v != "None"


def test_display_table_drops_empty_columns():
    df = display_table([{"a": 1, "b": None, "c": None}, {"a": 2, "b": None, "c": 3.5}])
    assert list(df.columns) == ["a", "c"] and list(df["a"]) == [1, 2] and list(df["c"]) == ["–", "3.5"]
