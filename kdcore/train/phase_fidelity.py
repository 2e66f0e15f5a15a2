"""Per-phase metric (``on_phase_end`` through ``PhaseMetrics``): fidelity, calibration and
per-class metrics of each phase.

On the test split, for every phase: ``ece`` and ``per_class_acc`` (a list, None for an absent
class); for each student phase also ``agreement`` (top-1 agreement with the teacher the students
distil from) and ``kl_to_teacher`` (mean KL(teacher ‖ student) at T = 1) — Stanton et al., NeurIPS
2021. Under ``data.regime.omit_classes`` every phase also reports ``omitted_acc`` and, with the
omitted logits' bias fitted on the validation split (Hinton et al. 2015 §3), ``bias``,
``omitted_acc_corrected`` and ``test_acc_corrected``. Formulas: :mod:`kdcore.train.fidelity`.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from kdcore.train import fidelity as F
from kdcore.train.evaluate import predict


def _is_teacher_phase(name: str) -> bool:
    return name == "teacher" or name == "ensemble" or name.startswith("teacher_")


def _modalities(exp, name: str, model: nn.Module) -> list[str]:
    if _is_teacher_phase(name):
        return list(getattr(model, "modalities", None) or exp.spec.teacher_modalities())
    return list(getattr(model, "modalities", None) or exp.spec.student_modalities())


def _teacher_test_logits(exp) -> Tensor:
    """The distilling teacher's test logits, computed once per experiment."""
    store: dict[int, Tensor] = exp.__dict__.setdefault("_teacher_test_logits", {})
    key = id(exp.teacher)
    if key not in store:
        store[key] = predict(exp.teacher, exp.data.split("test"), exp.spec.teacher_modalities(),
                             device=exp.device).logits
    return store[key]


def fidelity_after_phase(exp, name: str, model: nn.Module) -> dict[str, Any]:
    data = exp.data
    mods = _modalities(exp, name, model)
    test = data.split("test")
    logits = predict(model, test, mods, device=exp.device).logits
    labels = test.labels
    out: dict[str, Any] = {"ece": F.expected_calibration_error(logits, labels),
                           "per_class_acc": F.per_class_accuracy(logits, labels, data.num_classes)}
    if not _is_teacher_phase(name) and exp.teacher is not None and model is not exp.teacher:
        t_logits = _teacher_test_logits(exp)
        out["agreement"] = F.agreement(logits, t_logits)
        out["kl_to_teacher"] = F.mean_kl(t_logits, logits)
    omitted = list(exp.spec.data.regime.omit_classes)
    if omitted:
        val = data.split("val")
        val_logits = predict(model, val, mods, device=exp.device).logits
        b = F.fit_bias_correction(val_logits, val.labels, omitted)
        corrected = F.apply_bias(logits, omitted, b)
        before = F.class_subset_accuracy(logits, labels, omitted)
        if before is not None:
            out["omitted_acc"] = before
            out["omitted_acc_corrected"] = F.class_subset_accuracy(corrected, labels, omitted)
        out["bias"] = b
        out["test_acc_corrected"] = F.accuracy(corrected, labels)
    return out
