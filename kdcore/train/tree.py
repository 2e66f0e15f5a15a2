"""Grow a gradient-boosted-tree student (LightGBM) on hard labels or on a frozen teacher's soft targets.

**Objective.** One multiclass booster (``num_class`` trees per round) with a *custom soft cross-entropy
objective*, the same loss the neural KD phase minimises (Hinton, Vinyals & Dean 2015, "Distilling the
Knowledge in a Neural Network", arXiv:1503.02531), on the booster's raw scores ``z`` (the logits):

    L = w_ce · CE(y, softmax(z)) + w_kd · T² · KL( softmax(t / T) ‖ softmax(z / T) )

with ``t`` the teacher's logits and T the temperature. Per sample and class k, its gradient and the
diagonal of its Hessian (what LightGBM's Newton step reads) are

    ∂L/∂z_k  = w_ce · (p_k − y_k) + w_kd · T · (p^T_k − q^T_k)
    ∂²L/∂z_k² ≈ w_ce · p_k (1 − p_k) + w_kd · p^T_k (1 − p^T_k)

where p = softmax(z), p^T = softmax(z / T), q^T = softmax(t / T) and y the one-hot label (the CE part is
dropped on transfer-set samples without a label). The baseline tree is the same booster with w_kd = 0,
i.e. LightGBM's own multiclass log-loss.

Why this and not one regressor per class on the teacher's softened logits (Ba & Caruana 2014's logit
matching; the "soft targets into a tree" setting of Frosst & Hinton 2017, "Distilling a Neural Network
Into a Soft Decision Tree", arXiv:1711.09784): the soft cross-entropy keeps the classes coupled through the
softmax (one booster, trees grown on the joint gradient), optimises exactly the neural KD loss so the two
students are compared on the same objective and temperature, mixes in the hard-label CE with the spec's
weights, and needs no per-class logit offsets (softmax is shift-invariant, L2 on logits is not).

**Training.** Rounds up to ``student.tree.rounds``; every ``eval_every`` rounds the validation accuracy is
measured (the validation raw scores are accumulated one round at a time) and the best round kept: the highest
validation accuracy, ties broken by the lower validation cross-entropy (accuracy saturates within a few rounds
on small data, and the earliest of the tied rounds is an under-fitted, badly calibrated ensemble);
``early_stopping`` rounds without a better round end the phase. The kept model is the
booster truncated to its best round; its test accuracy is reported. The engine's typed events are emitted
with the boosting round as the epoch: ``PhaseStarted(epochs=rounds, steps_per_epoch=1)``, one
``StepLosses`` per round and one ``EpochMetrics`` per evaluation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from kdcore.core.events import EpochMetrics, Event, PhaseStarted, StepLosses
from kdcore.core.tree_spec import TreeSpec
from kdcore.data.base import TensorData
from kdcore.models.tree import TreeStudent, features_of
from kdcore.train.trainer import PhaseResult, StopRequested


@dataclass
class TreePhaseConfig:
    name: str
    modalities: list[str]
    tree: TreeSpec
    seed: int
    ce_weight: float = 1.0
    kd_weight: float = 0.0
    temperature: float = 1.0
    teacher_logits: Tensor | None = None  # [N_train] teacher logits on the train split (None: no KD)
    train_rows: Tensor | None = None  # train-split positions (data regime; None: all)
    train_labels: Tensor | None = None  # labels per train-split position, −1 = unlabelled (None: the data's)
    # the experiment's callbacks (kdcore.train.callbacks); a tree phase has no steps or epochs of a
    # network, so only load_phase and on_phase_end apply (run.model: the grown TreeStudent)
    callbacks: list = field(default_factory=list)
    model: Any = None


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    s = z - z.max(1, keepdims=True)
    return s - np.log(np.exp(s).sum(1, keepdims=True))


def soft_ce_terms(z: np.ndarray, onehot: np.ndarray, labelled: np.ndarray, q_log: np.ndarray | None,
                  T: float) -> dict[str, float]:
    """Mean CE over the labelled rows and mean T²·KL(q^T ‖ p^T) over all rows (the module's formula)."""
    out = {}
    if labelled.any():
        out["ce"] = float(-(onehot[labelled] * _log_softmax(z[labelled])).sum(1).mean())
    if q_log is not None:
        q = np.exp(q_log)
        out["kd"] = float(T * T * (q * (q_log - _log_softmax(z / T))).sum(1).mean())
    return out


def soft_ce_grad_hess(z: np.ndarray, onehot: np.ndarray, labelled: np.ndarray, q_log: np.ndarray | None,
                      T: float, w_ce: float, w_kd: float) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and diagonal Hessian of the module's L with respect to the raw scores ``z`` [N, C]."""
    grad = np.zeros_like(z)
    hess = np.zeros_like(z)
    if w_ce > 0:
        p = _softmax(z)
        m = labelled[:, None].astype(z.dtype)
        grad += w_ce * m * (p - onehot)
        hess += w_ce * m * p * (1 - p)
    if w_kd > 0 and q_log is not None:
        pt = _softmax(z / T)
        grad += w_kd * T * (pt - np.exp(q_log))
        hess += w_kd * pt * (1 - pt)
    return grad, np.maximum(hess, 1e-6)


def _lgb_params(cfg: TreePhaseConfig, num_classes: int) -> dict:
    t = cfg.tree
    return {"objective": "custom", "num_class": num_classes, "learning_rate": t.learning_rate,
            "num_leaves": t.num_leaves, "max_depth": t.max_depth, "min_data_in_leaf": t.min_data_in_leaf,
            "feature_fraction": t.feature_fraction, "bagging_fraction": t.bagging_fraction,
            "bagging_freq": 1 if t.bagging_fraction < 1 else 0, "lambda_l2": t.lambda_l2,
            "num_threads": t.threads, "seed": cfg.seed, "deterministic": True, "force_row_wise": True,
            "verbosity": -1, "min_sum_hessian_in_leaf": 1e-6}


def train_tree_phase(cfg: TreePhaseConfig, data: TensorData, emit: Callable[[Event], None],
                     should_stop: Callable[[], bool]) -> tuple[PhaseResult, TreeStudent]:
    """Grow the booster (see the module docstring); returns the phase result and the best-round model."""
    import lightgbm as lgb

    t0_phase = time.time()
    tr, va, te = data.split("train"), data.split("val"), data.split("test")
    mods = tuple(cfg.modalities)
    widths = {m: int(np.prod(data.modalities[m].shape)) for m in mods}
    rows = torch.arange(len(tr)) if cfg.train_rows is None else cfg.train_rows
    labels_all = tr.labels if cfg.train_labels is None else cfg.train_labels
    x = features_of(tr.batch(rows, list(mods)).inputs, mods, widths)
    y = labels_all[rows].numpy()
    labelled = y >= 0
    K = data.num_classes
    onehot = np.zeros((len(y), K))
    onehot[labelled, y[labelled]] = 1.0
    T = float(cfg.temperature)
    q_log = None
    if cfg.kd_weight > 0:
        if cfg.teacher_logits is None:
            raise ValueError(f"phase {cfg.name}: kd weight > 0 needs the teacher's logits")
        q_log = _log_softmax(cfg.teacher_logits[rows].double().numpy() / T)
    w_ce = cfg.ce_weight if labelled.any() else 0.0
    xv = features_of(va.batch(torch.arange(len(va)), list(mods)).inputs, mods, widths)
    yv = va.labels.numpy()

    params = _lgb_params(cfg, K)
    booster = lgb.Booster(params=params, train_set=lgb.Dataset(x, free_raw_data=False, params={"verbosity": -1}))
    last: dict[str, np.ndarray] = {}

    def fobj(preds, _dataset):
        z = np.asarray(preds, dtype=np.float64).reshape(len(y), K)
        last["z"] = z
        return soft_ce_grad_hess(z, onehot, labelled, q_log, T, w_ce, cfg.kd_weight)

    spec = cfg.tree
    emit(PhaseStarted(cfg.name, spec.rounds, 1, 0, ""))
    zv = np.zeros((len(yv), K))
    best_acc, best_loss, best_round, since_best = -1.0, math.inf, 0, 0
    history: list[dict] = []
    weights = {"ce": w_ce, **({"kd": cfg.kd_weight} if q_log is not None else {})}
    t_eval = time.time()
    for r in range(1, spec.rounds + 1):
        if should_stop():
            raise StopRequested()
        booster.update(fobj=fobj)
        z_train = last["z"]  # scores before this round's trees: add them for the round's train loss
        z_train = z_train + booster.predict(x, start_iteration=r - 1, num_iteration=1, raw_score=True,
                                            num_threads=spec.threads).reshape(len(y), K)
        terms = soft_ce_terms(z_train, onehot, labelled, q_log, T)
        total = sum(weights.get(k, 0.0) * v for k, v in terms.items())
        emit(StepLosses(cfg.name, r - 1, r - 1, total, terms, {k: weights[k] for k in terms},
                        T if q_log is not None else None, spec.learning_rate))
        zv += booster.predict(xv, start_iteration=r - 1, num_iteration=1, raw_score=True,
                              num_threads=spec.threads).reshape(len(yv), K)
        if r % spec.eval_every and r != spec.rounds:
            continue
        val_acc = float((zv.argmax(1) == yv).mean())
        val_loss = float(-_log_softmax(zv)[np.arange(len(yv)), yv].mean())
        train_acc = float((z_train[labelled].argmax(1) == y[labelled]).mean()) if labelled.any() else 0.0
        m = EpochMetrics(cfg.name, r, total, train_acc, val_loss, val_acc, time.time() - t_eval,
                         {"trees_grown": float(booster.num_trees())})
        t_eval = time.time()
        history.append(m.to_dict())
        emit(m)
        if val_acc > best_acc or (val_acc == best_acc and val_loss < best_loss):
            best_acc, best_loss, best_round, since_best = val_acc, val_loss, r, 0
        else:
            since_best += spec.eval_every
        if spec.early_stopping and since_best >= spec.early_stopping:
            break
    best = lgb.Booster(model_str=booster.model_to_string(num_iteration=best_round))
    info = {"phase": cfg.name, "ce_weight": w_ce, "kd_weight": cfg.kd_weight, "temperature": T,
            "seed": cfg.seed, "rounds_trained": int(booster.current_iteration())}
    model = TreeStudent(best, mods, widths, K, best_round, info)
    xt = features_of(te.batch(torch.arange(len(te)), list(mods)).inputs, mods, widths)
    test_acc = float((model.raw_scores(xt).argmax(1) == te.labels.numpy()).mean())
    res = PhaseResult(cfg.name, best_round, best_acc, test_acc, time.time() - t0_phase, {}, history)
    return res, model
