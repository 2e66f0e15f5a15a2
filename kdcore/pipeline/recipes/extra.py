"""Extra student phases, registered in ``EXTRA_PHASES`` and run after the KD phase when named in
``distill.extra_phases``; their parameters come from ``distill.phase_params.<phase>``.

* ``ard`` — Adversarially Robust Distillation (Goldblum, Fowl, Feizi & Goldstein, AAAI 2020):
  a fresh student (same initial weights as the baseline) trains on PGD examples x' of its own
  (L∞ radius ``epsilon``, ``steps`` steps of ``step_size``, CE on the labels, from a random start)
  to match the teacher's soft labels on the **clean** input:

      L = kd_weight · T² · KL(softmax(z_T(x)/T) ‖ softmax(z_S(x')/T)) + ce_weight · CE(z_S(x), y)

  Token modalities are not perturbed (see :mod:`kdcore.methods.adversarial`). After the phase,
  robust accuracy under FGSM and PGD (``eval_steps`` steps) at ``epsilon`` on the test split is
  reported as ``fgsm_acc`` / ``pgd_acc`` for the teacher, the baseline, the KD student, the ARD
  student and every later phase.
* ``prune_kd`` / ``prune_ce`` — sparse distillation: a fresh student trained with the spec's
  distillation losses (``prune_kd``) or with CE only (``prune_ce``, pruning without KD) while it
  is magnitude-pruned (global L1 unstructured over all conv/linear weights, cubic schedule
  from ``start`` to ``end`` of training, every ``every`` steps) to ``sparsity``. The best-on-val
  checkpoint is chosen only among epochs that end at the target sparsity; the masks are then made
  permanent. Reports ``sparsity`` (zero fraction of the conv/linear weights) and
  ``model_sparsity`` (over all parameters).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn

from kdcore.core.params import MethodParams
from kdcore.pipeline.recipes.registry import phase_params, register_phase
from kdcore.train.callbacks import Callback, PhaseMetrics
from kdcore.train.trainer import PhaseConfig, PhaseRun
from kdcore.methods.losses import DistillLoss, StepContext
from kdcore.methods.losses import functional as LF
from kdcore.models.output import ModelOutput
from kdcore.core.spec import LossTerm
from kdcore.methods.strategies import TEMPERATURE_SCHEDULES, WEIGHTINGS
from kdcore.methods.adversarial import pgd_attack, robust_accuracy
from kdcore.methods.pruning import PruningSchedule, make_permanent, model_sparsity, sparsity



class ARDParams(MethodParams):
    """``distill.phase_params.ard``."""

    epsilon: float = Field(0.25, ge=0.0, le=10.0, description="L∞ radius of the PGD examples (and of the "
                                                             "robust-accuracy evaluation)")
    step_size: float = Field(0.1, ge=0.0, le=10.0, description="PGD step size in training")
    steps: int = Field(5, ge=0, le=100, description="PGD steps per training batch")
    eval_steps: int = Field(10, ge=1, le=200, description="PGD steps of the robust-accuracy evaluation")
    kd_weight: float = Field(0.9, ge=0.0, le=1e6, description="weight of the KD term on the adversarial inputs")
    ce_weight: float = Field(0.1, ge=0.0, le=1e6, description="weight of CE on the clean inputs")
    temperature: float | None = Field(None, ge=1e-3, le=100.0, description="T of the KD term "
                                                                           "(None: distill.temperature)")


class PruneParams(MethodParams):
    """``distill.phase_params.prune_kd`` / ``prune_ce``."""

    ordered = (("start", "end"),)

    sparsity: float = Field(0.8, ge=0.0, le=0.999, description="target zero fraction of the conv/linear weights")
    start: float = Field(0.0, ge=0.0, le=1.0, description="fraction of training where pruning starts")
    end: float = Field(0.6, ge=0.0, le=1.0, description="fraction of training where the target is reached")
    every: int = Field(10, ge=1, le=100000, description="prune every this many steps")


PHASE_SUMMARY = {
    "ard": "adversarially robust distillation (Goldblum et al. 2020): student on PGD examples matches "
           "the teacher's clean soft labels; FGSM/PGD robust accuracy for every phase",
    "prune_kd": "sparse distillation: KD while magnitude-pruning the student to a target sparsity",
    "prune_ce": "pruning without KD (CE only), the same schedule, for comparison with prune_kd",
}


# ---- ARD ---------------------------------------------------------------------------------
class CleanCrossEntropy(DistillLoss):
    """CE of the student on the clean inputs of the step (ARD's clean term); the adversarial
    inputs are what the trainer feeds the student, so this term runs the student once more on the
    clean batch the phase's :class:`AdversarialInputs` callback saved."""

    name = "ce_clean"
    summary = "cross-entropy of the student on the clean inputs (ARD)"
    family = "label"
    needs_teacher = False

    def __init__(self, model: nn.Module, store: dict[str, Any]):
        super().__init__(None)
        self._model = [model]  # a list, not a submodule: its parameters are already optimised
        self._store = store

    def forward(self, student: ModelOutput, teacher: ModelOutput | None, ctx: StepContext) -> dict[str, Tensor]:
        clean = self._model[0](self._store["clean"])
        return {"ce_clean": LF.cross_entropy(clean.logits, ctx.labels)}


def robust_metrics(exp, model: nn.Module, modalities: list[str], params: ARDParams) -> dict[str, float]:
    eps = float(params.epsilon)
    test = exp.data.split("test")
    seed = exp.spec.data.seed
    return {
        "robust_eps": eps,
        "fgsm_acc": robust_accuracy(model, test, modalities, eps, "fgsm", device=exp.device, seed=seed),
        "pgd_acc": robust_accuracy(model, test, modalities, eps, "pgd", steps=int(params.eval_steps),
                                   device=exp.device, seed=seed),
    }


def _model_modalities(exp, name: str, model: nn.Module) -> list[str]:
    if name == "teacher":
        return exp.spec.teacher_modalities()
    return list(getattr(model, "modalities", exp.spec.student_modalities()))


class AdversarialInputs(Callback):
    """ARD's input transform: the student trains on PGD examples of its own (L∞ radius ``eps``,
    ``steps`` steps of ``step_size`` from a random start); the clean batch is kept for the
    clean-CE term. The generator of the random starts is this callback's state, so a resumed ARD
    phase continues exactly."""

    def __init__(self, model: nn.Module, store: dict[str, Any], eps: float, step_size: float, steps: int,
                 seed: int):
        self.model, self.store = model, store
        self.eps, self.step_size, self.steps = eps, step_size, steps
        self.gen = torch.Generator().manual_seed(seed)

    def on_before_forward(self, run: PhaseRun, inputs: dict[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
        self.store["clean"] = inputs
        return pgd_attack(self.model, inputs, labels, self.eps, self.step_size, self.steps, True, self.gen)

    def state_dict(self) -> dict[str, Any]:
        return {"pgd_rng": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["pgd_rng"])


def build_ard(exp) -> PhaseConfig:
    spec = exp.spec
    p = phase_params(exp, "ard")
    T = float(p.temperature or spec.distill.temperature)
    cfg = exp.student_phase("ard", {"kd": LossTerm(weight=float(p.kd_weight))})
    store: dict[str, Any] = {}
    cfg.losses["ce_clean"] = CleanCrossEntropy(cfg.model, store)
    cfg.loss_weights = {"kd": float(p.kd_weight), "ce_clean": float(p.ce_weight)}
    cfg.weighting = WEIGHTINGS["fixed"](cfg.loss_weights)
    cfg.schedule = TEMPERATURE_SCHEDULES["constant"](T)
    cfg.callbacks.append(AdversarialInputs(cfg.model, store, float(p.epsilon), float(p.step_size),
                                           int(p.steps), spec.data.seed + 4242))

    # robust accuracy of the phases that already ran, then of this one and every later one
    wanted = {"teacher", "baseline", "kd", *spec.distill.extra_phases}
    for name, model in list(exp.models.items()):
        if name in wanted:
            exp.add_phase_metrics(name, robust_metrics(exp, model, _model_modalities(exp, name, model), p))

    def robust_after_phase(exp_, name: str, model: nn.Module) -> dict[str, float]:
        return robust_metrics(exp_, model, _model_modalities(exp_, name, model), p)

    exp.add_callback(PhaseMetrics(robust_after_phase, phases=wanted))
    return cfg


# ---- pruning -----------------------------------------------------------------------------
class Pruning(Callback):
    """Magnitude pruning during a phase: the schedule after every optimiser step, the sparsity in
    every epoch's metrics; at the phase's end the masks are made permanent (before the phase's
    evaluations, which see the final weights) and the pruned weights become its best state."""

    def __init__(self, schedule: PruningSchedule):
        self.schedule = schedule

    def on_train_batch_end(self, run: PhaseRun) -> None:
        self.schedule(run.step)

    def on_validation_end(self, run: PhaseRun) -> dict[str, float]:
        return {"sparsity": sparsity(self.schedule.targets)}

    def on_phase_end(self, run: PhaseRun) -> dict[str, float]:
        make_permanent(self.schedule.targets)
        run.result.best_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
        return {"sparsity": sparsity(self.schedule.targets), "model_sparsity": model_sparsity(run.model)}


def _build_prune(exp, name: str, losses: dict[str, LossTerm]) -> PhaseConfig:
    p = phase_params(exp, name)
    cfg = exp.student_phase(name, losses)
    n = len(exp.data.split("train"))
    bs = min(exp.spec.train.batch_size, n)
    spe = (n + bs - 1) // bs
    schedule = PruningSchedule(cfg.model, float(p.sparsity), cfg.epochs * spe, float(p.start),
                               float(p.end), int(p.every))
    cfg.callbacks.append(Pruning(schedule))
    cfg.min_best_epoch = min(cfg.epochs, schedule.first_full_epoch(spe))
    return cfg


def build_prune_kd(exp) -> PhaseConfig:
    return _build_prune(exp, "prune_kd", exp.spec.distill.losses)


def build_prune_ce(exp) -> PhaseConfig:
    return _build_prune(exp, "prune_ce", {"ce": LossTerm(weight=1.0)})


for _name, _build, _params in (("ard", build_ard, ARDParams), ("prune_kd", build_prune_kd, PruneParams),
                               ("prune_ce", build_prune_ce, PruneParams)):
    register_phase(_name, _build, PHASE_SUMMARY[_name], _params)
