"""Presets: YAML experiment specs in this folder, each with a description of what it shows."""

from __future__ import annotations

from pathlib import Path

from kdcore.spec import ExperimentSpec, SpecError

PRESET_DIR = Path(__file__).resolve().parent
# Display order: the default first.
ORDER = ["digits-av", "digits-crossmodal", "mfeat-crossmodal", "classic-kd"]
DEFAULT_PRESET = "digits-av"


class PresetError(SpecError):
    pass


def _discover() -> list[str]:
    names = [p.stem for p in PRESET_DIR.glob("*.yaml")]
    return [n for n in ORDER if n in names] + sorted(n for n in names if n not in ORDER)


PRESETS = _discover()


def load_preset(name: str) -> ExperimentSpec:
    if name not in PRESETS:
        raise PresetError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return ExperimentSpec.load(PRESET_DIR / f"{name}.yaml")
