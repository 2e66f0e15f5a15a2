"""Ready-made phase configurations shared by the pipeline: one place that builds a CE-only phase.

:func:`ce_phase` is the training phase of a teacher (the main teacher, every ensemble member):
cross-entropy as the only loss with weight 1, fixed weighting, constant T = 1. The CE loss is
sized from one probe forward pass on the first two training rows (under ``torch.no_grad()``, in
eval mode, then back to train mode) — this consumes no RNG, but callers seed the model's
construction *before* calling it, exactly as the phases were always built.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdcore.data.base import TensorData
from kdcore.methods.losses import LOSSES, LossSetup
from kdcore.methods.strategies import TEMPERATURE_SCHEDULES, WEIGHTINGS
from kdcore.train.trainer import PhaseConfig


def ce_phase(name: str, model: nn.Module, modalities: list[str], data: TensorData, *, epochs: int, lr: float,
             seed: int, device: torch.device | str, train_labels: Tensor | None = None) -> PhaseConfig:
    """A phase training ``model`` on ``modalities`` with cross-entropy alone (weight 1, T = 1).

    ``model`` is left in train mode (the probe pass toggles eval → train). ``train_labels``: the
    labels per train-split position the phase sees (None: the data's)."""
    modalities = list(modalities)
    probe_b = data.split("train").batch(torch.arange(2), modalities).to(device)
    with torch.no_grad():
        model.eval()
        probe = model(probe_b.inputs)
        model.train()
    setup = LossSetup(probe, None, data.num_classes, epochs, dict(data.aux_classes))
    return PhaseConfig(
        name=name, model=model, modalities=modalities,
        losses={"ce": LOSSES["ce"](setup)}, loss_weights={"ce": 1.0},
        weighting=WEIGHTINGS["fixed"]({"ce": 1.0}), schedule=TEMPERATURE_SCHEDULES["constant"](1.0),
        epochs=epochs, lr=lr, seed=seed, train_labels=train_labels,
    )
