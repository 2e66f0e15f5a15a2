"""Auxiliary label tasks derived from a digit label (multi-task distillation)."""

from __future__ import annotations

import torch
from torch import Tensor

AUX_TASKS: dict[str, tuple[int, str]] = {
    "parity": (2, "0 = even digit, 1 = odd digit"),
    "ge5": (2, "1 when the digit is 5 or more"),
    "prime": (2, "1 when the digit is 2, 3, 5 or 7"),
}


def aux_labels(task: str, labels: Tensor) -> Tensor:
    if task == "parity":
        return labels % 2
    if task == "ge5":
        return (labels >= 5).long()
    if task == "prime":
        return torch.isin(labels, torch.tensor([2, 3, 5, 7])).long()
    raise KeyError(f"unknown auxiliary task {task!r}; allowed: {', '.join(AUX_TASKS)}")
