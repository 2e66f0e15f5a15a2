"""Bundled datasets, registered by name. ``load_data(spec.data)`` returns :class:`TensorData`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from kdcore.core.catalog import dataset_info
from kdcore.core.layout import _modality_name
from kdcore.data.base import Batch, ModalityInfo, MultimodalDataset, Split, TensorData
from kdcore.data.custom import CustomDataset  # your own data: data.dataset=custom + data.path
from kdcore.data.digits_av import DigitsAV
from kdcore.data.mfeat import MFeat
from kdcore.data.mfh_gauss import MFHGauss
from kdcore.data.mnist import MNIST5k
from kdcore.data.moving_digits import MovingDigits

DATASETS: dict[str, type[MultimodalDataset]] = {d.name: d for d in (DigitsAV, MFeat, MNIST5k, CustomDataset)}
DATASETS[MFHGauss.name] = MFHGauss  # synthetic MFH Gaussian task (kdcore.data.mfh_gauss)
DATASETS[MovingDigits.name] = MovingDigits  # video: moving MNIST digits + speech (kdcore.data.moving_digits)


def dataset_class(name: str, path: str | None = None) -> type[MultimodalDataset]:
    """The dataset class a spec names; for ``custom`` a subclass whose modalities are read from
    ``path`` (headers only). Raises ``ValueError`` with a field-naming message."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if name != "custom":
        return DATASETS[name]  # data.path is ignored for bundled datasets (the app may keep it around)
    mods = dataset_info(name, path).modalities  # the source's layout, headers only; field-naming errors
    return type("CustomDataset_" + _modality_name(Path(path).name), (CustomDataset,),
                {"MODALITIES": mods, "PATH": str(path)})


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


__all__ = ["DATASETS", "Batch", "ModalityInfo", "MultimodalDataset", "Split", "TensorData", "dataset_class",
           "load_data"]
