"""Helpers shared by the feature losses: picking a feature from a :class:`ModelOutput` by a
(modality, layer) address, and learnable regressors that map a student feature onto the shape
of a teacher feature.

Addresses (loss params ``modality`` / ``layer`` and ``teacher_modality`` / ``teacher_layer``):

* ``modality="fused"`` — the fused representation [B, D] fed to the classifier (layer ignored);
* ``modality=<name>, layer="feature"`` — that modality's encoder output vector [B, D];
* ``modality=<name>, layer=<int>`` — that modality's intermediate map ``feature_maps[name][layer]``
  (negative indices count from the last map): [B, C, H, W] for CNNs, [B, L, C] for sequence
  encoders, [B, C] for MLP hidden layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from kdcore.core.params import MethodParams
from kdcore.methods.losses.functional import as_map
from kdcore.models.output import ModelOutput


def _shape(t: Tensor) -> str:
    return "×".join(str(s) for s in t.shape[1:])


@dataclass(frozen=True)
class FeatureRef:
    modality: str  # "fused" or a modality name
    layer: int | str | None = None  # None for fused, "feature" or a non-negative map index

    def get(self, out: ModelOutput) -> Tensor:
        if self.modality == "fused":
            return out.fused
        if self.layer == "feature":
            return out.features[self.modality]
        maps = out.feature_maps.get(self.modality) or []
        if not isinstance(self.layer, int) or self.layer >= len(maps):
            raise ValueError(f"{self.label()} is not in this output (modality absent from the batch?)")
        return maps[self.layer]

    def label(self) -> str:
        if self.modality == "fused":
            return "fused"
        if self.layer == "feature":
            return f"{self.modality} feature"
        return f"{self.modality} map {self.layer}"


def resolve_ref(loss: str, who: str, out: ModelOutput, modality: Any, layer: Any) -> FeatureRef:
    """Validate an address against a probe output; errors name the loss parameter and the allowed values."""
    prefix = "" if who == "student" else "teacher_"
    if modality == "fused":
        return FeatureRef("fused")
    mods = [m for m in out.modalities if m in out.features]
    if modality not in mods:
        raise ValueError(f"loss {loss!r}: params.{prefix}modality={modality!r} is not a {who} modality; "
                         f"allowed: fused, {', '.join(mods)}")
    if layer == "feature":
        return FeatureRef(modality, "feature")
    maps = out.feature_maps.get(modality) or []
    n = len(maps)
    if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n:
        raise ValueError(f"loss {loss!r}: params.{prefix}layer={layer!r} out of range for the {who}'s {modality} "
                         f"encoder ({n} maps); allowed: 'feature' or an integer in [{-n}, {n - 1}]")
    return FeatureRef(modality, layer % n)


def common_modalities(student: ModelOutput, teacher: ModelOutput) -> list[str]:
    return [m for m in student.modalities if m in teacher.modalities]


class FeatureAddress(MethodParams):
    """The parameters of a loss on one (student feature, teacher feature) pair (see the module doc).
    The values are checked against the probe outputs by :func:`resolve_ref`, which knows the maps."""

    modality: str | None = Field("fused", description="student feature: 'fused' or a modality name (None: the "
                                                      "first modality both networks see with maps)")
    layer: int | str = Field(-1, description="'feature' (the encoder output) or an index into the modality's maps")
    teacher_modality: str | None = Field(None, description="teacher feature's modality (None: as the student's)")
    teacher_layer: int | str = Field(-1, description="'feature' or an index into the teacher modality's maps")


def pick_pair(loss: str, params: FeatureAddress, student: ModelOutput,
              teacher: ModelOutput) -> tuple[FeatureRef, FeatureRef]:
    """Resolve (student, teacher) addresses from ``modality, layer, teacher_modality, teacher_layer``.
    ``modality=None`` picks the first modality both networks see that has maps on both sides (falls
    back to ``fused`` when there is none); ``teacher_modality=None`` means the same as the student."""
    mod, layer = params.modality, params.layer
    t_mod, t_layer = params.teacher_modality, params.teacher_layer
    if mod is None:
        mod = "fused"
        for m in common_modalities(student, teacher):
            if student.feature_maps.get(m) and teacher.feature_maps.get(m):
                mod = m
                break
    if t_mod is None:
        t_mod = mod
    return (resolve_ref(loss, "student", student, mod, layer),
            resolve_ref(loss, "teacher", teacher, t_mod, t_layer))


class Regressor(nn.Module):
    """r(F_S): a learnable map from a student feature onto the teacher feature's shape.

    Both sides are viewed as channel-first maps (:func:`as_map`); r is a 1×1 convolution C_S → C_T
    (a linear layer for vectors), then a bilinear resize to the teacher's spatial size when the sizes
    differ (anti-aliased, so shrinking averages neighbouring positions rather than sampling one). When the shapes already match it starts as the identity (still learned).
    """

    def __init__(self, student_probe: Tensor, teacher_probe: Tensor):
        super().__init__()
        s, t = as_map(student_probe), as_map(teacher_probe)
        self.teacher_dim = teacher_probe.dim()
        self.teacher_shape = tuple(teacher_probe.shape[1:])
        self.size = tuple(t.shape[-2:])
        self.conv = nn.Conv2d(s.shape[1], t.shape[1], kernel_size=1)
        self.resize = tuple(s.shape[-2:]) != self.size
        if s.shape[1] == t.shape[1]:
            with torch.no_grad():
                self.conv.weight.copy_(torch.eye(s.shape[1])[:, :, None, None])
                self.conv.bias.zero_()
        self.description = (f"{_shape(student_probe)} → 1×1 conv {s.shape[1]}→{t.shape[1]}"
                            + (f" → bilinear {self.size[0]}×{self.size[1]}" if self.resize else ""))

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(as_map(x))
        if self.resize:
            y = F.interpolate(y, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        if self.teacher_dim == 2:
            return y.flatten(1)
        if self.teacher_dim == 3:
            return y.squeeze(-1).transpose(1, 2)
        return y
