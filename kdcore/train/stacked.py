"""Several student phases trained together as one stacked model (issue #13).

Students that share the architecture, the epochs, the learning rate and the number of steps per
epoch — the baseline and the KD students of a sweep seed, KD students that differ only in
``distill.*``, the teachers or students of different seeds — run as one model:
:func:`torch.func.stack_module_state` stacks their parameters and buffers along a new leading
dimension, :func:`torch.func.vmap` over :func:`torch.func.functional_call` runs all of them on a
batch in one pass (``nn.GRU`` is replaced by the equal :class:`~kdcore.models.stackable.BatchableGRU`,
since ``vmap`` has no rule for ``aten::gru``), and one optimiser steps the stacked tensors.

Members train on *streams* (:func:`_streams`): members with the same data, seed, rows and labels
(and teacher, when they distil) share one; each stream has its own batches, data order and
dropout masks, exactly those its members would see trained alone. With one stream the batch is
shared (``in_dims=None``); with several the inputs, labels and teacher logits are stacked per
member and the network's dropout takes per-member masks (:class:`~kdcore.models.stackable.MaskedDropout`).

Why the result equals training each student alone with :func:`kdcore.train.trainer.train_phase`:

* the step is the trainer's step, per student: the same batch (its stream's ``BatchSource`` and
  order generator seeded ``seed + 12345``), the same dropout masks (one stream: ``torch.manual_seed(seed
  + 777)`` and ``vmap(randomness="same")``, each random op drawing once, as an unstacked student
  draws on the same RNG stream; several streams: each stream's masks drawn from a generator seeded
  ``seed + 777``, as ``F.dropout`` draws them), each student's own loss modules, weighting and
  temperature schedule called on its slice of the stacked output exactly as ``train_phase`` calls them;
* the gradient of Σ_i L_i with respect to student i's slice is ∂L_i/∂θ_i (the students share no
  parameters), and Adam / AdamW / SGD-momentum, weight decay and the cosine LR schedule act
  element-wise with one step count, so one optimiser over stacked tensors is N optimisers;
* validation every epoch, best-on-validation weights and the test accuracy of those weights are
  per student (on its own data; the test evaluation runs the student's own ``nn.Module``).

The numbers agree to float rounding (vmapped kernels sum in a different order), which
``tests/test_stacked.py`` checks against sequential training.

:func:`stack_reason` says why a group cannot be stacked (learnable loss or strategy parameters,
phase callbacks, resume, ``torch.compile``, bf16, torchrun, different epochs / architectures /
layer settings, streams with different numbers of steps or split sizes, random ops other than the
dropout before the classifier on several streams, a recurrent layer without a batchable twin);
:func:`train_group` then trains the phases one at a time with ``train_phase`` and reports the
reason in ``PhaseStarted.stacked``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from kdcore.core.events import AttentionSnapshot, EpochMetrics, Event, PhaseStarted, StepLosses
from kdcore.core.spec import TrainSpec
from kdcore.data.base import Split, TensorData
from kdcore.methods.losses.base import StepContext
from kdcore.models.output import ModelOutput
from kdcore.models.stackable import draw_dropout_mask, dropout_sites, stackable_copy
from kdcore.train import distributed as dist
from kdcore.train import fastpath
from kdcore.train.evaluate import Evaluation, attention_by_class, evaluate
from kdcore.train.trainer import (
    Diverged,
    PhaseConfig,
    PhaseResult,
    PhaseRun,
    StopRequested,
    make_optimizer,
    teacher_output,
)

Emit = Callable[[Event], None]
# a stacked step: totals [N], logits [N, B, C], per student (terms, effective weights, temperature), values
StepOut = tuple[Tensor, Tensor, list[tuple[dict, dict, "Tensor | float"]], list[list[float]]]


def _same(a: Tensor | None, b: Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a is b or (a.shape == b.shape and bool(torch.equal(a, b)))


def _member_reason(cfg: PhaseConfig) -> str:
    """Why this phase alone cannot join a stack ("" when it can)."""
    if cfg.callbacks:  # an extra phase's input transform or schedule, the run store's resume
        return (f"phase {cfg.name}: callback {type(cfg.callbacks[0]).__name__} (per-step callbacks and "
                "resume checkpoints are not stacked)")
    for name, loss in cfg.losses.items():
        if any(True for _ in loss.parameters()):
            return f"phase {cfg.name}: loss {name!r} has learnable parameters (regressors are not stacked)"
    for what, mod in (("weighting", cfg.weighting), ("temperature schedule", cfg.schedule)):
        if any(True for _ in mod.parameters()):
            return f"phase {cfg.name}: the {what} {getattr(mod, 'name', '')!r} has learnable parameters"
    if not all(p.requires_grad for p in cfg.model.parameters()):
        return f"phase {cfg.name}: the model has frozen parameters"
    return ""


def _streams(cfgs: list[PhaseConfig],
             datas: list[TensorData]) -> tuple[list[int], list[tuple[PhaseConfig, TensorData]]]:
    """Which *stream* each member trains on, and one ``(phase, data)`` per stream: members on the
    same data, seed, rows and labels (and, when they distil, the same teacher) see the same batches
    in the same order and draw the same dropout masks, as they would trained alone; a stream's
    phase is one that distils when any of its members does (its teacher gives the stream's targets)."""
    reps: list[tuple[PhaseConfig, TensorData]] = []
    index: list[int] = []
    for cfg, data in zip(cfgs, datas):
        for k, (rep, rep_data) in enumerate(reps):
            if (rep_data is data and rep.seed == cfg.seed and _same(rep.train_rows, cfg.train_rows)
                    and _same(rep.train_labels, cfg.train_labels)
                    and (rep.teacher is None or cfg.teacher is None or rep.teacher is cfg.teacher)):
                if rep.teacher is None and cfg.teacher is not None:
                    reps[k] = (cfg, data)
                index.append(k)
                break
        else:
            reps.append((cfg, data))
            index.append(len(reps) - 1)
    return index, reps


def _rows(cfg: PhaseConfig, data: TensorData | None) -> int:
    """The number of rows a phase trains on (−1: the whole train split of ``data`` when it is None)."""
    if cfg.train_rows is not None:
        return int(cfg.train_rows.numel())
    return -1 if data is None else len(data.split("train"))


def _streams_reason(reps: list[tuple[PhaseConfig, TensorData | None]], models: list[nn.Module]) -> str:
    """Why members on several streams (other seeds, rows, labels or teachers) cannot be stacked
    ("" when they can): every stream must take the same number of steps and evaluate splits of one
    size, and the network's only random op must be its dropout before the classifier, whose masks
    are then drawn per stream (:class:`~kdcore.models.stackable.MaskedDropout`)."""
    (a, da) = reps[0]
    for b, db in reps[1:]:
        if _rows(a, da) != _rows(b, db):
            return (f"phases {a.name} and {b.name} train on different numbers of rows (data regime), so their "
                    "epochs take different numbers of steps")
        for split in ("val", "test"):
            if da is not db and len(da.split(split)) != len(db.split(split)):
                return f"phases {a.name} and {b.name} evaluate {split} splits of different sizes"
    for model in models:
        if getattr(model, "modality_dropout", 0) > 0:
            return ("model.modality_dropout > 0: its draws are not reproduced per seed for students of "
                    "different seeds")
        sites = dropout_sites(model)
        if any(name != "dropout" for name, _ in sites) or (sites and not hasattr(model, "classifier")):
            return (f"dropout inside {', '.join(n for n, _ in sites)}: only the dropout before the classifier "
                    "is drawn per seed for students of different seeds")
    return ""


def stack_reason(cfgs: list[PhaseConfig], train: TrainSpec, device: torch.device,
                 datas: list[TensorData] | None = None) -> str:
    """Why ``cfgs`` cannot train as one stacked model ("" when they can). ``datas``: each member's
    data when they differ (the seeds of a sweep; default: one data for all)."""
    if len(cfgs) < 2:
        return "only one student"
    if train.compile:
        return "train.compile=true (compiled steps are not stacked)"
    if train.precision != "fp32":
        return f"train.precision={train.precision} (stacking is checked in fp32 only)"
    if dist.active():
        return "torchrun (distributed training is not stacked)"
    first = cfgs[0]
    for cfg in cfgs:
        why = _member_reason(cfg)
        if why:
            return why
    ref_state = first.model.state_dict()
    for cfg in cfgs[1:]:
        for field in ("epochs", "lr", "min_best_epoch"):
            if getattr(cfg, field) != getattr(first, field):
                return f"phases {first.name} and {cfg.name} differ in {field}"
        if list(cfg.modalities) != list(first.modalities):
            return f"phases {first.name} and {cfg.name} see different modalities"
        state = cfg.model.state_dict()
        if state.keys() != ref_state.keys() or any(state[k].shape != ref_state[k].shape for k in state):
            return f"phases {first.name} and {cfg.name} have different architectures"
        # the stack runs the first member's modules: their settings (dropout p, modality dropout) too
        if repr(cfg.model) != repr(first.model) or getattr(cfg.model, "modality_dropout", 0) != getattr(
                first.model, "modality_dropout", 0):
            return f"phases {first.name} and {cfg.name} differ in a layer setting (dropout, modality dropout)"
    _, reps = _streams(cfgs, list(datas) if datas is not None else [None] * len(cfgs))  # type: ignore[list-item]
    if len(reps) > 1:
        why = _streams_reason(reps, [c.model for c in cfgs])
        if why:
            return why
    try:
        stackable_copy(first.model, per_member=len(reps) > 1)
    except ValueError as exc:
        return f"the student cannot be stacked: {exc}"
    return ""


def _to_tree(out: ModelOutput, maps: bool) -> dict:
    tree = {"logits": out.logits, "features": out.features, "fused": out.fused,
            "feature_maps": out.feature_maps if maps else {}, "aux_logits": out.aux_logits}
    if out.attention is not None:
        tree["attention"] = out.attention
    return tree


def _from_tree(tree: dict, modalities: tuple[str, ...], pick: Callable[[Tensor], Tensor]) -> ModelOutput:
    return ModelOutput(
        logits=pick(tree["logits"]), features={k: pick(v) for k, v in tree["features"].items()},
        fused=pick(tree["fused"]), attention=pick(tree["attention"]) if "attention" in tree else None,
        modalities=modalities, feature_maps={k: [pick(t) for t in v] for k, v in tree["feature_maps"].items()},
        aux_logits={k: pick(v) for k, v in tree["aux_logits"].items()})


class StackedStudents:
    """N copies of one architecture as stacked tensors: ``outputs(inputs) -> N ModelOutputs``.

    ``per_member``: every input carries a leading member dimension (students of different
    streams see different batches) and the network's dropout takes its mask from the buffer
    ``dropout.mask`` [N, B, D], set by :meth:`set_dropout_masks` before each training forward."""

    def __init__(self, models: list[nn.Module], device: torch.device, maps: bool = True, per_member: bool = False):
        twins = [stackable_copy(m, per_member=per_member).to(device) for m in models]
        self.params, self.buffers = stack_module_state(twins)
        self.keys = list(models[0].state_dict())
        self.base = copy.deepcopy(twins[0]).to("meta")
        self.n = len(models)
        self.device = device
        self.per_member = per_member
        self.modalities = tuple(getattr(models[0], "modalities", ()))
        self.dropout = dropout_sites(models[0]) if per_member else []  # [("dropout", p)] or []
        self.dropout_dim = models[0].classifier.in_features if self.dropout else 0
        in_x = 0 if per_member else None

        def call(p, b, inputs, with_maps):
            return _to_tree(functional_call(self.base, (p, b), (inputs,)), with_maps)

        # the intermediate feature maps leave the vmap only when a loss may read them: moving the
        # stacked dimension of every map to the front costs a copy (and its backward) per map
        self._call = vmap(lambda p, b, x: call(p, b, x, maps), in_dims=(0, 0, in_x), randomness="same")
        self._call_nomaps = vmap(lambda p, b, x: call(p, b, x, False), in_dims=(0, 0, in_x), randomness="same")

    def train(self, mode: bool = True) -> None:
        self.base.train(mode)

    def set_dropout_masks(self, masks: Tensor) -> None:
        """Per-member dropout masks [N, B, D] for the next training forward (``per_member`` only)."""
        self.buffers[f"{self.dropout[0][0]}.mask"] = masks

    def outputs(self, inputs: dict[str, Tensor], maps: bool = True) -> list[ModelOutput]:
        tree = (self._call if maps else self._call_nomaps)(self.params, self.buffers, inputs)
        return [_from_tree(tree, self.modalities, lambda t, i=i: t[i]) for i in range(self.n)]

    def state_dict(self, i: int) -> dict[str, Tensor]:
        """Member ``i``'s state dict, as its own module names it (no dropout-mask buffer)."""
        both = {**self.params, **self.buffers}
        return {k: both[k][i].detach().clone() for k in self.keys}


class _Stream:
    """What the members of one stream train on: their batches (one ``BatchSource``), the data order
    (a generator seeded ``seed + 12345``, as ``train_phase`` seeds it), the dropout masks (a generator
    seeded ``seed + 777``, as ``train_phase`` seeds the global RNG) and the teacher's outputs."""

    def __init__(self, cfg: PhaseConfig, data: TensorData, modalities: list[str], device: torch.device):
        self.cfg, self.data = cfg, data
        self.kd_cfg = cfg if cfg.teacher is not None else None
        mods = sorted(set(modalities) | set(cfg.teacher_modalities if cfg.teacher is not None else []))
        self.source = fastpath.BatchSource(data.split("train"), mods, device, labels=cfg.train_labels)
        self.partial_labels = cfg.train_labels is not None and bool((cfg.train_labels < 0).any())
        self.n = _rows(cfg, data)
        self.order_gen = torch.Generator().manual_seed(cfg.seed + 12345)
        self.dropout_gen = torch.Generator().manual_seed(cfg.seed + 777)
        self.perm: Tensor | None = None

    def new_epoch(self) -> None:
        order = torch.randperm(self.n, generator=self.order_gen)
        rows = self.cfg.train_rows
        self.perm = self.source.rows_on_device(order if rows is None else rows[order])

    def batch(self, start: int, bs: int):
        rows = self.perm[start : start + bs]
        batch = self.source.batch(rows)
        return batch, (teacher_output(self.kd_cfg, batch.inputs, rows) if self.kd_cfg is not None else None)


@dataclass
class _StepData:
    """One step's batches for every member: per stream (batch, teacher output), each member's stream,
    and the student inputs as the stack reads them (stacked per member when there are several streams)."""

    streams: list[tuple[Any, ModelOutput | None]]
    index: list[int]
    inputs: dict[str, Tensor]
    partial_labels: bool

    def member(self, i: int):
        """Member ``i``'s (batch, teacher output, its own student inputs)."""
        batch, t_out = self.streams[self.index[i]]
        return batch, t_out, {m: batch.inputs[m] for m in self.inputs}

    def stacked(self, get: Callable[[Any], Tensor]) -> Tensor:
        """``get(batch)`` of every member's batch, stacked: [N, ...]."""
        per_stream = [get(b) for b, _ in self.streams]
        return torch.stack([per_stream[k] for k in self.index])

    def labels(self) -> Tensor:
        """The labels the step's accuracy counts against: [B] for one stream, [N, B] for several."""
        return self.streams[0][0].labels if len(self.streams) == 1 else self.stacked(lambda b: b.labels)

    def labelled(self) -> Tensor:
        """How many labelled samples each member saw in this step ([] or [N])."""
        if len(self.streams) == 1:
            return (self.streams[0][0].labels >= 0).sum()
        return self.stacked(lambda b: (b.labels >= 0).sum())


@torch.no_grad()
def _evaluate_stacked(stack: StackedStudents, splits: list[Split], index: list[int], modalities: list[str],
                      device: torch.device, batch_size: int = 512) -> list[Evaluation]:
    """:func:`kdcore.train.evaluate.evaluate` for every stacked student (eval mode, whole split):
    member i on ``splits[index[i]]`` (splits of one size)."""
    stack.train(False)
    chunks: list[list[ModelOutput]] = [[] for _ in range(stack.n)]
    n = len(splits[0])
    for start in range(0, n, batch_size):
        rows = torch.arange(start, min(n, start + batch_size))
        bs = [split.batch(rows, modalities).to(device) for split in splits]
        if stack.per_member:
            inputs = {m: torch.stack([bs[k].inputs[m] for k in index]) for m in modalities}
        else:
            inputs = bs[0].inputs
        for i, out in enumerate(stack.outputs(inputs, maps=False)):
            chunks[i].append(out.map(lambda t: t.detach().float().cpu()))
    stack.train(True)
    evals = []
    for i, outs in enumerate(chunks):
        labels = splits[index[i]].labels
        out = ModelOutput.cat(outs)
        evals.append(Evaluation(acc=float((out.logits.argmax(1) == labels).float().mean()),
                                loss=float(F.cross_entropy(out.logits, labels)), output=out, labels=labels))
    return evals


def _reads_feature_maps(cfg: PhaseConfig) -> bool:
    """Whether a loss or the weighting of ``cfg`` may read the student's intermediate feature maps:
    label and logit losses (CE, KD, DKD, logit MSE) do not; a weighting that overrides how the
    outputs are seen (sample weights, distilled outputs) might."""
    from kdcore.methods.strategies.base import Weighting

    w = type(cfg.weighting)
    if w.sample_weights is not Weighting.sample_weights or w.distill_outputs is not Weighting.distill_outputs:
        return True
    return any(getattr(type(loss), "family", "") not in ("label", "logit") for loss in cfg.losses.values())


def _vector_reason(cfgs: list[PhaseConfig]) -> str:
    """Why the students' losses cannot be computed inside the vmap, as one call for all of them
    ("" when they can): every student must have the same loss terms of the same classes with equal
    parameters (the weights may differ), each marked ``vmappable``, and a weighting that neither
    weights samples, changes the outputs the losses see nor combines the terms other than Σ w_k L_k."""
    from kdcore.methods.strategies.base import Weighting

    first = cfgs[0]
    for cfg in cfgs:
        w = type(cfg.weighting)
        if (w.sample_weights is not Weighting.sample_weights or w.distill_outputs is not Weighting.distill_outputs
                or w.combine is not Weighting.combine):
            return f"phase {cfg.name}: the weighting {w.name!r} works per student"
        if list(cfg.losses) != list(first.losses) or (cfg.teacher is None) != (first.teacher is None):
            return f"phases {first.name} and {cfg.name} have different loss terms"
        for name, loss in cfg.losses.items():
            ref = first.losses[name]
            if not type(loss).vmappable:
                return f"loss {name!r} is computed per student"
            if type(loss) is not type(ref) or loss.params != ref.params:
                return f"phases {first.name} and {cfg.name} differ in the parameters of loss {name!r}"
    return ""


def _contexts(cfg: PhaseConfig, batch, s_inputs: dict[str, Tensor], epoch: int, step: int,
              temperature: Tensor | float, sw: Tensor | None, partial_labels: bool) -> tuple[StepContext, StepContext]:
    """The trainer's two step contexts: for the distillation terms and (no sample weights) the label terms."""
    ctx = StepContext(labels=batch.labels, epoch=epoch, total_epochs=cfg.epochs, step=step,
                      temperature=temperature, aux=batch.aux, sample_weight=sw, inputs=s_inputs,
                      labelled=(batch.labels >= 0) if partial_labels else None)
    return ctx, dataclasses.replace(ctx, sample_weight=None)


def _values(totals: list[Tensor], per_student: list[tuple[dict, dict, Tensor | float]]) -> list[list[float]]:
    """Every student's [total, *terms, (temperature when a tensor)] as floats, in one device→host transfer."""
    flat, sizes = [], []
    for total, (terms, _, temperature) in zip(totals, per_student):
        row = [total.detach().float(), *(v.detach().float() for v in terms.values())]
        if isinstance(temperature, Tensor):
            row.append(temperature.detach().float())
        flat += row
        sizes.append(len(row))
    vals, values = torch.stack(flat).tolist(), []
    for k in sizes:
        values.append(vals[:k])
        vals = vals[k:]
    return values


def _student_steps(stack: StackedStudents, cfgs: list[PhaseConfig], data: _StepData, epoch: int, step: int,
                   progress: float, weights: dict[str, Tensor] | None = None) -> StepOut:
    """The trainer's step for every student, its losses called on its slice of the stacked output
    with its own stream's batch and teacher output: totals [N], logits [N, B, C], per student
    (terms, effective weights, temperature) and its values [total, *terms, (temperature when a
    tensor)] as floats."""
    outs = stack.outputs(data.inputs)
    totals, per_student = [], []
    for i, cfg in enumerate(cfgs):
        batch, t_out, s_inputs = data.member(i)
        s_out, t_i = outs[i], (t_out if cfg.teacher is not None else None)
        temperature = cfg.schedule.value(progress)
        sw = cfg.weighting.sample_weights(s_out, t_i, batch.labels, temperature)
        ctx, label_ctx = _contexts(cfg, batch, s_inputs, epoch, step, temperature, sw, data.partial_labels)
        s_kd, t_kd = cfg.weighting.distill_outputs(s_out, t_i, batch.labels)
        terms: dict[str, Tensor] = {}
        owner: dict[str, str] = {}
        for name, loss in cfg.losses.items():
            args = (s_kd, t_kd, ctx) if type(loss).needs_teacher else (s_out, t_i, label_ctx)
            for term, value in loss(*args).items():
                terms[term] = value
                owner[term] = name
        total, eff_w = cfg.weighting.combine(terms, owner)
        totals.append(total)
        per_student.append((terms, eff_w, temperature))
    return torch.stack(totals), torch.stack([o.logits for o in outs]), per_student, _values(totals, per_student)


def _loss_weights(cfgs: list[PhaseConfig], device: torch.device) -> dict[str, Tensor]:
    """Each loss term's weight per student, [N] (the vectorised step's Σ_k w_ik L_ik)."""
    return {name: torch.tensor([cfg.weighting.loss_weights[name] for cfg in cfgs], device=device)
            for name in cfgs[0].losses}


def _vector_step(stack: StackedStudents, cfgs: list[PhaseConfig], data: _StepData, epoch: int, step: int,
                 progress: float, weights: dict[str, Tensor] | None = None) -> StepOut:
    """:func:`_student_steps` with the losses inside the vmap (:func:`_vector_reason` allowed it):
    student i's terms come from the first student's loss modules at student i's temperature, and
    its total is Σ_k w_ik L_ik with its own weights (``weights``, :func:`_loss_weights`) — what
    ``Weighting.combine`` computes. With several streams the labels, auxiliary labels, inputs and
    the teacher's logits are mapped too (vmappable losses read no other teacher output)."""
    first = cfgs[0]
    weights = weights if weights is not None else _loss_weights(cfgs, stack.device)
    temps = [float(cfg.schedule.value(progress)) for cfg in cfgs]
    owner: dict[str, str] = {}
    distils = first.teacher is not None

    def terms_of(out: ModelOutput, teacher: ModelOutput | None, ctx: StepContext, T) -> dict[str, Tensor]:
        kd_ctx = dataclasses.replace(ctx, temperature=T)
        terms: dict[str, Tensor] = {}
        for name, loss in first.losses.items():
            for term, value in loss(*((out, teacher, kd_ctx) if type(loss).needs_teacher
                                      else (out, teacher, ctx))).items():
                terms[term] = value
                owner[term] = name
        return terms

    T = torch.tensor(temps, device=stack.device)
    if not stack.per_member:
        batch, t_out, s_inputs = data.member(0)
        ctx, _ = _contexts(first, batch, s_inputs, epoch, step, 0.0, None, data.partial_labels)
        teacher = t_out if distils else None

        def per_student(p, b, T):
            out = functional_call(stack.base, (p, b), (s_inputs,))
            return out.logits, terms_of(out, teacher, ctx, T)

        logits, terms = vmap(per_student, in_dims=(0, 0, 0), randomness="same")(stack.params, stack.buffers, T)
    else:
        labels = data.labels()
        aux = {k: data.stacked(lambda b, k=k: b.aux[k]) for k in data.streams[0][0].aux}
        t_logits = (torch.stack([data.streams[k][1].logits for k in data.index]) if distils
                    else torch.zeros(len(cfgs), device=stack.device))

        def per_student(p, b, T, x, y, aux, t_logits):
            out = functional_call(stack.base, (p, b), (x,))
            teacher = ModelOutput(logits=t_logits, features={}, fused=t_logits, attention=None,
                                  modalities=()) if distils else None
            ctx = StepContext(labels=y, epoch=epoch, total_epochs=first.epochs, step=step, temperature=0.0,
                              aux=aux, sample_weight=None, inputs=x,
                              labelled=(y >= 0) if data.partial_labels else None)
            return out.logits, terms_of(out, teacher, ctx, T)

        logits, terms = vmap(per_student, in_dims=0, randomness="same")(
            stack.params, stack.buffers, T, data.inputs, labels, aux, t_logits)
    total: Tensor | float = 0.0
    for term, value in terms.items():
        total = total + weights[owner[term]] * value
    values = torch.stack([total.detach(), *(v.detach() for v in terms.values())], 1).float().tolist()
    per_student_terms = [(terms, {term: cfg.weighting.loss_weights[owner[term]] for term in terms}, temps[i])
                         for i, cfg in enumerate(cfgs)]  # (the terms' names: values holds each student's)
    return total, logits, per_student_terms, values


def train_stacked(cfgs: list[PhaseConfig], data: TensorData, train: TrainSpec, device: torch.device,
                  emits: list[Emit], should_stop: Callable[[], bool], note: str = "",
                  datas: list[TensorData] | None = None) -> list[PhaseResult]:
    """Train ``cfgs`` (which :func:`stack_reason` accepted) together; one result per phase, each
    event sent to that phase's ``emits[i]``. Mirrors :func:`kdcore.train.trainer.train_phase`.
    ``datas``: each member's data (default: ``data`` for all)."""
    first = cfgs[0]
    datas = list(datas) if datas is not None else [data] * len(cfgs)
    index, reps = _streams(cfgs, datas)
    per_member = len(reps) > 1  # several streams: inputs, labels and dropout masks per member
    for cfg in cfgs:
        cfg.model.to(device)
    stack = StackedStudents([c.model for c in cfgs], device, maps=any(_reads_feature_maps(c) for c in cfgs),
                            per_member=per_member)
    opt = make_optimizer(list(stack.params.values()), train, first.lr)
    for group in opt.param_groups:  # the multi-tensor update on every device: a few large stacked tensors
        group["foreach"] = True
    streams = [_Stream(cfg, d, list(first.modalities), device) for cfg, d in reps]
    n = streams[0].n
    bs = min(train.batch_size, n)
    steps_per_epoch = (n + bs - 1) // bs
    total_steps = max(1, first.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    names = [c.name for c in cfgs]
    note = note or f"stacked with {len(cfgs) - 1} other student(s): " + ", ".join(names)
    for cfg, emit in zip(cfgs, emits):
        cache_note = cfg.teacher_cache.describe() if (cfg.teacher is not None and cfg.teacher_cache) else ""
        emit(PhaseStarted(cfg.name, cfg.epochs, steps_per_epoch, sum(p.numel() for p in cfg.model.parameters()),
                          cache_note, note))
    torch.manual_seed(first.seed + 777)  # one stream: dropout inside the vmap draws from the global RNG
    partial_labels = any(st.partial_labels for st in streams)
    states = [PhaseRun(c) for c in cfgs]
    N = len(cfgs)
    vector = not _vector_reason(cfgs)  # losses inside the vmap: one call per step for every student
    weights = _loss_weights(cfgs, device) if vector else None
    step_fn = _vector_step if vector else _student_steps
    member_stream = torch.tensor(index)
    best = [(-1.0, 0, None)] * N
    histories: list[list[dict]] = [[] for _ in range(N)]
    t_phase = time.time()
    for cfg in cfgs:
        for mod in (*cfg.losses.values(), cfg.weighting, cfg.schedule):
            mod.to(device)
    val_splits = [d.split("val") for _, d in reps]
    step = 0
    for epoch in range(first.epochs):
        t0 = time.time()
        stack.train(True)
        for cfg in cfgs:
            for mod in cfg.losses.values():
                mod.train()
        for st in streams:
            st.new_epoch()
        loss_sum = torch.zeros(N, device=device)
        correct = torch.zeros(N, device=device)
        labelled_seen = torch.zeros(N, device=device)
        for start in range(0, n, bs):
            if should_stop():
                raise StopRequested()
            got = [st.batch(start, bs) for st in streams]
            rows_now = len(got[0][0])
            progress = step / total_steps
            if per_member:
                inputs = {m: torch.stack([got[k][0].inputs[m] for k in index]) for m in first.modalities}
                if stack.dropout:  # each stream's masks from its own generator, as training alone draws them
                    p = stack.dropout[0][1]
                    masks = [draw_dropout_mask((rows_now, stack.dropout_dim), p, st.dropout_gen) for st in streams]
                    stack.set_dropout_masks(torch.stack(masks)[member_stream].to(device))
            else:
                inputs = {m: got[0][0].inputs[m] for m in first.modalities}
            step_data = _StepData(got, index, inputs, partial_labels)
            for state in states:
                state.epoch, state.step, state.progress = epoch, step, progress
            totals_t, logits, per_student, values = step_fn(stack, cfgs, step_data, epoch, step, progress, weights)
            emitted = []
            for cfg, (terms, eff_w, temperature), v in zip(cfgs, per_student, values):
                if not math.isfinite(v[0]):
                    bad = [t for t, x in zip(terms, v[1:]) if not math.isfinite(x)]
                    raise Diverged(cfg.name, step,
                                   f"loss became {v[0]} at step {step} of phase {cfg.name} (stacked) "
                                   f"(non-finite terms: {', '.join(bad) or 'total'}); try a lower learning rate")
                t_val = None if cfg.teacher is None else (
                    v[-1] if isinstance(temperature, Tensor) else float(temperature))
                emitted.append((cfg.name, v[0], dict(zip(terms, v[1 : 1 + len(terms)])), eff_w, t_val))
            opt.zero_grad(set_to_none=True)
            totals_t.sum().backward()
            opt.step()
            sched.step()
            loss_sum += totals_t.detach() * rows_now
            correct += (logits.detach().argmax(-1) == step_data.labels()).sum(-1)
            labelled_seen += step_data.labelled()
            lr = opt.param_groups[0]["lr"]
            for emit, (name, total_v, terms_v, eff_w, t_val) in zip(emits, emitted):
                emit(StepLosses(name, epoch, step, total_v, terms_v, eff_w, t_val, lr))
            step += 1
        evs = _evaluate_stacked(stack, val_splits, index, first.modalities, device)
        seen = float(n)
        ls, cs, lab = loss_sum.tolist(), correct.tolist(), labelled_seen.tolist()
        for i, (cfg, emit, ev) in enumerate(zip(cfgs, emits, evs)):
            m = EpochMetrics(cfg.name, epoch + 1, ls[i] / seen, cs[i] / max(1.0, lab[i]),
                             ev.loss, ev.acc, time.time() - t0, {})
            histories[i].append(m.to_dict())
            emit(m)
            if ev.output.attention is not None:
                cm = attention_by_class(ev.output.attention, ev.labels, datas[i].num_classes)
                emit(AttentionSnapshot(cfg.name, epoch + 1, list(ev.output.modalities),
                                       cm.nan_to_num(0.0).tolist(), ev.output.attention.mean(0).tolist()))
            # no callbacks to call here: a phase with callbacks of its own is not stacked (_member_reason)
            best_acc, _, _ = best[i]
            if ev.acc > best_acc and epoch + 1 >= cfg.min_best_epoch:
                best[i] = (ev.acc, epoch + 1, stack.state_dict(i))
    opt.zero_grad(set_to_none=True)
    seconds = (time.time() - t_phase) / N  # each student's share of the stacked phase
    results = []
    for i, cfg in enumerate(cfgs):
        best_acc, best_epoch, best_state = best[i]
        if best_state is None:
            best_state = stack.state_dict(i)
        cfg.model.load_state_dict(best_state)
        cfg.model.train()
        test = evaluate(cfg.model, datas[i].split("test"), cfg.modalities, device=device)
        results.append(PhaseResult(cfg.name, best_epoch, best_acc, test.acc, seconds, best_state, histories[i]))
    return results


def phase_names(cfgs: list[PhaseConfig]) -> str:
    """``baseline, kd, kd`` — or, for more than four, ``baseline ×3, kd ×12``."""
    names = [c.name for c in cfgs]
    if len(names) <= 4:
        return ", ".join(names)
    return ", ".join(f"{n} ×{names.count(n)}" for n in dict.fromkeys(names))


def train_group(cfgs: list[PhaseConfig], data: TensorData, train: TrainSpec, device: torch.device,
                emits: list[Emit], should_stop: Callable[[], bool],
                stack: bool = True, datas: list[TensorData] | None = None) -> tuple[list[PhaseResult], str]:
    """Train ``cfgs`` stacked when :func:`stack_reason` allows it, else one at a time with
    :func:`~kdcore.train.trainer.train_phase`. Returns the results and what was done, in words.
    ``datas``: each member's data when they differ (default: ``data`` for all)."""
    from kdcore.train.trainer import train_phase

    datas = list(datas) if datas is not None else [data] * len(cfgs)
    why = stack_reason(cfgs, train, device, datas) if stack else "stacking switched off"
    if not why:
        seeds = sorted({c.seed for c in cfgs})
        across = f" across {len(seeds)} seeds" if len(seeds) > 1 else ""
        note = f"stacked: {len(cfgs)} students ({phase_names(cfgs)}) trained as one model{across}"
        return train_stacked(cfgs, data, train, device, emits, should_stop, note, datas), note
    note = f"one at a time: {why}"
    results = []
    for cfg, emit, d in zip(cfgs, emits, datas):
        def tagged(ev, emit=emit):  # say why in the phase's PhaseStarted event
            if isinstance(ev, PhaseStarted):
                ev = dataclasses.replace(ev, stacked=note)
            emit(ev)
        results.append(train_phase(cfg, d, train, device, tagged, should_stop))
    return results, note
