"""Evaluation helpers: accuracy / loss / attention on a split, in eval mode, without gradients."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdcore.data.base import Split
from kdcore.models.output import ModelOutput


@dataclass
class Evaluation:
    acc: float
    loss: float
    output: ModelOutput  # on CPU, detached, whole split
    labels: Tensor

    @property
    def predictions(self) -> Tensor:
        return self.output.logits.argmax(1)


@torch.no_grad()
def predict(model: nn.Module, split: Split, modalities: list[str], batch_size: int = 512,
            device: torch.device | str = "cpu", present: Tensor | None = None) -> ModelOutput:
    was_training = model.training
    model.eval()
    outs = []
    n = len(split)
    for start in range(0, n, batch_size):
        rows = torch.arange(start, min(n, start + batch_size))
        b = split.batch(rows, modalities).to(device)
        p = None if present is None else present[rows].to(device)
        outs.append(model(b.inputs, present=p).map(lambda t: t.detach().float().cpu()))
    model.train(was_training)
    return ModelOutput.cat(outs)


def evaluate(model: nn.Module, split: Split, modalities: list[str], batch_size: int = 512,
             device: torch.device | str = "cpu", present: Tensor | None = None) -> Evaluation:
    out = predict(model, split, modalities, batch_size, device, present)
    labels = split.labels
    return Evaluation(
        acc=float((out.logits.argmax(1) == labels).float().mean()),
        loss=float(F.cross_entropy(out.logits, labels)),
        output=out,
        labels=labels,
    )


def attention_by_class(attention: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Mean α per true class: [C, M] (rows of classes absent from ``labels`` are NaN)."""
    out = torch.full((num_classes, attention.shape[1]), float("nan"))
    for c in range(num_classes):
        sel = labels == c
        if sel.any():
            out[c] = attention[sel].mean(0)
    return out
