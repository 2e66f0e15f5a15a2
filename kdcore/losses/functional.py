"""Pure functional forms of the distillation losses (like ``torch.nn.functional``).

Every function takes tensors and hyper-parameters and returns a scalar tensor. Optional
``sample_weight`` [B] turns the batch mean into a weighted mean Σ w_i ℓ_i / Σ w_i (all ones =
the plain mean), which is how confidence weighting and C2KD-style filtering reach each loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def weighted_mean(per_sample: Tensor, sample_weight: Tensor | None) -> Tensor:
    if sample_weight is None:
        return per_sample.mean()
    w = sample_weight.to(per_sample.dtype)
    return (per_sample * w).sum() / w.sum().clamp_min(1e-12)


def cross_entropy(logits: Tensor, labels: Tensor, sample_weight: Tensor | None = None) -> Tensor:
    """Hard-label cross-entropy  L = −(1/B) Σ_i log softmax(z_i)[y_i]."""
    return weighted_mean(F.cross_entropy(logits, labels, reduction="none"), sample_weight)


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, T: Tensor | float = 4.0,
            sample_weight: Tensor | None = None) -> Tensor:
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531).

    L_KD = T² · (1/B) Σ_i KL( softmax(z_t,i / T) ‖ softmax(z_s,i / T) )

    computed as ``F.kl_div(log_softmax(z_s/T), softmax(z_t/T), reduction="batchmean") * T**2``;
    the T² keeps gradient magnitudes comparable across temperatures.
    """
    log_p_s = F.log_softmax(student_logits / T, dim=1)
    p_t = F.softmax(teacher_logits / T, dim=1)
    if sample_weight is None:
        return F.kl_div(log_p_s, p_t, reduction="batchmean") * T**2
    per_sample = F.kl_div(log_p_s, p_t, reduction="none").sum(1)
    return weighted_mean(per_sample, sample_weight) * T**2
