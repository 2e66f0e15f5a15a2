"""The multimodal network: per-modality encoders → fusion → classifier (+ auxiliary heads)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdcore.data.base import ModalityInfo
from kdcore.models.encoders import DEFAULT_FOR, ENCODERS
from kdcore.models.fusion import FUSIONS
from kdcore.models.output import ModelOutput
from kdcore.core.spec import ModelSpec


class MultimodalNet(nn.Module):
    def __init__(self, spec: ModelSpec, modalities: list[str], infos: dict[str, ModalityInfo],
                 num_classes: int, aux_classes: dict[str, int] | None = None):
        super().__init__()
        self.modalities = tuple(modalities)
        self.modality_dropout = spec.modality_dropout
        self.fusion_type = spec.fusion
        dim = spec.feature_dim
        encs = {}
        for m in modalities:
            es = spec.encoder_for(m)
            arch = es.arch or DEFAULT_FOR[infos[m].kind]
            encs[m] = ENCODERS[arch](infos[m], es.width, es.depth, dim)
        self.encoders = nn.ModuleDict(encs)
        self.fusion = FUSIONS[spec.fusion](len(modalities), dim)
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(dim, num_classes)
        self.aux_heads = nn.ModuleDict({t: nn.Linear(dim, k) for t, k in (aux_classes or {}).items()})

    def forward(self, inputs: dict[str, Tensor], present: Tensor | None = None,
                embedded: dict[str, Tensor] | None = None) -> ModelOutput:
        """``inputs`` maps modality → tensor; modalities missing from ``inputs`` (or masked off in
        ``present`` [B, M]) are treated as absent. ``embedded`` lets attribution methods pass text
        embeddings instead of token ids (token ids cannot take gradients)."""
        ref = next(iter(inputs.values()))
        b = ref.shape[0]
        avail = torch.tensor([m in inputs for m in self.modalities], device=ref.device)
        mask = avail.expand(b, -1).clone() if present is None else present.bool() & avail
        if self.training and self.modality_dropout > 0 and len(self.modalities) > 1:
            drop = torch.rand(mask.shape, device=ref.device) < self.modality_dropout
            keep = mask & ~drop
            # never drop every modality of a sample: fall back to its original mask
            mask = torch.where(keep.any(1, keepdim=True), keep, mask)
        feats, maps = {}, {}
        dim = self.classifier.in_features
        for m in self.modalities:
            if m in inputs:
                enc = self.encoders[m]
                if embedded is not None and m in embedded:
                    h, fm = enc.forward_embedded(embedded[m], inputs[m])
                else:
                    h, fm = enc(inputs[m])
            else:
                h, fm = ref.new_zeros(b, dim, dtype=torch.float32), []
            feats[m], maps[m] = h, fm
        stacked = torch.stack([feats[m] for m in self.modalities], dim=1)
        fused, alpha = self.fusion(stacked, mask)
        z = self.dropout(fused)
        return ModelOutput(
            logits=self.classifier(z), features=feats, fused=fused, attention=alpha,
            modalities=self.modalities, feature_maps=maps,
            aux_logits={t: head(z) for t, head in self.aux_heads.items()},
        )


def count_parameters(model: nn.Module) -> int:
    own = getattr(model, "parameter_count", None)  # a non-neural student (kdcore.models.tree) counts its own
    return int(own()) if callable(own) else sum(p.numel() for p in model.parameters())


def build_model(spec: ModelSpec, modalities: list[str], data) -> MultimodalNet:
    """Build a network for ``data`` (TensorData) seeing ``modalities``."""
    return MultimodalNet(spec, modalities, data.modalities, data.num_classes, data.aux_classes)
