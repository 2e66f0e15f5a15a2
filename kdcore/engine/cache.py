"""Teacher-output cache: the frozen teacher's outputs on the training split, computed once.

Valid because the teacher is frozen and in eval mode (deterministic) and the inputs are fixed
tensors (noise is drawn once when the data loads, no per-epoch augmentation). It is bounded in
memory: if the outputs would exceed ``max_bytes`` the cache is off and the teacher runs per batch.
Methods that feed the teacher changed inputs must not use it (they call the teacher themselves).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdcore.data.base import Split
from kdcore.engine.evaluate import predict
from kdcore.models.output import ModelOutput


class TeacherCache:
    def __init__(self, output: ModelOutput | None, reason: str):
        self.output = output
        self.reason = reason

    @property
    def enabled(self) -> bool:
        return self.output is not None

    def describe(self) -> str:
        return "on" if self.enabled else f"off: {self.reason}"

    def get(self, rows: Tensor) -> ModelOutput:
        return self.output.index(rows)

    @classmethod
    def build(cls, teacher: nn.Module, split: Split, modalities: list[str], device, enabled: bool = True,
              max_bytes: int = 1 << 30, batch_size: int = 512) -> "TeacherCache":
        if not enabled:
            return cls(None, "disabled in the spec (train.teacher_cache)")
        probe = predict(teacher, split.__class__(split.data, split.indices[:2]), modalities, 2, device)
        per_sample = probe.nbytes() / 2
        need = int(per_sample * len(split))
        if need > max_bytes:
            return cls(None, f"teacher outputs need {need / 2**20:.0f} MiB > limit {max_bytes / 2**20:.0f} MiB")
        out = predict(teacher, split, modalities, batch_size, device)
        return cls(out.map(lambda t: t.to(device)), "")
