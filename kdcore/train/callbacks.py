"""The one hook protocol of the engine: :class:`Callback`, Lightning-style named hooks.

Everything that reacts to training — an extra phase's input transform (ARD's adversarial
examples), a pruning schedule, per-phase metrics, live attribution agreement, the run store's
checkpoints and run folder — is a ``Callback`` with some of these hooks (all are no-ops here)::

    on_run_start(experiment)                 the experiment starts (before data and the teacher)
    load_phase(run) -> PhaseResult | None    instead of training a phase, supply its finished result
    on_phase_start(run)                      optimiser, scheduler and data order built; may restore state
    on_before_forward(run, inputs, labels)   -> the inputs the student sees this step (default: unchanged)
    on_train_batch_end(run)                  after the optimiser step
    on_validation_end(run) -> metrics|None   after the epoch's validation: extra metrics for EpochMetrics
    on_epoch_end(run)                        the epoch is complete (best weights updated)
    on_phase_end(run) -> metrics|None        best weights loaded (also for phases supplied by load_phase)
    on_run_end(experiment, result)           the run ended, however it ended
    state_dict() / load_state_dict(state)    the callback's own state, saved in resume checkpoints
    run_location() -> Path | None            the run folder, for a callback that stores the run

The trainer (:func:`kdcore.train.trainer.train_phase`) calls the phase hooks of ``PhaseConfig.callbacks``;
the experiment calls the run hooks, ``load_phase`` and ``on_phase_end``. Callbacks run in ascending
:attr:`Callback.order`, then in the order they were added: the run store uses a high order so its
checkpoints see what every other callback did in the same epoch. Each callback owns its state:
resume saves ``state_dict()`` (tensors in safetensors, the rest as JSON) and hands it back through
``load_state_dict``, so nothing reads a callback's attributes from outside.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn


@dataclass
class PhaseResult:
    name: str
    best_epoch: int
    val_acc: float
    test_acc: float
    seconds: float
    best_state: dict[str, Tensor]
    history: list[dict] = field(default_factory=list)


class PhaseRun:
    """The state of one phase, handed to every :class:`Callback` hook (``cfg``: its
    :class:`~kdcore.train.trainer.PhaseConfig`, None for a phase that was not trained here).

    ``epoch`` is the 0-based epoch in progress (the one just finished in epoch-end hooks), ``step``
    the global step; ``model``, ``optimizer``, ``scheduler`` and ``order_gen`` (the data-order
    generator) exist from ``on_phase_start``. A callback that restores a checkpoint in
    ``on_phase_start`` sets ``start_epoch``, ``step``, the ``best_*`` fields, ``history`` and
    ``seconds_before``. ``context`` is whoever runs the phase (the experiment; None when
    :func:`train_phase` is called alone); ``result`` is set once the phase has its result."""

    def __init__(self, cfg: Any, name: str | None = None, model: nn.Module | None = None,
                 context: Any = None):
        self.cfg = cfg
        self.name = name or (cfg.name if cfg is not None else "")
        self.model = model if model is not None else (cfg.model if cfg is not None else None)
        self.context = context
        self.epoch, self.step, self.progress = 0, 0, 0.0
        self.start_epoch = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.order_gen: torch.Generator | None = None
        self.best_acc, self.best_epoch = -1.0, 0
        self.best_state: dict[str, Tensor] | None = None
        self.history: list[dict] = []
        self.seconds_before = 0.0  # training time spent before a resume
        self.started = time.time()
        self.result: PhaseResult | None = None

    @property
    def callbacks(self) -> list[Callback]:
        return ordered(self.cfg.callbacks) if self.cfg is not None else []

    def elapsed(self) -> float:
        """Seconds of training in this phase, including those before a resume."""
        return self.seconds_before + time.time() - self.started


class Callback:
    """Base class: override the hooks you need (see the module docstring)."""

    order: int = 0

    def on_run_start(self, experiment: Any) -> None:
        return None

    def load_phase(self, run: PhaseRun) -> PhaseResult | None:
        return None

    def on_phase_start(self, run: PhaseRun) -> None:
        return None

    def on_before_forward(self, run: PhaseRun, inputs: dict[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
        return inputs

    def on_train_batch_end(self, run: PhaseRun) -> None:
        return None

    def on_validation_end(self, run: PhaseRun) -> dict[str, float] | None:
        return None

    def on_epoch_end(self, run: PhaseRun) -> None:
        return None

    def on_phase_end(self, run: PhaseRun) -> dict[str, float] | None:
        return None

    def on_run_end(self, experiment: Any, result: Any) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def run_location(self) -> Path | None:
        return None


def ordered(callbacks: Iterable[Callback]) -> list[Callback]:
    """``callbacks`` by ascending :attr:`Callback.order`, ties in the given order."""
    return sorted(callbacks, key=lambda cb: cb.order)


def merged_metrics(results: Iterable[dict[str, float] | None]) -> dict[str, float]:
    """The extra metrics several hooks returned, merged left to right (None: none)."""
    out: dict[str, float] = {}
    for r in results:
        out.update(r or {})
    return out


class LambdaCallback(Callback):
    """A callback from plain functions, one per hook (as Keras' ``LambdaCallback``)::

        LambdaCallback(on_epoch_end=lambda run: print(run.name, run.epoch + 1))
    """

    def __init__(self, **hooks: Callable[..., Any]):
        unknown = sorted(set(hooks) - set(HOOKS))
        if unknown:
            raise ValueError(f"LambdaCallback: unknown hook(s) {unknown}; allowed: {', '.join(HOOKS)}")
        for name, fn in hooks.items():
            setattr(self, name, fn)


class PhaseMetrics(Callback):
    """``on_phase_end`` from a function ``fn(experiment, phase, model) -> metrics`` (the per-phase
    evaluations: missing-modality accuracy, efficiency, fidelity, robust accuracy)."""

    def __init__(self, fn: Callable[[Any, str, Any], dict[str, float] | None], phases: Iterable[str] | None = None):
        self.fn = fn
        self.phases = None if phases is None else set(phases)

    def on_phase_end(self, run: PhaseRun) -> dict[str, float] | None:
        if self.phases is not None and run.name not in self.phases:
            return None
        return self.fn(run.context, run.name, run.model)

    def __repr__(self) -> str:
        return f"PhaseMetrics({getattr(self.fn, '__name__', self.fn)!r})"


HOOKS = tuple(name for name, value in vars(Callback).items() if callable(value) and not name.startswith("_"))
