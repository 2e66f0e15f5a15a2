"""Label and logit losses: hard-label CE, Hinton KD and decoupled KD (DKD). (Logit MSE has its own
module, :mod:`kdcore.methods.losses.logit_mse`: a loss can be one file.)"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from kdcore.core.params import MethodParams
from kdcore.methods.losses import functional as LF
from kdcore.methods.losses.base import DistillLoss, StepContext, register
from kdcore.models.output import ModelOutput


@register
class CrossEntropy(DistillLoss):
    """Hard-label cross-entropy on the ground truth: L = −(1/B) Σ_i log p_s(y_i | x_i).

    Also trains the auxiliary heads when the data has auxiliary tasks (one term per task).
    Transfer-set samples (``ctx.labelled`` False, label −1) are left out of the mean."""

    name = "ce"
    summary = "cross-entropy with the hard labels (and auxiliary-task labels)"
    family = "label"
    order = 10
    needs_teacher = False
    vmappable = True
    default_weight = 0.1

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        terms = {"ce": LF.cross_entropy(student.logits, ctx.labels, ctx.sample_weight, ctx.labelled)}
        for task, logits in student.aux_logits.items():
            terms[f"ce/{task}"] = LF.cross_entropy(logits, ctx.aux[task], labelled=ctx.labelled)
        return terms


@register
class HintonKD(DistillLoss):
    """Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network".

    L = T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)), batch mean (``batchmean``), T from the spec /
    temperature schedule. Default weights (CE 0.1, KD 0.9, T = 4) follow RepDistiller."""

    name = "kd"
    summary = "KL between temperature-softened teacher and student distributions, × T²"
    family = "logit"
    order = 20
    paper = "Hinton et al. 2015, arXiv:1503.02531"
    default_weight = 0.9
    vmappable = True

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        return {"kd": LF.kd_loss(student.logits, teacher.logits.detach(), ctx.temperature, ctx.sample_weight)}


@register
class DecoupledKD(DistillLoss):
    """Decoupled Knowledge Distillation — Zhao, Cui, Song, Qiu & Liang, CVPR 2022
    ("Decoupled Knowledge Distillation", arXiv:2203.08679).

    With p = softmax(z / T), t the target class, b = [p_t, 1 − p_t] and p̂ the softmax over the
    non-target classes (target logit − 1000 before the softmax, as in the authors' code):

        TCKD = T² · KL(b_T ‖ b_S),   NCKD = T² · KL(p̂_T ‖ p̂_S)   (both ``batchmean``)
        L = w(e) · (α · TCKD + β · NCKD),   w(e) = min(e / warmup, 1)

    where e is the 1-based epoch of the phase (``ctx.epoch + 1``), as in mdistiller (whose epochs
    count from 1), so the first epoch already gets 1/warmup; ``warmup=0`` turns the ramp off.
    Defaults α = 1, β = 8, warm-up 20 epochs (mdistiller's CIFAR-100 setting, 240 epochs; its
    ImageNet setting is α = 1, β = 0.5, T = 1, warm-up 1); with shorter phases DKD never reaches full
    weight unless ``warmup`` is lowered — e.g. ``--set distill.losses.dkd.params.warmup=3``. β = 8 makes
    NCKD dominate the gradient on 10-class data with a weak student; try a smaller β there.
    T comes from the temperature schedule (ctx).
    Returns the two weighted parts as ``dkd/tckd`` and ``dkd/nckd`` (their sum is L). Paper identity
    (Eq. 1): KD = TCKD + (1 − p_t^T) · NCKD per sample."""

    name = "dkd"
    summary = "decoupled KD: α·TCKD (target vs rest) + β·NCKD (non-target classes), linear warm-up"
    family = "logit"
    order = 30
    paper = "Zhao et al. CVPR 2022, arXiv:2203.08679"
    default_weight = 1.0

    class Params(MethodParams):
        alpha: float = Field(1.0, ge=0.0, le=1e4, description="α, weight of TCKD (target vs the rest)")
        beta: float = Field(8.0, ge=0.0, le=1e4, description="β, weight of NCKD (among the non-target classes)")
        warmup: float = Field(20, ge=0.0, le=1e4, description="epochs of the linear warm-up (0: none)")

    def __init__(self, setup, **params):
        super().__init__(setup, **params)
        self.alpha = float(self.params.alpha)
        self.beta = float(self.params.beta)
        self.warmup = float(self.params.warmup)
        self.note = f"α={self.alpha:g}, β={self.beta:g}, warm-up over {self.warmup:g} epochs"

    def warmup_factor(self, epoch: int) -> float:
        """min((epoch + 1) / warmup, 1) for the 0-based ``epoch`` (1 when warmup = 0)."""
        return 1.0 if self.warmup <= 0 else min((epoch + 1) / self.warmup, 1.0)

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        tckd, nckd = LF.dkd_parts(student.logits, teacher.logits.detach(), ctx.labels, ctx.temperature,
                                  sample_weight=ctx.sample_weight)
        w = self.warmup_factor(ctx.epoch)
        return {"dkd/tckd": w * self.alpha * tckd, "dkd/nckd": w * self.beta * nckd}
