"""Loss-weighting strategies and temperature schedules, registered by name.

A :class:`Weighting` turns the named loss terms into one total (and may learn parameters, e.g.
uncertainty weighting's log-variances) and may give per-sample weights (teacher confidence,
C2KD-style filtering). A :class:`TemperatureSchedule` gives T for the current step (it may be a
learnable parameter). Both report their current values every step so the app can plot them.

Each declares its parameters as a nested ``Params`` model (:class:`kdcore.core.params.MethodParams`),
like losses and phase recipes; ``self.params`` is the validated instance and ``cls.defaults`` the
derived name -> default mapping.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from kdcore.core.params import MethodParams, attach_params, validate_params
from kdcore.models.output import ModelOutput

WEIGHTINGS: dict[str, type["Weighting"]] = {}
TEMPERATURE_SCHEDULES: dict[str, type["TemperatureSchedule"]] = {}


def register_weighting(cls):
    WEIGHTINGS[cls.name] = cls
    return cls


def register_schedule(cls):
    TEMPERATURE_SCHEDULES[cls.name] = cls
    return cls


class _Parametrised(nn.Module):
    """A method whose hyper-parameters are its nested ``Params`` model."""

    class Params(MethodParams):
        """No parameters."""

    defaults: ClassVar[dict[str, Any]] = {}  # derived from Params (name -> default); do not set by hand

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        attach_params(cls)


class Weighting(_Parametrised):
    name: ClassVar[str]
    summary: ClassVar[str]

    def __init__(self, loss_weights: dict[str, float], **params: Any):
        super().__init__()
        self.loss_weights = dict(loss_weights)
        self.params = validate_params(self.Params, params, f"weighting {self.name!r}", "weighting_params.")

    def sample_weights(self, student: ModelOutput, teacher: ModelOutput | None, labels: Tensor,
                       temperature: Tensor | float) -> Tensor | None:
        """Per-sample weights [B] for the distillation terms, or None (all ones).

        The trainer hands them (as ``StepContext.sample_weight``) only to losses that use the
        teacher; label-only terms (CE) keep every sample at weight 1."""
        return None

    def distill_outputs(self, student: ModelOutput, teacher: ModelOutput | None,
                        labels: Tensor) -> tuple[ModelOutput, ModelOutput | None]:
        """The (student, teacher) outputs the distillation losses see; identity by default.
        (C2KD's non-target-only distillation masks the target logit here.)"""
        return student, teacher

    def combine(self, terms: dict[str, Tensor], owner: dict[str, str]) -> tuple[Tensor, dict[str, float]]:
        """Sum ``terms`` (term name → scalar); ``owner`` maps term → loss name. Returns the total
        and the effective weight of every term."""
        total = 0.0
        weights = {}
        for term, value in terms.items():
            w = self.loss_weights[owner[term]]
            weights[term] = w
            total = total + w * value
        return total, weights


@register_weighting
class FixedWeighting(Weighting):
    """L = Σ_k w_k L_k with the spec's fixed weights."""

    name = "fixed"
    summary = "fixed weights from the spec: L = Σ w_k L_k"


class TemperatureSchedule(_Parametrised):
    name: ClassVar[str]
    summary: ClassVar[str]

    def __init__(self, base: float, **params: Any):
        super().__init__()
        self.params = validate_params(self.Params, params, f"temperature schedule {self.name!r}",
                                      "temperature_params.")
        self.base = float(base)

    def value(self, progress: float) -> Tensor | float:
        """T at ``progress`` ∈ [0, 1] through the phase."""
        return self.base


@register_schedule
class ConstantTemperature(TemperatureSchedule):
    name = "constant"
    summary = "T stays at the spec's temperature"


@register_schedule
class LinearTemperature(TemperatureSchedule):
    """T(p) = T_start + p (T_end − T_start), T_start = spec temperature."""

    name = "linear"
    summary = "T moves linearly from the spec's temperature to `end`"

    class Params(MethodParams):
        end: float = Field(1.0, gt=0.0, le=100.0, description="T at the end of the phase")

    def value(self, progress: float) -> float:
        return self.base + progress * (float(self.params.end) - self.base)


@register_schedule
class CosineTemperature(TemperatureSchedule):
    """T(p) = T_end + ½ (T_start − T_end)(1 + cos π p)."""

    name = "cosine"
    summary = "T follows a half cosine from the spec's temperature to `end`"

    class Params(MethodParams):
        end: float = Field(1.0, gt=0.0, le=100.0, description="T at the end of the phase")

    def value(self, progress: float) -> float:
        end = float(self.params.end)
        return end + 0.5 * (self.base - end) * (1 + math.cos(math.pi * progress))


class _ReverseGrad(torch.autograd.Function):
    """Identity forward; the gradient is multiplied by −λ (gradient reversal layer)."""

    @staticmethod
    def forward(ctx, x: Tensor, lam: float) -> Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return -ctx.lam * grad, None


@register_schedule
class LearnableTemperature(TemperatureSchedule):
    """Curriculum temperature learned adversarially — CTKD (Li et al., AAAI 2023, "Curriculum
    Temperature for Knowledge Distillation").

    T = T_min + (T_max − T_min)·sigmoid(θ), initialised at the spec temperature. θ is optimised
    with the student but through a gradient-reversal layer scaled by λ: the student minimises the
    distillation loss while T *maximises* it (min_S max_T L). Plain minimisation over T would be
    wrong: T²·KL → 0 as T shrinks, so T would always collapse to T_min.
    """

    name = "learnable"
    summary = "CTKD: T learned adversarially (gradient reversal, maximises the KD loss) within [min, max]"

    class Params(MethodParams):
        ordered = (("min", "max"),)

        min: float = Field(0.5, gt=0.0, le=100.0, description="lowest T")
        max: float = Field(20.0, gt=0.0, le=100.0, description="highest T")
        lam: float = Field(1.0, alias="lambda", ge=0.0, le=1e3,
                           description="λ, scale of the reversed gradient that T receives")

    def __init__(self, base: float, **params: Any):
        super().__init__(base, **params)
        lo, hi = float(self.params.min), float(self.params.max)
        if not lo < self.base < hi:
            raise ValueError(f"learnable temperature: distill.temperature={self.base} must lie inside "
                             f"(min, max) = ({lo}, {hi})")
        frac = (self.base - lo) / (hi - lo)
        self.theta = nn.Parameter(torch.tensor(math.log(frac / (1.0 - frac))))

    def value(self, progress: float) -> Tensor:
        lo, hi = float(self.params.min), float(self.params.max)
        t = lo + (hi - lo) * torch.sigmoid(self.theta)
        return _ReverseGrad.apply(t, float(self.params.lam))
