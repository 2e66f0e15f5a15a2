"""Fidelity metrics: how closely a student matches its teacher, and how well it is calibrated.

Pure torch functions on logits tensors (``(n, C)``) and integer labels (``(n,)``); no model code.
Inputs may live on any device (labels and class lists are moved to the logits' device); every
scalar result is a Python ``float`` (or ``None`` where stated).

* :func:`agreement`, :func:`mean_kl` — top-1 agreement and mean KL(teacher ‖ student), the two
  fidelity measures of Stanton et al., "Does knowledge distillation really work?", NeurIPS 2021.
* :func:`per_class_accuracy`, :func:`class_subset_accuracy` — accuracy by class / on a set of
  classes (e.g. the classes omitted from the transfer set).
* :func:`expected_calibration_error` — ECE with equal-width confidence bins (Naeini et al.,
  AAAI 2015; Guo et al., "On calibration of modern neural networks", ICML 2017).
* :func:`fit_bias_correction`, :func:`apply_bias` — the omitted-class bias correction of Hinton
  et al., "Distilling the knowledge in a neural network", 2015, §3.
* :func:`fidelity_metrics` — all of the above (floats only) for one student.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_BIAS_GRID = (-10.0, 20.0, 301)  # torch.linspace(-10, 20, 301): steps of 0.1


def _check_logits(logits: Tensor, name: str = "logits") -> None:
    if logits.dim() != 2:
        raise ValueError(f"{name} must be 2-D (n, C), got shape {tuple(logits.shape)}")
    if logits.shape[0] == 0:
        raise ValueError(f"{name} has no samples")


def _labels_on(labels: Tensor, logits: Tensor) -> Tensor:
    labels = torch.as_tensor(labels).to(device=logits.device, dtype=torch.long).reshape(-1)
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {logits.shape[0]} logits rows")
    return labels


def _classes_on(classes: Iterable[int], device: torch.device) -> Tensor:
    return torch.as_tensor(sorted({int(c) for c in classes}), dtype=torch.long, device=device)


def agreement(student_logits: Tensor, teacher_logits: Tensor) -> float:
    """Top-1 agreement ``(1/n) Σ_i 1[argmax_c s_ic = argmax_c t_ic]`` (Stanton et al., NeurIPS 2021).

    Ties in a row's logits go to the lowest class index (``torch.argmax``)."""
    _check_logits(student_logits, "student_logits")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"shape mismatch: student {tuple(student_logits.shape)}, "
                         f"teacher {tuple(teacher_logits.shape)}")
    s = student_logits.detach().argmax(1)
    t = teacher_logits.detach().to(student_logits.device).argmax(1)
    return (s == t).double().mean().item()


def mean_kl(teacher_logits: Tensor, student_logits: Tensor, temperature: float = 1.0) -> float:
    """Mean over samples of ``KL(p_t ‖ p_s) = Σ_c p_t,c (log p_t,c − log p_s,c)``, with
    ``p = softmax(z / T)`` (Stanton et al., NeurIPS 2021).

    Computed in float64 from ``log_softmax`` (no ``log`` of a softmax); terms with ``p_t,c = 0``
    count 0. No ``T²`` factor: this is the divergence itself, not a training loss. In nats."""
    _check_logits(teacher_logits, "teacher_logits")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"shape mismatch: teacher {tuple(teacher_logits.shape)}, "
                         f"student {tuple(student_logits.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    t = teacher_logits.detach().double() / temperature
    s = student_logits.detach().to(teacher_logits.device).double() / temperature
    log_pt = F.log_softmax(t, dim=1)
    log_ps = F.log_softmax(s, dim=1)
    pt = log_pt.exp()
    terms = torch.where(pt > 0, pt * (log_pt - log_ps), torch.zeros_like(pt))
    return terms.sum(1).mean().item()


def per_class_accuracy(logits: Tensor, labels: Tensor, num_classes: int) -> list[float | None]:
    """Accuracy per class: entry ``c`` is ``(1/|{i: y_i = c}|) Σ_{i: y_i = c} 1[argmax z_i = c]``,
    ``None`` for a class with no sample in ``labels``."""
    _check_logits(logits)
    labels = _labels_on(labels, logits)
    correct = (logits.detach().argmax(1) == labels).double()
    counts = torch.bincount(labels, minlength=num_classes)[:num_classes]
    hits = torch.bincount(labels, weights=correct, minlength=num_classes)[:num_classes]
    return [None if int(n) == 0 else float(h) / int(n) for n, h in zip(counts.tolist(), hits.tolist())]


def class_subset_accuracy(logits: Tensor, labels: Tensor, classes: Iterable[int]) -> float | None:
    """Accuracy on the samples whose label is in ``classes``:
    ``(1/|S|) Σ_{i∈S} 1[argmax z_i = y_i]`` with ``S = {i: y_i ∈ classes}``; ``None`` when S is empty.

    The prediction is the argmax over all classes, not only over ``classes``."""
    _check_logits(logits)
    labels = _labels_on(labels, logits)
    keep = torch.isin(labels, _classes_on(classes, logits.device))
    if not bool(keep.any()):
        return None
    return (logits.detach()[keep].argmax(1) == labels[keep]).double().mean().item()


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy ``(1/n) Σ_i 1[argmax z_i = y_i]``."""
    _check_logits(logits)
    labels = _labels_on(labels, logits)
    return (logits.detach().argmax(1) == labels).double().mean().item()


def expected_calibration_error(logits: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """Expected calibration error ``ECE = Σ_b (|B_b| / n) · |acc(B_b) − conf(B_b)|``
    (Naeini et al., AAAI 2015; Guo et al., ICML 2017).

    Confidence is the maximum softmax probability and the prediction its argmax; the ``M = n_bins``
    bins are equal-width over (0, 1], bin ``b`` (1-based) holding confidences in
    ``((b−1)/M, b/M]``; ``acc`` and ``conf`` are the bin's mean correctness and mean confidence,
    and empty bins contribute 0. Softmax in float64."""
    _check_logits(logits)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    labels = _labels_on(labels, logits)
    probs = F.softmax(logits.detach().double(), dim=1)
    conf, pred = probs.max(1)
    correct = (pred == labels).double()
    upper = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64, device=logits.device)[1:]
    # bucketize(right=False) gives i with upper[i-1] < conf <= upper[i]: bin i = (i/M, (i+1)/M]
    idx = torch.bucketize(conf, upper, right=False).clamp_(max=n_bins - 1)
    count = torch.bincount(idx, minlength=n_bins).double()
    sum_conf = torch.bincount(idx, weights=conf, minlength=n_bins)
    sum_acc = torch.bincount(idx, weights=correct, minlength=n_bins)
    # Σ_b (|B_b|/n)|acc_b − conf_b| = Σ_b |Σ_{i∈B_b} (correct_i − conf_i)| / n
    return ((sum_acc - sum_conf).abs().sum() / conf.shape[0]).item()


def apply_bias(logits: Tensor, classes: Iterable[int], b: float) -> Tensor:
    """A new tensor equal to ``logits`` with the constant ``b`` added to the logit of every class
    in ``classes`` (Hinton et al., 2015, §3); ``logits`` itself is not modified."""
    out = logits.detach().clone()
    idx = _classes_on(classes, out.device)
    if idx.numel():
        out[:, idx] += b
    return out


def fit_bias_correction(logits: Tensor, labels: Tensor, classes: Iterable[int],
                        grid: Tensor | Sequence[float] | None = None) -> float:
    """Hinton et al., 2015, §3 bias correction for classes omitted from the transfer set: the
    constant ``b`` that, added to the logits of ``classes`` (:func:`apply_bias`), maximises
    top-1 accuracy on the given (validation) logits and labels,
    ``b* = argmax_{b ∈ grid} (1/n) Σ_i 1[argmax (z_i + b·1_classes) = y_i]``.

    ``grid`` defaults to ``torch.linspace(-10, 20, 301)`` (steps of 0.1, float64). Ties in accuracy
    go to the ``b`` with the smallest ``|b|`` and then, between ``±b``, to the positive one (so
    ``0`` — no correction — wins whenever it is among the best). Returns ``b`` as a float."""
    _check_logits(logits)
    labels = _labels_on(labels, logits)
    classes = list(classes)
    if grid is None:
        grid = torch.linspace(*DEFAULT_BIAS_GRID[:2], DEFAULT_BIAS_GRID[2], dtype=torch.float64)
    values = [float(v) for v in torch.as_tensor(grid, dtype=torch.float64).reshape(-1).tolist()]
    if not values:
        raise ValueError("empty bias grid")
    if not classes:
        return 0.0
    best_key, best_b = None, None
    for b in values:
        hits = int((apply_bias(logits, classes, b).argmax(1) == labels).sum())
        key = (-hits, abs(b), -b)  # most hits, then smallest |b|, then the positive one
        if best_key is None or key < best_key:
            best_key, best_b = key, b
    return best_b


def fidelity_metrics(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, num_classes: int,
                     omitted: Iterable[int] = (), val: tuple[Tensor, Tensor] | None = None) -> dict[str, float]:
    """Fidelity and calibration of one student on a (test) split, floats only.

    Always: ``agreement`` (:func:`agreement`), ``kl_to_teacher`` (:func:`mean_kl` at T = 1,
    KL(teacher ‖ student)), ``ece`` (:func:`expected_calibration_error` of the student, 15 bins).

    When ``omitted`` is non-empty (classes left out of the transfer set, Hinton et al. 2015 §3),
    also: ``bias`` (fitted by :func:`fit_bias_correction` on ``val = (val_logits, val_labels)``,
    the student's validation logits — required), ``test_acc_corrected`` (student accuracy on the
    given split after :func:`apply_bias`), and ``omitted_acc`` / ``omitted_acc_corrected``
    (:func:`class_subset_accuracy` on the omitted classes before / after the correction) — these
    two are left out of the dict when the split has no sample of an omitted class.

    Per-class accuracy (a list) is :func:`per_class_accuracy`, a separate call."""
    _check_logits(student_logits, "student_logits")
    if student_logits.shape[1] != num_classes:
        raise ValueError(f"student logits have {student_logits.shape[1]} classes, expected {num_classes}")
    out: dict[str, float] = {
        "agreement": agreement(student_logits, teacher_logits),
        "kl_to_teacher": mean_kl(teacher_logits, student_logits),
        "ece": expected_calibration_error(student_logits, labels),
    }
    omitted = sorted({int(c) for c in omitted})
    if omitted:
        if val is None:
            raise ValueError("omitted classes given: val=(val_logits, val_labels) is needed to fit the bias")
        bad = [c for c in omitted if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"omitted classes {bad} outside 0..{num_classes - 1}")
        val_logits, val_labels = val
        b = fit_bias_correction(val_logits, val_labels, omitted)
        corrected = apply_bias(student_logits, omitted, b)
        out["bias"] = b
        out["test_acc_corrected"] = accuracy(corrected, labels)
        before = class_subset_accuracy(student_logits, labels, omitted)
        after = class_subset_accuracy(corrected, labels, omitted)
        if before is not None:
            out["omitted_acc"] = before
            out["omitted_acc_corrected"] = after
    return out
