"""One training phase: a model, its named loss terms, a weighting strategy, a temperature
schedule, optionally a frozen teacher (through the cache), epochs over fixed tensors.

Only the trained model's parameters (plus the learnable parts of its losses and strategies) go
into the optimiser; the teacher is never optimised. Best-on-validation weights are kept.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from kdcore.data.base import TensorData
from kdcore.train import distributed as dist
from kdcore.train import fastpath
from kdcore.train.cache import TeacherCache
from kdcore.train.callbacks import Callback, PhaseResult, PhaseRun, merged_metrics
from kdcore.train.evaluate import attention_by_class, evaluate
from kdcore.core.events import AttentionSnapshot, EpochMetrics, Event, PhaseStarted, StepLosses
from kdcore.methods.losses.base import DistillLoss, StepContext
from kdcore.models.output import ModelOutput
from kdcore.core.spec import TrainSpec
from kdcore.methods.strategies.base import TemperatureSchedule, Weighting


class StopRequested(Exception):
    """Raised between steps when the user asked to stop."""


class Diverged(Exception):
    def __init__(self, phase: str, step: int, message: str):
        super().__init__(message)
        self.phase, self.step = phase, step


@dataclass
class PhaseConfig:
    name: str
    model: nn.Module
    modalities: list[str]
    losses: dict[str, DistillLoss]
    loss_weights: dict[str, float]
    weighting: Weighting
    schedule: TemperatureSchedule
    epochs: int
    lr: float
    seed: int
    teacher: nn.Module | None = None
    teacher_modalities: list[str] = field(default_factory=list)
    teacher_cache: TeacherCache | None = None
    # what reacts to this phase's training (kdcore.train.callbacks.Callback): an extra phase's own
    # (ARD's adversarial inputs, a pruning schedule) followed by the experiment's (metrics, the run store)
    callbacks: list[Callback] = field(default_factory=list)
    min_best_epoch: int = 0  # best-on-val checkpoint chosen among epochs ≥ this (1-based; pruning schedules)
    # data regime (kdcore.data.regimes): the positions of the train split this phase trains on (None: all)
    # and the labels it sees per train-split position (None: the data's; −1 = unlabelled transfer sample)
    train_rows: Tensor | None = None
    train_labels: Tensor | None = None


def make_optimizer(params: list[nn.Parameter], train: TrainSpec, lr: float,
                   no_decay: list[nn.Parameter] | None = None) -> torch.optim.Optimizer:
    """``params`` get the spec's weight decay; ``no_decay`` (strategy parameters such as learned
    log-variances or temperatures) must not be pulled towards zero, so they get none."""
    kw = fastpath.fused_optimizer_kwargs(params + list(no_decay or []))  # one fused kernel on CUDA
    if no_decay:
        params = [{"params": params}, {"params": list(no_decay), "weight_decay": 0.0}]
    if train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=train.momentum, weight_decay=train.weight_decay, **kw)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=train.weight_decay, **kw)
    return torch.optim.Adam(params, lr=lr, weight_decay=train.weight_decay, **kw)


def teacher_output(cfg: PhaseConfig, batch_inputs: dict[str, Tensor], rows: Tensor) -> ModelOutput | None:
    if cfg.teacher is None:
        return None
    if cfg.teacher_cache is not None and cfg.teacher_cache.enabled:
        return cfg.teacher_cache.get(rows, batch_inputs)  # lazy: gathers only the fields a loss reads
    with torch.no_grad():
        return cfg.teacher({m: batch_inputs[m] for m in cfg.teacher_modalities})


def train_phase(cfg: PhaseConfig, data: TensorData, train: TrainSpec, device: torch.device,
                emit: Callable[[Event], None], should_stop: Callable[[], bool],
                run: PhaseRun | None = None) -> PhaseResult:
    """Train one phase; ``cfg.callbacks`` see its hooks with ``run`` (the caller's
    :class:`PhaseRun`, so it holds the final state afterwards; default: a fresh one)."""
    tr, va = data.split("train"), data.split("val")
    model = cfg.model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    regressors = [p for mod in cfg.losses.values() for p in mod.parameters()]
    strategy = [p for mod in (cfg.weighting, cfg.schedule) for p in mod.parameters()]
    opt = make_optimizer(trainable + regressors, train, cfg.lr, no_decay=strategy)
    phase_rows = cfg.train_rows
    n = len(tr) if phase_rows is None else int(phase_rows.numel())
    bs = min(train.batch_size, n)
    if dist.active():  # torchrun: batch_size is the global batch, each rank takes its share
        bs = dist.local_batch_size(bs)
    steps_per_epoch = (-(-n // dist.world_size()) + bs - 1) // bs
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    cache_note = cfg.teacher_cache.describe() if (cfg.teacher is not None and cfg.teacher_cache) else ""
    emit(PhaseStarted(cfg.name, cfg.epochs, steps_per_epoch, sum(p.numel() for p in model.parameters()),
                      cache_note))
    # same data order and same dropout masks for every phase that shares a seed
    order_gen = torch.Generator().manual_seed(cfg.seed + 12345)
    torch.manual_seed(cfg.seed + 777)
    all_mods = sorted(set(cfg.modalities) | set(cfg.teacher_modalities))
    precision = train.precision
    channels_last = fastpath.use_channels_last(device, precision)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    source = fastpath.BatchSource(tr, all_mods, device, channels_last=channels_last,
                                  labels=cfg.train_labels)  # gathered once
    partial_labels = cfg.train_labels is not None and bool((cfg.train_labels < 0).any())
    ddp = dist.active()
    forward = fastpath.step_module(dist.wrap(model, device), device, train.compile)
    state = run if run is not None else PhaseRun(cfg)
    state.optimizer, state.scheduler, state.order_gen = opt, sched, order_gen
    callbacks = state.callbacks
    for mod in (*cfg.losses.values(), cfg.weighting, cfg.schedule):
        mod.to(device)
    for cb in callbacks:  # a resume restores model, optimiser, scheduler, RNG and progress here
        cb.on_phase_start(state)
    state.started = time.time()
    for epoch in range(state.start_epoch, cfg.epochs):
        t0 = time.time()
        model.train()
        for mod in cfg.losses.values():
            mod.train()
        state.epoch = epoch
        order = torch.randperm(n, generator=order_gen)
        perm = source.rows_on_device(dist.shard(order if phase_rows is None else phase_rows[order]))
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        labelled_seen = torch.zeros((), device=device)
        for start in range(0, len(perm), bs):
            if should_stop():
                raise StopRequested()
            rows = perm[start : start + bs]
            batch = source.batch(rows)
            state.progress = state.step / total_steps
            t_out = teacher_output(cfg, batch.inputs, rows)
            s_inputs = {m: batch.inputs[m] for m in cfg.modalities}
            for cb in callbacks:
                s_inputs = cb.on_before_forward(state, s_inputs, batch.labels)
            amp = fastpath.autocast(device, precision)
            amp.__enter__()
            s_out = forward(s_inputs)
            temperature = cfg.schedule.value(state.progress)
            sw = cfg.weighting.sample_weights(s_out, t_out, batch.labels, temperature)
            ctx = StepContext(labels=batch.labels, epoch=epoch, total_epochs=cfg.epochs, step=state.step,
                              temperature=temperature, aux=batch.aux, sample_weight=sw, inputs=s_inputs,
                              labelled=(batch.labels >= 0) if partial_labels else None)
            # per-sample weights and the strategy's view of the outputs are for distillation terms;
            # label-only terms (CE) see every sample and the raw outputs
            label_ctx = dataclasses.replace(ctx, sample_weight=None)
            s_kd, t_kd = cfg.weighting.distill_outputs(s_out, t_out, batch.labels)
            terms: dict[str, Tensor] = {}
            owner: dict[str, str] = {}
            for name, loss in cfg.losses.items():
                kd_term = type(loss).needs_teacher
                args = (s_kd, t_kd, ctx) if kd_term else (s_out, t_out, label_ctx)
                for term, value in loss(*args).items():
                    terms[term] = value
                    owner[term] = name
            total, eff_w = cfg.weighting.combine(terms, owner)
            amp.__exit__(None, None, None)
            # one device→host transfer per step for the divergence check and the StepLosses values
            t_is_tensor = isinstance(temperature, Tensor)
            vals = torch.stack([total.detach().float(), *(v.detach().float() for v in terms.values()),
                                *((temperature.detach().float(),) if t_is_tensor else ())])
            vals = (dist.mean_across(vals) if ddp else vals).tolist()  # DDP: every rank sees the same values
            if not math.isfinite(vals[0]):
                bad = [k for k, v in zip(terms, vals[1:]) if not math.isfinite(v)]
                raise Diverged(cfg.name, state.step,
                               f"loss became {vals[0]} at step {state.step} of phase {cfg.name} "
                               f"(non-finite terms: {', '.join(bad) or 'total'}); try a lower learning rate")
            opt.zero_grad(set_to_none=True)
            total.backward()
            if ddp:  # loss / strategy parameters are not DDP's: average their gradients too
                dist.sync_grads(dist.unowned_params(opt, model))
            opt.step()
            sched.step()
            for cb in callbacks:
                cb.on_train_batch_end(state)
            loss_sum += total.detach() * len(rows)
            correct += (s_out.logits.detach().argmax(1) == batch.labels).sum()
            labelled_seen += (batch.labels >= 0).sum()
            emit(StepLosses(cfg.name, epoch, state.step, vals[0], dict(zip(terms, vals[1:])), eff_w,
                            None if cfg.teacher is None else (vals[-1] if t_is_tensor else float(temperature)),
                            opt.param_groups[0]["lr"]))
            state.step += 1
        ev = evaluate(model, va, cfg.modalities, device=device)
        extra_metrics = merged_metrics(cb.on_validation_end(state) for cb in callbacks)
        seen = float(len(perm))
        if ddp:  # train loss / accuracy over every rank's samples
            loss_sum, correct, seen, labelled_seen = dist.sum_across(torch.stack(
                [loss_sum.float(), correct.float(), torch.tensor(seen, device=device), labelled_seen.float()])).tolist()
        # train accuracy over the labelled samples (transfer-set samples have no label to score)
        m = EpochMetrics(cfg.name, epoch + 1, float(loss_sum) / seen, float(correct) / max(1.0, float(labelled_seen)),
                         ev.loss, ev.acc,
                         time.time() - t0, extra_metrics)
        state.history.append(m.to_dict())
        emit(m)
        if ev.output.attention is not None:
            cm = attention_by_class(ev.output.attention, ev.labels, data.num_classes)
            emit(AttentionSnapshot(cfg.name, epoch + 1, list(ev.output.modalities),
                                   cm.nan_to_num(0.0).tolist(), ev.output.attention.mean(0).tolist()))
        if ev.acc > state.best_acc and epoch + 1 >= cfg.min_best_epoch:
            state.best_acc, state.best_epoch = ev.acc, epoch + 1
            state.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for cb in callbacks:  # observers, then the run store's checkpoint of this epoch
            cb.on_epoch_end(state)
    opt.zero_grad(set_to_none=True)  # free the last step's gradients (a frozen teacher keeps none)
    best_state = state.best_state if state.best_state is not None else copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    test = evaluate(model, data.split("test"), cfg.modalities, device=device)
    state.result = PhaseResult(cfg.name, state.best_epoch, state.best_acc, test.acc, state.elapsed(), best_state,
                               state.history)
    return state.result
