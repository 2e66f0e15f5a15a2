"""Missing-modality evaluation: test accuracy of a trained model with one modality removed.

A removed modality is simply absent from the inputs: the network gives it a zero feature and
masks it out of the attention fusion (``MultimodalNet.forward``), exactly as when a sensor is
missing at test time. Models trained with ``modality_dropout`` > 0 have seen this during training.
"""

from __future__ import annotations

import torch
from torch import nn

from kdcore.data.base import Split
from kdcore.train.evaluate import evaluate


def missing_modality_accuracy(model: nn.Module, split: Split, modalities: list[str],
                              device: torch.device | str = "cpu") -> dict[str, float]:
    """``{"acc_without_<m>": accuracy on split with modality m removed}`` for every m of a
    model that sees ≥ 2 modalities (a one-modality model has nothing left to remove)."""
    if len(modalities) < 2:
        return {}
    return {f"acc_without_{m}": evaluate(model, split, [x for x in modalities if x != m], device=device).acc
            for m in modalities}


def missing_modality_metrics(exp, name: str, model: nn.Module) -> dict[str, float]:
    """Per-phase metric (``on_phase_end`` through ``PhaseMetrics``): missing-modality accuracies
    on the test split."""
    mods = list(getattr(model, "modalities", ()) or [])
    return missing_modality_accuracy(model, exp.data.split("test"), mods, device=exp.device)
