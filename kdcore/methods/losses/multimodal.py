"""Multimodal distillation: modality-attention distillation, attention-weighted
per-modality feature distillation and cross-modal feature distillation onto the teacher's fused feature.

"Modalities both see" are the modalities of the student network that the teacher network also has
(by name, in the student's order). Teacher tensors are detached.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

from pydantic import Field
from torch import Tensor, nn

from kdcore.core.params import MethodParams
from kdcore.methods.losses import functional as LF
from kdcore.methods.losses._select import Regressor, common_modalities
from kdcore.methods.losses.base import DistillLoss, LossSetup, StepContext, register
from kdcore.models.output import ModelOutput


def _teacher_probe(loss: DistillLoss, setup: LossSetup) -> ModelOutput:
    if setup.teacher_probe is None:
        raise ValueError(f"loss {loss.name!r} needs a teacher")
    return setup.teacher_probe


def shared_attention(student: ModelOutput, teacher: ModelOutput, shared: list[str]) -> tuple[Tensor, Tensor]:
    """(α_S, α_T) restricted to the ``shared`` columns, in that order (not yet renormalised)."""
    si = [student.modalities.index(m) for m in shared]
    ti = [teacher.modalities.index(m) for m in shared]
    return student.attention[:, si], teacher.attention[:, ti].detach()


@register
class ModalityAttentionKD(DistillLoss):
    """Modality-attention distillation (the KL-between-attention-distributions form
    of MiniLM, Wang et al. NeurIPS 2020, applied to modality attention).

        ᾱ = α / Σ_{m ∈ shared} α_m  (renormalised over the modalities both networks see),
        L = (1/B) Σ_i Σ_{m ∈ shared} ᾱ_T,im · log(ᾱ_T,im / ᾱ_S,im)

    Per sample, a modality absent on either side (α = 0, e.g. dropped by modality dropout) is left out
    before renormalising, so the student is not pushed towards attention on what it cannot see.

    Not applicable — the term is a constant 0 and ``note`` says why — when either network has no
    modality attention (concat or mean fusion) or they share fewer than two modalities (a
    distribution over one modality is always [1])."""

    name = "attention_kd"
    summary = "KL(α_T ‖ α_S) between teacher and student modality attention over the shared modalities"
    family = "multimodal"
    order = 10
    paper = "KL form of Wang et al. NeurIPS 2020 (MiniLM), applied to modality attention"
    default_weight = 1.0

    def __init__(self, setup: LossSetup, **params: Any):
        super().__init__(setup, **params)
        s, t = setup.student_probe, _teacher_probe(self, setup)
        self.shared = common_modalities(s, t)
        reasons = []
        if s.attention is None:
            reasons.append("the student has no modality attention (its fusion is not 'attention')")
        if t.attention is None:
            reasons.append("the teacher has no modality attention (its fusion is not 'attention')")
        if len(self.shared) < 2:
            reasons.append(f"the networks share {len(self.shared)} modality(ies) "
                           f"({', '.join(self.shared) or 'none'}); attention over fewer than two is trivial")
        self.applicable = not reasons
        self.note = ("not applicable, the term is 0: " + "; ".join(reasons) if reasons
                     else f"KL over {', '.join(self.shared)}")
        if reasons:
            warnings.warn(f"loss 'attention_kd' {self.note}", stacklevel=2)

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        if not self.applicable or student.attention is None or teacher.attention is None:
            return {"attention_kd": student.logits.new_zeros(())}
        a_s, a_t = shared_attention(student, teacher, self.shared)
        return {"attention_kd": LF.modality_attention_kl(a_s, a_t, sample_weight=ctx.sample_weight)}


@register
class ModalityFeatureKD(DistillLoss):
    """Attention-weighted per-modality feature distillation (per-modality FitNets-style
    hints, Romero et al. ICLR 2015, weighted by the teacher's modality attention).

        w_im = α_T,im / Σ_{m' ∈ shared} α_T,im'   (uniform 1/|shared| when the teacher has no attention),
        L = (1/B) Σ_i Σ_{m ∈ shared} w_im · (1/D_T) ‖P_m(h_S,im) − h_T,im‖²

    h_·,m are the encoders' output features; P_m is a learned linear projector D_S → D_T per modality
    (identity-initialised when the widths match). One term per modality
    (``modality_feature_kd/<m>`` = (1/B) Σ_i w_im d_im); their sum is L. The teacher's attention decides
    which modality's features the student must reproduce most closely."""

    name = "modality_feature_kd"
    summary = "Σ_m α_T,m·‖P_m(h_S,m) − h_T,m‖²: per-modality feature hints weighted by teacher attention"
    family = "multimodal"
    order = 20
    paper = "hints as in Romero et al. ICLR 2015, weighted by the teacher's modality attention"
    default_weight = 1.0

    def __init__(self, setup: LossSetup, **params: Any):
        super().__init__(setup, **params)
        s, t = setup.student_probe, _teacher_probe(self, setup)
        self.shared = common_modalities(s, t)
        if not self.shared:
            raise ValueError(f"loss 'modality_feature_kd' needs a modality both networks see; student: "
                             f"{', '.join(s.modalities)}, teacher: {', '.join(t.modalities)}")
        self.projectors = nn.ModuleDict({m: Regressor(s.features[m], t.features[m]) for m in self.shared})
        self.note = (f"modalities {', '.join(self.shared)}; weights from "
                     + ("the teacher's attention" if t.attention is not None else "uniform (teacher has no attention)")
                     + f"; P_m: linear {s.features[self.shared[0]].shape[1]}→{t.features[self.shared[0]].shape[1]}")

    def weights(self, teacher: ModelOutput) -> Tensor:
        b = teacher.logits.shape[0]
        if teacher.attention is None:
            return teacher.logits.new_full((b, len(self.shared)), 1.0 / len(self.shared))
        ti = [teacher.modalities.index(m) for m in self.shared]
        a = teacher.attention[:, ti].detach()
        return a / a.sum(1, keepdim=True).clamp_min(1e-12)

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        w = self.weights(teacher)
        terms = {}
        for k, m in enumerate(self.shared):
            d = LF.feature_distance(self.projectors[m](student.features[m]), teacher.features[m].detach(), "mse")
            terms[f"modality_feature_kd/{m}"] = LF.weighted_mean(w[:, k] * d, ctx.sample_weight)
        return terms


@register
class CrossModalFeatureKD(DistillLoss):
    """Cross-modal feature distillation onto the teacher's fused representation (Gupta, Hoffman & Malik,
    CVPR 2016, "Cross Modal Distillation for Supervision Transfer": a network on one modality regresses
    the representation a teacher computes from another).

        L = Σ_{m ∈ student modalities} (1/B) Σ_i d(P_m(h_S,im), h_T,fused,i)

    with P_m a learned linear regressor D_S → D_T per student modality and d = mean squared error
    (``distance="mse"``, mean over the D_T units) or 1 − cosine similarity (``distance="cosine"``).
    ``modalities`` limits the student modalities used (default: all). One term per modality."""

    name = "crossmodal_feature_kd"
    summary = "regress each student modality's feature (linear P_m) onto the teacher's fused feature"
    family = "multimodal"
    order = 30
    paper = "Gupta et al. CVPR 2016, arXiv:1507.00448"
    default_weight = 1.0

    class Params(MethodParams):
        distance: Literal["mse", "cosine"] = Field("mse", description="d: mean squared error or 1 − cosine")
        modalities: list[str] | str | None = Field(None, description="student modalities used (None: all)")

    def __init__(self, setup: LossSetup, **params: Any):
        super().__init__(setup, **params)
        s, t = setup.student_probe, _teacher_probe(self, setup)
        mods = self.params.modalities
        if mods is None:
            mods = list(s.modalities)
        elif isinstance(mods, str):
            mods = [mods]
        bad = [m for m in mods if m not in s.modalities]
        if bad or not mods:
            raise ValueError(f"loss 'crossmodal_feature_kd': params.modalities={mods!r}; allowed: a non-empty "
                             f"list of {', '.join(s.modalities)}")
        self.mods = list(mods)
        self.distance = self.params.distance
        self.regressors = nn.ModuleDict({m: Regressor(s.features[m], t.fused) for m in self.mods})
        self.note = (f"{', '.join(self.mods)} → teacher fused [{t.fused.shape[1]}] ({self.distance}); "
                     f"P_m: linear {s.features[self.mods[0]].shape[1]}→{t.fused.shape[1]}")

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        target = teacher.fused.detach()
        return {
            f"crossmodal_feature_kd/{m}": LF.weighted_mean(
                LF.feature_distance(self.regressors[m](student.features[m]), target, self.distance),
                ctx.sample_weight)
            for m in self.mods
        }


__all__ = ["ModalityAttentionKD", "ModalityFeatureKD", "CrossModalFeatureKD", "shared_attention"]
