"""Presets: YAML experiment specs in this folder, each with a description of what it shows."""

from __future__ import annotations

from pathlib import Path

from kdcore.core.spec import ExperimentSpec, SpecError

PRESET_DIR = Path(__file__).resolve().parent
# Display order: the default first.
ORDER = ["multiview-kd", "omitted-digit", "few-labels", "noisy-teacher", "mfh-gamma", "digits-av",
         "digits-crossmodal", "mfeat-crossmodal", "classic-kd"]
DEFAULT_PRESET = "multiview-kd"
MEASURED_FILE = PRESET_DIR / "measured.json"  # written by scripts/sweep_presets.py
LESSONS_FILE = PRESET_DIR / "_lessons.yaml"


class PresetError(SpecError):
    pass


def _discover() -> list[str]:
    names = [p.stem for p in PRESET_DIR.glob("*.yaml") if not p.stem.startswith("_")]
    return [n for n in ORDER if n in names] + sorted(n for n in names if n not in ORDER)


PRESETS = _discover()


def load_preset(name: str) -> ExperimentSpec:
    if name not in PRESETS:
        raise PresetError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return ExperimentSpec.load(PRESET_DIR / f"{name}.yaml")


def lessons() -> dict[str, dict]:
    """Per preset: ``group`` (helps | hurts | why | methods), ``claim``, ``look_at``, ``chart`` (the
    chart that carries the lesson) and optionally ``toggle`` (a setting that flips the lesson)."""
    import yaml

    return yaml.safe_load(LESSONS_FILE.read_text(encoding="utf-8")) or {}


def measured(entry: str) -> dict | None:
    """The preset's stored multi-seed result (``scripts/sweep_presets.py``), or None."""
    import json

    if not MEASURED_FILE.is_file():
        return None
    return json.loads(MEASURED_FILE.read_text(encoding="utf-8")).get(entry)


def measured_for(spec: ExperimentSpec, preset: str | None) -> dict | None:
    """The stored result that matches ``spec``: the preset's own, or one of its measured variants
    (e.g. ``few-labels · transfer: labelled``), compared on everything but the name and the seed."""
    import json

    if not preset or preset not in PRESETS or not MEASURED_FILE.is_file():
        return None
    table = json.loads(MEASURED_FILE.read_text(encoding="utf-8"))

    def key(s: ExperimentSpec) -> str:
        d = s.to_dict()
        d.pop("name", None)
        d.pop("description", None)
        d["data"].pop("seed", None)
        return json.dumps(d, sort_keys=True)

    want = key(spec)
    base = load_preset(preset)
    for entry in table.values():
        if entry.get("preset") != preset:
            continue
        candidate = base.with_overrides(entry.get("overrides") or []) if entry.get("overrides") else base
        if key(candidate) == want:
            return entry
    return None
