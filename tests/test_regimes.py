"""Data regimes: scarce labels + transfer set, omitted classes, noisy teacher; honest verdicts."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest
import torch

from kdcore.data.regimes import UNLABELLED, flip_labels, plan_regime
from kdcore.pipeline.experiment import Experiment
from kdcore.core.verdict import at_chance, run_verdict, seed_verdict
from kdcore.methods.losses import functional as LF
from kdcore.methods.losses.base import DistillLoss
from kdcore.presets import PRESETS, load_preset, measured_for
from kdcore.core.spec import ExperimentSpec, RegimeSpec, SpecError

FAST = ["train.teacher_epochs=2", "train.student_epochs=2", "data.dataset=mfeat", "data.modalities=[fou,kar]",
        "teacher.encoders={}", "student.encoders={}", "data.noise={}", "teacher.encoder={width: 16, depth: 1}",
        "student.encoder={width: 8, depth: 1}", "train.threads=1"]


def spec(*extra: str) -> ExperimentSpec:
    return ExperimentSpec().with_overrides([*FAST, *extra])


LABELS = torch.arange(10).repeat_interleave(20)  # 200 training labels, 20 per class


def test_scarce_labels_split_sizes_stratified_and_seeded():
    r = RegimeSpec(labelled_fraction=0.1)
    plan = plan_regime(r, LABELS, 10, seed=0)
    lab = plan.student_labels != UNLABELLED
    assert plan.labelled == 20 and plan.transfer == 180
    assert torch.bincount(LABELS[lab], minlength=10).tolist() == [2] * 10  # stratified
    assert torch.equal(plan.student_labels[lab], LABELS[lab])  # the labelled part keeps its true labels
    assert plan.baseline_rows.numel() == 20 and plan.kd_rows.numel() == 200
    assert torch.equal(plan.teacher_labels, LABELS)  # the teacher keeps every label
    again = plan_regime(r, LABELS, 10, seed=0)
    other = plan_regime(r, LABELS, 10, seed=1)
    assert torch.equal(again.student_labels, plan.student_labels)
    assert not torch.equal(other.student_labels, plan.student_labels)
    per_class = plan_regime(RegimeSpec(labels_per_class=3), LABELS, 10, seed=0)
    assert per_class.labelled == 30
    only = plan_regime(RegimeSpec(labelled_fraction=0.1, transfer="labelled"), LABELS, 10, seed=0)
    assert torch.equal(only.kd_rows, only.baseline_rows) and only.transfer == 0


def test_omitted_class_absent_from_students_labelled_data():
    hinton = plan_regime(RegimeSpec(omit_classes=[3]), LABELS, 10, seed=0)
    assert not (hinton.student_labels == 3).any()
    assert not (LABELS[hinton.kd_rows] == 3).any()  # Hinton: no 3 in the transfer set either
    assert hinton.labelled == 180 and hinton.transfer == 0
    kept = plan_regime(RegimeSpec(omit_classes=[3], omitted_in_transfer=True), LABELS, 10, seed=0)
    assert not (kept.student_labels == 3).any()
    threes = kept.kd_rows[LABELS[kept.kd_rows] == 3]
    assert threes.numel() == 20 and (kept.student_labels[threes] == UNLABELLED).all()  # unlabelled 3s
    assert not (LABELS[kept.baseline_rows] == 3).any()


def test_teacher_label_noise_uniform_and_pairs():
    rng = __import__("numpy").random.default_rng(0)
    y = LABELS.numpy()
    flipped = flip_labels(y, 0.25, {}, 10, rng)
    changed = flipped != y
    assert changed.sum() == 50 and all(changed[y == c].sum() == 5 for c in range(10))  # 5 of every 20
    pairs = plan_regime(RegimeSpec(teacher_label_noise=0.5, teacher_noise_pairs={4: 9}), LABELS, 10, seed=0)
    diff = pairs.teacher_labels != LABELS
    assert pairs.flipped == 10 and (LABELS[diff] == 4).all() and (pairs.teacher_labels[diff] == 9).all()
    assert torch.equal(pairs.student_labels, LABELS)  # the students' labels stay clean


def test_masked_cross_entropy_hand_value():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]])
    labels = torch.tensor([0, 1, UNLABELLED])
    labelled = labels >= 0
    want = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(math.e / (1 + math.e))) / 2
    assert LF.cross_entropy(logits, labels, labelled=labelled).item() == pytest.approx(want, abs=1e-6)
    none = LF.cross_entropy(logits[2:], labels[2:], labelled=labelled[2:])
    assert none.item() == 0.0  # a batch of transfer samples only: no label term


class LabelSpy(DistillLoss):
    name, summary, family, needs_teacher = "spy", "records the labels a loss sees", "logit", True

    def __init__(self, seen: list):
        super().__init__(None)
        self.seen = seen

    def forward(self, student, teacher, ctx):
        self.seen.append((ctx.labels.clone(), {k: v.clone() for k, v in ctx.aux.items()}))
        return {"spy": student.logits.sum() * 0.0}


def test_no_label_of_an_unlabelled_sample_reaches_a_student_loss():
    s = spec("data.regime.labelled_fraction=0.2", "data.aux_tasks=[parity]")
    exp = Experiment(s)
    exp.setup()
    plan = exp.regime
    seen: list = []
    cfg = exp.student_phase("kd", s.distill.losses)
    cfg.losses["spy"] = LabelSpy(seen)
    cfg.loss_weights["spy"] = 0.0
    from kdcore.methods.strategies import WEIGHTINGS

    cfg.weighting = WEIGHTINGS["fixed"](cfg.loss_weights)
    from kdcore.train.trainer import train_phase

    res_a = train_phase(cfg, exp.data, s.train, exp.device, lambda e: None, lambda: False)
    labels = torch.cat([x[0] for x in seen])
    parity = torch.cat([x[1]["parity"] for x in seen])
    assert (labels == UNLABELLED).sum() == plan.transfer * s.train.student_epochs
    assert ((labels == UNLABELLED) == (parity == UNLABELLED)).all()  # derived labels are hidden too
    # Scramble the true labels of every unlabelled training sample: the students must not change.
    tr_idx = exp.data.split("train").indices
    unl = tr_idx[plan.student_labels == UNLABELLED]
    scrambled = exp.data.labels.clone()
    scrambled[unl] = (scrambled[unl] + 1 + torch.randint(0, 9, (unl.numel(),))) % 10
    aux = {k: v.clone() for k, v in exp.data.aux.items()}
    aux["parity"][unl] = 1 - aux["parity"][unl]
    original = exp.data
    exp.data = dataclasses.replace(original, labels=scrambled, aux=aux)
    for name, losses in (("kd", s.distill.losses), ("baseline", {"ce": s.distill.losses["ce"]})):
        cfg_b = exp.student_phase(name, losses)
        res_b = train_phase(cfg_b, exp.data, s.train, exp.device, lambda e: None, lambda: False)
        exp.data = original
        cfg_o = exp.student_phase(name, losses)
        res_o = train_phase(cfg_o, exp.data, s.train, exp.device, lambda e: None, lambda: False)
        exp.data = dataclasses.replace(original, labels=scrambled, aux=aux)
        for k in res_o.best_state:
            assert torch.equal(res_o.best_state[k], res_b.best_state[k]), (name, k)
    assert res_a.test_acc >= 0.0


def test_regime_run_reports_fidelity_and_omitted_metrics():
    res = Experiment(spec("data.regime.omit_classes=[3]", "data.regime.omitted_in_transfer=true")).run()
    assert res.status == "finished", res.message
    kd = res.phases["kd"]
    for key in ("agreement", "kl_to_teacher", "ece", "omitted_acc", "omitted_acc_corrected", "bias",
                "test_acc_corrected", "per_class_acc"):
        assert key in kd, key
    assert len(kd["per_class_acc"]) == 10
    assert "agreement" not in res.phases["teacher"]
    assert res.data["test_size"] == 400 and res.data["chance"] == pytest.approx(0.1)
    assert "omitted classes 3" in res.data["regime"]


@pytest.mark.parametrize("setting, field", [
    ("data.regime.labelled_fraction=0", "data.regime.labelled_fraction"),
    ("data.regime.labelled_fraction=1.5", "data.regime.labelled_fraction"),
    ("data.regime.omit_classes=[12]", "data.regime.omit_classes"),
    ("data.regime.teacher_label_noise=1.0", "data.regime.teacher_label_noise"),
    ("data.regime.teacher_noise_pairs={4: 4}", "data.regime.teacher_noise_pairs"),
    ("data.noise.gamma=1.5", "data.noise.gamma"),
])
def test_bad_regime_names_the_field(setting, field):
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        base = ["data.dataset=mfh-gauss", "teacher.modalities=[view_t]", "student.modalities=[view_s]"] \
            if "gamma" in setting else []
        ExperimentSpec().with_overrides([*FAST[:2], *(base or FAST[2:]), setting])


def test_label_reading_losses_refused_with_an_unlabelled_transfer_set():
    with pytest.raises(SpecError, match="dkd needs ground-truth labels"):
        spec("data.regime.labelled_fraction=0.5", "distill.losses={dkd: {weight: 1.0}}")
    spec("data.regime.labelled_fraction=0.5", "data.regime.transfer=labelled", "distill.losses={dkd: {weight: 1.0}}")


def test_cli_bad_regime_exit_code_2():
    out = subprocess.run([sys.executable, "-m", "kdcore", "run", "--preset", "few-labels", "--set",
                          "data.regime.labelled_fraction=2"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "data.regime.labelled_fraction" in out.stderr + out.stdout and "Traceback" not in out.stderr


def test_seed_verdict_two_std_rule():
    assert seed_verdict([3.0, 4.0, 5.0]).label == "KD helps"  # mean 4, std 1
    assert seed_verdict([-3.0, -4.0, -5.0]).label == "KD hurts"
    assert seed_verdict([1.0, 3.0, 5.0]).label == "within noise"  # mean 3, std 2: not beyond 2 std
    assert seed_verdict([9.0, 10.0]).label == "too few seeds"


def test_run_verdict_knows_test_size_chance_and_stored_result():
    tiny = {"status": "finished", "data": {"test_size": 8, "chance": 0.25},
            "phases": {"baseline": {"test_acc": 0.125}, "kd": {"test_acc": 0.25}}}
    text = run_verdict(tiny)
    assert "at chance level" in text and "learnt nothing" in text
    assert "One seed is not evidence" in text and "repeat it over 3 seeds" in text
    below = {"status": "finished", "data": {"test_size": 400, "chance": 0.1},
             "phases": {"baseline": {"test_acc": 0.9}, "kd": {"test_acc": 0.9}}}
    assert "less than one test sample" in run_verdict(below)
    stored = {"kd_gain": {"mean": 0.6, "std": 1.5, "n": 3, "per_seed": [-1.0, 0.9, 1.9]}}
    gain = {**below, "phases": {"baseline": {"test_acc": 0.85}, "kd": {"test_acc": 0.872}}}
    text = run_verdict(gain, stored=stored)
    assert "2.2 points above" in text and "within noise" in text and "One seed" not in text
    assert at_chance(0.11, 0.1, 400) and not at_chance(0.2, 0.1, 400)


def test_lesson_presets_exist_and_measured_lookup_matches_variants():
    for name in ("multiview-kd", "omitted-digit", "few-labels", "noisy-teacher", "mfh-gamma"):
        assert name in PRESETS
    few = load_preset("few-labels")
    m = measured_for(few.with_overrides(["data.seed=4", "name=x"]), "few-labels")
    if m is not None:  # written by scripts/sweep_presets.py
        assert m["preset"] == "few-labels" and not m["overrides"]
        toggled = measured_for(few.with_overrides(["data.regime.transfer=labelled"]), "few-labels")
        assert toggled is None or toggled["overrides"] == ["data.regime.transfer=labelled"]
    assert measured_for(few.with_overrides(["train.lr=0.5"]), "few-labels") is None


def test_sweep_table_reports_omitted_class_before_and_after_bias_correction():
    from kdcore.pipeline.sweep import sweep_table

    ms = lambda m: {"mean": m, "std": 0.0, "n": 3}  # noqa: E731
    summary = {"preset": "omitted-digit", "seeds": 3,
               "phases": {"teacher": ms(0.97), "baseline": ms(0.86), "kd": ms(0.95)},
               "kd_gain": {**ms(0.09), "per_seed": [0.08, 0.09, 0.10]},
               "extra": {"baseline.omitted_acc": ms(0.0), "kd.omitted_acc": ms(0.9),
                         "baseline.omitted_acc_corrected": ms(0.4), "kd.omitted_acc_corrected": ms(0.95),
                         "baseline.bias": ms(5.0), "kd.bias": ms(-1.0),
                         "baseline.agreement": ms(0.8), "kd.agreement": ms(0.9)}}
    text = sweep_table(summary)
    assert "before the bias correction: baseline 0.0 ± 0.0 → KD 90.0 ± 0.0 % (+90.0 points)" in text
    assert "after the bias correction: baseline 40.0 ± 0.0 → KD 95.0 ± 0.0 % (+55.0 points)" in text
    assert "KD helps" in text and "baseline +5.00, KD -1.00" in text
