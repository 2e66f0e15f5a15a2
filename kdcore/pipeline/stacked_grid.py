"""The students of one sweep seed trained together (issue #13, item 3).

Within a seed, grid points whose varied fields are all ``distill.*`` (``grid.KD_ONLY``: the
temperature, the loss terms and weights, the weighting and temperature strategies) share the data,
the teacher, the students' initial weights and their data order. :func:`run_stacked_groups` sets
up one experiment per such point, then trains the shared baseline (when it trains on the same rows
as the KD students) and every point's KD student as one stacked model
(:func:`kdcore.train.stacked.train_group`), and finally lets each experiment run to its end,
adopting the phases already trained: the after-phase metrics, the extra phases and the result are
computed as in a run of its own. A group that cannot be stacked (see
:func:`kdcore.train.stacked.stack_reason`) trains one phase at a time, and its note says why.

(``kdcore.pipeline.grid`` calls this module and hands it the grouped specs; this module does not
import ``grid``, so the two stay free of an import cycle.)
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from torch import nn

from kdcore.core.events import PhaseFinished
from kdcore.core.spec import ExperimentSpec, LossTerm
from kdcore.models import count_parameters
from kdcore.pipeline.experiment import Experiment
from kdcore.train.callbacks import Callback
from kdcore.train.stacked import stack_reason, train_group
from kdcore.train.trainer import Diverged, PhaseResult, PhaseRun


class StackMember(Experiment):
    """A grid point's experiment: the teacher may come from a donor of the same seed, and student
    phases may already be trained (in a stack) — ``trained[name] = (model, result, extra or None)``."""

    def __init__(self, spec: ExperimentSpec, teacher_donor: Experiment | None = None,
                 should_stop: Callable[[], bool] | None = None, callbacks: list[Callback] | tuple[Callback, ...] = ()):
        super().__init__(spec, callbacks=callbacks, should_stop=should_stop)
        self.donor = teacher_donor
        self.share: set[str] = {"teacher"} if teacher_donor is not None else set()
        self.trained: dict[str, tuple[nn.Module, PhaseResult, dict[str, float] | None]] = {}
        self.stacked_note = ""

    def setup(self) -> None:
        if self.data is None:  # set up once, before the stack trains; run() then reuses it
            self.start()  # the run begins first: a stored run records its teacher and stacked students
            super().setup()

    def _teacher(self) -> None:
        if self.donor is None:
            return super()._teacher()
        d = self.donor  # as grid._SharingExperiment adopts a shared teacher
        for name in d.results:
            if name.startswith("teacher") or name == "ensemble":
                self.adopt(name, d)
        self.teacher = d.teacher
        self.models["teacher"] = d.models["teacher"]

    def run_phase(self, cfg, train=None):
        if cfg.name not in self.trained or train is not None:  # (a tree phase is never taken from a stack)
            return super().run_phase(cfg, train)
        model, res, extra = self.trained[cfg.name]  # what Experiment.run_phase does after training
        self._phase = cfg.name
        self.record(cfg.name, res, model)
        if extra is None:  # the phase's on_phase_end callbacks, as after a phase trained here
            cfg.callbacks = [*cfg.callbacks, *self.callbacks]
            run = PhaseRun(cfg, model=model, context=self)
            run.result = res
            extra = {**(res.history[-1]["extra"] if res.history else {}), **self._phase_end(run)}
        else:  # computed once by the experiment that owns the phase
            self.add_phase_metrics(cfg.name, dict(extra))
        self.emit(PhaseFinished(cfg.name, res.best_epoch, res.val_acc, res.test_acc,
                                count_parameters(model), res.seconds, extra))
        return res


def run_stacked_groups(groups: list[list[tuple[Any, ExperimentSpec, Any]]], seed: int,
                       should_stop: Callable[[], bool] | None = None, notes: list[str] | None = None,
                       stack: bool = True, callbacks: Callable[[], list[Callback]] | None = None,
                       ) -> Iterator[tuple[Any, Experiment, Any]]:
    """Train each group of ``(point, spec, teacher key)`` (points of seed ``seed`` that differ only
    in ``distill.*``) with its students stacked; yields ``(point, experiment, result)`` per point as
    its run ends. ``notes`` gets one line per group saying what was stacked and what was shared.
    Points with equal teacher keys share the teacher. Raises ``StopRequested`` when stopped.
    ``callbacks()``: each point's experiment-level callbacks (a saved sweep's run store; never on
    the stacked phases, which would then train one at a time)."""
    new_callbacks = callbacks or list
    teachers: dict[Any, Experiment] = {}
    stop = should_stop or (lambda: False)
    for group in groups:
        t_key = group[0][2]
        lead = StackMember(group[0][1], teachers.get(t_key), stop, new_callbacks())
        members = [lead] + [StackMember(spec, lead, stop, new_callbacks()) for _, spec, _ in group[1:]]
        for m in members:
            m.setup()  # the lead trains (or adopts) the teacher; the others adopt the lead's
        teachers.setdefault(t_key, lead)
        base_cfg = lead.student_phase("baseline", {"ce": LossTerm(weight=1.0)})
        kd_cfgs = [m.student_phase("kd", m.spec.distill.losses) for m in members]
        with_baseline = not stack_reason([base_cfg, kd_cfgs[0]], lead.spec.train, lead.device)
        cfgs = [base_cfg, *kd_cfgs] if with_baseline else kd_cfgs
        owners = [lead, *members] if with_baseline else members
        label = f"seed {seed}, {', '.join(str(p) for p, _, _ in group)}"
        if len(cfgs) > 1:
            try:
                results, how = train_group(cfgs, lead.data, lead.spec.train, lead.device,
                                           [o.emit for o in owners], stop, stack=stack)
            except Diverged as exc:
                raise RuntimeError(f"{label}: run diverged: {exc}") from None
            for cfg, owner, res in zip(cfgs, owners, results):
                owner.trained[cfg.name] = (cfg.model, res, None)
            if not with_baseline:
                how += " (the baseline trains on other rows than the KD students: on its own)"
        else:
            how = "one at a time: one student only (the baseline trains on other rows)"
        shared = "teacher" + (" (from an earlier group)" if lead.donor is not None else "") + \
            (" and baseline" if len(members) > 1 else "") + " shared by the group's points"
        if notes is not None:
            notes.append(f"{label}: {how}; {shared}")
        for i, (m, (point, _, _)) in enumerate(zip(members, group)):
            m.stacked_note = how
            if i > 0:  # the baseline is the lead's (trained in the stack or in the lead's run)
                m.trained["baseline"] = (lead.models["baseline"], lead.results["baseline"],
                                         lead.phase_extra.get("baseline", {}))
                m.share = {"teacher", "baseline"}
                m.adopted["baseline"] = lead.run_id
            res = m.run()
            yield point, m, res
