"""What the registries hold, readable without the training stack: the names (and parameters) of
every dataset, encoder, fusion, loss, weighting, temperature schedule, extra phase and auxiliary
task, as registered by the code that implements them.

The spec validates against this catalog, so validating a YAML file, listing presets or printing
``--help`` imports no torch. The catalog (``catalog.json`` beside this file) is **generated** from
the live registries by ``python -m kdcore.pipeline.catalog --write`` — never edited by hand; a test
(``tests/test_catalog.py``) fails, naming that command, when a registered method is missing from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

CATALOG_FILE = Path(__file__).with_name("catalog.json")


@lru_cache(maxsize=1)
def catalog() -> dict[str, Any]:
    if not CATALOG_FILE.exists():  # only while the generator builds the first one
        return {s: {} for s in ("datasets", "aux_tasks", "encoders", "default_arch", "losses", "weightings",
                                "schedules", "phases")} | {"fusions": []}
    return json.loads(CATALOG_FILE.read_text(encoding="utf-8"))


def names(section: str) -> list[str]:
    """Registered names of one section (``losses``, ``weightings``, ``schedules``, ``phases``, …)."""
    return list(catalog()[section])


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset as the spec sees it: modalities and their kinds, noise knobs, class count."""

    name: str
    modalities: dict[str, str]  # name -> kind (image | spectrogram | tokens | vector)
    knobs: dict[str, tuple[float, float, str]]
    num_classes: int | None
    class_knob: tuple[str, int] | None = None

    def modality_names(self) -> list[str]:
        return list(self.modalities)

    def modality_kinds(self) -> dict[str, str]:
        return dict(self.modalities)

    def noise_knobs(self) -> dict[str, tuple[float, float, str]]:
        return dict(self.knobs)

    def class_count(self, noise: dict[str, float] | None = None) -> int | None:
        if self.class_knob is not None:
            knob, default = self.class_knob
            return int(round(float((noise or {}).get(knob, default))))
        return self.num_classes


def dataset_info(name: str, path: str | None = None) -> DatasetInfo:
    """The dataset a spec names; for ``custom`` its modalities are read from ``path`` (headers only).
    Raises ``ValueError`` with a field-naming message."""
    sets = catalog()["datasets"]
    if name not in sets:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(sets)}")
    entry = sets[name]
    knobs = {k: (float(lo), float(hi), meaning) for k, (lo, hi, meaning) in entry["noise_knobs"].items()}
    class_knob = tuple(entry["class_knob"]) if entry.get("class_knob") else None
    if name != "custom":
        return DatasetInfo(name, dict(entry["modalities"]), knobs, entry["num_classes"], class_knob)
    if not path:
        raise ValueError("data.path is required when data.dataset=custom (an image folder or a CSV manifest)")
    from kdcore.core.layout import DataImportError, layout

    try:
        _, mods = layout(path)
    except DataImportError as exc:
        raise ValueError(str(exc)) from None
    except OSError as exc:
        raise ValueError(f"data.path {path!r}: {exc}") from None
    return DatasetInfo(name, mods, knobs, None)


def encoder_archs() -> list[str]:
    return list(catalog()["encoders"])


def archs_by_kind() -> dict[str, tuple[str, ...]]:
    """Modality kind -> the encoder architectures that fit it (registration order)."""
    out: dict[str, list[str]] = {}
    for arch, kinds in catalog()["encoders"].items():
        for kind in kinds:
            out.setdefault(kind, []).append(arch)
    return {k: tuple(v) for k, v in out.items()}


def default_arch() -> dict[str, str]:
    return dict(catalog()["default_arch"])


def check_params(where: str, given: dict[str, Any], schema: dict[str, dict[str, Any]],
                 ordered: list[list[str]] | tuple[tuple[str, str], ...] = ()) -> None:
    """Check ``given`` against a method's parameter schema as the catalog records it
    (:func:`kdcore.core.params.params_schema`: name -> {default, min?, max?, gt?, lt?, choices?}) and
    its ``ordered`` pairs (``a < b``): unknown names, values out of range, values not among the
    choices and broken ``a < b`` rules raise ``ValueError`` naming the field."""
    from kdcore.core.params import in_range, range_text

    bad = sorted(set(given) - set(schema))
    if bad:
        raise ValueError(f"{where}: unknown {bad}; allowed: {', '.join(schema) or 'none'}")
    for key, value in given.items():
        rule = schema[key]
        if value is None and rule.get("default") is None:
            continue
        if "choices" in rule and value not in rule["choices"]:
            raise ValueError(f"{where}.{key}={value!r}; allowed: {', '.join(str(c) for c in rule['choices'])}")
        rng = range_text(rule)
        if rng is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not in_range(value, rule):
            raise ValueError(f"{where}.{key}={value!r}: allowed range {rng}")
    merged = {**{k: r.get("default") for k, r in schema.items()}, **given}
    for a, b in ordered:
        if merged[a] is not None and merged[b] is not None and not merged[a] < merged[b]:
            raise ValueError(f"{where}: {a} must be < {b}")
