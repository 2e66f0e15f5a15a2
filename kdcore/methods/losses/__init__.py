"""Distillation losses, registered by name. Importing this package imports every module in it, so
a new loss is one new file with one ``@register``-ed :class:`DistillLoss` subclass (then
``python -m kdcore.pipeline.catalog --write`` refreshes the generated catalog the spec reads)."""

import importlib
import pkgutil

from kdcore.methods.losses.base import LOSSES, DistillLoss, LossSetup, StepContext, register

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in {"base", "functional"} and not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["LOSSES", "DistillLoss", "LossSetup", "StepContext", "register"]
