"""The students (and teachers) of a sweep trained together (issue #13, item 3).

Within a seed, grid points whose varied fields are all ``distill.*`` (``grid.KD_ONLY``: the
temperature, the loss terms and weights, the weighting and temperature strategies) share the data,
the teacher, the students' initial weights and their data order. :func:`run_stacked_groups` sets
up one experiment per such point, for every seed it is given, then

1. trains the teachers that no earlier group shares — those of different seeds as one stacked
   model, each on its own seed's data, rows, order and dropout masks;
2. trains every student (each group's baseline and every point's KD student, of every seed) in as
   few stacked models as :func:`kdcore.train.stacked.stack_reason` allows: students that take the
   same number of steps with the same architecture stack together (the default preset's baseline
   sees only the labelled 10 % of the rows, so its three seeds form one stack and the twelve KD
   students of a 4-value × 3-seed sweep another);
3. lets each experiment run to its end, adopting the phases already trained: the after-phase
   metrics, the extra phases and the result are computed as in a run of its own.

A set that cannot be stacked trains one phase at a time, and its note says why. Every member
trains exactly as it would alone (:mod:`kdcore.train.stacked`), so stacking changes the wall time,
never the numbers (up to float rounding).

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
        self._set_up = False

    def setup(self) -> None:
        if not self._set_up:  # set up once, before the stack trains; run() then reuses it
            self._set_up = True
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
        if model is not cfg.model:  # the phase's own network gets the weights trained in the stack
            cfg.model.load_state_dict(model.state_dict())
            model = cfg.model
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


def _seeds_text(seeds: list[int]) -> str:
    seeds = sorted(set(seeds))
    return f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))


def _partition(items: list[tuple[Experiment, Any]]) -> list[list[tuple[Experiment, Any]]]:
    """``(owner, phase)`` pairs in sets that can train as one stack: each joins the first set whose
    first phase it can stack with (same architecture and number of steps; see ``stack_reason``)."""
    sets: list[list[tuple[Experiment, Any]]] = []
    for owner, cfg in items:
        for group in sets:
            lead, first = group[0]
            if not stack_reason([first, cfg], owner.spec.train, owner.device, [lead.data, owner.data]):
                group.append((owner, cfg))
                break
        else:
            sets.append([(owner, cfg)])
    return sets


def _train_sets(items: list[tuple[Experiment, Any]], what: str, stop: Callable[[], bool], stack: bool,
                notes: list[str] | None, seed_of: dict[int, int]) -> None:
    """Train the phases of ``items`` (as few stacks as they allow, or one at a time without
    ``stack``); each result goes to its owner's ``trained``; ``notes`` gets one line per set."""
    sets = _partition(items) if stack else [items]
    for group in sets:
        owners, cfgs = [o for o, _ in group], [c for _, c in group]
        lead = owners[0]
        label = f"{_seeds_text([seed_of[id(o)] for o in owners])}, {what}"
        if len(cfgs) > 1:
            try:
                results, how = train_group(cfgs, lead.data, lead.spec.train, lead.device, [o.emit for o in owners],
                                           stop, stack=stack, datas=[o.data for o in owners])
            except Diverged as exc:
                raise RuntimeError(f"{label}: run diverged: {exc}") from None
        else:
            results = [None]
            how = f"one at a time: {cfgs[0].name} alone (nothing it can stack with)"
        for owner, cfg, res in zip(owners, cfgs, results):
            if res is not None:  # (a phase alone trains in its own run, as usual)
                owner.trained[cfg.name] = (cfg.model, res, None)
        if notes is not None:
            notes.append(f"{label}: {how}")


def run_stacked_groups(groups: list[tuple[int, list[tuple[Any, ExperimentSpec, Any]]]],
                       should_stop: Callable[[], bool] | None = None, notes: list[str] | None = None,
                       stack: bool = True, callbacks: Callable[[], list[Callback]] | None = None,
                       ) -> Iterator[tuple[int, Any, Experiment, Any]]:
    """Train each ``(seed, group)``, a group being ``(point, spec, teacher key)`` triples of one seed
    that differ only in ``distill.*``, with teachers and students stacked (module docstring); yields
    ``(seed, point, experiment, result)`` per point as its run ends. ``notes`` gets one line per set
    of phases saying what was stacked, and one per group saying what was shared. Groups of a seed
    with equal teacher keys share the teacher. Raises ``StopRequested`` when stopped.
    ``callbacks()``: each point's experiment-level callbacks (a saved sweep's run store; never on
    the stacked phases, which would then train one at a time)."""
    new_callbacks = callbacks or list
    teachers: dict[Any, Experiment] = {}
    stop = should_stop or (lambda: False)
    built: list[tuple[int, list, StackMember, list[StackMember]]] = []
    seed_of: dict[int, int] = {}
    for seed, group in groups:  # every point's experiment; a group's lead trains or adopts the teacher
        t_key = (seed, group[0][2])
        lead = StackMember(group[0][1], teachers.get(t_key), stop, new_callbacks())
        members = [lead] + [StackMember(spec, lead, stop, new_callbacks()) for _, spec, _ in group[1:]]
        teachers.setdefault(t_key, lead)
        built.append((seed, group, lead, members))
        seed_of.update({id(m): seed for m in members})
    own_teachers = []
    for _, _, lead, _ in built:
        if lead.donor is None:
            lead.start()  # the run begins first: a stored run records its teacher
            lead.load_data()
            _, cfg = lead.teacher_phase()
            if cfg is not None:
                own_teachers.append((lead, cfg))
    if len(own_teachers) > 1:
        _train_sets(own_teachers, "teachers", stop, stack, notes, seed_of)
    for _, _, _, members in built:
        for m in members:
            m.setup()  # the lead takes its stacked teacher (or trains / adopts it); the others adopt the lead's
    students = []
    for _, _, lead, members in built:
        students.append((lead, lead.student_phase("baseline", {"ce": LossTerm(weight=1.0)})))
        students += [(m, m.student_phase("kd", m.spec.distill.losses)) for m in members]
    _train_sets(students, "students", stop, stack, notes, seed_of)
    for seed, group, lead, members in built:
        if notes is not None:
            notes.append(f"seed {seed}, {', '.join(str(p) for p, _, _ in group)}: teacher"
                         + (" (from an earlier group)" if lead.donor is not None else "")
                         + (" and baseline" if len(members) > 1 else "") + " shared by the group's points")
        for i, (m, (point, _, _)) in enumerate(zip(members, group)):
            if i > 0:  # the baseline is the lead's (trained in a stack or in the lead's run)
                m.trained["baseline"] = (lead.models["baseline"], lead.results["baseline"],
                                         lead.phase_extra.get("baseline", {}))
                m.share = {"teacher", "baseline"}
                m.adopted["baseline"] = lead.run_id
            res = m.run()
            yield seed, point, m, res
