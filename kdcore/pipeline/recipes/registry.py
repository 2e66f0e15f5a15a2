"""The registry of extra student phases (``distill.extra_phases``): name -> builder(experiment) -> PhaseConfig,
with each phase's one-line summary, parameter defaults and allowed ranges (spec validation reads them
through the generated catalog).

A recipe module in this package calls :func:`register_phase`; the package imports every module in it,
so adding a phase recipe is one new file (see docs/architecture.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

EXTRA_PHASES: dict[str, Callable[[Any], Any]] = {}  # name -> builder(experiment) -> PhaseConfig


@dataclass(frozen=True)
class PhaseRecipe:
    name: str
    build: Callable[[Any], Any]
    summary: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # parameter -> default
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # parameter -> allowed [low, high]


RECIPES: dict[str, PhaseRecipe] = {}


def register_phase(name: str, build: Callable[[Any], Any], summary: str = "",
                   params: dict[str, Any] | None = None, ranges: dict[str, tuple[float, float]] | None = None) -> None:
    params, ranges = dict(params or {}), dict(ranges or {})
    missing = sorted(set(params) - set(ranges))
    if missing:
        raise ValueError(f"phase {name!r}: no allowed range for parameter(s) {missing}")
    if name in RECIPES:
        raise ValueError(f"phase {name!r} registered twice")
    RECIPES[name] = PhaseRecipe(name, build, summary, params, ranges)
    EXTRA_PHASES[name] = build
