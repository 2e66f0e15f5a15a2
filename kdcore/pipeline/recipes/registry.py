"""The registry of extra student phases (``distill.extra_phases``): name -> builder(experiment) -> PhaseConfig,
with each phase's one-line summary and its parameters as a pydantic ``Params`` model
(:class:`kdcore.core.params.MethodParams`: defaults, allowed ranges, descriptions, ``ordered`` rules).
Spec validation reads that model's record through the generated catalog, without torch.

A recipe module in this package calls :func:`register_phase`; the package imports every module in it,
so adding a phase recipe is one new file (see docs/architecture.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from kdcore.core.params import MethodParams, bounds, choices, validate_params
from kdcore.core.params import defaults as params_defaults

EXTRA_PHASES: dict[str, Callable[[Any], Any]] = {}  # name -> builder(experiment) -> PhaseConfig


class NoParams(MethodParams):
    """A phase without parameters."""


@dataclass(frozen=True)
class PhaseRecipe:
    name: str
    build: Callable[[Any], Any]
    summary: str = ""
    Params: type[MethodParams] = NoParams

    @property
    def defaults(self) -> dict[str, Any]:
        """Parameter name -> default."""
        return params_defaults(self.Params)

    def params(self, given: Mapping[str, Any] | None = None) -> MethodParams:
        """The phase's parameters from ``distill.phase_params.<name>`` (defaults filled in, checked)."""
        return validate_params(self.Params, given, f"phase_params.{self.name}", "")


RECIPES: dict[str, PhaseRecipe] = {}


def register_phase(name: str, build: Callable[[Any], Any], summary: str = "",
                   Params: type[MethodParams] = NoParams) -> None:
    """Register a phase recipe. Every parameter must declare its allowed range (``Field(ge=.., le=..)``)
    or choices (``Literal``), unless it is a flag (``bool``): a parameter without one is refused here."""
    if not (isinstance(Params, type) and issubclass(Params, MethodParams)):
        raise TypeError(f"phase {name!r}: Params must subclass kdcore.core.params.MethodParams")
    missing = sorted(key for key, info in Params.model_fields.items()
                     if info.annotation is not bool and not bounds(Params, key) and not choices(info.annotation))
    if missing:
        raise ValueError(f"phase {name!r}: no allowed range for parameter(s) {missing}")
    if name in RECIPES:
        raise ValueError(f"phase {name!r} registered twice")
    RECIPES[name] = PhaseRecipe(name, build, summary, Params)
    EXTRA_PHASES[name] = build


def phase_params(exp: Any, name: str) -> MethodParams:
    """The validated parameters of phase ``name`` for the experiment ``exp`` (its spec's
    ``distill.phase_params.<name>`` over the recipe's defaults)."""
    return RECIPES[name].params(exp.spec.distill.phase_params.get(name, {}))
