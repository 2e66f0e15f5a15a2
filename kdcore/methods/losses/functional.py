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


def cross_entropy(logits: Tensor, labels: Tensor, sample_weight: Tensor | None = None,
                  labelled: Tensor | None = None) -> Tensor:
    """Hard-label cross-entropy  L = −(1/B) Σ_i log softmax(z_i)[y_i].

    With a ``labelled`` mask m (transfer-set samples carry the label −1 and m_i = 0) only labelled
    samples count:  L = −Σ_i m_i w_i log softmax(z_i)[y_i] / Σ_i m_i w_i  (0 for a batch without labels)."""
    if labelled is None:
        return weighted_mean(F.cross_entropy(logits, labels, reduction="none"), sample_weight)
    per = F.cross_entropy(logits, labels, reduction="none", ignore_index=-1)
    w = labelled.to(per.dtype) if sample_weight is None else labelled.to(per.dtype) * sample_weight.to(per.dtype)
    return (per * w).sum() / w.sum().clamp_min(1.0 if sample_weight is None else 1e-12)


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, T: Tensor | float = 4.0,
            sample_weight: Tensor | None = None) -> Tensor:
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531).

    L_KD = T² · (1/B) Σ_i KL( softmax(z_t,i / T) ‖ softmax(z_s,i / T) )

    computed from log-probabilities, Σ_c exp(log p_t) · (log p_t − log p_s) per sample (:func:`kl_log_target`:
    bit for bit ``F.kl_div(log_p_s, log_p_t, log_target=True)``, which has no ``vmap`` batching rule, so
    students stacked with ``torch.func.vmap`` would fall back to a slow per-student loop);
    the T² keeps gradient magnitudes comparable across temperatures.
    """
    log_p_s = F.log_softmax(student_logits / T, dim=1)
    # the teacher side as log-probabilities (``log_target=True``): same value, and a finite gradient for
    # a learnable T even where a teacher probability underflows to 0
    log_p_t = F.log_softmax(teacher_logits / T, dim=1)
    if sample_weight is None:  # "batchmean": the sum over every element / B
        return kl_log_target(log_p_s, log_p_t).sum() / log_p_s.shape[0] * T**2
    return weighted_mean(kl_log_target(log_p_s, log_p_t).sum(1), sample_weight) * T**2


def kl_log_target(log_p_s: Tensor, log_p_t: Tensor) -> Tensor:
    """Element-wise terms of KL(p_t ‖ p_s) from log-probabilities: exp(log p_t) · (log p_t − log p_s)
    (what ``F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True)`` computes, same values and
    gradients, but batchable under ``torch.func.vmap``)."""
    return log_p_t.exp() * (log_p_t - log_p_s)


# ---- logit -------------------------------------------------------------------------------
def logit_mse_loss(student_logits: Tensor, teacher_logits: Tensor, sample_weight: Tensor | None = None) -> Tensor:
    """Logit matching (Ba & Caruana 2014, "Do Deep Nets Really Need to be Deep?").

    L = (1/B) Σ_i (1/C) Σ_c (z_s,ic − z_t,ic)²   (``F.mse_loss`` with mean reduction).
    """
    return weighted_mean((student_logits - teacher_logits).pow(2).mean(1), sample_weight)


def dkd_parts(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, T: Tensor | float = 4.0,
              per_sample: bool = False, sample_weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The two parts of Decoupled KD (Zhao et al. CVPR 2022, "Decoupled Knowledge Distillation").

    With p = softmax(z/T) and t the target class:

    * TCKD = T² · KL(b_T ‖ b_S), b = [p_t, 1 − p_t] (binary target / non-target distribution);
    * NCKD = T² · KL(p̂_T ‖ p̂_S), p̂ = softmax over the non-target classes only (the target column is
      removed; the authors' code subtracts 1000 from it instead, which gives the same value up to
      e^-1000 but a NaN gradient for a learnable T).

    Returns (TCKD, NCKD) averaged over the batch (``batchmean``), or per sample [B] with
    ``per_sample=True``. Identity (the paper's Eq. 1 rearranged): KD = TCKD + (1 − p_t^T) · NCKD per sample.
    log b is computed with logsumexp (stable also for very confident logits).
    """
    zs, zt = student_logits / T, teacher_logits / T
    gt = F.one_hot(labels, zs.shape[1]).to(torch.bool)

    def log_binary(z: Tensor) -> Tensor:
        lse_all = torch.logsumexp(z, dim=1)
        log_pt = z.gather(1, labels[:, None]).squeeze(1) - lse_all
        log_rest = torch.logsumexp(z.masked_fill(gt, float("-inf")), dim=1) - lse_all
        return torch.stack([log_pt, log_rest], dim=1)

    log_bs, log_bt = log_binary(zs), log_binary(zt)  # KL from log-probabilities: finite gradients
    tckd = (log_bt.exp() * (log_bt - log_bs)).sum(1)
    b, c = zs.shape
    log_ps_nt = F.log_softmax(zs[~gt].view(b, c - 1), dim=1)
    log_pt_nt = F.log_softmax(zt[~gt].view(b, c - 1), dim=1)
    nckd = (log_pt_nt.exp() * (log_pt_nt - log_ps_nt)).sum(1)
    tckd, nckd = tckd * T**2, nckd * T**2
    if per_sample:
        return tckd, nckd
    return weighted_mean(tckd, sample_weight), weighted_mean(nckd, sample_weight)


def dkd_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, alpha: float = 1.0,
             beta: float = 8.0, T: Tensor | float = 4.0, sample_weight: Tensor | None = None) -> Tensor:
    """Decoupled KD (Zhao et al. CVPR 2022): L = α · TCKD + β · NCKD (see :func:`dkd_parts`)."""
    tckd, nckd = dkd_parts(student_logits, teacher_logits, labels, T, sample_weight=sample_weight)
    return alpha * tckd + beta * nckd


# ---- feature -----------------------------------------------------------------------------
def fitnet_loss(student_hint: Tensor, teacher_hint: Tensor, sample_weight: Tensor | None = None) -> Tensor:
    """FitNets hint loss (Romero et al. ICLR 2015, "FitNets: Hints for Thin Deep Nets").

    L = (1/B) Σ_i ½ · mean_elements (F_T,i − r(F_S,i))²; ``student_hint`` is r(F_S), already regressed
    to the teacher's shape. (RepDistiller uses ``MSELoss`` without the ½.)
    """
    if student_hint.shape != teacher_hint.shape:
        raise ValueError(f"fitnet: regressed student hint {tuple(student_hint.shape)} does not match the "
                         f"teacher hint {tuple(teacher_hint.shape)}")
    return weighted_mean(0.5 * (teacher_hint - student_hint).pow(2).flatten(1).mean(1), sample_weight)


def as_map(t: Tensor) -> Tensor:
    """A feature as a channel-first map [B, C, H, W]: vectors [B, C] → [B, C, 1, 1]; sequences
    [B, L, C] (GRU / transformer outputs) → [B, C, L, 1]; maps are returned unchanged."""
    if t.dim() == 2:
        return t[:, :, None, None]
    if t.dim() == 3:
        return t.transpose(1, 2).unsqueeze(-1)
    if t.dim() == 4:
        return t
    raise ValueError(f"cannot use a feature of shape {tuple(t.shape)} as a map")


def attention_map(fmap: Tensor, p: float = 2.0) -> Tensor:
    """Spatial attention of Zagoruyko & Komodakis: Q = vec(mean_c |A_c|^p), L2-normalised → [B, H·W]."""
    return F.normalize(as_map(fmap).abs().pow(p).mean(1).flatten(1), dim=1)


def at_loss(student_map: Tensor, teacher_map: Tensor, p: float = 2.0, sample_weight: Tensor | None = None) -> Tensor:
    """Attention transfer (Zagoruyko & Komodakis ICLR 2017, "Paying More Attention to Attention").

    Q = vec(mean over channels of |A|^p) / ‖·‖₂ per sample;  L = (1/B) Σ_i mean_j (Q_S,ij − Q_T,ij)²
    (RepDistiller's form, p = 2). Channel counts may differ; if spatial sizes differ the larger map is
    adaptive-average-pooled to the smaller size first (as RepDistiller does).
    """
    s, t = as_map(student_map), as_map(teacher_map)
    hs, ws = s.shape[-2:]
    ht, wt = t.shape[-2:]
    size = (min(hs, ht), min(ws, wt))
    if (hs, ws) != size:
        s = F.adaptive_avg_pool2d(s, size)
    if (ht, wt) != size:
        t = F.adaptive_avg_pool2d(t, size)
    per = (attention_map(s, p) - attention_map(t, p)).pow(2).mean(1)
    return weighted_mean(per, sample_weight)


def sp_loss(student_feat: Tensor, teacher_feat: Tensor) -> Tensor:
    """Similarity-preserving KD (Tung & Mori ICCV 2019, "Similarity-Preserving Knowledge Distillation").

    G = row-L2-normalise(Q Qᵀ) with Q the batch of flattened features [B, ·];
    L = (1/B²) ‖G_T − G_S‖_F². A relation over the batch: widths may differ; per-sample weights do not apply.
    """
    b = student_feat.shape[0]
    qs, qt = student_feat.reshape(b, -1), teacher_feat.reshape(b, -1)
    gs = F.normalize(qs @ qs.t(), dim=1)
    gt = F.normalize(qt @ qt.t(), dim=1)
    return (gt - gs).pow(2).sum() / (b * b)


def _pdist(e: Tensor, eps: float = 1e-12) -> Tensor:
    sq = e.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * e @ e.t()).clamp_min(eps)
    d = d2.sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=e.dtype))


def rkd_parts(student_emb: Tensor, teacher_emb: Tensor) -> tuple[Tensor, Tensor]:
    """Relational KD (Park et al. CVPR 2019, "Relational Knowledge Distillation"), the two unweighted terms.

    * distance: ψ_D(i, j) = ‖e_i − e_j‖₂ / μ, μ = mean of the non-zero pairwise distances in the batch;
      L_D = mean over all B² pairs of Huber(ψ_D^S − ψ_D^T) (``smooth_l1``, δ = 1).
    * angle: ψ_A(i, j, k) = ⟨(e_i − e_j)/‖e_i − e_j‖, (e_k − e_j)/‖e_k − e_j‖⟩;
      L_A = mean over all B³ triplets (degenerate ones are 0 on both sides, as in RepDistiller) of
      Huber(ψ_A^S − ψ_A^T).

    Features are flattened; widths may differ. A batch of one has no pairs: both terms are 0.
    """
    b = student_emb.shape[0]
    s, t = student_emb.reshape(b, -1), teacher_emb.reshape(b, -1)
    zero = s.sum() * 0.0
    if b < 2:
        return zero, zero
    td = _pdist(t)
    sd = _pdist(s)
    t_pos, s_pos = td[td > 0], sd[sd > 0]
    if t_pos.numel() == 0 or s_pos.numel() == 0:
        dist = zero
    else:
        dist = F.smooth_l1_loss(sd / s_pos.mean(), td / t_pos.mean())

    def angles(e: Tensor) -> Tensor:
        diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)  # [j, i, ·] = e_i − e_j
        return torch.bmm(diff, diff.transpose(1, 2)).reshape(-1)

    angle = F.smooth_l1_loss(angles(s), angles(t))
    return dist, angle


def rkd_loss(student_emb: Tensor, teacher_emb: Tensor, w_dist: float = 25.0, w_angle: float = 50.0) -> Tensor:
    """RKD (Park et al. CVPR 2019): L = w_D · L_D + w_A · L_A (defaults 25 and 50; see :func:`rkd_parts`)."""
    dist, angle = rkd_parts(student_emb, teacher_emb)
    return w_dist * dist + w_angle * angle


def pkt_loss(student_feat: Tensor, teacher_feat: Tensor, eps: float = 1e-7) -> Tensor:
    """Probabilistic knowledge transfer (Passalis & Tefas ECCV 2018, "Learning Deep Representations
    with Probabilistic Knowledge Transfer"), cosine-kernel form as in the authors' and RepDistiller's code.

    K_ij = (1 + cos(f_i, f_j)) / 2;  P_ij = K_ij / Σ_j K_ij (per model);
    L = (1/B²) Σ_i Σ_j P^T_ij · log((P^T_ij + ε) / (P^S_ij + ε)).
    Note the 1/B² (a mean over the B×B matrix): the loss shrinks like 1/B, so its weight (30000 in
    RepDistiller, batch 64) depends on the batch size.
    """
    b = student_feat.shape[0]

    def cond(f: Tensor) -> Tensor:
        f = f.reshape(b, -1)
        f = f / (f.norm(dim=1, keepdim=True) + eps)
        k = (f @ f.t() + 1.0) / 2.0
        return k / k.sum(1, keepdim=True)

    ps, pt = cond(student_feat), cond(teacher_feat)
    return (pt * torch.log((pt + eps) / (ps + eps))).mean()


def ab_loss(student_pre: Tensor, teacher_pre: Tensor, margin: float = 1.0,
            sample_weight: Tensor | None = None) -> Tensor:
    """Activation-boundary distillation (Heo et al. AAAI 2019, "Knowledge Transfer via Distillation of
    Activation Boundaries Formed by Hidden Neurons") — the squared-hinge ("alternative L2") form.

    With ρ = 1[t > 0] (the teacher neuron is active) and s the (projected) student pre-activation:
    L = (1/B) Σ_i mean_j [ ρ_ij · max(0, μ − s_ij)² + (1 − ρ_ij) · max(0, μ + s_ij)² ], margin μ = 1.
    Zero exactly when every student response is on the teacher's side of the boundary by at least μ.
    """
    if student_pre.shape != teacher_pre.shape:
        raise ValueError(f"ab: projected student {tuple(student_pre.shape)} does not match the teacher "
                         f"{tuple(teacher_pre.shape)}")
    on = (teacher_pre > 0).to(student_pre.dtype)
    per = on * F.relu(margin - student_pre).pow(2) + (1 - on) * F.relu(margin + student_pre).pow(2)
    return weighted_mean(per.flatten(1).mean(1), sample_weight)


# ---- multimodal --------------------------------------------------------------------------
def modality_attention_kl(student_alpha: Tensor, teacher_alpha: Tensor, eps: float = 1e-8,
                          sample_weight: Tensor | None = None) -> Tensor:
    """KL(ᾱ_T ‖ ᾱ_S) between modality-attention distributions over the shared modalities.

    Both inputs are [B, M] restricted to the same shared modalities (same column order). A modality
    absent for a sample on either side (α exactly 0: masked out of the softmax, e.g. by modality dropout)
    is dropped for that sample; each row is renormalised to sum to 1 over the rest
    (ᾱ = α / Σ α over the modalities both see), then L = (1/B) Σ_i Σ_m ᾱ_T,im log(ᾱ_T,im / ᾱ_S,im)
    (0 log 0 = 0; ᾱ_S is clamped at ε inside the log). Rows with nothing in common contribute 0.
    """
    both = (student_alpha > 0) & (teacher_alpha > 0)
    teacher_alpha = teacher_alpha * both
    student_alpha = student_alpha * both
    a_t = teacher_alpha / teacher_alpha.sum(1, keepdim=True).clamp_min(eps)
    log_a_s = torch.log(student_alpha.clamp_min(eps)) - torch.log(student_alpha.sum(1, keepdim=True).clamp_min(eps))
    per = (torch.xlogy(a_t, a_t) - a_t * log_a_s).sum(1)
    return weighted_mean(per, sample_weight)


def feature_distance(pred: Tensor, target: Tensor, distance: str = "mse") -> Tensor:
    """Per-sample distance [B] between [B, D] features: ``mse`` = mean_d (p − t)²; ``cosine`` = 1 − cos(p, t)."""
    if distance == "mse":
        return (pred - target).pow(2).flatten(1).mean(1)
    if distance == "cosine":
        return 1.0 - F.cosine_similarity(pred.flatten(1), target.flatten(1), dim=1, eps=1e-8)
    raise ValueError(f"unknown distance {distance!r}; allowed: mse, cosine")


def weighted_modality_feature_loss(student_proj: list[Tensor], teacher_feats: list[Tensor], weights: Tensor,
                                   sample_weight: Tensor | None = None) -> Tensor:
    """Attention-weighted per-modality feature distillation (KD Lab's multimodal method).

    L = (1/B) Σ_i Σ_m w_im · (1/D) ‖P_m(h_S,im) − h_T,im‖², with ``student_proj`` = [P_m(h_S,m)],
    ``teacher_feats`` = [h_T,m] and w [B, M] the teacher's attention renormalised over these modalities.
    """
    d = torch.stack([feature_distance(p, t, "mse") for p, t in zip(student_proj, teacher_feats)], dim=1)
    return weighted_mean((weights * d).sum(1), sample_weight)
