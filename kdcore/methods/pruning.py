"""Magnitude pruning on a schedule (sparse distillation).

Global L1 unstructured pruning (``torch.nn.utils.prune.global_unstructured``) over the weights of
every ``Conv*d`` and ``Linear`` module of the student: the smallest-|w| weights across all those
layers are masked to zero. The target sparsity follows the gradual schedule of Zhu & Gupta 2017
("To prune, or not to prune"):

    s(t) = s_f · (1 − (1 − (t − t₀)/(t₁ − t₀))³)   for t₀ ≤ t ≤ t₁,  s_f after t₁,

with t the optimiser step, t₀ = ``start`` · total steps, t₁ = ``end`` · total steps; the masks are
updated every ``every`` steps (and at t₁). Masks persist (``weight = weight_orig · weight_mask``),
so pruned weights stay zero while the rest keep training; :func:`make_permanent` folds the masks
into plain weights at the end.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import prune

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE)]


def cubic_sparsity(step: int, total_steps: int, target: float, start: float = 0.0, end: float = 0.6) -> float:
    """Zhu & Gupta's gradual schedule s(t) (see the module docstring)."""
    t0 = int(start * total_steps)
    t1 = max(t0 + 1, int(end * total_steps))
    if step < t0:
        return 0.0
    if step >= t1:
        return target
    return target * (1.0 - (1.0 - (step - t0) / (t1 - t0)) ** 3)


def _weight(module: nn.Module, name: str) -> torch.Tensor:
    return getattr(module, name)


def pruned_count(targets: list[tuple[nn.Module, str]]) -> int:
    return sum(int((_weight(m, n) == 0).sum()) for m, n in targets)


def total_count(targets: list[tuple[nn.Module, str]]) -> int:
    return sum(_weight(m, n).numel() for m, n in targets)


def sparsity(targets: list[tuple[nn.Module, str]]) -> float:
    """Fraction of exactly-zero weights over the prunable layers."""
    return pruned_count(targets) / max(1, total_count(targets))


def model_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero values over all parameters of ``model`` (biases, BN, embeddings
    too); for pruned layers the masked weight counts, not ``weight_orig``."""
    zeros = total = 0
    for mod in model.modules():
        for name, _ in mod.named_parameters(recurse=False):
            t = getattr(mod, name[:-5]) if name.endswith("_orig") else getattr(mod, name)
            zeros += int((t == 0).sum())
            total += t.numel()
    return zeros / max(1, total)


def prune_to(targets: list[tuple[nn.Module, str]], fraction: float) -> None:
    """Globally prune the smallest-|w| weights until ``fraction`` of all target weights are masked."""
    need = int(round(fraction * total_count(targets))) - pruned_count(targets)
    if need > 0:
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=need)


def reparametrize(targets: list[tuple[nn.Module, str]]) -> None:
    """Attach all-ones masks (``weight_orig`` / ``weight_mask``) so checkpoints keep one key layout."""
    for m, n in targets:
        if not prune.is_pruned(m):
            prune.identity(m, n)


def make_permanent(targets: list[tuple[nn.Module, str]]) -> None:
    for m, n in targets:
        if hasattr(m, n + "_mask"):
            prune.remove(m, n)


class PruningSchedule:
    """Called after every optimiser step; prunes to :func:`cubic_sparsity` every ``every`` steps."""

    def __init__(self, model: nn.Module, target: float, total_steps: int, start: float, end: float, every: int):
        if not 0.0 <= target < 1.0:
            raise ValueError(f"sparsity={target}: allowed range [0, 1)")
        if not 0.0 <= start < end <= 1.0:
            raise ValueError(f"pruning start={start}, end={end}: need 0 ≤ start < end ≤ 1")
        self.targets = prunable(model)
        self.target, self.total, self.start, self.end = target, total_steps, start, end
        self.every = max(1, int(every))
        self.t1 = max(int(start * total_steps) + 1, int(end * total_steps))
        reparametrize(self.targets)

    def __call__(self, step: int) -> None:
        if step % self.every == 0 or step >= self.t1:
            with torch.no_grad():
                prune_to(self.targets, cubic_sparsity(step, self.total, self.target, self.start, self.end))

    def first_full_epoch(self, steps_per_epoch: int) -> int:
        """1-based index of the first epoch that ends at the target sparsity."""
        return math.ceil((self.t1 + 1) / steps_per_epoch)
