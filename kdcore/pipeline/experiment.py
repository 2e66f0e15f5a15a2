"""An experiment: teacher → student baseline (no KD) → student + KD (→ extra phases).

* The teacher is trained with CE (or loaded from a safetensors checkpoint), then frozen: eval
  mode, ``requires_grad_(False)``, never in an optimiser.
* The baseline and the KD student start from the **same initial weights** and see the **same
  data order** (same seed), so the KD gain is the effect of the distillation terms alone.
* Each phase keeps its best-on-validation weights; the reported number is the **test accuracy
  of that checkpoint**.
* What reacts to the run is a :class:`~kdcore.train.callbacks.Callback` handed in by the caller
  (``callbacks=[...]``): per-phase metrics (built in), live attribution agreement, and the run
  store (``kdcore.store.recorder.RunRecorder``: run folder, registry, checkpoints, resume). The
  experiment itself writes no file.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from kdcore.data import TensorData, load_data
from kdcore.data.regimes import RegimePlan, plan_regime
from kdcore.train.cache import TeacherCache
from kdcore.core.events import (
    Event,
    PhaseFinished,
    RunDiverged,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    Subscriber,
)
from kdcore.train.callbacks import Callback, PhaseMetrics, merged_metrics, ordered
from kdcore.train.trainer import Diverged, PhaseConfig, PhaseResult, PhaseRun, StopRequested, train_phase
from kdcore.train.phases import ce_phase
from kdcore.methods.losses import LOSSES, DistillLoss, LossSetup
from kdcore.models import MultimodalNet, build_model, count_parameters
from kdcore.core.spec import ExperimentSpec
from kdcore.core.status import RunStatus
from kdcore.models.checkpoints import load_into
from kdcore.methods.strategies import TEMPERATURE_SCHEDULES, WEIGHTINGS

from kdcore.pipeline.recipes import EXTRA_PHASES  # noqa: E402  (name -> builder: ARD, pruning, ...)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available; use auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class ExperimentResult:
    status: RunStatus  # how the run ended: one of kdcore.core.status.DONE
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    message: str = ""
    run_dir: str | None = None
    teacher_cache: str = ""
    data: dict[str, Any] = field(default_factory=dict)  # test_size, num_classes, chance, regime
    # phases this run took from another run instead of training them (a sweep's shared teacher and
    # baseline): phase -> the id of the run that trained it (None: that run was not stored)
    adopted: dict[str, str | None] = field(default_factory=dict)

    @property
    def run_id(self) -> str | None:
        """The registry id of a stored run (its folder's name); None when nothing was stored."""
        return Path(self.run_dir).name if self.run_dir else None

    @property
    def kd_gain(self) -> float | None:
        if "kd" in self.phases and "baseline" in self.phases:
            return self.phases["kd"]["test_acc"] - self.phases["baseline"]["test_acc"]
        return None

    def to_dict(self) -> dict[str, Any]:
        out = {"status": self.status, "message": self.message, "run_dir": self.run_dir,
               "teacher_cache": self.teacher_cache, "kd_gain": self.kd_gain, "data": self.data,
               "phases": self.phases}
        if self.adopted:  # only in runs that share phases (a sweep's grid points)
            out["adopted"] = dict(self.adopted)
        return out


class Experiment:
    """One run of a spec: teacher, baseline, KD student, extra phases.

    ``subscribers`` receive every event; ``callbacks`` (:class:`~kdcore.train.callbacks.Callback`)
    see the run's and every phase's hooks, after the built-in per-phase metrics; ``should_stop``
    is checked between steps (default: ``stop_event.is_set``; the job manager passes one that
    also waits while paused)."""

    def __init__(self, spec: ExperimentSpec, subscribers: list[Subscriber] | None = None,
                 callbacks: list[Callback] | tuple[Callback, ...] = (), stop_event: threading.Event | None = None,
                 should_stop: Callable[[], bool] | None = None):
        self.spec = spec
        self.subscribers = list(subscribers or [])
        self.stop_event = stop_event or threading.Event()
        self.should_stop: Callable[[], bool] = should_stop or self.stop_event.is_set
        self.device = resolve_device(spec.train.device)
        self.data: TensorData | None = None
        self.teacher: MultimodalNet | None = None
        self.student_init: dict[str, torch.Tensor] | None = None
        self.models: dict[str, nn.Module] = {}
        self.results: dict[str, PhaseResult] = {}
        self.teacher_cache: TeacherCache | None = None
        self.regime: RegimePlan | None = None  # who sees which training labels (data.regime)
        self.error_traceback: str | None = None  # the crash's traceback when the run failed
        self._phase = "setup"
        from kdcore.train.efficiency import efficiency_metrics
        from kdcore.train.missing import missing_modality_metrics
        from kdcore.train.phase_fidelity import fidelity_after_phase

        # after every phase: missing-modality accuracy; efficiency (FLOPs, latency, size, speed-up);
        # fidelity (agreement, KL, ECE, per-class, omitted classes); then the caller's callbacks
        self.callbacks: list[Callback] = [PhaseMetrics(missing_modality_metrics), PhaseMetrics(efficiency_metrics),
                                          PhaseMetrics(fidelity_after_phase), *callbacks]
        self.phase_extra: dict[str, dict[str, float]] = {}  # extra metrics per phase, merged in the result
        # phases taken from another experiment instead of trained here (a sweep's shared teacher and
        # baseline, :meth:`adopt`): name -> the registry id of the run that trained it (None: not stored)
        self.adopted: dict[str, str | None] = {}
        self._started = self._ended = False  # :meth:`start` ran; ``on_run_end`` ran

    @property
    def run_dir(self) -> Path | None:
        """The run folder, when a callback stores the run (None otherwise)."""
        return next((loc for cb in self.callbacks if (loc := cb.run_location()) is not None), None)

    @property
    def run_id(self) -> str | None:
        """The registry id of a stored run (its folder's name)."""
        return self.run_dir.name if self.run_dir is not None else None

    def add_callback(self, callback: Callback) -> None:
        """Add a callback for the phases still to come (an extra phase's experiment-wide metrics)."""
        self.callbacks.append(callback)

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def record(self, name: str, result: PhaseResult, model: nn.Module) -> None:
        """Keep a phase's result and model (phases this experiment did not train itself: the ensemble)."""
        self.results[name] = result
        self.models[name] = model

    def adopt(self, name: str, donor: "Experiment") -> None:
        """Take the finished phase ``name`` (result, model, after-phase metrics) from ``donor``, an
        experiment that trained it on the same data with the same seed (a sweep's shared phases), and
        remember where it came from (:attr:`adopted`; ``adopted`` in the result)."""
        self.record(name, donor.results[name], donor.models[name])
        self.add_phase_metrics(name, dict(donor.phase_extra.get(name, {})))
        self.adopted[name] = donor.adopted.get(name) or donor.run_id

    def add_phase_metrics(self, name: str, metrics: dict[str, float]) -> None:
        """Extra metrics of phase ``name``, merged into its row of the result."""
        self.phase_extra.setdefault(name, {}).update(metrics)

    # ---- events ----------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        for sub in self.subscribers:
            sub(event)

    def phases(self) -> list[str]:
        ens = self.spec.distill.ensemble
        if ens is not None:  # multi-teacher: the member teachers train right after the main one
            from kdcore.pipeline.recipes.ensemble import member_phase_name

            members = [member_phase_name(m) for m in ens.members] if self.spec.train.teacher_epochs > 0 else []
            return ["teacher", *members, "ensemble", "baseline", "kd", *self.spec.distill.extra_phases]
        return ["teacher", "baseline", "kd", *self.spec.distill.extra_phases]

    # ---- building blocks ------------------------------------------------------------
    def new_student(self) -> MultimodalNet:
        student = build_model(self.spec.student, self.spec.student_modalities(), self.data)
        student.load_state_dict(self.student_init)
        return student.to(self.device)

    def build_losses(self, losses: dict[str, Any], student: nn.Module, epochs: int) -> dict[str, DistillLoss]:
        """Instantiate the spec's loss terms, sized from one probe batch of teacher and student outputs."""
        tr = self.data.split("train")
        rows = torch.arange(min(8, len(tr)))
        mods = sorted(set(self.spec.student_modalities()) | set(self.spec.teacher_modalities()))
        b = tr.batch(rows, mods).to(self.device)
        with torch.no_grad():
            was = student.training
            student.eval()
            s_probe = student({m: b.inputs[m] for m in self.spec.student_modalities()})
            student.train(was)
            t_probe = self.teacher({m: b.inputs[m] for m in self.spec.teacher_modalities()})
        setup = LossSetup(s_probe, t_probe, self.data.num_classes, epochs, dict(self.data.aux_classes))
        return {name: LOSSES[name](setup, **term.params).to(self.device) for name, term in losses.items()}

    def student_phase(self, name: str, losses: dict[str, Any], seed_offset: int = 1) -> PhaseConfig:
        spec = self.spec
        student = self.new_student()
        built = self.build_losses(losses, student, spec.train.student_epochs)
        weights = {k: v.weight for k, v in losses.items()}
        needs_teacher = any(type(l).needs_teacher for l in built.values())
        is_kd = needs_teacher
        weighting = WEIGHTINGS[spec.distill.weighting if is_kd else "fixed"](weights, **(
            spec.distill.weighting_params if is_kd else {}))
        schedule = TEMPERATURE_SCHEDULES[spec.distill.temperature_schedule if is_kd else "constant"](
            spec.distill.temperature, **(spec.distill.temperature_params if is_kd else {}))
        rows, labels = self.student_rows(needs_teacher)
        return PhaseConfig(
            name=name, model=student, modalities=spec.student_modalities(), losses=built, loss_weights=weights,
            weighting=weighting, schedule=schedule, epochs=spec.train.student_epochs, lr=spec.train.lr,
            seed=spec.data.seed + seed_offset, teacher=self.teacher if needs_teacher else None,
            teacher_modalities=spec.teacher_modalities() if needs_teacher else [],
            teacher_cache=self.teacher_cache if needs_teacher else None,
            train_rows=rows, train_labels=labels,
        )

    def student_rows(self, distils: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(train-split positions, labels) a student phase trains on under the data regime: a phase
        that distils gets the labelled part plus the transfer set, a label-only phase the labelled
        part; both see −1 for every unlabelled sample. (None, None) without a regime."""
        plan = self.regime
        if plan is None or not plan.active:
            return None, None
        return (plan.kd_rows if distils else plan.baseline_rows), plan.student_labels

    def teacher_labels(self) -> torch.Tensor | None:
        """The labels teachers train on (flipped ones under ``teacher_label_noise``; None: the data's)."""
        return self.regime.teacher_labels if self.regime is not None and self.regime.flipped else None

    # ---- phases -----------------------------------------------------------------------
    def run_phase(self, cfg: PhaseConfig, train: Callable[[Any, PhaseRun], PhaseResult] | None = None) -> PhaseResult:
        """Train phase ``cfg`` (or take it from a callback's ``load_phase``, as a resume does), then
        its ``on_phase_end`` metrics, then :class:`PhaseFinished`. ``train(cfg, run)`` replaces the
        network trainer (a tree student's phases); it leaves its model in ``run.model``."""
        self._phase = cfg.name
        cfg.callbacks = [*cfg.callbacks, *self.callbacks]  # the phase's own first, then the experiment's
        run = PhaseRun(cfg, context=self)
        done = next((r for cb in ordered(cfg.callbacks) if (r := cb.load_phase(run)) is not None), None)
        if done is not None:
            res = done
        elif train is not None:
            res = train(cfg, run)
        else:
            res = train_phase(cfg, self.data, self.spec.train, self.device, self.emit, self.should_stop, run)
        self.record(cfg.name, res, run.model)
        run.result = res
        extra = {**(res.history[-1]["extra"] if res.history else {}), **self._phase_end(run)}
        self.emit(PhaseFinished(cfg.name, res.best_epoch, res.val_acc, res.test_acc,
                                count_parameters(run.model), res.seconds, extra))
        return res

    def teacher_phase(self) -> tuple[MultimodalNet, PhaseConfig | None]:
        """The teacher network (its initial weights drawn from ``data.seed``) and its training phase
        (None when it is loaded from a checkpoint or trains no epoch); the data must be loaded."""
        spec = self.spec
        torch.manual_seed(spec.data.seed)
        teacher = build_model(spec.teacher, spec.teacher_modalities(), self.data).to(self.device)
        if spec.teacher.checkpoint or spec.train.teacher_epochs <= 0:
            return teacher, None
        return teacher, ce_phase("teacher", teacher, spec.teacher_modalities(), self.data,
                                 epochs=spec.train.teacher_epochs, lr=spec.train.teacher_lr or spec.train.lr,
                                 seed=spec.data.seed, device=self.device, train_labels=self.teacher_labels())

    def _teacher(self) -> None:
        spec = self.spec
        teacher, cfg = self.teacher_phase()
        if spec.teacher.checkpoint:
            load_into(teacher, spec.teacher.checkpoint)
            from kdcore.train.evaluate import evaluate

            va = evaluate(teacher, self.data.split("val"), spec.teacher_modalities(), device=self.device)
            te = evaluate(teacher, self.data.split("test"), spec.teacher_modalities(), device=self.device)
            res = PhaseResult("teacher", 0, va.acc, te.acc, 0.0, teacher.state_dict(), [])
            self.record("teacher", res, teacher)
            run = PhaseRun(None, name="teacher", model=teacher, context=self)
            run.result = res
            self.emit(PhaseFinished("teacher", 0, va.acc, te.acc, count_parameters(teacher), 0.0,
                                    {"loaded": 1.0, **self._phase_end(run)}))
        elif cfg is not None:
            self.run_phase(cfg)
        teacher.eval()
        teacher.requires_grad_(False)
        self.teacher = teacher
        self.models["teacher"] = teacher
        if spec.distill.ensemble is not None:  # multi-teacher: train the members, distil from the ensemble
            from kdcore.pipeline.recipes.ensemble import build_ensemble

            self.teacher = build_ensemble(self, teacher)

    def _phase_end(self, run: PhaseRun) -> dict[str, float]:
        """Every callback's ``on_phase_end`` metrics for ``run`` (the phase's own callbacks first)."""
        callbacks = run.callbacks if run.cfg is not None else ordered(self.callbacks)
        extra = merged_metrics(cb.on_phase_end(run) for cb in callbacks)
        self.add_phase_metrics(run.name, extra)
        return extra

    def load_data(self) -> None:
        """Load the data and plan its regime (who sees which label), once."""
        if self.data is not None:
            return
        spec = self.spec
        self._phase = "data"
        self.data = load_data(spec.data)
        regime = None if spec.data.regime.is_default() else spec.data.regime
        self.regime = plan_regime(regime, self.data.split("train").labels, self.data.num_classes, spec.data.seed)

    def setup(self) -> None:
        """Load data, train/load the teacher, draw the student's initial weights, build the cache."""
        spec = self.spec
        self.load_data()
        self._teacher()
        torch.manual_seed(spec.data.seed + 1)
        init = build_model(spec.student, spec.student_modalities(), self.data)
        self.student_init = {k: v.clone() for k, v in init.state_dict().items()}
        self.teacher_cache = TeacherCache.build(self.teacher, self.data.split("train"), spec.teacher_modalities(),
                                                self.device, enabled=spec.train.teacher_cache)

    def start(self) -> None:
        """Begin the run, once: every callback's ``on_run_start`` (the run store creates the run folder
        and subscribes to the events), then :class:`RunStarted`. :meth:`run` calls it; a caller that sets
        an experiment up before running it (a stacked sweep group, :mod:`kdcore.pipeline.stacked_grid`)
        calls it first, so what the set-up trains is stored with the run too."""
        if self._started:
            return
        self._started = True
        for cb in ordered(self.callbacks):  # e.g. the run store creates the run folder
            cb.on_run_start(self)
        self.emit(RunStarted(self.spec.name, self.phases(), str(self.run_dir) if self.run_dir else None))

    def run(self) -> ExperimentResult:
        spec = self.spec
        self.start()
        result = None
        try:
            self.setup()
            from kdcore.core.spec import LossTerm

            if spec.student.kind == "tree":  # gradient-boosted-tree students (kdcore.pipeline.tree_student)
                from kdcore.pipeline.tree_student import run_tree_phases

                run_tree_phases(self)
            else:
                self.run_phase(self.student_phase("baseline", {"ce": LossTerm(weight=1.0)}))
                self.run_phase(self.student_phase("kd", spec.distill.losses))
            for extra in spec.distill.extra_phases:
                self.run_phase(EXTRA_PHASES[extra](self))
            result = self._result(RunStatus.FINISHED)
            self.emit(RunFinished(result.to_dict()))
        except Exception as exc:  # a stop, a divergence or a crash in a phase ends this run only
            result = self._ended_by(exc)
        finally:
            self._end(result)
        return result

    def abandon(self, exc: BaseException, message: str = "") -> ExperimentResult | None:
        """End a run that :meth:`start` began but whose :meth:`run` will not come, because ``exc``
        stopped or broke the work it waited for (the stacked training of its sweep group): the result
        of the phases it has, its terminal event and every ``on_run_end`` (the run store writes
        ``result.json``). ``message`` replaces the failure's text. None, doing nothing, when the run
        never started or has ended already."""
        if not self._started or self._ended:
            return None
        result = self._ended_by(exc, message)
        self._end(result)
        return result

    def _ended_by(self, exc: BaseException, message: str = "") -> ExperimentResult:
        """The result of a run that ``exc`` ended (stopped, diverged or failed), its terminal event emitted."""
        spec = self.spec
        if isinstance(exc, StopRequested):
            result = self._result(RunStatus.STOPPED, "stopped by the user")
            self.emit(RunStopped(self._phase))
            return result
        if isinstance(exc, Diverged):
            result = self._result(RunStatus.DIVERGED, message or str(exc))
            self.emit(RunDiverged(exc.phase, exc.step, message or str(exc)))
            return result
        msg = message or f"{type(exc).__name__}: {exc}"
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            msg = (f"CUDA out of memory in phase {self._phase} with train.batch_size="
                   f"{spec.train.batch_size}: try a smaller batch size (e.g. {max(1, spec.train.batch_size // 2)})"
                   f", smaller models (width / feature_dim) or train.device=cpu")
        result = self._result(RunStatus.FAILED, msg)
        self.error_traceback = "".join(traceback.format_exception(exc))
        self.emit(RunFailed(self._phase, msg))
        return result

    def _end(self, result: ExperimentResult | None) -> None:
        """Every callback's ``on_run_end`` (the store last), even after one raised; a run that ended
        without a result (KeyboardInterrupt, SystemExit) is stored as interrupted."""
        self._ended = True
        self.final = result if result is not None else self._result(RunStatus.FAILED, "interrupted")
        failed = None
        for cb in ordered(self.callbacks):  # every one runs (the store last), even after one raised
            try:
                cb.on_run_end(self, self.final)
            except Exception as exc:  # noqa: BLE001 - re-raised below, once the store has written
                failed = failed or exc
        if failed is not None:
            raise failed

    def _result(self, status: RunStatus, message: str = "") -> ExperimentResult:
        phases = {}
        for name, res in self.results.items():
            model = self.models.get(name)
            phases[name] = {"test_acc": res.test_acc, "val_acc": res.val_acc, "best_epoch": res.best_epoch,
                            "params": count_parameters(model) if model is not None else None,
                            "seconds": round(res.seconds, 3),
                            **(res.history[-1]["extra"] if res.history else {}),
                            **self.phase_extra.get(name, {})}
        return ExperimentResult(status, phases, message, str(self.run_dir) if self.run_dir else None,
                                self.teacher_cache.describe() if self.teacher_cache else "", self._data_info(),
                                dict(self.adopted))

    def _data_info(self) -> dict[str, Any]:
        """What a verdict needs to know about the data: test-set size and chance level (the most
        frequent test class's share), and the regime in words."""
        if self.data is None:
            return {}
        test = self.data.split("test").labels
        counts = torch.bincount(test, minlength=self.data.num_classes)
        info: dict[str, Any] = {"test_size": int(test.numel()), "num_classes": int(self.data.num_classes),
                                "chance": float(counts.max()) / max(1, int(test.numel()))}
        if self.regime is not None and self.regime.active:
            info.update(regime=self.regime.describe(), labelled=self.regime.labelled, transfer=self.regime.transfer)
        return info
