"""Data regimes: who sees which labels of the training split.

A regime (``data.regime`` in the spec) changes nothing in the tensors; it decides, per training
sample, what each phase may learn from it. Every decision is drawn from the data seed, so the
baseline and the KD student of a run, and every run with the same seed, see the same split.

* **Scarce labels + transfer set** (Lopez-Paz et al., ICLR 2016; Hinton et al. 2015 §6):
  ``labelled_fraction`` (or ``labels_per_class``) of the training split, stratified, keeps its
  label for the students. The rest is the *transfer set*: with ``transfer: labelled+unlabelled``
  the KD student also trains on it, through the teacher's soft targets only (its label is
  replaced by :data:`UNLABELLED`, which every label loss ignores); with ``transfer: labelled`` the
  KD student sees the labelled part only, like the baseline. The baseline always sees the labelled
  part only. The teacher keeps the full labelled training split: it "knows more".
* **Omitted classes** (Hinton et al. 2015 §3, the omitted "3"): the samples of ``omit_classes``
  leave the students' labelled data. With ``omitted_in_transfer: false`` (Hinton's set-up, the
  transfer set has no 3s at all) they leave the students' data entirely; with ``true`` they stay
  in the transfer set, unlabelled.
* **Noisy teacher** (negative knowledge): ``teacher_label_noise`` of the teacher's training labels
  are flipped — uniformly to another class, or along ``teacher_noise_pairs`` (``{4: 9}``: only 4s
  are flipped, to 9). The students' labels stay clean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

UNLABELLED = -1  # the label a student sees for a transfer-set sample: ignored by every label loss


@dataclass
class RegimePlan:
    """Per-phase views of the training split (positions inside ``data.split("train")``)."""

    teacher_labels: Tensor  # [n_train] labels the teacher trains on (noisy when asked)
    student_labels: Tensor  # [n_train] clean labels, UNLABELLED outside the labelled part
    baseline_rows: Tensor  # positions the baseline (and every CE-only student) trains on
    kd_rows: Tensor  # positions the KD student trains on (labelled part ∪ transfer set)
    omitted: tuple[int, ...] = ()
    flipped: int = 0  # teacher labels flipped

    @property
    def labelled(self) -> int:
        return int((self.student_labels != UNLABELLED).sum())

    @property
    def transfer(self) -> int:
        return int(self.kd_rows.numel()) - self.labelled

    @property
    def active(self) -> bool:
        n = int(self.teacher_labels.numel())
        return bool(self.flipped or self.omitted or self.labelled < n or self.kd_rows.numel() < n)

    def describe(self) -> str:
        n = int(self.teacher_labels.numel())
        parts = [f"students: {self.labelled} of {n} training labels"]
        if self.transfer:
            parts.append(f"KD student: + {self.transfer} unlabelled transfer samples (soft targets only)")
        if self.omitted:
            parts.append(f"omitted classes {', '.join(map(str, self.omitted))}")
        if self.flipped:
            parts.append(f"teacher: {self.flipped} of {n} labels flipped")
        return "; ".join(parts)


def _stratified_keep(labels: np.ndarray, candidates: np.ndarray, fraction: float, per_class: int | None,
                     rng: np.random.Generator) -> np.ndarray:
    """Boolean mask over ``labels``: per class, a seeded random ``fraction`` (≥ 1) or ``per_class``
    of the candidate positions."""
    keep = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels[candidates]):
        idx = candidates[labels[candidates] == c].copy()
        rng.shuffle(idx)
        k = per_class if per_class is not None else max(1, int(round(fraction * len(idx))))
        keep[idx[: min(k, len(idx))]] = True
    return keep


def flip_labels(labels: np.ndarray, fraction: float, pairs: dict[int, int], num_classes: int,
                rng: np.random.Generator) -> np.ndarray:
    """Flip ``fraction`` of the labels: of every class (to a uniformly drawn other class) or, with
    ``pairs``, of each source class ``s`` to ``pairs[s]``. Exactly round(fraction · count) per class."""
    out = labels.copy()
    sources = sorted(pairs) if pairs else sorted(np.unique(labels).tolist())
    for s in sources:
        idx = np.flatnonzero(labels == s)
        rng.shuffle(idx)
        chosen = idx[: int(round(fraction * len(idx)))]
        if pairs:
            out[chosen] = pairs[s]
        else:
            shift = rng.integers(1, num_classes, size=len(chosen))
            out[chosen] = (s + shift) % num_classes
    return out


def plan_regime(regime, train_labels: Tensor, num_classes: int, seed: int) -> RegimePlan:
    """The :class:`RegimePlan` of ``regime`` (a :class:`~kdcore.core.spec.RegimeSpec` or None) over the
    training labels; seeded by ``seed`` (the data seed)."""
    labels = train_labels.numpy().astype(np.int64)
    n = len(labels)
    all_rows = torch.arange(n)
    if regime is None:
        t = torch.from_numpy(labels)
        return RegimePlan(t, t.clone(), all_rows, all_rows)
    rng = np.random.default_rng(seed + 104729)
    omitted = tuple(sorted(set(regime.omit_classes)))
    bad = [c for c in omitted if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"data.regime.omit_classes: unknown class {bad[0]}; allowed: 0–{num_classes - 1}")
    for s, d in regime.teacher_noise_pairs.items():
        if not (0 <= s < num_classes and 0 <= d < num_classes):
            raise ValueError(f"data.regime.teacher_noise_pairs: {s}→{d} names a class outside 0–{num_classes - 1}")
    is_omitted = np.isin(labels, omitted)
    kept = np.flatnonzero(~is_omitted)
    labelled = _stratified_keep(labels, kept, regime.labelled_fraction, regime.labels_per_class, rng)
    in_transfer = ~labelled & (~is_omitted | bool(regime.omitted_in_transfer))
    student = np.where(labelled, labels, UNLABELLED)
    baseline_rows = torch.from_numpy(np.flatnonzero(labelled))
    if regime.transfer == "labelled+unlabelled":
        kd_rows = torch.from_numpy(np.flatnonzero(labelled | in_transfer))
    else:
        kd_rows = baseline_rows.clone()
    teacher = labels
    if regime.teacher_label_noise > 0:
        teacher = flip_labels(labels, regime.teacher_label_noise, dict(regime.teacher_noise_pairs), num_classes,
                              np.random.default_rng(seed + 1299709))
    return RegimePlan(torch.from_numpy(teacher), torch.from_numpy(student), baseline_rows, kd_rows, omitted,
                      int((teacher != labels).sum()))
