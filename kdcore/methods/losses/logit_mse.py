"""Logit matching (Ba & Caruana 2014): a whole loss in one file — the ``@register``-ed class, its
formula and paper, its (empty) ``Params`` and its ``forward``. The package imports this module by
itself, and the catalog generator picks the loss up from the registry."""

from __future__ import annotations

from torch import Tensor

from kdcore.methods.losses import functional as LF
from kdcore.methods.losses.base import DistillLoss, StepContext, register
from kdcore.models.output import ModelOutput


@register
class LogitMSE(DistillLoss):
    """Logit matching — Ba & Caruana, NeurIPS 2014 ("Do Deep Nets Really Need to be Deep?").

    L = (1/B) Σ_i (1/C) Σ_c (z_s,ic − z_t,ic)²  on the raw logits (no temperature). Zero when the
    student's logits equal the teacher's."""

    name = "logit_mse"
    summary = "mean squared error between student and teacher logits"
    family = "logit"
    order = 40
    paper = "Ba & Caruana 2014, arXiv:1312.6184"
    default_weight = 1.0
    vmappable = True

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        return {"logit_mse": LF.logit_mse_loss(student.logits, teacher.logits.detach(), ctx.sample_weight)}
