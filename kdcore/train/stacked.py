"""Several student phases trained together as one stacked model (issue #13).

Students that share the architecture, the initial weights, the training rows and labels, the
data order and the dropout stream (same ``PhaseConfig.seed``), the epochs and the learning rate —
the baseline and the KD students of one sweep seed, or KD students that differ only in
``distill.*`` — run as one model: :func:`torch.func.stack_module_state` stacks their parameters
and buffers along a new leading dimension, :func:`torch.func.vmap` over
:func:`torch.func.functional_call` runs all of them on a batch in one pass (``nn.GRU`` is
replaced by the equal :class:`~kdcore.models.stackable.BatchableGRU`, since ``vmap`` has no rule
for ``aten::gru``), and one optimiser steps the stacked tensors.

Why the result equals training each student alone with :func:`kdcore.train.trainer.train_phase`:

* the step is the trainer's step, per student: the same batch (one ``BatchSource``, one order
  generator seeded ``seed + 12345``), the same dropout masks (``torch.manual_seed(seed + 777)``
  and ``vmap(randomness="same")``: each random op draws once, as an unstacked student draws on the
  same RNG stream), each student's own loss modules, weighting and temperature schedule called on
  its slice of the stacked output exactly as ``train_phase`` calls them;
* the gradient of Σ_i L_i with respect to student i's slice is ∂L_i/∂θ_i (the students share no
  parameters), and Adam / AdamW / SGD-momentum, weight decay and the cosine LR schedule act
  element-wise with one step count, so one optimiser over stacked tensors is N optimisers;
* validation every epoch, best-on-validation weights and the test accuracy of those weights are
  per student (the test evaluation runs the student's own ``nn.Module``).

The numbers agree to float rounding (vmapped kernels sum in a different order), which
``tests/test_stacked.py`` checks against sequential training.

:func:`stack_reason` says why a group cannot be stacked (learnable loss or strategy parameters,
phase callbacks, resume, ``torch.compile``, bf16, torchrun, different rows / seeds / epochs / initial
weights, a recurrent layer without a batchable twin); :func:`train_group` then trains the
phases one at a time with ``train_phase`` and reports the reason in ``PhaseStarted.stacked``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from kdcore.core.events import AttentionSnapshot, EpochMetrics, Event, PhaseStarted, StepLosses
from kdcore.core.spec import TrainSpec
from kdcore.data.base import Split, TensorData
from kdcore.methods.losses.base import StepContext
from kdcore.models.output import ModelOutput
from kdcore.models.stackable import stackable_copy
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
    return a.shape == b.shape and bool(torch.equal(a, b))


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


def stack_reason(cfgs: list[PhaseConfig], train: TrainSpec, device: torch.device) -> str:
    """Why ``cfgs`` cannot train as one stacked model ("" when they can)."""
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
        for field in ("epochs", "lr", "seed", "min_best_epoch"):
            if getattr(cfg, field) != getattr(first, field):
                return f"phases {first.name} and {cfg.name} differ in {field}"
        if list(cfg.modalities) != list(first.modalities):
            return f"phases {first.name} and {cfg.name} see different modalities"
        if not (_same(cfg.train_rows, first.train_rows) and _same(cfg.train_labels, first.train_labels)):
            return f"phases {first.name} and {cfg.name} train on different rows or labels (data regime)"
        state = cfg.model.state_dict()
        if state.keys() != ref_state.keys() or any(state[k].shape != ref_state[k].shape for k in state):
            return f"phases {first.name} and {cfg.name} have different architectures"
        if not all(torch.equal(state[k], ref_state[k]) for k in state):
            return f"phases {first.name} and {cfg.name} start from different initial weights"
    teachers = {id(c.teacher) for c in cfgs if c.teacher is not None}
    if len(teachers) > 1:
        return "the students distil from different teachers"
    try:
        stackable_copy(first.model)
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
    """N copies of one architecture as stacked tensors: ``forward(inputs) -> N ModelOutputs``."""

    def __init__(self, models: list[nn.Module], device: torch.device, maps: bool = True):
        twins = [stackable_copy(m).to(device) for m in models]
        self.params, self.buffers = stack_module_state(twins)
        self.base = copy.deepcopy(twins[0]).to("meta")
        self.n = len(models)
        self.device = device
        self.modalities = tuple(getattr(models[0], "modalities", ()))

        def call(p, b, inputs, with_maps):
            return _to_tree(functional_call(self.base, (p, b), (inputs,)), with_maps)

        # the intermediate feature maps leave the vmap only when a loss may read them: moving the
        # stacked dimension of every map to the front costs a copy (and its backward) per map
        self._call = vmap(lambda p, b, x: call(p, b, x, maps), in_dims=(0, 0, None), randomness="same")
        self._call_nomaps = vmap(lambda p, b, x: call(p, b, x, False), in_dims=(0, 0, None), randomness="same")

    def train(self, mode: bool = True) -> None:
        self.base.train(mode)

    def outputs(self, inputs: dict[str, Tensor], maps: bool = True) -> list[ModelOutput]:
        tree = (self._call if maps else self._call_nomaps)(self.params, self.buffers, inputs)
        return [_from_tree(tree, self.modalities, lambda t, i=i: t[i]) for i in range(self.n)]

    def state_dict(self, i: int) -> dict[str, Tensor]:
        return {**{k: v[i].detach().clone() for k, v in self.params.items()},
                **{k: v[i].detach().clone() for k, v in self.buffers.items()}}


@torch.no_grad()
def _evaluate_stacked(stack: StackedStudents, split: Split, modalities: list[str], device: torch.device,
                      batch_size: int = 512) -> list[Evaluation]:
    """:func:`kdcore.train.evaluate.evaluate` for every stacked student (eval mode, whole split)."""
    stack.train(False)
    chunks: list[list[ModelOutput]] = [[] for _ in range(stack.n)]
    n = len(split)
    for start in range(0, n, batch_size):
        rows = torch.arange(start, min(n, start + batch_size))
        b = split.batch(rows, modalities).to(device)
        for i, out in enumerate(stack.outputs(b.inputs, maps=False)):
            chunks[i].append(out.map(lambda t: t.detach().float().cpu()))
    stack.train(True)
    labels = split.labels
    evals = []
    for outs in chunks:
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


def _student_steps(stack: StackedStudents, cfgs: list[PhaseConfig], s_inputs: dict[str, Tensor],
                   t_out: ModelOutput | None, batch, epoch: int, step: int, progress: float,
                   partial_labels: bool) -> StepOut:
    """The trainer's step for every student, its losses called on its slice of the stacked output:
    totals [N], logits [N, B, C], per student (terms, effective weights, temperature) and its values
    [total, *terms, (temperature when a tensor)] as floats."""
    outs = stack.outputs(s_inputs)
    totals, per_student = [], []
    for i, cfg in enumerate(cfgs):
        s_out, t_i = outs[i], (t_out if cfg.teacher is not None else None)
        temperature = cfg.schedule.value(progress)
        sw = cfg.weighting.sample_weights(s_out, t_i, batch.labels, temperature)
        ctx, label_ctx = _contexts(cfg, batch, s_inputs, epoch, step, temperature, sw, partial_labels)
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
    # one device→host transfer per step for every student's values
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
    return torch.stack(totals), torch.stack([o.logits for o in outs]), per_student, values


def _vector_step(stack: StackedStudents, cfgs: list[PhaseConfig], s_inputs: dict[str, Tensor],
                 t_out: ModelOutput | None, batch, epoch: int, step: int, progress: float,
                 partial_labels: bool) -> StepOut:
    """:func:`_student_steps` with the losses inside the vmap (:func:`_vector_reason` allowed it):
    student i's terms come from the first student's loss modules at student i's temperature, and
    its total is Σ_k w_ik L_ik with its own weights — what ``Weighting.combine`` computes."""
    first = cfgs[0]
    temps = [float(cfg.schedule.value(progress)) for cfg in cfgs]
    ctx, label_ctx = _contexts(first, batch, s_inputs, epoch, step, 0.0, None, partial_labels)
    teacher = t_out if first.teacher is not None else None
    owner: dict[str, str] = {}

    def per_student(p, b, T):
        out = functional_call(stack.base, (p, b), (s_inputs,))
        kd_ctx = dataclasses.replace(ctx, temperature=T)
        terms: dict[str, Tensor] = {}
        for name, loss in first.losses.items():
            for term, value in loss(*((out, teacher, kd_ctx) if type(loss).needs_teacher
                                      else (out, teacher, label_ctx))).items():
                terms[term] = value
                owner[term] = name
        return out.logits, terms

    T = torch.tensor(temps, device=stack.device)
    logits, terms = vmap(per_student, in_dims=(0, 0, 0), randomness="same")(stack.params, stack.buffers, T)
    weights = {name: torch.tensor([cfg.weighting.loss_weights[name] for cfg in cfgs], device=stack.device)
               for name in first.losses}
    total: Tensor | float = 0.0
    for term, value in terms.items():
        total = total + weights[owner[term]] * value
    values = torch.stack([total.detach(), *(v.detach() for v in terms.values())], 1).float().tolist()
    per_student_terms = [(terms, {term: cfg.weighting.loss_weights[owner[term]] for term in terms}, temps[i])
                         for i, cfg in enumerate(cfgs)]  # (the terms' names: values holds each student's)
    return total, logits, per_student_terms, values


def train_stacked(cfgs: list[PhaseConfig], data: TensorData, train: TrainSpec, device: torch.device,
                  emits: list[Emit], should_stop: Callable[[], bool], note: str = "") -> list[PhaseResult]:
    """Train ``cfgs`` (which :func:`stack_reason` accepted) together; one result per phase, each
    event sent to that phase's ``emits[i]``. Mirrors :func:`kdcore.train.trainer.train_phase`."""
    first = cfgs[0]
    tr, va = data.split("train"), data.split("val")
    for cfg in cfgs:
        cfg.model.to(device)
    stack = StackedStudents([c.model for c in cfgs], device, maps=any(_reads_feature_maps(c) for c in cfgs))
    opt = make_optimizer(list(stack.params.values()), train, first.lr)
    for group in opt.param_groups:  # the multi-tensor update on every device: a few large stacked tensors
        group["foreach"] = True
    phase_rows = first.train_rows
    n = len(tr) if phase_rows is None else int(phase_rows.numel())
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
    order_gen = torch.Generator().manual_seed(first.seed + 12345)
    torch.manual_seed(first.seed + 777)
    kd_cfg = next((c for c in cfgs if c.teacher is not None), None)
    all_mods = sorted(set(first.modalities) | set(kd_cfg.teacher_modalities if kd_cfg else []))
    source = fastpath.BatchSource(tr, all_mods, device, labels=first.train_labels)
    partial_labels = first.train_labels is not None and bool((first.train_labels < 0).any())
    states = [PhaseRun(c) for c in cfgs]
    N = len(cfgs)
    vector = not _vector_reason(cfgs)  # losses inside the vmap: one call per step for every student
    best = [(-1.0, 0, None)] * N
    histories: list[list[dict]] = [[] for _ in range(N)]
    t_phase = time.time()
    for cfg in cfgs:
        for mod in (*cfg.losses.values(), cfg.weighting, cfg.schedule):
            mod.to(device)
    step = 0
    for epoch in range(first.epochs):
        t0 = time.time()
        stack.train(True)
        for cfg in cfgs:
            for mod in cfg.losses.values():
                mod.train()
        order = torch.randperm(n, generator=order_gen)
        perm = source.rows_on_device(order if phase_rows is None else phase_rows[order])
        loss_sum = torch.zeros(N, device=device)
        correct = torch.zeros(N, device=device)
        labelled_seen = torch.zeros((), device=device)
        for start in range(0, len(perm), bs):
            if should_stop():
                raise StopRequested()
            rows = perm[start : start + bs]
            batch = source.batch(rows)
            progress = step / total_steps
            t_out = teacher_output(kd_cfg, batch.inputs, rows) if kd_cfg is not None else None
            s_inputs = {m: batch.inputs[m] for m in first.modalities}
            for state in states:
                state.epoch, state.step, state.progress = epoch, step, progress
            step_fn = _vector_step if vector else _student_steps
            totals_t, logits, per_student, values = step_fn(stack, cfgs, s_inputs, t_out, batch, epoch, step,
                                                            progress, partial_labels)
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
            loss_sum += totals_t.detach() * len(rows)
            correct += (logits.detach().argmax(-1) == batch.labels).sum(-1)
            labelled_seen += (batch.labels >= 0).sum()
            lr = opt.param_groups[0]["lr"]
            for emit, (name, total_v, terms_v, eff_w, t_val) in zip(emits, emitted):
                emit(StepLosses(name, epoch, step, total_v, terms_v, eff_w, t_val, lr))
            step += 1
        evs = _evaluate_stacked(stack, va, first.modalities, device)
        seen = float(len(perm))
        ls, cs = loss_sum.tolist(), correct.tolist()
        for i, (cfg, emit, ev) in enumerate(zip(cfgs, emits, evs)):
            m = EpochMetrics(cfg.name, epoch + 1, ls[i] / seen, cs[i] / max(1.0, float(labelled_seen)),
                             ev.loss, ev.acc, time.time() - t0, {})
            histories[i].append(m.to_dict())
            emit(m)
            if ev.output.attention is not None:
                cm = attention_by_class(ev.output.attention, ev.labels, data.num_classes)
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
        test = evaluate(cfg.model, data.split("test"), cfg.modalities, device=device)
        results.append(PhaseResult(cfg.name, best_epoch, best_acc, test.acc, seconds, best_state, histories[i]))
    return results


def train_group(cfgs: list[PhaseConfig], data: TensorData, train: TrainSpec, device: torch.device,
                emits: list[Emit], should_stop: Callable[[], bool],
                stack: bool = True) -> tuple[list[PhaseResult], str]:
    """Train ``cfgs`` stacked when :func:`stack_reason` allows it, else one at a time with
    :func:`~kdcore.train.trainer.train_phase`. Returns the results and what was done, in words."""
    from kdcore.train.trainer import train_phase

    why = stack_reason(cfgs, train, device) if stack else "stacking switched off"
    if not why:
        note = f"stacked: {len(cfgs)} students ({', '.join(c.name for c in cfgs)}) trained as one model"
        return train_stacked(cfgs, data, train, device, emits, should_stop, note), note
    note = f"one at a time: {why}"
    results = []
    for cfg, emit in zip(cfgs, emits):
        def tagged(ev, emit=emit):  # say why in the phase's PhaseStarted event
            if isinstance(ev, PhaseStarted):
                ev = dataclasses.replace(ev, stacked=note)
            emit(ev)
        results.append(train_phase(cfg, data, train, device, tagged, should_stop))
    return results, note
