"""Fixed probe sets and the teacher-vs-student comparison used by the callback, the CLI, the
pages and the agreement script."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kdcore.data.base import Split
from kdcore.explain.agreement import Agreement, agreement
from kdcore.explain.attribution import Attribution, AttributionParams, attribute


def probe_rows(split: Split, n: int, seed: int = 0) -> Tensor:
    """``n`` fixed rows of ``split``, stratified by class (round-robin over classes in a seeded
    order), sorted — the same rows for every epoch, phase and model."""
    n = max(1, min(int(n), len(split)))
    gen = torch.Generator().manual_seed(10_007 + seed)
    labels = split.labels
    per_class = {int(c): (labels == c).nonzero().flatten() for c in labels.unique()}
    per_class = {c: rows[torch.randperm(len(rows), generator=gen)] for c, rows in per_class.items()}
    picked: list[int] = []
    i = 0
    while len(picked) < n:
        for rows in per_class.values():
            if i < len(rows) and len(picked) < n:
                picked.append(int(rows[i]))
        i += 1
    return torch.tensor(sorted(picked), dtype=torch.long)


@dataclass
class Comparison:
    teacher: Attribution
    student: Attribution
    agreement: Agreement

    def summary(self) -> dict:
        return {"agreement": self.agreement.mean(), "teacher_shares": self.teacher.mean_shares(),
                "student_shares": self.student.mean_shares()}


def compare(teacher: nn.Module, student: nn.Module, split: Split, rows: Tensor, method: str = "ig",
            params: AttributionParams | None = None, k_frac: float = 0.1,
            teacher_attr: Attribution | None = None, reference: dict[str, Tensor] | None = None) -> Comparison:
    """Attribute the true class of ``rows`` with ``method`` for teacher and student (each on its own
    eval-mode copy) and measure their agreement on the modalities both see."""
    mods = sorted(set(teacher.modalities) | set(student.modalities))
    batch = split.batch(rows, mods)
    if teacher_attr is None:
        teacher_attr = attribute(teacher, batch.inputs, method, batch.labels, params, reference=reference)
    s_attr = attribute(student, batch.inputs, method, batch.labels, params, reference=reference)
    return Comparison(teacher_attr, s_attr, agreement(teacher_attr, s_attr, k_frac))
