"""Teacher–student attribution agreement: does the student look where the teacher looks?

Two measures from the explanation-disagreement literature (Krishna et al. 2022, "The Disagreement
Problem in Explainable Machine Learning"), computed per sample on attribution **magnitudes**
(|a|, flattened per modality) and averaged over a fixed probe set:

* **Spearman rank correlation** ρ = Pearson correlation of the (tie-averaged) ranks of |a_T| and
  |a_S| over the modality's features: 1 = same ordering, 0 = unrelated, −1 = reversed. A sample
  whose map is constant on either side has no ranking and is left out of the mean (NaN).
* **Top-k overlap** = |top_k(|a_T|) ∩ top_k(|a_S|)| / k, with k = ⌈k_frac · F⌉ features: 1 = the
  same k most important features; a random pair overlaps ≈ k/F.

Only modalities that both networks see are compared (cross-modal students share fewer); for text
only real tokens are compared (pads are excluded, they would agree trivially), with k = ⌈k_frac · L⌉
for a text of L tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor

from kdcore.explain.attribution import Attribution


def spearman_rows(a: Tensor, b: Tensor) -> Tensor:
    """Spearman ρ between matching rows of ``a`` and ``b`` ([N, F] each); NaN where a row is constant."""
    if a.shape != b.shape:
        raise ValueError(f"attribution shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    ra = torch.from_numpy(rankdata(a.detach().double().cpu().numpy(), axis=1))
    rb = torch.from_numpy(rankdata(b.detach().double().cpu().numpy(), axis=1))
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    den = ra.norm(dim=1) * rb.norm(dim=1)
    rho = (ra * rb).sum(1) / den
    return torch.where(den > 0, rho, torch.full_like(rho, float("nan"))).float()


def topk_overlap_rows(a: Tensor, b: Tensor, k: int) -> Tensor:
    """Fraction of shared indices among the ``k`` largest entries of matching rows."""
    if a.shape != b.shape:
        raise ValueError(f"attribution shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    k = max(1, min(int(k), a.shape[1]))
    ia = a.topk(k, dim=1).indices
    ib = b.topk(k, dim=1).indices
    hit = torch.zeros(a.shape, dtype=torch.bool)
    hit.scatter_(1, ia.cpu(), True)
    return hit.gather(1, ib.cpu()).float().sum(1) / k


def k_for(n_features: int, k_frac: float) -> int:
    return max(1, min(n_features, math.ceil(k_frac * n_features)))


@dataclass
class Agreement:
    """Per-modality, per-sample agreement between two attributions of the same samples."""

    modalities: list[str]
    spearman: dict[str, Tensor]  # modality -> [N] (NaN where undefined)
    topk: dict[str, Tensor]  # modality -> [N]
    k: dict[str, int]
    k_frac: float
    shares_a: dict[str, float] = field(default_factory=dict)
    shares_b: dict[str, float] = field(default_factory=dict)

    def mean(self) -> dict[str, dict[str, float]]:
        """``{modality: {"spearman": ρ̄, "topk": ō}}`` plus ``"all"`` (mean over modalities)."""
        out = {}
        for m in self.modalities:
            rho = self.spearman[m]
            ok = ~torch.isnan(rho)
            out[m] = {"spearman": float(rho[ok].mean()) if ok.any() else float("nan"),
                      "topk": float(self.topk[m].nanmean()), "k": self.k[m]}
        if self.modalities:
            out["all"] = {"spearman": float(np.nanmean([out[m]["spearman"] for m in self.modalities])),
                          "topk": float(np.mean([out[m]["topk"] for m in self.modalities]))}
        return out

    def per_sample(self) -> Tensor:
        """[N, 2]: Spearman ρ and top-k overlap averaged over the shared modalities."""
        rho = torch.stack([self.spearman[m] for m in self.modalities], 1).nanmean(1)
        top = torch.stack([self.topk[m] for m in self.modalities], 1).nanmean(1)
        return torch.stack([rho, top], 1)


def agreement(a: Attribution, b: Attribution, k_frac: float = 0.1) -> Agreement:
    """Compare two attributions (e.g. teacher vs student) of the same samples, per shared modality."""
    if not 0.0 < k_frac <= 1.0:
        raise ValueError(f"k_frac={k_frac} is outside the allowed range (0, 1]")
    if len(a) != len(b):
        raise ValueError(f"the attributions cover different numbers of samples ({len(a)} vs {len(b)})")
    shared = [m for m in a.modalities if m in b.maps]
    rho, top, ks = {}, {}, {}
    for m in shared:
        fa, fb = a.flat(m).abs(), b.flat(m).abs()
        ks[m] = k_for(fa.shape[1], k_frac)
        valid = a.valid(m) & b.valid(m)
        if bool(valid.all()):
            rho[m] = spearman_rows(fa, fb)
            top[m] = topk_overlap_rows(fa, fb, ks[m])
        else:  # text: compare real tokens only (pads would agree trivially)
            r, t = [], []
            for i in range(len(a)):
                keep = valid[i]
                if not bool(keep.any()):
                    r.append(torch.tensor([float("nan")]))
                    t.append(torch.tensor([float("nan")]))
                    continue
                xa, xb = fa[i, keep][None], fb[i, keep][None]
                r.append(spearman_rows(xa, xb))
                t.append(topk_overlap_rows(xa, xb, k_for(xa.shape[1], k_frac)))
            rho[m], top[m] = torch.cat(r), torch.cat(t)
    return Agreement(shared, rho, top, ks, k_frac, a.mean_shares(), b.mean_shares())
