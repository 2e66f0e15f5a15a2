"""Label and logit losses: hard-label CE and Hinton KD."""

from __future__ import annotations

from torch import Tensor

from kdcore.losses import functional as LF
from kdcore.losses.base import DistillLoss, StepContext, register
from kdcore.models.output import ModelOutput


@register
class CrossEntropy(DistillLoss):
    """Hard-label cross-entropy on the ground truth: L = −(1/B) Σ_i log p_s(y_i | x_i).

    Also trains the auxiliary heads when the data has auxiliary tasks (one term per task)."""

    name = "ce"
    summary = "cross-entropy with the hard labels (and auxiliary-task labels)"
    family = "label"
    needs_teacher = False
    default_weight = 0.1

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        terms = {"ce": LF.cross_entropy(student.logits, ctx.labels, ctx.sample_weight)}
        for task, logits in student.aux_logits.items():
            terms[f"ce/{task}"] = LF.cross_entropy(logits, ctx.aux[task])
        return terms


@register
class HintonKD(DistillLoss):
    """Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network".

    L = T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)), batch mean (``batchmean``), T from the spec /
    temperature schedule. Default weights (CE 0.1, KD 0.9, T = 4) follow RepDistiller."""

    name = "kd"
    summary = "KL between temperature-softened teacher and student distributions, × T²"
    family = "logit"
    paper = "Hinton et al. 2015, arXiv:1503.02531"
    default_weight = 0.9

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        return {"kd": LF.kd_loss(student.logits, teacher.logits, ctx.temperature, ctx.sample_weight)}
