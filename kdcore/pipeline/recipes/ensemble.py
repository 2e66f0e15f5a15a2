"""Multi-teacher distillation: an ensemble of frozen teachers whose soft targets are combined.

Spec: ``distill.ensemble: {members: [[image], [audio], ...], combine: mean|confidence,
include_main: true}``. Each member is an extra teacher with the main teacher's architecture that
sees only the listed modalities; the experiment trains it with CE (phase ``teacher_<modalities>``)
right after the main teacher. The students then distil from :class:`EnsembleTeacher`, whose
output is the main teacher's output (features, attention, maps — for feature losses) with the
**logits replaced by the ensemble's**:

    p_T(x) = Σ_k w_k(x) · softmax(z_k(x) / T)
    mean:        w_k = 1/K
    confidence:  w_k(x) = c_k(x) / Σ_j c_j(x),  c_k(x) = max_c softmax(z_k(x))_c   (at T = 1)
    z_ens = T · log p_T(x)        so that softmax(z_ens / T) = p_T exactly

with T = ``distill.temperature``: the KD loss at that temperature sees exactly the combined soft
targets (a temperature schedule moving away from it sees a sharpened/flattened version of them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdcore.models.output import ModelOutput


def ensemble_probs(logits: Tensor, combine: str, T: float) -> Tensor:
    """[K, B, C] member logits → [B, C] combined soft targets at temperature T."""
    p = F.softmax(logits / T, dim=2)
    if combine == "mean":
        return p.mean(0)
    if combine == "confidence":
        conf = F.softmax(logits, dim=2).max(2).values  # [K, B]
        w = conf / conf.sum(0, keepdim=True)
        return (w.unsqueeze(2) * p).sum(0)
    raise ValueError(f"distill.ensemble.combine={combine!r}; allowed: mean, confidence")


def ensemble_logits(logits: Tensor, combine: str, T: float) -> Tensor:
    """Logits whose softmax at temperature T is :func:`ensemble_probs`: z = T · log p."""
    return T * torch.log(ensemble_probs(logits, combine, T).clamp_min(1e-30))


class EnsembleTeacher(nn.Module):
    """Frozen ensemble; ``forward`` returns the main teacher's output with ensemble logits."""

    def __init__(self, main: nn.Module, members: list[tuple[nn.Module, list[str]]], combine: str,
                 temperature: float, include_main: bool = True):
        super().__init__()
        self.main = main
        self.members = nn.ModuleList([m for m, _ in members])
        self.member_modalities = [list(mods) for _, mods in members]
        self.combine, self.temperature, self.include_main = combine, float(temperature), include_main
        self.modalities = tuple(getattr(main, "modalities", ()))

    def forward(self, inputs: dict[str, Tensor], present: Tensor | None = None,
                embedded: dict[str, Tensor] | None = None) -> ModelOutput:
        out = self.main(inputs, present=present, embedded=embedded)
        logits = [out.logits] if self.include_main else []
        for net, mods in zip(self.members, self.member_modalities):
            avail = {m: inputs[m] for m in mods if m in inputs}
            if avail:  # a member whose modalities are all missing abstains
                logits.append(net(avail).logits)
        if not logits:
            logits = [out.logits]
        z = ensemble_logits(torch.stack(logits), self.combine, self.temperature)
        return ModelOutput(z, out.features, out.fused, out.attention, out.modalities, out.feature_maps,
                           out.aux_logits)


def member_phase_name(mods: list[str]) -> str:
    return "teacher_" + "_".join(mods)


def build_ensemble(exp, main: nn.Module) -> EnsembleTeacher:
    """Train every member teacher (CE, teacher epochs and lr, events like the main teacher's),
    freeze it, and wrap everything in an :class:`EnsembleTeacher`; reports the ensemble's own
    accuracy as phase ``ensemble``."""
    from kdcore.train.evaluate import evaluate
    from kdcore.core.events import PhaseFinished
    from kdcore.train.phases import ce_phase
    from kdcore.train.trainer import PhaseResult
    from kdcore.models import build_model, count_parameters

    spec = exp.spec
    ens = spec.distill.ensemble
    members = []
    for i, mods in enumerate(ens.members):
        torch.manual_seed(spec.data.seed + 101 + i)
        net = build_model(spec.teacher, list(mods), exp.data).to(exp.device)
        if spec.train.teacher_epochs > 0:
            cfg = ce_phase(member_phase_name(mods), net, list(mods), exp.data,
                           epochs=spec.train.teacher_epochs, lr=spec.train.teacher_lr or spec.train.lr,
                           seed=spec.data.seed + 101 + i, device=exp.device, train_labels=exp.teacher_labels())
            exp.run_phase(cfg)
        net.eval()
        net.requires_grad_(False)
        members.append((net, list(mods)))
    wrapper = EnsembleTeacher(main, members, ens.combine, spec.distill.temperature, ens.include_main).eval()
    wrapper.requires_grad_(False)
    mods = spec.teacher_modalities()
    va = evaluate(wrapper, exp.data.split("val"), mods, device=exp.device)
    te = evaluate(wrapper, exp.data.split("test"), mods, device=exp.device)
    exp.record("ensemble", PhaseResult("ensemble", 0, va.acc, te.acc, 0.0, {}, []), wrapper)
    exp.emit(PhaseFinished("ensemble", 0, va.acc, te.acc, count_parameters(wrapper), 0.0,
                           {"members": float(len(members) + int(ens.include_main))}))
    return wrapper
