"""Distillation losses, registered by name. Importing this package registers every method."""

from kdcore.methods.losses import feature, logit, multimodal, multitask  # noqa: F401  (registers)
from kdcore.methods.losses.base import LOSSES, DistillLoss, LossSetup, StepContext, register

__all__ = ["LOSSES", "DistillLoss", "LossSetup", "StepContext", "register"]
