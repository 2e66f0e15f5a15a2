"""Feature-based and relation-based distillation: FitNets, attention transfer (AT), activation
boundaries (AB, a squared hinge loss), similarity preserving (SP), relational KD (RKD) and
probabilistic knowledge transfer (PKT).

Every loss reads features from the :class:`ModelOutput` by an address (see
:mod:`kdcore.methods.losses._select`): ``params.modality`` ("fused" or a modality name) and ``params.layer``
("feature" or an index into that modality's ``feature_maps``), and the same for the teacher with
``teacher_modality`` / ``teacher_layer``. Learnable regressors are sized from the probe outputs in
``__init__``, so their parameters join the student's optimiser. Teacher tensors are detached.

CRD (Tian et al. ICLR 2020) is deliberately absent: it needs the dataset index of every sample in a
batch and a memory bank of 4096–16384 negatives, more samples than the bundled datasets' training
splits hold (~1,000); with in-batch negatives it would be a different method (InfoNCE), not CRD.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field
from torch import Tensor

from kdcore.core.params import MethodParams
from kdcore.methods.losses import functional as LF
from kdcore.methods.losses._select import FeatureAddress, FeatureRef, Regressor, common_modalities, pick_pair
from kdcore.methods.losses.base import DistillLoss, LossSetup, StepContext, register
from kdcore.models.output import ModelOutput


def _probes(loss: DistillLoss, setup: LossSetup) -> tuple[ModelOutput, ModelOutput]:
    if setup.teacher_probe is None:
        raise ValueError(f"loss {loss.name!r} needs a teacher")
    return setup.student_probe, setup.teacher_probe


def _describe(ref: FeatureRef, out: ModelOutput) -> str:
    return f"{ref.label()} [{'×'.join(str(s) for s in ref.get(out).shape[1:])}]"


class _PairLoss(DistillLoss):
    """A loss on one (student feature, teacher feature) pair chosen by the address params."""

    def __init__(self, setup: LossSetup, **params: Any):
        super().__init__(setup, **params)
        s_probe, t_probe = _probes(self, setup)
        self.s_ref, self.t_ref = pick_pair(self.name, self.params, s_probe, t_probe)
        self.note = f"student {_describe(self.s_ref, s_probe)} ↔ teacher {_describe(self.t_ref, t_probe)}"

    def pair(self, student: ModelOutput, teacher: ModelOutput) -> tuple[Tensor, Tensor]:
        return self.s_ref.get(student), self.t_ref.get(teacher).detach()


@register
class FitNet(_PairLoss):
    """FitNets hints — Romero et al., ICLR 2015 ("FitNets: Hints for Thin Deep Nets", arXiv:1412.6550).

        L = (1/B) Σ_i ½ · mean_elements (F_T,i − r(F_S,i))²

    r is a learned regressor: a 1×1 convolution from the student's channels to the teacher's (a
    linear layer for vectors), then a bilinear resize to the teacher's spatial size when the sizes
    differ (sequence outputs [B, L, C] are treated as [B, C, L, 1] maps). Default pair: the last map
    of the first modality both networks see (``fused`` if they share none); choose another with
    ``modality``/``layer``/``teacher_modality``/``teacher_layer``. Weight 100 as in RepDistiller
    (which omits the ½)."""

    name = "fitnet"
    summary = "FitNets hint: ½·MSE between a teacher map and a learned 1×1-conv/linear regression of the student's"
    family = "feature"
    order = 10
    paper = "Romero et al. ICLR 2015, arXiv:1412.6550"
    default_weight = 100.0

    class Params(FeatureAddress):
        modality: str | None = Field(None, description="student feature: 'fused', a modality name, or None for "
                                                       "the first modality both networks see with maps")

    def __init__(self, setup: LossSetup, **params: Any):
        super().__init__(setup, **params)
        s, t = self.s_ref.get(setup.student_probe), self.t_ref.get(setup.teacher_probe)
        self.regressor = Regressor(s, t)
        self.note += f"; r: {self.regressor.description}"

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        s, t = self.pair(student, teacher)
        return {"fitnet": LF.fitnet_loss(self.regressor(s), t, ctx.sample_weight)}


def _spatial_maps(out: ModelOutput, modality: str) -> list[int]:
    return [i for i, m in enumerate(out.feature_maps.get(modality) or []) if m.dim() >= 3]


@register
class AttentionTransfer(DistillLoss):
    """Attention transfer — Zagoruyko & Komodakis, ICLR 2017 ("Paying More Attention to Attention",
    arXiv:1612.03928).

        Q(A) = vec(mean_c |A_c|^p) / ‖vec(mean_c |A_c|^p)‖₂,   L = Σ_pairs (1/B) Σ_i mean_j (Q_S,ij − Q_T,ij)²

    p = 2, summed over matched layer pairs (RepDistiller's form, weight 1000). Pairs: for every
    modality both networks see (or only ``modality``), the student's spatial maps (CNN maps, or
    sequence outputs as [positions]) are matched to the teacher's at the same relative depth
    (``pairs="depth"``: student map i of k ↔ teacher map ⌈(i+1)·n/k⌉−1 of n) or only last ↔ last
    (``pairs="last"``). Channel counts may differ; spatial sizes are aligned by adaptive average
    pooling of the larger map. One term per pair (``at/<modality>`` or ``at/<modality>.<i>``)."""

    name = "at"
    summary = "attention transfer: MSE between L2-normalised spatial attention maps mean_c|A|^p, per layer pair"
    family = "feature"
    order = 20
    paper = "Zagoruyko & Komodakis ICLR 2017, arXiv:1612.03928"
    default_weight = 1000.0

    class Params(MethodParams):
        p: float = Field(2.0, ge=0.5, le=8.0, description="exponent p of the attention map mean_c |A_c|^p")
        modality: str | None = Field(None, description="only this modality (None: every modality both see)")
        pairs: Literal["depth", "last"] = Field("depth", description="match maps at the same relative depth, "
                                                                      "or only last ↔ last")

    def __init__(self, setup: LossSetup, **params: Any):
        super().__init__(setup, **params)
        s_probe, t_probe = _probes(self, setup)
        self.p = float(self.params.p)
        shared = common_modalities(s_probe, t_probe)
        mod = self.params.modality
        if mod is not None and mod not in shared:
            raise ValueError(f"loss 'at': params.modality={mod!r} is not seen by both networks; "
                             f"allowed: {', '.join(shared) or '(none shared)'}")
        self.pairs: list[tuple[str, int, int]] = []
        for m in [mod] if mod is not None else shared:
            si, ti = _spatial_maps(s_probe, m), _spatial_maps(t_probe, m)
            if not si or not ti:
                continue
            k, n = len(si), len(ti)
            if self.params.pairs == "last":
                self.pairs.append((m, si[-1], ti[-1]))
            else:
                self.pairs += [(m, si[i], ti[math.ceil((i + 1) * n / k) - 1]) for i in range(k)]
        if not self.pairs:
            raise ValueError("loss 'at' needs spatial feature maps (CNN or sequence encoders) on a modality both "
                             f"networks see; shared modalities: {', '.join(shared) or 'none'}")
        per_mod: dict[str, int] = {}
        for m, _, _ in self.pairs:
            per_mod[m] = per_mod.get(m, 0) + 1
        self.term_names = [f"at/{m}" if per_mod[m] == 1 else f"at/{m}.{i}" for m, i, _ in self.pairs]
        self.note = "; ".join(
            f"{m}: student map {i} [{'×'.join(map(str, s_probe.feature_maps[m][i].shape[1:]))}] ↔ teacher map {j} "
            f"[{'×'.join(map(str, t_probe.feature_maps[m][j].shape[1:]))}]" for m, i, j in self.pairs)

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        return {
            name: LF.at_loss(student.feature_maps[m][i], teacher.feature_maps[m][j].detach(), self.p,
                             ctx.sample_weight)
            for name, (m, i, j) in zip(self.term_names, self.pairs)
        }


@register
class ActivationBoundary(_PairLoss):
    """Activation-boundary distillation — Heo, Lee, Yun & Choi, AAAI 2019 ("Knowledge Transfer via
    Distillation of Activation Boundaries Formed by Hidden Neurons", arXiv:1811.03233): a squared
    hinge loss on the teacher's neuron signs.

        ρ = 1[h_T > 0],  s = P(h_S),
        L = (1/B) Σ_i mean_j [ ρ_ij · max(0, μ − s_ij)² + (1 − ρ_ij) · max(0, μ + s_ij)² ],  μ = 1

    Applied by default to the **fused representation** (``modality="fused"``): s is a learned linear
    projection P (D_S → D_T) of the student's fused feature and ρ the sign pattern of the teacher's
    fused feature, the input of its classifier. With attention or mean fusion that feature is a
    convex combination of the encoders' linear outputs, i.e. a pre-activation; with concat fusion it
    is post-ReLU, and ρ = 1[h_T > 0] still marks which neurons are active. Choose a map instead with
    ``modality``/``layer`` (P becomes a 1×1 conv + resize). The squared-hinge ("alternative L2") form of
    the paper and RepDistiller; averaged over units (not summed), so weight 1 is on the scale of CE.
    RepDistiller uses AB only to initialise the student; here it is a term trained throughout."""

    name = "ab"
    summary = "activation boundaries: squared hinge, margin μ, on teacher neuron signs"
    family = "feature"
    order = 30
    paper = "Heo et al. AAAI 2019, arXiv:1811.03233"
    default_weight = 1.0

    class Params(FeatureAddress):
        margin: float = Field(1.0, ge=0.0, le=100.0, description="margin μ of the squared hinge")

    def __init__(self, setup: LossSetup, **params: Any):
        super().__init__(setup, **params)
        self.margin = float(self.params.margin)
        s, t = self.s_ref.get(setup.student_probe), self.t_ref.get(setup.teacher_probe)
        self.projector = Regressor(s, t)
        self.note += f"; P: {self.projector.description}; margin {self.margin:g}"

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        s, t = self.pair(student, teacher)
        return {"ab": LF.ab_loss(self.projector(s), t, self.margin, ctx.sample_weight)}


_RELATION_NOTE = ("A relation over the whole batch: feature widths may differ and no regressor is needed; "
                  "per-sample weights (confidence weighting, C2KD filter) do not apply to it.")


@register
class SimilarityPreserving(_PairLoss):
    __doc__ = f"""Similarity-preserving KD — Tung & Mori, ICCV 2019 ("Similarity-Preserving Knowledge
    Distillation", arXiv:1907.09682).

        G = row-L2-normalise(Q Qᵀ), Q = flattened features of the batch [B, ·];
        L = (1/B²) ‖G_T − G_S‖_F²

    Default feature: the fused representation of both networks. Weight 3000 (RepDistiller).
    {_RELATION_NOTE}"""

    name = "sp"
    summary = "similarity preserving: match the row-normalised B×B Gram matrices of student and teacher"
    family = "relation"
    order = 10
    paper = "Tung & Mori ICCV 2019, arXiv:1907.09682"
    default_weight = 3000.0

    class Params(FeatureAddress):
        pass

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        return {"sp": LF.sp_loss(*self.pair(student, teacher))}


@register
class RelationalKD(_PairLoss):
    __doc__ = f"""Relational KD — Park, Kim, Lu & Cho, CVPR 2019 ("Relational Knowledge Distillation",
    arXiv:1904.05068).

        ψ_D(i,j) = ‖e_i − e_j‖ / μ  (μ: mean non-zero distance in the batch),
        ψ_A(i,j,k) = ⟨(e_i − e_j)/‖e_i − e_j‖, (e_k − e_j)/‖e_k − e_j‖⟩,
        rkd/dist = w_D · mean_pairs Huber(ψ_D^S − ψ_D^T),  rkd/angle = w_A · mean_triplets Huber(ψ_A^S − ψ_A^T)

    w_D = 25, w_A = 50 (the paper / RepDistiller), returned as two named terms (spec weight 1 on top).
    Default feature: the fused representation. {_RELATION_NOTE}"""

    name = "rkd"
    summary = "relational KD: Huber on normalised pairwise distances (w 25) and triplet angles (w 50)"
    family = "relation"
    order = 20
    paper = "Park et al. CVPR 2019, arXiv:1904.05068"
    default_weight = 1.0

    class Params(FeatureAddress):
        w_dist: float = Field(25.0, ge=0.0, le=1e6, description="w_D, weight of the distance term")
        w_angle: float = Field(50.0, ge=0.0, le=1e6, description="w_A, weight of the angle term")

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        dist, angle = LF.rkd_parts(*self.pair(student, teacher))
        return {"rkd/dist": self.params.w_dist * dist, "rkd/angle": self.params.w_angle * angle}


@register
class PKT(_PairLoss):
    __doc__ = f"""Probabilistic knowledge transfer — Passalis & Tefas, ECCV 2018 ("Learning Deep
    Representations with Probabilistic Knowledge Transfer", arXiv:1803.10837).

        K_ij = (1 + cos(f_i, f_j)) / 2,  P_ij = K_ij / Σ_j K_ij,
        L = (1/B²) Σ_ij P^T_ij log((P^T_ij + ε) / (P^S_ij + ε)),  ε = 1e-7

    (the authors' cosine-kernel code, as in RepDistiller, weight 30000). The 1/B² mean makes the value
    shrink like 1/B, so the weight is tied to the batch size (RepDistiller: 64). Scale check on
    digits-av (``scripts/loss_scale_check.py``): at 30000 its gradient is 15–65× CE's, and CE + PKT at
    3000 or 30000 both trained better students than CE alone, so the anchor weight is usable here.
    Default feature: the fused representation. {_RELATION_NOTE}"""

    name = "pkt"
    summary = "probabilistic KT: KL between cosine-similarity conditional distributions over the batch"
    family = "relation"
    order = 30
    paper = "Passalis & Tefas ECCV 2018, arXiv:1803.10837"
    default_weight = 30000.0

    class Params(FeatureAddress):
        pass

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        return {"pkt": LF.pkt_loss(*self.pair(student, teacher))}


__all__ = ["FitNet", "AttentionTransfer", "ActivationBoundary", "SimilarityPreserving", "RelationalKD", "PKT"]
