"""The structured output every KD Lab network returns.

Losses read what they need from it (logits, per-modality features, the fused feature,
modality attention, intermediate feature maps, auxiliary-task logits) so that methods
never depend on a model class (TextBrewer's "adaptor" idea).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class ModelOutput:
    logits: Tensor  # [B, C]
    features: dict[str, Tensor]  # modality -> [B, D] encoder feature (after projection)
    fused: Tensor  # [B, D] fused representation fed to the classifier
    attention: Tensor | None  # [B, M] modality weights (rows sum to 1) or None
    modalities: tuple[str, ...]  # order of the attention columns / features
    feature_maps: dict[str, list[Tensor]] = field(default_factory=dict)  # modality -> intermediate maps
    aux_logits: dict[str, Tensor] = field(default_factory=dict)  # auxiliary task -> [B, K]

    def map(self, fn) -> "ModelOutput":
        """Apply ``fn`` to every tensor (e.g. ``detach``, indexing, ``.to(device)``)."""
        return ModelOutput(
            logits=fn(self.logits),
            features={k: fn(v) for k, v in self.features.items()},
            fused=fn(self.fused),
            attention=None if self.attention is None else fn(self.attention),
            modalities=self.modalities,
            feature_maps={k: [fn(t) for t in v] for k, v in self.feature_maps.items()},
            aux_logits={k: fn(v) for k, v in self.aux_logits.items()},
        )

    def detach(self) -> "ModelOutput":
        return self.map(lambda t: t.detach())

    def index(self, idx: Tensor) -> "ModelOutput":
        return self.map(lambda t: t[idx])

    def tensors(self) -> list[Tensor]:
        found: list[Tensor] = []
        self.map(lambda t: found.append(t) or t)
        return found

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    @staticmethod
    def cat(outputs: list["ModelOutput"]) -> "ModelOutput":
        first = outputs[0]
        return ModelOutput(
            logits=torch.cat([o.logits for o in outputs]),
            features={k: torch.cat([o.features[k] for o in outputs]) for k in first.features},
            fused=torch.cat([o.fused for o in outputs]),
            attention=None if first.attention is None else torch.cat([o.attention for o in outputs]),
            modalities=first.modalities,
            feature_maps={
                k: [torch.cat([o.feature_maps[k][i] for o in outputs]) for i in range(len(v))]
                for k, v in first.feature_maps.items()
            },
            aux_logits={k: torch.cat([o.aux_logits[k] for o in outputs]) for k in first.aux_logits},
        )
