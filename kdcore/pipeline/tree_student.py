"""The student phases of a run whose student is a gradient-boosted-tree ensemble (``student.kind: tree``).

After :meth:`Experiment.setup` (data, the frozen neural teacher, its cache), this grows two LightGBM
students on the same train/validation/test split the neural students use:

* ``baseline`` — the tree fitted on the hard labels only (multiclass log-loss);
* ``kd`` — the tree fitted on the teacher's soft targets at ``distill.temperature`` with the spec's
  ``ce`` / ``kd`` weights (the soft cross-entropy objective of :mod:`kdcore.train.tree`).

Both are seeded alike (``data.seed + 1``) and early-stopped on validation accuracy; each phase reports the
same result row as a neural student (test accuracy of the best-on-validation round, agreement and KL with
the teacher, ECE, missing-modality accuracy, latency, size) through the experiment's ``after_phase``
callbacks, with the efficiency numbers measured the tree's way (:func:`tree_efficiency`).

Checkpoints: ``checkpoints/<phase>.lgb.txt`` (LightGBM text) + ``<phase>.tree.json`` (layout and the phase's
result), never pickled. Resume: a finished tree phase is loaded from them, not regrown; a tree phase that
was interrupted is regrown from round 0 (LightGBM is seeded and deterministic, so it grows the same trees).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kdcore.core.events import PhaseFinished
from kdcore.models.tree import TreeStudent, features_of, has_tree_checkpoint
from kdcore.train.evaluate import predict
from kdcore.train.trainer import PhaseResult
from kdcore.train.tree import TreePhaseConfig, train_tree_phase

TREE_PHASES = ("baseline", "kd")


def _leaf_depths(tree: dict) -> dict[int, int]:
    """leaf_index -> depth of a tree from ``Booster.dump_model()``."""
    out: dict[int, int] = {}
    stack = [(tree["tree_structure"], 0)]
    while stack:
        node, d = stack.pop()
        if "leaf_index" in node or "split_index" not in node:
            out[int(node.get("leaf_index", 0))] = d
        else:
            stack += [(node["left_child"], d + 1), (node["right_child"], d + 1)]
    return out


def comparisons_per_sample(model: TreeStudent, x: np.ndarray) -> float:
    """Mean number of split comparisons (one float compare each) a sample of ``x`` goes through."""
    leaves = np.asarray(model.booster.predict(x, pred_leaf=True, num_threads=1)).reshape(x.shape[0], -1)
    depths = [_leaf_depths(t) for t in model.booster.dump_model()["tree_info"]]
    total = sum(depths[j][int(leaf)] for row in leaves for j, leaf in enumerate(row))
    return total / max(1, x.shape[0])


def tree_efficiency(exp, phase: str, model: TreeStudent) -> dict[str, float]:
    """The efficiency keys of :mod:`kdcore.train.efficiency` for a tree student: ``flops`` = split comparisons
    per sample (a tree does no multiply-adds), CPU latency at batch 1 and per sample at batch 64 (median,
    one thread, the same timer), ``size_bytes`` = bytes of the LightGBM text model, and the ratios to the
    teacher (``compression`` from the learned-number count, :meth:`TreeStudent.parameter_count`)."""
    from kdcore.train.efficiency import _inputs, latency_ms, measure_model, relative

    memo = exp.__dict__.setdefault("_tree_teacher_measure", {})
    if "t" not in memo:
        memo["t"] = measure_model(exp.teacher, exp.data, exp.spec.teacher_modalities())
    mods = list(model.modalities)
    x1, x64 = _inputs(exp.data, mods, 1), _inputs(exp.data, mods, 64)
    mine = {"params": float(model.parameter_count()),
            "flops": comparisons_per_sample(model, features_of(x64, model.modalities, model.widths)),
            "latency_ms_b1": latency_ms(model, x1, 10), "latency_ms_b64": latency_ms(model, x64, 3) / 64,
            "size_bytes": float(model.size_bytes())}
    out = {k: v for k, v in mine.items() if k != "params"}
    out.update(relative(mine, memo["t"]))
    out.update({f"tree_{k}": float(v) for k, v in model.tree_stats().items()})
    return out


def _use_tree_efficiency(exp) -> None:
    from kdcore.train.efficiency import efficiency_metrics

    def efficiency(e, name, model):
        return tree_efficiency(e, name, model) if isinstance(model, TreeStudent) else efficiency_metrics(e, name, model)

    exp.after_phase = [efficiency if cb is efficiency_metrics else cb for cb in exp.after_phase]


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


def _result_meta(res: PhaseResult) -> dict[str, Any]:
    return {"best_epoch": res.best_epoch, "val_acc": res.val_acc, "test_acc": res.test_acc,
            "seconds": res.seconds, "history": res.history}


def load_finished_tree(run_dir, name: str) -> tuple[PhaseResult, TreeStudent] | None:
    """A finished tree phase of a run folder (model + its stored result), or None."""
    ck = run_dir / "checkpoints"
    if not has_tree_checkpoint(ck, name):
        return None
    model = TreeStudent.load(ck, name)
    r = model.info.get("result")
    if not r:
        return None
    return PhaseResult(name, r["best_epoch"], r["val_acc"], r["test_acc"], r["seconds"], {}, r["history"]), model


def run_tree_phases(exp) -> None:
    """Grow (or, resuming, load) the baseline and KD tree students of ``exp`` (after its setup)."""
    _use_tree_efficiency(exp)
    for name in TREE_PHASES:
        exp._phase = name
        done = load_finished_tree(exp.run_dir, name) if exp.resumer is not None and exp.run_dir else None
        if done is None:
            res, model = train_tree_phase(phase_config(exp, name), exp.data, exp.emit, exp.should_stop)
        else:
            res, model = done
        exp.results[name] = res
        exp.models[name] = model
        extra = {**(res.history[-1]["extra"] if res.history else {}), **exp._after_phase(name, model)}
        exp.emit(PhaseFinished(name, res.best_epoch, res.val_acc, res.test_acc, model.parameter_count(),
                               res.seconds, extra))
        if exp.run_dir is not None and done is None:
            model.info["result"] = _result_meta(res)
            model.save(exp.run_dir / "checkpoints", name)


__all__ = ["TREE_PHASES", "run_tree_phases", "tree_efficiency", "load_finished_tree", "comparisons_per_sample"]
