"""Fidelity metrics against hand-computed values: agreement, KL(teacher ‖ student), per-class and
class-subset accuracy, ECE (bin edges included), Hinton et al.'s omitted-class bias correction."""

import math

import pytest
import torch

from kdcore.train.fidelity import (accuracy, agreement, apply_bias, class_subset_accuracy,
                                    expected_calibration_error, fidelity_metrics, fit_bias_correction,
                                    mean_kl, per_class_accuracy)


F64 = torch.float64  # exact hand-made confidences: float32 logits would round log(p/(1−p))


def two_class(conf: float, predict: int = 0) -> list[float]:
    """Two-class logits whose softmax maximum is ``conf`` (logit difference log(p/(1−p))) at ``predict``."""
    d = math.log(conf / (1 - conf))
    return [d, 0.0] if predict == 0 else [0.0, d]


# --- agreement -------------------------------------------------------------------------------

def test_agreement_three_of_four():
    student = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]])
    teacher = torch.tensor([[9.0, 1.0, 1.0], [0.0, 1.0, 0.5], [0.0, 4.0, 3.0], [7.0, 0.0, 6.0]])
    # argmaxes: student 0,1,2,0 ; teacher 0,1,1,0
    assert agreement(student, teacher) == 0.75
    assert isinstance(agreement(student, teacher), float)
    assert agreement(teacher, teacher) == 1.0


def test_agreement_shape_mismatch():
    with pytest.raises(ValueError):
        agreement(torch.zeros(3, 2), torch.zeros(3, 4))


# --- KL --------------------------------------------------------------------------------------

def test_mean_kl_hand_case():
    teacher = torch.tensor([[0.0, math.log(3)], [math.log(4), 0.0]])  # p_t = (1/4, 3/4), (4/5, 1/5)
    student = torch.tensor([[0.0, 0.0], [0.0, math.log(4)]])          # p_s = (1/2, 1/2), (1/5, 4/5)
    kl1 = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    kl2 = 0.8 * math.log(0.8 / 0.2) + 0.2 * math.log(0.2 / 0.8)
    got = mean_kl(teacher, student)
    assert isinstance(got, float)
    assert got == pytest.approx((kl1 + kl2) / 2, abs=1e-6)


def test_mean_kl_argument_order_is_teacher_then_student():
    teacher = torch.tensor([[0.0, math.log(3)]])
    student = torch.tensor([[0.0, 0.0]])
    forward = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)     # KL(p_t ‖ p_s)
    reverse = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert mean_kl(teacher, student) == pytest.approx(forward, abs=1e-6)
    assert mean_kl(student, teacher) == pytest.approx(reverse, abs=1e-6)
    assert abs(forward - reverse) > 1e-3


def test_mean_kl_zero_for_identical_logits():
    z = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))
    assert mean_kl(z, z) == pytest.approx(0.0, abs=1e-12)
    assert mean_kl(z, z + 3.0) == pytest.approx(0.0, abs=1e-9)  # softmax is shift-invariant
    assert mean_kl(z, z, temperature=4.0) == pytest.approx(0.0, abs=1e-12)


def test_mean_kl_temperature_divides_logits():
    teacher = torch.tensor([[0.0, 2 * math.log(3)]])
    student = torch.tensor([[0.0, 0.0]])
    assert mean_kl(teacher, student, temperature=2.0) == pytest.approx(
        0.25 * math.log(0.5) + 0.75 * math.log(1.5), abs=1e-6)


def test_mean_kl_is_stable_for_extreme_logits():
    teacher = torch.tensor([[1000.0, 0.0], [0.0, -1000.0]])
    student = torch.tensor([[0.0, 1000.0], [0.0, 0.0]])
    got = mean_kl(teacher, student)
    # p_t ≈ one-hot on class 0 in both rows: KL ≈ −log p_s,0 = 1000 and log 2
    assert math.isfinite(got)
    assert got == pytest.approx((1000.0 + math.log(2)) / 2, rel=1e-9)
    masked = torch.tensor([[0.0, float("-inf")]])  # p_t,1 = 0: the term counts 0
    assert mean_kl(masked, torch.tensor([[0.0, 0.0]])) == pytest.approx(math.log(2), abs=1e-12)


# --- per-class / subset accuracy -------------------------------------------------------------

def test_per_class_accuracy_with_absent_class():
    logits = torch.tensor([[5.0, 0, 0, 0], [5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 5.0, 0, 0], [0, 0, 5.0, 0]])
    labels = torch.tensor([0, 1, 1, 1, 2])  # class 3 absent
    # class 0: 1/1; class 1: samples 1,2,3 predicted 0,1,1 → 2/3; class 2: 1/1
    got = per_class_accuracy(logits, labels, 4)
    assert got[0] == 1.0 and got[2] == 1.0 and got[3] is None
    assert got[1] == pytest.approx(2 / 3)
    assert len(got) == 4


def test_class_subset_accuracy():
    logits = torch.tensor([[5.0, 0, 0], [5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    labels = torch.tensor([0, 1, 1, 2])
    assert class_subset_accuracy(logits, labels, [1]) == 0.5
    assert class_subset_accuracy(logits, labels, {1, 2}) == pytest.approx(2 / 3)
    assert class_subset_accuracy(logits, labels, [0, 2]) == 1.0
    assert class_subset_accuracy(logits, labels[:1].repeat(4), [2]) is None  # no sample of class 2
    assert accuracy(logits, labels) == 0.75


# --- ECE -------------------------------------------------------------------------------------

def test_ece_hand_case():
    # confidences 0.9, 0.9, 0.6, 0.6, correctness 1, 0, 1, 1 (all predict class 0)
    logits = torch.tensor([two_class(0.9), two_class(0.9), two_class(0.6), two_class(0.6)], dtype=F64)
    labels = torch.tensor([0, 1, 0, 0])
    # 15 bins: 0.9 ∈ (13/15, 14/15], 0.6 ∈ (8/15, 9/15] (or the next bin: both 0.6 move together)
    expected = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6)  # = 0.4
    assert expected_calibration_error(logits, labels) == pytest.approx(expected, abs=1e-9)
    # one bin: |mean acc − mean conf| = |3/4 − 0.75|
    assert expected_calibration_error(logits, labels, n_bins=1) == pytest.approx(0.0, abs=1e-9)


def test_ece_bins_are_closed_on_the_right():
    # conf 0.5 (equal logits: exactly 0.5) correct, conf 0.75 wrong; 2 bins (0, .5], (.5, 1]
    logits = torch.tensor([[0.0, 0.0], two_class(0.75)], dtype=F64)
    labels = torch.tensor([0, 1])
    split = 0.5 * abs(1 - 0.5) + 0.5 * abs(0 - 0.75)   # 0.5 in the first bin: 0.625
    merged = abs((1 + 0) - (0.5 + 0.75)) / 2           # had 0.5 joined the second: 0.125
    got = expected_calibration_error(logits, labels, n_bins=2)
    assert got == pytest.approx(split, abs=1e-12)
    assert got != pytest.approx(merged)


def test_ece_of_perfectly_calibrated_cases_is_zero():
    half = torch.tensor([[0.0, 0.0], [0.0, 0.0]])  # conf 0.5, predicts 0: one of two right
    assert expected_calibration_error(half, torch.tensor([0, 1])) == 0.0
    quarter = torch.tensor([two_class(0.75)] * 4, dtype=F64)  # conf 0.75, three of four right
    assert expected_calibration_error(quarter, torch.tensor([0, 0, 0, 1])) == pytest.approx(0.0, abs=1e-12)


def test_ece_overconfident_wrong():
    logits = torch.tensor([[100.0, 0.0]] * 3)  # conf ≈ 1, always wrong
    assert expected_calibration_error(logits, torch.tensor([1, 1, 1])) == pytest.approx(1.0, abs=1e-9)


# --- bias correction (Hinton et al. 2015 §3) --------------------------------------------------

def omitted_case():
    # omitted class 2 is second, 1.05 behind, on its own samples; 3.5 behind on the others
    logits = torch.tensor([
        [0.0, 1.05, 0.0],   # y = 2
        [1.05, 0.0, 0.0],   # y = 2
        [3.5, 0.0, 0.0],    # y = 0
        [0.0, 3.5, 0.0],    # y = 1
        [0.0, 4.0, 0.5],    # y = 1
    ])
    labels = torch.tensor([2, 2, 0, 1, 1])
    return logits, labels


def test_fit_bias_correction_hand_case():
    logits, labels = omitted_case()
    assert accuracy(logits, labels) == 0.6
    b = fit_bias_correction(logits, labels, [2])
    assert isinstance(b, float)
    assert 1.05 < b < 3.5
    # every b in (1.05, 3.5) gives accuracy 1; the grid's (steps of 0.1) smallest |b| there is 1.1
    assert b == pytest.approx(1.1, abs=1e-9)
    grid = torch.linspace(-10, 20, 301, dtype=torch.float64)
    accs = torch.tensor([accuracy(apply_bias(logits, [2], float(g)), labels) for g in grid])
    best = grid[accs == accs.max()]
    assert accs.max() == 1.0
    assert b == pytest.approx(float(best[best.abs().argmin()]), abs=1e-12)
    corrected = apply_bias(logits, [2], b)
    assert accuracy(corrected, labels) == 1.0
    assert class_subset_accuracy(corrected, labels, [2]) == 1.0


def test_fit_bias_correction_tie_rules():
    logits, labels = omitted_case()
    # custom grid: 1.5, 2 and 2.5 all reach accuracy 1 → smallest |b| = 1.5
    assert fit_bias_correction(logits, labels, [2], grid=[-2.0, -1.0, 0.0, 2.5, 2.0, 1.5]) == 1.5
    # when no bias helps, 0 wins among equals
    right = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    assert fit_bias_correction(right, torch.tensor([0, 1]), [2], grid=[-1.0, 0.0, 1.0]) == 0.0
    # between +b and −b with equal accuracy, the positive one
    assert fit_bias_correction(right, torch.tensor([0, 1]), [2], grid=[-1.0, 1.0, 2.0]) == 1.0
    # a tie in the logits goes to the lower class index (torch.argmax), so b = margin is not enough
    assert fit_bias_correction(torch.tensor([[1.0, 0.0]]), torch.tensor([1]), [1],
                               grid=[1.0, 1.5]) == 1.5


def test_apply_bias_returns_a_new_tensor():
    logits, _ = omitted_case()
    before = logits.clone()
    out = apply_bias(logits, [2], 2.0)
    assert torch.equal(logits, before)
    assert out.data_ptr() != logits.data_ptr()
    assert torch.equal(out[:, :2], logits[:, :2])
    assert torch.allclose(out[:, 2], logits[:, 2] + 2.0)
    two = apply_bias(logits, (0, 2), -1.0)
    assert torch.allclose(two[:, [0, 2]], logits[:, [0, 2]] - 1.0) and torch.equal(two[:, 1], logits[:, 1])


# --- fidelity_metrics ------------------------------------------------------------------------

def test_fidelity_metrics_without_omitted():
    teacher = torch.tensor([[0.0, math.log(3)], [math.log(4), 0.0]])
    student = torch.tensor([[0.0, 1.0], [0.0, math.log(4)]])
    labels = torch.tensor([1, 0])
    m = fidelity_metrics(student, teacher, labels, num_classes=2)
    assert set(m) == {"agreement", "kl_to_teacher", "ece"}
    assert all(isinstance(v, float) for v in m.values())
    assert m["agreement"] == 0.5  # student argmax 1, 1 vs teacher 1, 0
    assert m["kl_to_teacher"] == pytest.approx(mean_kl(teacher, student))
    assert m["ece"] == pytest.approx(expected_calibration_error(student, labels))


def test_fidelity_metrics_with_omitted():
    val_logits, val_labels = omitted_case()
    test_logits = torch.tensor([[0.0, 0.8, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    test_labels = torch.tensor([2, 0, 1])
    teacher = torch.tensor([[0.0, 0.0, 3.0], [3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    m = fidelity_metrics(test_logits, teacher, test_labels, 3, omitted=[2], val=(val_logits, val_labels))
    assert set(m) == {"agreement", "kl_to_teacher", "ece", "bias", "test_acc_corrected",
                      "omitted_acc", "omitted_acc_corrected"}
    assert all(isinstance(v, float) for v in m.values())
    assert m["bias"] == pytest.approx(1.1)
    assert m["agreement"] == pytest.approx(1 / 3)
    # before: predictions 1, 0, 2 → the omitted-class sample wrong; after +1.1: 2, 0, 2
    assert m["omitted_acc"] == 0.0 and m["omitted_acc_corrected"] == 1.0
    assert m["test_acc_corrected"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        fidelity_metrics(test_logits, teacher, test_labels, 3, omitted=[2])  # no val to fit on
    # no sample of an omitted class in the test split: those two keys are left out
    m2 = fidelity_metrics(test_logits[1:], teacher[1:], test_labels[1:], 3, omitted=[2],
                          val=(val_logits, val_labels))
    assert "omitted_acc" not in m2 and "omitted_acc_corrected" not in m2 and "bias" in m2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_accepts_cuda_tensors():
    logits, labels = omitted_case()
    lc, yc = logits.cuda(), labels.cuda()
    assert agreement(lc, lc) == 1.0
    assert mean_kl(lc, lc) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(lc, yc) == pytest.approx(expected_calibration_error(logits, labels))
    assert per_class_accuracy(lc, yc, 3) == per_class_accuracy(logits, labels, 3)
    assert fit_bias_correction(lc, yc, [2]) == pytest.approx(1.1)
    assert fidelity_metrics(lc, lc, yc, 3, omitted=[2], val=(lc, yc))["test_acc_corrected"] == 1.0
