"""Bundled datasets, registered by name. ``load_data(spec.data)`` returns :class:`TensorData`."""

from __future__ import annotations

from functools import lru_cache

from kdcore.data.base import Batch, ModalityInfo, MultimodalDataset, Split, TensorData
from kdcore.data.digits_av import DigitsAV
from kdcore.data.mfeat import MFeat
from kdcore.data.mfh_gauss import MFHGauss
from kdcore.data.mnist import MNIST5k

from kdcore.data.custom import CustomDataset  # noqa: E402  (your own data: data.dataset=custom + data.path)

DATASETS: dict[str, type[MultimodalDataset]] = {d.name: d for d in (DigitsAV, MFeat, MNIST5k, CustomDataset)}
DATASETS[MFHGauss.name] = MFHGauss  # synthetic MFH Gaussian task (kdcore.data.mfh_gauss)


def _key(spec) -> str:
    return spec.model_dump_json()


@lru_cache(maxsize=8)
def _load_cached(key: str):
    from kdcore.core.spec import DataSpec

    spec = DataSpec.model_validate_json(key)
    return DATASETS[spec.dataset]().load(spec)


def load_data(spec) -> TensorData:
    """Load (and memoise: the same DataSpec gives the same tensors) a bundled dataset."""
    return _load_cached(_key(spec))


__all__ = ["DATASETS", "Batch", "ModalityInfo", "MultimodalDataset", "Split", "TensorData", "load_data"]
