"""Phase recipes: how a phase beyond teacher → baseline → KD is built (ARD, pruning, ensembles).

Every module of this package is imported here, so a new recipe file registers itself."""

import importlib
import pkgutil

from kdcore.pipeline.recipes.registry import EXTRA_PHASES

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "registry":
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["EXTRA_PHASES"]
