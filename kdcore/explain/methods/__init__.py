"""The attribution methods, one module each: every module defines one
:class:`~kdcore.explain.attribution.AttributionMethod` subclass decorated with
:func:`~kdcore.explain.attribution.register_attribution`.

This package imports every module in it (modules whose name starts with ``_`` excepted), so a new
method is one new file here and nothing else: it appears in ``ATTRIBUTIONS``, ``METHODS``, the app's
method box, the CLI and ``attribute(..., method=name)``.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
