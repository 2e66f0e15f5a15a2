"""Build ``kdcore/core/catalog.json`` from the live registries (see :mod:`kdcore.core.catalog`).

    python -m kdcore.pipeline.catalog --write    # after registering a dataset, encoder, loss, …
    python -m kdcore.pipeline.catalog --check    # exit 1 when the file is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kdcore.core.catalog import CATALOG_FILE
from kdcore.core.params import MethodParams, params_schema


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _params(model: type[MethodParams]) -> dict[str, Any]:
    """A method's ``params`` record (and its ``ordered`` rules, when it has any) from its Params model."""
    out: dict[str, Any] = {"params": _jsonable(params_schema(model))}
    if model.ordered:
        out["ordered"] = [list(pair) for pair in model.ordered]
    return out


def build_catalog() -> dict[str, Any]:
    from kdcore.data import DATASETS
    from kdcore.data.tasks import AUX_TASKS
    from kdcore.methods.losses import LOSSES
    from kdcore.methods.strategies import TEMPERATURE_SCHEDULES, WEIGHTINGS
    from kdcore.models.encoders import DEFAULT_FOR, ENCODER_KINDS
    from kdcore.models.fusion import FUSIONS
    from kdcore.pipeline.recipes.registry import RECIPES

    datasets = {}
    for name, cls in DATASETS.items():
        datasets[name] = {
            "modalities": {} if name == "custom" else cls.modality_kinds(),
            "noise_knobs": {k: list(v) for k, v in cls.noise_knobs().items()},
            "num_classes": cls.NUM_CLASSES,
            "class_knob": list(cls.CLASS_KNOB) if cls.CLASS_KNOB else None,
        }
    # every method's parameters come from its pydantic Params model: default, min/max (gt/lt), choices,
    # description, and the `ordered` (a < b) rules — what kdcore.core.catalog.check_params checks
    losses = {name: {"summary": cls.summary, "family": cls.family, "default_weight": cls.default_weight,
                     "needs_teacher": cls.needs_teacher, **_params(cls.Params)}
              for name, cls in LOSSES.items()}
    strategies = lambda reg: {n: {"summary": c.summary, **_params(c.Params)} for n, c in reg.items()}  # noqa: E731
    import kdcore.pipeline.recipes  # noqa: F401  (every recipe module registers itself)

    phases = {name: {"summary": r.summary, **_params(r.Params)} for name, r in RECIPES.items()}
    return {
        "_generated_by": "python -m kdcore.pipeline.catalog --write (do not edit by hand)",
        "datasets": datasets,
        "aux_tasks": {k: list(v) for k, v in AUX_TASKS.items()},
        "encoders": {k: list(v) for k, v in ENCODER_KINDS.items()},
        "default_arch": dict(DEFAULT_FOR),
        "fusions": list(FUSIONS),
        "losses": losses,
        "weightings": strategies(WEIGHTINGS),
        "schedules": strategies(TEMPERATURE_SCHEDULES),
        "phases": phases,
    }


def render() -> str:
    return json.dumps(build_catalog(), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help="rewrite kdcore/core/catalog.json")
    p.add_argument("--check", action="store_true", help="exit 1 when catalog.json is out of date")
    args = p.parse_args(argv)
    text = render()
    if args.write:
        CATALOG_FILE.write_text(text, encoding="utf-8")
        print(f"wrote {CATALOG_FILE}")
        return 0
    current = CATALOG_FILE.read_text(encoding="utf-8") if CATALOG_FILE.exists() else ""
    if current != text:
        print(f"{CATALOG_FILE} is out of date: run python -m kdcore.pipeline.catalog --write", file=sys.stderr)
        return 1
    print("catalog up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
