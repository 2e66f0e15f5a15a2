"""The registry of extra student phases (``distill.extra_phases``): name -> builder(experiment) -> PhaseConfig.

A recipe module in this package registers its builders here; the package imports every module in
it, so adding a phase recipe is one new file (see docs/architecture.md)."""

from __future__ import annotations

from typing import Any, Callable

EXTRA_PHASES: dict[str, Callable[[Any], Any]] = {}  # name -> builder(experiment) -> PhaseConfig
