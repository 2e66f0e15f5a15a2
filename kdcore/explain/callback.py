"""A training callback that tracks teacher–student attribution agreement during training.

Pass it to the experiment (``Experiment(spec, callbacks=[AgreementCallback()])``) or to the job
manager (``JobManager.submit(spec, callbacks=[AgreementCallback()])``). After every epoch of a
student phase (baseline, kd, extra phases) it attributes a small fixed probe set of the
**validation** split — the true class, on eval-mode deep copies of teacher and student, never the
training instance — and emits an
:class:`~kdcore.core.events.AttributionSnapshot` with the mean Spearman ρ and top-k overlap per
shared modality and the per-modality shares of |attribution|. The teacher is frozen, so its
attribution is computed once per experiment and reused.
"""

from __future__ import annotations

from kdcore.core.events import AttributionSnapshot
from kdcore.explain.attribution import Attribution, AttributionParams, attribute
from kdcore.explain.probe import compare, probe_rows
from kdcore.train.callbacks import Callback


class AgreementCallback(Callback):
    """At the end of an epoch (``on_epoch_end``); cheap defaults: IG with 16 steps on 16 samples."""

    def __init__(self, method: str = "ig", samples: int | None = 16, steps: int = 16, k_frac: float = 0.1,
                 split: str = "val", every: int = 1):
        self.method = method
        self.samples = samples
        self.params = AttributionParams(steps=steps).check()
        self.k_frac = k_frac
        self.split = split
        self.every = max(1, int(every))
        self._teacher: dict[int, Attribution] = {}  # id(experiment) -> teacher attribution on the probe

    def on_epoch_end(self, run) -> None:
        experiment, phase, epoch, model = run.context, run.name, run.epoch + 1, run.model
        teacher = experiment.teacher if experiment is not None else None
        if phase == "teacher" or teacher is None or experiment.data is None:
            return
        if epoch % self.every and epoch != experiment.spec.train.student_epochs:
            return
        split = experiment.data.split(self.split)
        n = self.samples if self.samples is not None else experiment.spec.train.probe_samples
        if n <= 0:
            return
        rows = probe_rows(split, n, experiment.spec.data.seed)
        key = id(experiment)
        t_attr = self._teacher.get(key)
        if t_attr is None:
            mods = sorted(set(teacher.modalities) | set(model.modalities))
            b = split.batch(rows, mods)
            self._teacher.clear()  # keep only the current experiment's
            t_attr = self._teacher[key] = attribute(teacher, b.inputs, self.method, b.labels, self.params)
        cmp = compare(teacher, model, split, rows, self.method, self.params, self.k_frac, teacher_attr=t_attr)
        mean = cmp.agreement.mean()
        experiment.emit(AttributionSnapshot(
            phase=phase, epoch=int(epoch), method=self.method, modalities=list(cmp.agreement.modalities),
            spearman={m: v["spearman"] for m, v in mean.items()}, topk={m: v["topk"] for m, v in mean.items()},
            student_shares=cmp.student.mean_shares(), teacher_shares=cmp.teacher.mean_shares(),
            samples=int(len(rows)), k_frac=self.k_frac,
        ))


def agreement_history(events: list) -> dict[str, list[dict]]:
    """``{phase: [AttributionSnapshot dict, ...]}`` sorted by epoch (dicts or event objects)."""
    out: dict[str, dict[int, dict]] = {}
    for ev in events:
        d = ev if isinstance(ev, dict) else ev.to_dict()
        if d.get("kind") == "AttributionSnapshot":
            out.setdefault(d["phase"], {})[int(d["epoch"])] = d
    return {p: [v[e] for e in sorted(v)] for p, v in out.items()}
