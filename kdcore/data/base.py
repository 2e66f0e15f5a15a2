"""The dataset contract and the in-memory splits the engine trains on.

A :class:`MultimodalDataset` turns a :class:`~kdcore.core.spec.DataSpec` into :class:`TensorData`:
every modality as one tensor over all samples (noise already applied, deterministically from
the seed), labels, and display metadata. Splits are stratified and deterministic per seed.
Because inputs are fixed after loading, teacher outputs can be cached (see ``engine.cache``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

ASSETS = Path(__file__).resolve().parents[2] / "assets"


@dataclass
class ModalityInfo:
    name: str
    kind: str  # image | spectrogram | video | tokens | vector
    shape: tuple[int, ...]  # per-sample tensor shape
    description: str = ""
    vocab_size: int = 0  # for tokens


@dataclass
class Split:
    """A view of :class:`TensorData` restricted to some sample indices."""

    data: "TensorData"
    indices: Tensor

    def __len__(self) -> int:
        return int(self.indices.numel())

    @property
    def labels(self) -> Tensor:
        return self.data.labels[self.indices]

    def batch(self, rows: Tensor, modalities: list[str] | None = None) -> "Batch":
        idx = self.indices[rows]
        mods = modalities or list(self.data.inputs)
        return Batch(
            inputs={m: self.data.inputs[m][idx] for m in mods},
            labels=self.data.labels[idx],
            aux={k: v[idx] for k, v in self.data.aux.items()},
            rows=rows,
        )

    def all(self, modalities: list[str] | None = None) -> "Batch":
        return self.batch(torch.arange(len(self)), modalities)


@dataclass
class Batch:
    inputs: dict[str, Tensor]
    labels: Tensor
    aux: dict[str, Tensor] = field(default_factory=dict)
    rows: Tensor | None = None  # positions inside the split (for the teacher cache)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        mv = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch({k: mv(v) for k, v in self.inputs.items()}, mv(self.labels),
                     {k: mv(v) for k, v in self.aux.items()}, self.rows)

    def __len__(self) -> int:
        return int(self.labels.numel())


@dataclass
class TensorData:
    name: str
    modalities: dict[str, ModalityInfo]
    inputs: dict[str, Tensor]
    labels: Tensor
    num_classes: int
    class_names: list[str]
    split_index: dict[str, Tensor]  # train / val / test -> sample indices
    aux: dict[str, Tensor] = field(default_factory=dict)
    aux_classes: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # display data: texts, waveforms, ...
    pairing_note: str = ""

    def split(self, name: str) -> Split:
        return Split(self, self.split_index[name])

    def sample(self, i: int) -> dict[str, Any]:
        """One sample as ``{modality: tensor, 'label': int, 'aux': {...}}`` (the contract)."""
        return {
            **{m: t[i] for m, t in self.inputs.items()},
            "label": int(self.labels[i]),
            "aux": {k: int(v[i]) for k, v in self.aux.items()},
        }


class MultimodalDataset(ABC):
    """Base class for bundled datasets; subclasses declare modalities and implement ``_load``."""

    name: ClassVar[str]
    description: ClassVar[str]
    source: ClassVar[str]
    pairing_note: ClassVar[str] = ""
    MODALITIES: ClassVar[dict[str, str]]  # name -> kind
    NUM_CLASSES: ClassVar[int | None] = None  # known before loading (None: read from the data)
    CLASS_KNOB: ClassVar[tuple[str, int] | None] = None  # (noise knob, default) that sets the class count

    @classmethod
    def modality_names(cls) -> list[str]:
        return list(cls.MODALITIES)

    @classmethod
    def modality_kinds(cls) -> dict[str, str]:
        return dict(cls.MODALITIES)

    @classmethod
    def noise_knobs(cls) -> dict[str, tuple[float, float, str]]:
        """Noise knobs this dataset accepts: name -> (low, high, meaning)."""
        return {}

    @classmethod
    def class_count(cls, noise: dict[str, float]) -> int | None:
        """Number of classes, when known from the spec alone (for validating class indices)."""
        if cls.CLASS_KNOB is not None:
            knob, default = cls.CLASS_KNOB
            return int(round(float((noise or {}).get(knob, default))))
        return cls.NUM_CLASSES

    @abstractmethod
    def load(self, spec) -> TensorData:  # spec: kdcore.core.spec.DataSpec
        """All samples as tensors, noise applied deterministically from ``spec.seed``."""


def stratified_split(labels: np.ndarray, train: float, val: float, seed: int) -> dict[str, Tensor]:
    """Deterministic stratified split: per class, shuffle with the seed, cut by fractions."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_tr = int(round(train * len(idx)))
        n_va = int(round(val * len(idx)))
        parts["train"] += idx[:n_tr].tolist()
        parts["val"] += idx[n_tr : n_tr + n_va].tolist()
        parts["test"] += idx[n_tr + n_va :].tolist()
    return {k: torch.tensor(sorted(v), dtype=torch.long) for k, v in parts.items()}


def limit_train(split: dict[str, Tensor], labels: np.ndarray, limit: int | None, seed: int) -> dict[str, Tensor]:
    """Keep a stratified subset of at most ``limit`` training samples."""
    if limit is None or limit >= len(split["train"]):
        return split
    rng = np.random.default_rng(seed + 7919)
    tr = split["train"].numpy()
    classes = np.unique(labels[tr])
    per_class = max(1, limit // len(classes))
    keep: list[int] = []
    for c in classes:
        idx = tr[labels[tr] == c]
        keep += rng.choice(idx, size=min(per_class, len(idx)), replace=False).tolist()
    return {**split, "train": torch.tensor(sorted(keep), dtype=torch.long)}
