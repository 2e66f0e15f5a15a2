"""Multi-task distillation: Hinton KD on every auxiliary head."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from kdcore.methods.losses import functional as LF
from kdcore.methods.losses.base import DistillLoss, LossSetup, StepContext, register
from kdcore.models.output import ModelOutput


@register
class AuxKD(DistillLoss):
    """Per-head KD for auxiliary tasks (Hinton et al. 2015, arXiv:1503.02531, applied to each head of a
    multi-task network).

        aux_kd/<task> = T² · KL(softmax(z^task_T / T) ‖ softmax(z^task_S / T))   (``batchmean``)

    one term per auxiliary task (e.g. parity, ge5, prime from ``data.aux_tasks``); T from the
    temperature schedule. The hard-label part of each head is the ``ce`` loss's ``ce/<task>`` term."""

    name = "aux_kd"
    summary = "Hinton KD on every auxiliary-task head (one term per task)"
    family = "multitask"
    order = 10
    paper = "Hinton et al. 2015, arXiv:1503.02531 (per auxiliary head)"
    default_weight = 0.9

    def __init__(self, setup: LossSetup, **params: Any):
        super().__init__(setup, **params)
        t = setup.teacher_probe
        if t is None:
            raise ValueError("loss 'aux_kd' needs a teacher")
        self.tasks = [k for k in setup.student_probe.aux_logits if k in t.aux_logits]
        if not self.tasks:
            from kdcore.data.tasks import AUX_TASKS

            raise ValueError("loss 'aux_kd' needs auxiliary tasks on both networks: set data.aux_tasks "
                             f"(allowed: {', '.join(AUX_TASKS)})")
        self.note = f"tasks: {', '.join(self.tasks)}"

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        return {f"aux_kd/{k}": LF.kd_loss(student.aux_logits[k], teacher.aux_logits[k].detach(), ctx.temperature,
                                          ctx.sample_weight) for k in self.tasks}
