"""The student phases of a run whose student is a gradient-boosted-tree ensemble (``student.kind: tree``).

After :meth:`Experiment.setup` (data, the frozen neural teacher, its cache), this grows two LightGBM
students on the same train/validation/test split the neural students use:

* ``baseline`` — the tree fitted on the hard labels only (multiclass log-loss);
* ``kd`` — the tree fitted on the teacher's soft targets at ``distill.temperature`` with the spec's
  ``ce`` / ``kd`` weights (the soft cross-entropy objective of :mod:`kdcore.train.tree`).

Both are seeded alike (``data.seed + 1``) and early-stopped on validation accuracy; each phase reports the
same result row as a neural student (test accuracy of the best-on-validation round, agreement and KL with
the teacher, ECE, missing-modality accuracy, latency, size) through the experiment's ``on_phase_end``
callbacks, with the efficiency numbers measured the tree's way (:func:`kdcore.train.efficiency.tree_efficiency`).

Checkpoints (written by the run store, :class:`kdcore.store.recorder.RunRecorder`):
``checkpoints/<phase>.lgb.txt`` (LightGBM text) + ``<phase>.tree.json`` (layout and the phase's result),
never pickled. Resume: a finished tree phase is loaded from them (the store's ``load_phase``), not
regrown; a tree phase that was interrupted is regrown from round 0 (LightGBM is seeded and
deterministic, so it grows the same trees).
"""

from __future__ import annotations

from kdcore.train.evaluate import predict
from kdcore.train.trainer import PhaseResult
from kdcore.train.tree import TreePhaseConfig, train_tree_phase

TREE_PHASES = ("baseline", "kd")


def phase_config(exp, name: str) -> TreePhaseConfig:
    spec = exp.spec
    distils = name != "baseline"
    losses = spec.distill.losses
    ce = float(losses["ce"].weight) if "ce" in losses else 0.0
    kd = float(losses["kd"].weight) if "kd" in losses else 0.0
    rows, labels = exp.student_rows(distils and kd > 0)
    teacher_logits = None
    if distils and kd > 0:
        teacher_logits = predict(exp.teacher, exp.data.split("train"), spec.teacher_modalities(),
                                 device=exp.device).logits
    return TreePhaseConfig(name=name, modalities=spec.student_modalities(), tree=spec.student.tree,
                           seed=spec.data.seed + 1, ce_weight=ce if distils else 1.0,
                           kd_weight=kd if distils else 0.0, temperature=float(spec.distill.temperature),
                           teacher_logits=teacher_logits, train_rows=rows, train_labels=labels)


def grow(cfg: TreePhaseConfig, run) -> PhaseResult:
    """The trainer of a tree phase for :meth:`Experiment.run_phase`: grows the booster and hands the
    best-round model to the phase's callbacks as ``run.model``."""
    exp = run.context
    res, model = train_tree_phase(cfg, exp.data, exp.emit, exp.should_stop)
    run.model = model
    return res


def run_tree_phases(exp) -> None:
    """Grow (or, resuming, load through the run store's ``load_phase``) the baseline and KD tree
    students of ``exp`` (after its setup); each ends with the experiment's ``on_phase_end`` callbacks."""
    for name in TREE_PHASES:
        exp.run_phase(phase_config(exp, name), train=grow)


__all__ = ["TREE_PHASES", "grow", "phase_config", "run_tree_phases"]
