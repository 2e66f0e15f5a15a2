"""Fusion of per-modality features h_m ∈ R^D into one representation.

* ``attention``: s_m = vᵀ tanh(W h_m + b) per modality, α = softmax_m(s_m) over the modalities
  present for that sample, fused = Σ_m α_m h_m. α [B, M] is returned for inspection/distillation.
* ``concat``: fused = ReLU(W [h_1; …; h_M]) (absent modalities are zeros).
* ``mean``: fused = mean of the present h_m.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class AttentionFusion(nn.Module):
    def __init__(self, n_modalities: int, dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or dim
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, feats: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
        # feats [B, M, D], present [B, M] bool
        scores = self.score(feats).squeeze(-1).masked_fill(~present, float("-inf"))
        alpha = torch.softmax(scores, dim=1)
        return (alpha.unsqueeze(-1) * feats).sum(1), alpha


class ConcatFusion(nn.Module):
    def __init__(self, n_modalities: int, dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(n_modalities * dim, dim), nn.ReLU())

    def forward(self, feats: Tensor, present: Tensor) -> tuple[Tensor, None]:
        feats = feats * present.unsqueeze(-1)
        return self.proj(feats.flatten(1)), None


class MeanFusion(nn.Module):
    def __init__(self, n_modalities: int, dim: int):
        super().__init__()

    def forward(self, feats: Tensor, present: Tensor) -> tuple[Tensor, None]:
        w = present.float().unsqueeze(-1)
        return (feats * w).sum(1) / w.sum(1).clamp_min(1.0), None


FUSIONS = {"attention": AttentionFusion, "concat": ConcatFusion, "mean": MeanFusion}
