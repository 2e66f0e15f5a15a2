"""Adversarial examples for robust distillation and robust evaluation (FGSM, PGD).

Inputs are dictionaries modality → tensor. Only **continuous** modalities (floating-point
tensors: images, spectrograms, vectors — all standardised to roughly unit variance by the
datasets, so ε is in those standardised units) are perturbed; **token** modalities (integer ids)
are left unperturbed: a discrete input has no ε-ball, and perturbing the embedding would attack a
different space in every model. There is no clamp to a pixel range because the inputs are
standardised features, not [0, 1] pixels.

* FGSM (Goodfellow et al. 2015): x' = x + ε · sign(∇_x L(f(x), y)).
* PGD (Madry et al. 2018): x⁰ = x + U(−ε, ε); x^{k+1} = Π_{‖x'−x‖∞ ≤ ε}(x^k + a · sign(∇_x L(f(x^k), y))).

L is the cross-entropy of the attacked model on the true labels. The attacked model runs in eval
mode (no dropout, BatchNorm running statistics) while the examples are built, then its mode is
restored; no parameter gradient is accumulated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdcore.data.base import Split


def continuous(inputs: dict[str, Tensor]) -> list[str]:
    return [m for m, x in inputs.items() if x.is_floating_point()]


def pgd_attack(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor, eps: float, step_size: float,
               steps: int, random_start: bool = True, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """L∞ PGD on every continuous modality jointly; returns new inputs (detached) with
    ‖x' − x‖∞ ≤ ε per modality. ``steps=1, step_size=eps, random_start=False`` is FGSM."""
    mods = continuous(inputs)
    if eps <= 0 or steps <= 0 or not mods:
        return {m: x.detach() for m, x in inputs.items()}
    was = model.training
    model.eval()
    try:
        x0 = {m: inputs[m].detach() for m in mods}
        if random_start:
            delta = {m: (torch.rand(x.shape, generator=generator, device="cpu").to(x.device) * 2 - 1) * eps
                     for m, x in x0.items()}
        else:
            delta = {m: torch.zeros_like(x) for m, x in x0.items()}
        for _ in range(steps):
            for d in delta.values():
                d.requires_grad_(True)
            adv = {**inputs, **{m: x0[m] + delta[m] for m in mods}}
            with torch.enable_grad():
                loss = F.cross_entropy(model(adv).logits, labels)
                grads = torch.autograd.grad(loss, [delta[m] for m in mods])
            delta = {m: (delta[m].detach() + step_size * g.sign()).clamp(-eps, eps) for m, g in zip(mods, grads)}
        return {**{m: x.detach() for m, x in inputs.items()}, **{m: x0[m] + delta[m] for m in mods}}
    finally:
        model.train(was)


def fgsm_attack(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor, eps: float) -> dict[str, Tensor]:
    return pgd_attack(model, inputs, labels, eps, eps, 1, random_start=False)


def robust_accuracy(model: nn.Module, split: Split, modalities: list[str], eps: float, attack: str = "pgd",
                    steps: int = 10, step_size: float | None = None, batch_size: int = 256,
                    device: torch.device | str = "cpu", seed: int = 0) -> float:
    """Accuracy on ``split`` under a white-box ``attack`` (``fgsm`` | ``pgd``) at L∞ radius ``eps``.
    PGD uses ``steps`` steps of size ``step_size`` (default 2.5 ε / steps) from a random start."""
    gen = torch.Generator().manual_seed(seed)
    a = step_size if step_size is not None else 2.5 * eps / max(1, steps)
    correct = 0
    n = len(split)
    was = model.training
    for start in range(0, n, batch_size):
        rows = torch.arange(start, min(n, start + batch_size))
        b = split.batch(rows, modalities).to(device)
        if attack == "fgsm":
            adv = fgsm_attack(model, b.inputs, b.labels, eps)
        elif attack == "pgd":
            adv = pgd_attack(model, b.inputs, b.labels, eps, a, steps, True, gen)
        else:
            raise ValueError(f"unknown attack {attack!r}; allowed: fgsm, pgd")
        model.eval()
        with torch.no_grad():
            correct += int((model(adv).logits.argmax(1) == b.labels).sum())
    model.train(was)
    return correct / max(1, n)
