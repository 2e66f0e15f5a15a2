"""Figure builders: the specs they produce (traces, values, uirevision), smoothing, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdcore.viz import (
    accuracy_figure,
    aggregate_results,
    ema,
    gradient_split_figure,
    hard_vs_soft_figure,
    kd_quantities,
    loss_terms_figure,
    lr_figure,
    overlay_figure,
    result_table,
    softmax_bars_figure,
    softmax_t,
    strategy_figure,
    temperature_curves_figure,
    uses_adaptive_strategy,
    verdict,
)


def step(phase, i, terms, weights, t=None, lr=1e-3):
    total = sum(weights[k] * v for k, v in terms.items())
    return {"kind": "StepLosses", "phase": phase, "epoch": 0, "step": i, "total": total, "terms": terms,
            "weights": weights, "temperature": t, "lr": lr}


STEPS = ([step("teacher", i, {"ce": 2.0 - 0.1 * i}, {"ce": 1.0}) for i in range(5)]
         + [step("kd", i, {"ce": 1.5, "kd": 0.5 + i}, {"ce": 0.1, "kd": 0.9}, t=4.0) for i in range(3)])
EPOCHS = [{"kind": "EpochMetrics", "phase": p, "epoch": e, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0,
           "val_acc": acc, "seconds": 1.0, "extra": {}}
          for p, accs in (("teacher", [0.5, 0.9]), ("baseline", [0.3, 0.6]), ("kd", [0.35, 0.7]))
          for e, acc in enumerate(accs, start=1)]
RESULT = {"status": "finished", "message": "", "kd_gain": 0.021, "phases": {
    "teacher": {"test_acc": 0.94, "val_acc": 0.95, "best_epoch": 2, "params": 40000, "seconds": 3.0},
    "baseline": {"test_acc": 0.60, "val_acc": 0.61, "best_epoch": 2, "params": 3000, "seconds": 1.0},
    "kd": {"test_acc": 0.621, "val_acc": 0.63, "best_epoch": 2, "params": 3000, "seconds": 1.2}}}


def test_ema_hand_values_and_debiasing():
    assert ema([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    out = ema([1.0, 3.0], 0.5)
    # s1 = 0.5 / (1 - 0.5) = 1; s2 = (0.25 + 1.5) / (1 - 0.25) = 7/3
    assert out == pytest.approx([1.0, 7.0 / 3.0])
    assert ema([5.0] * 10, 0.9) == pytest.approx([5.0] * 10)  # debiased: a constant stays constant
    assert math.isnan(ema([1.0, float("nan"), 1.0], 0.5)[1])
    with pytest.raises(ValueError, match="smoothing"):
        ema([1.0], 1.0)


def test_loss_terms_figure_has_every_term_per_phase_smoothed_and_raw():
    fig = loss_terms_figure(STEPS, smoothing=0.5)
    assert fig.layout.uirevision == "losses"
    smooth = {(t.name, t.customdata[0]) for t in fig.data if t.customdata is not None}
    assert {("ce", "teacher"), ("ce", "kd"), ("kd", "kd"), ("total", "kd")} == smooth
    # the teacher has one term: its total is not drawn twice
    assert ("total", "teacher") not in smooth
    kd_trace = next(t for t in fig.data if t.name == "kd" and t.customdata is not None)
    # phases follow each other on one axis: kd starts after the teacher's 5 steps
    assert list(kd_trace.x) == [5, 6, 7]
    assert list(kd_trace.y) == pytest.approx(ema([0.5, 1.5, 2.5], 0.5))
    raw = [t for t in fig.data if t.name and t.name.startswith("kd raw")]
    assert len(raw) == 1 and list(raw[0].y) == [0.5, 1.5, 2.5]
    # no raw traces without smoothing
    assert not [t for t in loss_terms_figure(STEPS, smoothing=0.0).data if "raw" in (t.name or "")]
    assert loss_terms_figure(STEPS, log_y=True).layout.yaxis.type == "log"


def test_accuracy_figure_puts_all_phases_on_one_chart():
    fig = accuracy_figure(EPOCHS, RESULT)
    names = [t.name for t in fig.data]
    for p in ("teacher", "baseline", "kd"):
        assert f"{p} (val)" in names and f"{p} test (best-val epoch)" in names
    kd_val = next(t for t in fig.data if t.name == "kd (val)")
    assert list(kd_val.y) == pytest.approx([35.0, 70.0])
    star = next(t for t in fig.data if t.name == "kd test (best-val epoch)")
    assert list(star.y) == pytest.approx([62.1])
    assert fig.layout.uirevision == "accuracy"


def test_strategy_and_lr_figures():
    assert not uses_adaptive_strategy(STEPS)
    adaptive = [step("kd", i, {"ce": 1.0, "kd": 1.0}, {"ce": 0.1 * i, "kd": 1.0}, t=4.0 - i) for i in range(3)]
    assert uses_adaptive_strategy(adaptive)
    fig = strategy_figure(adaptive)
    w = next(t for t in fig.data if t.name == "weight ce")
    assert list(w.y) == pytest.approx([0.0, 0.1, 0.2])
    temp = next(t for t in fig.data if t.name == "temperature T")
    assert list(temp.y) == [4.0, 3.0, 2.0] and temp.yaxis == "y2"
    lr = lr_figure(STEPS)
    assert [t.name for t in lr.data] == ["teacher", "kd"] and lr.layout.uirevision == "lr"


def test_overlay_figure_one_curve_per_run():
    fig = overlay_figure({"run a": EPOCHS, "run b": EPOCHS[:4], "empty": []}, metric="val_acc", phase="kd")
    assert [t.name for t in fig.data] == ["run a"]
    fig2 = overlay_figure({"a": EPOCHS, "b": EPOCHS}, phase="baseline")
    assert [list(t.y) for t in fig2.data] == [pytest.approx([30.0, 60.0])] * 2


def test_result_table_and_verdicts():
    df = result_table(RESULT)
    assert list(df["phase"]) == ["teacher", "baseline", "kd"]
    kd = df.set_index("phase").loc["kd"]
    assert kd["test acc (%)"] == pytest.approx(62.1) and kd["gain vs baseline (points)"] == pytest.approx(2.1)
    assert math.isnan(df.set_index("phase").loc["teacher"]["gain vs baseline (points)"])
    assert verdict(RESULT, seeds=3).startswith("KD helped by +2.1 points (3 seeds)")
    one = verdict(RESULT)
    assert "(1 seed)" in one and "≥3 seeds" in one
    hurt = {**RESULT, "phases": {**RESULT["phases"], "kd": {**RESULT["phases"]["kd"], "test_acc": 0.55}}}
    assert verdict(hurt, seeds=3).startswith("KD hurt: the distilled student is 5.0 points below")
    flat = {**RESULT, "phases": {**RESULT["phases"], "kd": {**RESULT["phases"]["kd"], "test_acc": 0.601}}}
    assert verdict(flat, seeds=3).startswith("No clear difference")
    early = {"status": "stopped", "message": "stopped by the user", "phases": {"teacher": RESULT["phases"]["teacher"]}}
    assert "ended early (stopped" in verdict(early)


def test_softmax_and_kd_quantities_match_torch():
    zt = [4.0, 1.0, -2.0, 0.5]
    zs = [2.0, 1.5, -1.0, 0.0]
    for t in (1.0, 4.0):
        assert softmax_t(zt, t) == pytest.approx(F.softmax(torch.tensor(zt) / t, 0).numpy(), abs=1e-7)
    q = kd_quantities(zt, zs, [1.0, 4.0])
    for i, t in enumerate((1.0, 4.0)):
        s = torch.tensor(zs, requires_grad=True)
        loss = F.kl_div(F.log_softmax(s / t, 0), F.softmax(torch.tensor(zt) / t, 0), reduction="sum") * t * t
        loss.backward()
        assert q["kd_loss"][i] == pytest.approx(float(loss.detach()), rel=1e-5)
        assert q["kl"][i] == pytest.approx(float(loss.detach()) / t / t, rel=1e-5)
        assert q["grad_norm"][i] == pytest.approx(float(s.grad.norm()), rel=1e-5)
        assert q["grad_norm_no_t2"][i] == pytest.approx(float(s.grad.norm()) / t / t, rel=1e-5)
    # higher T → softer teacher (entropy rises towards log C)
    assert q["teacher_entropy"][1] > q["teacher_entropy"][0]
    with pytest.raises(ValueError, match="temperature"):
        softmax_t(zt, 0.0)


def test_teaching_figures():
    zt, zs = np.array([4.0, 1.0, -2.0]), np.array([2.0, 1.5, -1.0])
    bars = softmax_bars_figure(zt, zs, 4.0, ["a", "b", "c"], label=0)
    assert [t.name for t in bars.data] == ["teacher, T=4", "student, T=4"]
    assert list(bars.data[0].y) == pytest.approx(softmax_t(zt, 4.0))
    assert bars.layout.uirevision == "softmax" and bars.layout.barmode == "group"
    hs = hard_vs_soft_figure(1, zt, 2.0, ["a", "b", "c"])
    assert list(hs.data[0].y) == [0.0, 1.0, 0.0]
    assert list(hs.data[1].y) == pytest.approx(softmax_t(zt, 2.0))
    curves = temperature_curves_figure(zt, zs, 3.0)
    kd = next(t for t in curves.data if t.name == "T²·KL (KD loss)")
    assert len(kd.x) == 120 and curves.layout.xaxis.type == "log"
    marker = next(t for t in curves.data if t.name == "T = 3")
    assert list(marker.x) == [3.0, 3.0]
    assert curves.layout.xaxis2.type == "log" and hs.layout.yaxis2.matches == "y"  # two panels, shared y
    with pytest.raises(ValueError, match="temperature"):
        kd_quantities(zt, zs, [1.0, 0.0])


def test_gradient_split_matches_autograd():
    """The explorer's bars: (1−α)·∂CE/∂z_s and α·∂(T²·KL)/∂z_s, against torch autograd."""
    zt, zs, label, t, alpha = [4.0, 1.0, -2.0], [2.0, 1.5, -1.0], 2, 3.0, 0.7
    fig = gradient_split_figure(zs, zt, label, t, alpha, ["a", "b", "c"])
    s = torch.tensor(zs, requires_grad=True)
    F.cross_entropy(s[None], torch.tensor([label])).mul(1 - alpha).backward()
    assert list(fig.data[0].y) == pytest.approx(s.grad.tolist(), rel=1e-6)
    s.grad = None
    kl = F.kl_div(F.log_softmax(s / t, 0), F.softmax(torch.tensor(zt) / t, 0), reduction="sum")
    (alpha * t * t * kl).backward()
    assert list(fig.data[1].y) == pytest.approx(s.grad.tolist(), rel=1e-5)


def test_aggregate_results_over_seeds():
    def res(b, k):
        return {"status": "finished", "phases": {"baseline": {"test_acc": b, "val_acc": b, "params": 10},
                                                 "kd": {"test_acc": k, "val_acc": k, "params": 10}}}
    agg = aggregate_results([res(0.60, 0.62), res(0.50, 0.53), res(0.70, 0.71), {"status": "failed", "phases": {}}])
    assert agg["seeds"] == 3
    assert agg["phases"]["kd"]["test_acc"] == pytest.approx(0.62)
    assert agg["gains"] == pytest.approx([2.0, 3.0, 1.0])
    assert agg["gain_std"] == pytest.approx(1.0)
    assert verdict(agg, seeds=agg["seeds"]).startswith("KD helped by +2.0 points (3 seeds)")
    assert aggregate_results([])["status"] == "running"


@pytest.mark.parametrize("build", [
    lambda: loss_terms_figure(STEPS, 0.6, True),
    lambda: loss_terms_figure(STEPS, 0.0, False),
    lambda: accuracy_figure(EPOCHS, RESULT),
    lambda: strategy_figure(STEPS),
    lambda: lr_figure(STEPS),
    lambda: overlay_figure({"a": EPOCHS, "b": EPOCHS}, metric="val_acc", phase="kd"),
    lambda: softmax_bars_figure([4.0, 1.0, -2.0], [2.0, 1.5, -1.0], 4.0, ["a", "b", "c"], label=0),
    lambda: hard_vs_soft_figure(1, [4.0, 1.0, -2.0], 2.0, ["a", "b", "c"]),
    lambda: temperature_curves_figure([4.0, 1.0, -2.0], [2.0, 1.5, -1.0], 3.0),
    lambda: gradient_split_figure([2.0, 1.5, -1.0], [4.0, 1.0, -2.0], 0, 3.0, 0.9, ["a", "b", "c"]),
])
def test_live_figures_are_valid_plotly(build):
    """The live charts are built from dicts without plotly's validation (kdcore.viz.fast: ~8×
    faster, which is UI latency on every poll); rebuilding them *with* validation proves every
    property name and value is one plotly accepts."""
    import plotly.graph_objects as go

    fig = build()
    checked = go.Figure(fig.to_dict())  # raises ValueError on an unknown or invalid property
    assert checked.layout.template.layout.paper_bgcolor == "white"  # plotly_white resolved to the object
    assert len(checked.data) == len(fig.data) and checked.layout.uirevision == fig.layout.uirevision


def test_long_runs_are_thinned_for_the_browser_after_smoothing():
    from kdcore.viz.training import MAX_POINTS, thin

    xs, ys = thin(list(range(1000)), [float(i) for i in range(1000)], 5)
    assert xs == [0, 250, 500, 749, 999] and ys == [0.0, 250.0, 500.0, 749.0, 999.0]  # ends kept, even spread
    assert thin([1, 2], [3, 4], 5) == ([1, 2], [3, 4])
    steps = [step("kd", i, {"ce": 1.0 + (i % 2), "kd": 0.5}, {"ce": 0.1, "kd": 0.9}, t=4.0) for i in range(3000)]
    fig = loss_terms_figure(steps, smoothing=0.9)
    assert fig.data and all(len(t.x) <= MAX_POINTS for t in fig.data)
    smooth_ce = next(t for t in fig.data if t.name == "ce")
    full = ema([1.0 + (i % 2) for i in range(3000)], 0.9)
    assert smooth_ce.x[-1] == 2999 and smooth_ce.y[-1] == pytest.approx(full[-1])  # smoothed on every step
    assert all(len(t.x) <= MAX_POINTS for t in lr_figure(steps).data + strategy_figure(steps).data)
