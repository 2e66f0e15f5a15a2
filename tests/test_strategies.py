"""Adaptive distillation strategies (uncertainty / confidence / c2kd weighting, learnable T) and the
multi-teacher ensemble: values against hand computations, and their wiring through the trainer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdcore.pipeline.experiment import Experiment
from kdcore.methods.losses import functional as LF
from kdcore.models.output import ModelOutput
from kdcore.core.spec import ExperimentSpec
from kdcore.methods.strategies import TEMPERATURE_SCHEDULES, WEIGHTINGS
from kdcore.methods.strategies.adaptive import c2kd_keep, mask_target, teacher_confidence
from kdcore.pipeline.recipes.ensemble import EnsembleTeacher, ensemble_logits, ensemble_probs


def out(logits: torch.Tensor) -> ModelOutput:
    b = logits.shape[0]
    return ModelOutput(logits, {"a": torch.zeros(b, 2)}, torch.zeros(b, 2), None, ("a",))


def tiny_mfeat(*extra: str) -> ExperimentSpec:
    """Three mfeat views, MLPs, 150 training samples: a full experiment in a few seconds."""
    return ExperimentSpec.model_validate({
        "name": "tiny",
        "data": {"dataset": "mfeat", "modalities": ["fou", "zer", "mor"], "train_limit": 150, "seed": 0},
        "teacher": {"feature_dim": 16, "encoder": {"width": 16, "depth": 1}},
        "student": {"feature_dim": 8, "encoder": {"width": 8, "depth": 1}},
        "train": {"teacher_epochs": 2, "student_epochs": 2, "batch_size": 50, "device": "cpu"},
    }).with_overrides(list(extra))


# ---- uncertainty weighting ------------------------------------------------------------------
def test_uncertainty_weighting_hand_computed_value_and_weights():
    w = WEIGHTINGS["uncertainty"]({"ce": 0.1, "kd": 0.9})
    with torch.no_grad():
        w.log_vars["ce"].fill_(0.5)
        w.log_vars["kd"].fill_(-1.0)
    terms = {"ce": torch.tensor(2.0), "kd": torch.tensor(3.0)}
    total, eff = w.combine(terms, {"ce": "ce", "kd": "kd"})
    # 0.1·e^{-0.5}·2 + 0.5 + 0.9·e^{1}·3 − 1
    expected = 0.1 * math.exp(-0.5) * 2 + 0.5 + 0.9 * math.e * 3 - 1.0
    assert float(total) == pytest.approx(expected, rel=1e-6)
    assert float(total) == pytest.approx(6.960664, abs=1e-5)
    assert eff == pytest.approx({"ce": 0.1 * math.exp(-0.5), "kd": 0.9 * math.e})
    # d total / d s_kd = −w·e^{−s}·L + 1
    total.backward()
    assert float(w.log_vars["kd"].grad) == pytest.approx(-0.9 * math.e * 3 + 1, rel=1e-6)


def test_uncertainty_subterms_share_one_log_variance_and_fixed_ce():
    w = WEIGHTINGS["uncertainty"]({"ce": 1.0, "dkd": 2.0}, learn_ce=False, init=0.3)
    assert set(w.log_vars) == {"dkd"}
    terms = {"ce": torch.tensor(1.0), "dkd/tckd": torch.tensor(2.0), "dkd/nckd": torch.tensor(4.0)}
    total, eff = w.combine(terms, {"ce": "ce", "dkd/tckd": "dkd", "dkd/nckd": "dkd"})
    expected = 1.0 * 1.0 + 2.0 * math.exp(-0.3) * (2.0 + 4.0) + 0.3  # s counted once, CE not learned
    assert float(total) == pytest.approx(expected, rel=1e-6)
    assert eff["ce"] == 1.0 and eff["dkd/tckd"] == eff["dkd/nckd"] == pytest.approx(2 * math.exp(-0.3))


def test_unknown_weighting_param_names_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed: init, learn_ce"):
        WEIGHTINGS["uncertainty"]({"kd": 1.0}, sigma=1)
    with pytest.raises(ValueError, match="mode"):
        WEIGHTINGS["confidence"]({"kd": 1.0}, mode="median")


def test_strategy_params_are_pydantic_models_with_ranges():
    from kdcore.methods.strategies import Weighting

    w = WEIGHTINGS["confidence"]({"kd": 1.0}, mode="true", power=2)
    assert (w.params.mode, w.params.temperature, w.params.power) == ("true", 1.0, 2.0)
    assert WEIGHTINGS["confidence"].defaults == {"mode": "max", "temperature": 1.0, "power": 1.0}
    with pytest.raises(ValueError,
                       match=r"^weighting 'confidence': weighting_params.mode='median'; allowed: max, true$"):
        WEIGHTINGS["confidence"]({"kd": 1.0}, mode="median")
    with pytest.raises(ValueError, match=r"weighting_params.temperature=0 is outside the allowed range \(0.0, 100.0\]"):
        WEIGHTINGS["confidence"]({"kd": 1.0}, temperature=0)
    sched = TEMPERATURE_SCHEDULES["learnable"](4.0, **{"lambda": 2.0})  # the parameter a user writes is `lambda`
    assert sched.params.lam == 2.0 and TEMPERATURE_SCHEDULES["learnable"].defaults["lambda"] == 1.0
    with pytest.raises(ValueError, match="^temperature schedule 'learnable': min must be < max$"):
        TEMPERATURE_SCHEDULES["learnable"](4.0, min=5.0, max=3.0)
    with pytest.raises(ValueError, match=r"temperature_params.end=0 is outside the allowed range \(0.0, 100.0\]"):
        TEMPERATURE_SCHEDULES["linear"](4.0, end=0)
    with pytest.raises(TypeError, match="nested Params model"):
        class Old(Weighting):
            defaults = {"a": 1}


# ---- confidence and c2kd --------------------------------------------------------------------
def test_confidence_weights_are_teacher_max_prob_or_true_class_prob():
    t = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    y = torch.tensor([1, 2])
    p = torch.softmax(t, 1)
    sw = WEIGHTINGS["confidence"]({"kd": 1.0}).sample_weights(out(t), out(t), y, 4.0)
    assert torch.allclose(sw, torch.tensor([p[0, 0], p[1, 2]]))
    sw_true = WEIGHTINGS["confidence"]({"kd": 1.0}, mode="true").sample_weights(out(t), out(t), y, 4.0)
    assert torch.allclose(sw_true, torch.tensor([p[0, 1], p[1, 2]]))
    e = math.exp(2.0)
    assert float(teacher_confidence(t, y)[0]) == pytest.approx(e / (e + 2))
    # the KD term becomes Σ w_i KL_i / Σ w_i
    s = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    per = F.kl_div(F.log_softmax(s / 4, 1), F.softmax(t / 4, 1), reduction="none").sum(1)
    expected = (per * sw).sum() / sw.sum() * 16
    assert torch.allclose(LF.kd_loss(s, t, 4.0, sw), expected)


def test_c2kd_filter_drops_exactly_the_disagreeing_samples():
    t = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [3.0, 0.0, 0.0]])
    y = torch.tensor([0, 2, 2, 1])  # teacher right on rows 0 and 2 only
    keep = WEIGHTINGS["c2kd"]({"kd": 1.0}).sample_weights(out(t), out(t), y, 4.0)
    assert keep.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert torch.equal(c2kd_keep(t, y), keep)
    s = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    kept = torch.tensor([0, 2])
    assert torch.allclose(LF.kd_loss(s, t, 4.0, keep), LF.kd_loss(s[kept], t[kept], 4.0))


def test_c2kd_non_target_only_distils_the_non_target_distribution():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    y = torch.tensor([0, 1, 2, 3, 5])
    w = WEIGHTINGS["c2kd"]({"kd": 1.0}, non_target_only=True)
    so, to = w.distill_outputs(out(s), out(t), y)
    assert torch.equal(so.logits, mask_target(s, y)) and torch.equal(to.fused, out(t).fused)
    T = 2.0
    got = LF.kd_loss(so.logits, to.logits, T)
    # independent: KL between the renormalised non-target distributions, × T²
    keep = ~F.one_hot(y, 6).bool()
    ps = F.softmax(s[keep].view(5, 5) / T, 1)
    pt = F.softmax(t[keep].view(5, 5) / T, 1)
    expected = (pt * (pt.log() - ps.log())).sum(1).mean() * T * T
    assert torch.allclose(got, expected, atol=1e-5)
    # without the flag the outputs are untouched
    so2, to2 = WEIGHTINGS["c2kd"]({"kd": 1.0}).distill_outputs(out(s), out(t), y)
    assert torch.equal(so2.logits, s) and torch.equal(to2.logits, t)


def test_trainer_gives_sample_weights_to_distillation_terms_only():
    """c2kd with a teacher that is wrong on most samples: KD is computed on the kept samples only,
    CE on all of them (the ``ce`` term matches the unweighted batch CE of the step)."""
    spec = tiny_mfeat("distill.weighting=c2kd", "train.teacher_epochs=0", "train.student_epochs=1")
    seen = []
    exp = Experiment(spec, [seen.append])
    exp.setup()
    cfg = exp.student_phase("kd", spec.distill.losses)
    captured = {}
    orig = cfg.losses["ce"].forward

    def spy(student, teacher, ctx):
        captured.setdefault("ce_weights", []).append(ctx.sample_weight)
        return orig(student, teacher, ctx)

    cfg.losses["ce"].forward = spy
    orig_kd = cfg.losses["kd"].forward

    def spy_kd(student, teacher, ctx):
        captured.setdefault("kd_weights", []).append(ctx.sample_weight)
        return orig_kd(student, teacher, ctx)

    cfg.losses["kd"].forward = spy_kd
    exp.run_phase(cfg)
    assert all(w is None for w in captured["ce_weights"])
    kd_w = captured["kd_weights"]
    assert all(w is not None and set(w.unique().tolist()) <= {0.0, 1.0} for w in kd_w)
    assert sum(float(w.sum()) for w in kd_w) < sum(len(w) for w in kd_w)  # an untrained teacher is often wrong


# ---- temperature --------------------------------------------------------------------------
def test_learnable_temperature_gets_a_gradient_and_is_optimised_and_reported():
    sched = TEMPERATURE_SCHEDULES["learnable"](4.0)
    T = sched.value(0.3)
    assert float(T) == pytest.approx(4.0, rel=1e-5)
    g = torch.Generator().manual_seed(0)
    loss = LF.kd_loss(torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g) * 3, T)
    loss.backward()
    assert sched.theta.grad is not None and float(sched.theta.grad.abs()) > 0

    spec = tiny_mfeat("distill.temperature_schedule=learnable", "train.student_epochs=3")
    events = []
    res = Experiment(spec, [events.append]).run()
    assert res.status == "finished", res.message
    temps = [e.temperature for e in events if e.kind == "StepLosses" and e.phase == "kd"]
    assert len(set(temps)) > 1 and temps[0] == pytest.approx(4.0, rel=1e-4)  # it moved: optimised
    assert all(e.temperature is None for e in events if e.kind == "StepLosses" and e.phase == "baseline")


def test_uncertainty_weights_reported_every_step_and_learned():
    spec = tiny_mfeat("distill.weighting=uncertainty", "train.student_epochs=3")
    events = []
    res = Experiment(spec, [events.append]).run()
    assert res.status == "finished", res.message
    steps = [e for e in events if e.kind == "StepLosses" and e.phase == "kd"]
    assert steps[0].weights == pytest.approx({"ce": 0.1, "kd": 0.9})  # s = 0 at the start
    assert steps[-1].weights["kd"] != pytest.approx(0.9)
    # the total is Σ w·e^{−s}·L + Σ s, so it differs from the weighted sum by the log-variances
    base = [e for e in events if e.kind == "StepLosses" and e.phase == "baseline"]
    assert base[0].weights == {"ce": 1.0}


# ---- ensemble --------------------------------------------------------------------------------
def test_ensemble_mean_and_confidence_combination_by_hand():
    z = torch.tensor([[[2.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]])  # K=2 teachers, B=1, C=3
    T = 2.0
    p1, p2 = F.softmax(z[0] / T, 1), F.softmax(z[1] / T, 1)
    assert torch.allclose(ensemble_probs(z, "mean", T), (p1 + p2) / 2)
    c1, c2 = F.softmax(z[0], 1).max(), F.softmax(z[1], 1).max()
    expected = (c1 * p1 + c2 * p2) / (c1 + c2)
    assert torch.allclose(ensemble_probs(z, "confidence", T), expected)
    for combine in ("mean", "confidence"):  # the KD loss at T sees exactly the combined soft targets
        assert torch.allclose(F.softmax(ensemble_logits(z, combine, T) / T, 1), ensemble_probs(z, combine, T),
                              atol=1e-6)


def test_ensemble_teacher_replaces_logits_and_keeps_main_features():
    class Fixed(torch.nn.Module):
        def __init__(self, logits, mods):
            super().__init__()
            self.z, self.modalities = logits, tuple(mods)

        def forward(self, inputs, present=None, embedded=None):
            assert set(inputs) <= set(self.modalities)
            return out(self.z.expand(next(iter(inputs.values())).shape[0], -1))

    main = Fixed(torch.tensor([[1.0, 0.0]]), ["a", "b"])
    ma = Fixed(torch.tensor([[0.0, 2.0]]), ["a"])
    ens = EnsembleTeacher(main, [(ma, ["a"])], "mean", 4.0)
    x = {"a": torch.zeros(3, 1), "b": torch.zeros(3, 1)}
    o = ens(x)
    want = ensemble_logits(torch.stack([main(x).logits, ma({"a": x["a"]}).logits]), "mean", 4.0)
    assert torch.allclose(o.logits, want) and o.fused.shape == (3, 2)
    # a member whose modality is missing abstains; without the main teacher only members vote
    assert torch.allclose(ens({"b": x["b"]}).logits, ensemble_logits(main(x).logits[None], "mean", 4.0))
    only = EnsembleTeacher(main, [(ma, ["a"])], "mean", 4.0, include_main=False)
    assert torch.equal(only(x).logits.argmax(1), torch.tensor([1, 1, 1]))


def test_multi_teacher_experiment_trains_members_and_distils_from_the_ensemble():
    spec = tiny_mfeat("distill.ensemble.members=[[fou], [zer]]", "distill.ensemble.combine=confidence")
    events = []
    exp = Experiment(spec, [events.append])
    res = exp.run()
    assert res.status == "finished", res.message
    started = [e.phase for e in events if e.kind == "PhaseStarted"]
    assert started[:3] == ["teacher", "teacher_fou", "teacher_zer"]
    assert {"teacher_fou", "teacher_zer"} <= {e.phase for e in events if e.kind == "EpochMetrics"}
    assert {"teacher_fou", "teacher_zer", "ensemble", "kd"} <= set(res.phases)
    # the KD phase's cached teacher logits are the ensemble's, computed from the three teachers
    tr = exp.data.split("train").all(spec.teacher_modalities())
    with torch.no_grad():
        zs = torch.stack([exp.models[n]({m: tr.inputs[m] for m in mods}).logits for n, mods in
                          (("teacher", ["fou", "zer", "mor"]), ("teacher_fou", ["fou"]), ("teacher_zer", ["zer"]))])
    want = ensemble_logits(zs, "confidence", spec.distill.temperature)
    assert torch.allclose(exp.teacher_cache.output.logits, want, atol=1e-4)
    assert all(not p.requires_grad for p in exp.teacher.parameters())


def test_ensemble_spec_errors_name_the_field():
    from kdcore.core.spec import SpecError

    with pytest.raises(SpecError, match=r"distill.ensemble.members\[0\]"):
        tiny_mfeat("distill.ensemble.members=[[pix]]")
    with pytest.raises(SpecError, match="combine"):
        tiny_mfeat("distill.ensemble.combine=median")


def test_learnable_temperature_is_adversarial_and_does_not_collapse():
    """CTKD: T maximises the KD loss (gradient reversal), so it never collapses to T_min and stays in range."""
    sched = TEMPERATURE_SCHEDULES["learnable"](4.0)
    opt = torch.optim.Adam(sched.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g) * 3
    for _ in range(30):
        loss = LF.kd_loss(zs, zt, sched.value(0.0))
        opt.zero_grad()
        loss.backward()
        opt.step()
    t = float(sched.value(0.0).detach())
    assert 4.0 < t <= 20.0
    with pytest.raises(ValueError, match="must lie inside"):
        TEMPERATURE_SCHEDULES["learnable"](0.2)
