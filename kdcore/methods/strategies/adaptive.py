"""Adaptive distillation: loss weights and per-sample weights that change
during training.

* ``uncertainty`` — Kendall, Gal & Cipolla, CVPR 2018, "Multi-Task Learning Using Uncertainty to
  Weigh Losses": one learned log-variance s_k = log σ_k² per spec loss k,
  L = Σ_k ( w_k · exp(−s_k) · L_k + s_k ). The effective weight of every term, w_k·exp(−s_k), is
  reported each step (``StepLosses.weights``).
* ``confidence`` — per-sample weights = the teacher's confidence on that sample (its max softmax
  probability, or its probability of the true class), so distillation trusts the teacher where
  the teacher is sure.
* ``c2kd`` — the sample filter of C2KD (Huo et al., CVPR 2024, "C2KD: Bridging the Modality Gap
  for Cross-Modal Knowledge Distillation"), simplified: a sample is distilled only if the
  teacher's soft-label argmax equals the label (weight 1, else 0); optionally
  (``non_target_only``) the distillation losses see logits whose target class is masked out
  (−1000, as in DKD's NCKD), so they match the teacher's distribution over the **non-target**
  classes only. What is *not* implemented from C2KD: its on-the-fly selection by the rank
  agreement of teacher and student and its bidirectional (teacher-updating) proxy distillation;
  here the teacher stays frozen.

Per-sample weights reach only the losses that use the teacher (``StepContext.sample_weight``);
hard-label CE keeps every sample.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from kdcore.core.params import MethodParams
from kdcore.models.output import ModelOutput
from kdcore.methods.strategies.base import Weighting, register_weighting

TARGET_MASK = 1000.0  # subtracted from the target logit (DKD's NCKD trick)


def uncertainty_total(terms: dict[str, Tensor], owner: dict[str, str], weights: dict[str, float],
                      log_vars: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Σ_k (w_k · exp(−s_k) · Σ_{terms of k} L + s_k); every loss k's s_k counted once."""
    total = 0.0
    eff: dict[str, float] = {}
    seen: set[str] = set()
    for term, value in terms.items():
        k = owner[term]
        s = log_vars[k]
        w = weights[k] * torch.exp(-s)
        total = total + w * value
        eff[term] = float(w.detach())
        if k not in seen:
            total = total + s
            seen.add(k)
    return total, eff


@register_weighting
class UncertaintyWeighting(Weighting):
    """Kendall et al. 2018: L = Σ_k ( w_k exp(−s_k) L_k + s_k ), s_k = log σ_k² learned with the
    student (one per spec loss; the sub-terms of one loss share it). ``init`` is s_k at step 0
    (0 → effective weight = the spec weight); ``learn_ce`` = False keeps CE at its fixed weight."""

    name = "uncertainty"
    summary = "Kendall et al. 2018: Σ w·exp(−s)·L + s with a learned log-variance s per loss"

    class Params(MethodParams):
        init: float = Field(0.0, ge=-20.0, le=20.0, description="s_k = log σ_k² at step 0 (0: the spec weights)")
        learn_ce: bool = Field(True, description="learn CE's log-variance too (False: CE keeps its fixed weight)")

    def __init__(self, loss_weights: dict[str, float], **params: Any):
        super().__init__(loss_weights, **params)
        learned = [k for k in self.loss_weights if self.params.learn_ce or k != "ce"]
        self.log_vars = nn.ParameterDict(
            {k: nn.Parameter(torch.tensor(float(self.params.init))) for k in learned})

    def combine(self, terms: dict[str, Tensor], owner: dict[str, str]) -> tuple[Tensor, dict[str, float]]:
        ref = next(iter(terms.values()))
        log_vars = {k: (self.log_vars[k] if k in self.log_vars else ref.new_zeros(()))
                    for k in set(owner.values())}
        return uncertainty_total(terms, owner, self.loss_weights, log_vars)

    def log_variances(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.log_vars.items()}


def teacher_confidence(teacher_logits: Tensor, labels: Tensor, mode: str = "max", temperature: float = 1.0) -> Tensor:
    """[B] confidence of the teacher: max_c p_t(c|x) (``mode="max"``) or p_t(y|x) (``mode="true"``),
    with p_t = softmax(z_t / temperature)."""
    p = F.softmax(teacher_logits.detach().float() / temperature, dim=1)
    if mode == "max":
        return p.max(1).values
    if mode == "true":
        return p.gather(1, labels.view(-1, 1)).squeeze(1)
    raise ValueError(f"weighting_params.mode={mode!r}; allowed: max, true")


@register_weighting
class ConfidenceWeighting(Weighting):
    """Per-sample weight w_i = p_T(x_i)^power: the teacher's max softmax probability
    (``mode: max``) or its probability of the true class (``mode: true``) at ``temperature``.
    Distillation losses take the weighted mean Σ w_i ℓ_i / Σ w_i; the loss weights stay fixed."""

    name = "confidence"
    summary = "per-sample weights = teacher confidence (max softmax prob or p of the true class)"

    class Params(MethodParams):
        mode: Literal["max", "true"] = Field("max", description="max softmax probability, or p of the true class")
        temperature: float = Field(1.0, gt=0.0, le=100.0, description="softmax temperature of the confidence")
        power: float = Field(1.0, ge=0.0, le=100.0, description="w_i = confidence^power (0: all weights 1)")

    def sample_weights(self, student, teacher, labels, temperature):
        if teacher is None:
            return None
        c = teacher_confidence(teacher.logits, labels, self.params.mode, float(self.params.temperature))
        return c.pow(float(self.params.power))


def c2kd_keep(teacher_logits: Tensor, labels: Tensor) -> Tensor:
    """[B] 1.0 where the teacher's argmax equals the label, else 0.0 (the C2KD-style filter)."""
    return (teacher_logits.detach().argmax(1) == labels).float()


def mask_target(logits: Tensor, labels: Tensor, value: float = TARGET_MASK) -> Tensor:
    """Logits with ``value`` subtracted at the target class: softmax then puts ~0 mass on it,
    i.e. the distribution over the non-target classes (DKD's NCKD construction)."""
    return logits - value * F.one_hot(labels, logits.shape[1]).to(logits.dtype)


@register_weighting
class C2KDWeighting(Weighting):
    """C2KD-style filtering (Huo et al., CVPR 2024): weight 1 for samples whose teacher argmax is
    the label, 0 otherwise (dropped from every distillation term; CE still sees them).
    ``non_target_only``: distillation losses see student and teacher logits with the target
    class masked (−1000), i.e. they distil the non-target classes only."""

    name = "c2kd"
    summary = "C2KD-style: drop samples whose teacher argmax ≠ label; optionally distil non-target classes only"

    class Params(MethodParams):
        non_target_only: bool = Field(False, description="distil the non-target classes only (target masked)")

    def __init__(self, loss_weights: dict[str, float], **params: Any):
        super().__init__(loss_weights, **params)
        self.kept_fraction = float("nan")

    def sample_weights(self, student, teacher, labels, temperature):
        if teacher is None:
            return None
        keep = c2kd_keep(teacher.logits, labels)
        self.kept_fraction = float(keep.mean())
        return keep

    def distill_outputs(self, student, teacher, labels):
        if teacher is None or not self.params.non_target_only:
            return student, teacher
        s = ModelOutput(mask_target(student.logits, labels), student.features, student.fused, student.attention,
                        student.modalities, student.feature_maps, student.aux_logits)
        t = ModelOutput(mask_target(teacher.logits, labels), teacher.features, teacher.fused, teacher.attention,
                        teacher.modalities, teacher.feature_maps, teacher.aux_logits)
        return s, t
