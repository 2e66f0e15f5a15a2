"""The loss contract. Every method is one :class:`DistillLoss` subclass, registered by name with
:func:`register`, built from a :class:`LossSetup` (probe outputs, so learnable parts such as
regressors can size themselves) and called uniformly::

    terms = loss(student_out, teacher_out, ctx)   # -> {"name" or "name/part": scalar tensor}

The trainer multiplies every returned term by the spec's weight for that loss (and by the
weighting strategy), sums them, and reports each term, so each one is plotted live.

A loss's hyper-parameters are its nested ``Params`` model (:class:`kdcore.core.params.MethodParams`:
defaults, ranges and descriptions in one place); ``self.params`` is the validated instance
(``self.params.alpha``) and ``cls.defaults`` the derived name -> default mapping the UI and CLI show.

``LOSSES`` is kept in a fixed order — by :data:`FAMILIES`, then each loss's ``order``, then its name —
so the catalog, the app and the CLI list losses the same way whichever module is imported first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from kdcore.core.params import MethodParams, attach_params, validate_params
from kdcore.models.output import ModelOutput

FAMILIES = ("label", "logit", "feature", "relation", "multimodal", "multitask")  # the listing order
LOSSES: dict[str, type["DistillLoss"]] = {}


def _sort_key(cls: type["DistillLoss"]) -> tuple[int, int, str]:
    return FAMILIES.index(cls.family), cls.order, cls.name


def register(cls: type["DistillLoss"]) -> type["DistillLoss"]:
    if cls.name in LOSSES:
        raise ValueError(f"loss {cls.name!r} registered twice")
    if cls.family not in FAMILIES:
        raise ValueError(f"loss {cls.name!r}: family {cls.family!r}; allowed: {', '.join(FAMILIES)}")
    ordered = sorted([*LOSSES.values(), cls], key=_sort_key)
    LOSSES.clear()
    LOSSES.update((c.name, c) for c in ordered)
    return cls


@dataclass
class LossSetup:
    student_probe: ModelOutput  # student output on a probe batch (shapes only)
    teacher_probe: ModelOutput | None  # teacher output on the same batch
    num_classes: int
    total_epochs: int
    aux_classes: dict[str, int] = field(default_factory=dict)


@dataclass
class StepContext:
    labels: Tensor  # [B]
    epoch: int  # 0-based epoch of the current phase
    total_epochs: int
    step: int  # global step in the phase
    temperature: Tensor | float  # current temperature (schedules / learnable T)
    aux: dict[str, Tensor] = field(default_factory=dict)  # auxiliary labels
    sample_weight: Tensor | None = None  # per-sample weights from the weighting strategy [B]
    inputs: dict[str, Tensor] = field(default_factory=dict)  # the batch inputs (for input-space methods)
    labelled: Tensor | None = None  # [B] bool: False for transfer-set samples (label −1); None = all labelled


class DistillLoss(nn.Module):
    name: ClassVar[str]
    summary: ClassVar[str]  # one line for `python -m kdcore methods`
    family: ClassVar[str]  # one of FAMILIES
    order: ClassVar[int] = 100  # position inside the family in listings (then the name)
    paper: ClassVar[str] = ""
    default_weight: ClassVar[float] = 1.0  # the spec weight when a spec names the loss without one
    needs_teacher: ClassVar[bool] = True
    # forward runs under torch.func.vmap over stacked students (kdcore.train.stacked): tensor ops on
    # its inputs only, no parameters, no Python branch on a tensor's value
    vmappable: ClassVar[bool] = False

    class Params(MethodParams):
        """No hyper-parameters."""

    defaults: ClassVar[dict[str, Any]] = {}  # derived from Params (name -> default); do not set by hand

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        attach_params(cls)

    def __init__(self, setup: LossSetup, **params: Any):
        super().__init__()
        self.params = validate_params(self.Params, params, f"loss {self.name!r}")
        # what this instance is applied to, in words (e.g. which feature pair and regressor); filled by
        # subclasses from the probe outputs, for the CLI / app to show next to the loss curves
        self.note: str = ""

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        raise TypeError(f"{type(self).__name__} must implement forward")
