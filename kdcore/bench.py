"""``python -m kdcore bench``: the engine's KD step measured against a hand-written PyTorch loop.

In ONE process, the same KD training (same teacher, same student initial weights, same data
order, batch size, epochs, optimiser, LR schedule and seed) runs through

* the engine (:func:`kdcore.train.trainer.train_phase`, every event emitted, validation every
  epoch, best-on-val checkpoint, test evaluation), and
* a minimal loop written the way RepDistiller's ``train_distill`` + ``validate`` are written:
  forward the teacher (or read precomputed logits), forward the student, ``CE·w + KL·T²·w``,
  ``backward``, ``step``, a per-step ``loss.item()`` meter, validation and best-state copy every
  epoch, test accuracy of the best state.

Variants are run interleaved (repeat r runs every variant once, the order rotating each
repeat), so a load spike from other processes on a shared machine hits all of them. The report
gives samples/s (median over repeats), the *paired* ratio ``engine time / bare time`` (median
over repeats of the ratio within a repeat; 1.00 = no engine overhead), and the ratio of the
fastest repeats (``cpu_min``, timeit's convention: on a VM a single repeat of the same code varies
by ±15 %, the fastest one is the least disturbed), with every repeat's CPU seconds.

Because both paths do the same arithmetic in the same order, they must also reach the same
validation accuracy after every epoch; the report checks it (``same_accuracy``).

The numbers are wall-clock (``perf_counter``) and process CPU time (``process_time``); with one
intra-op thread the CPU time is insensitive to other processes competing for the cores.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

BENCH_OVERRIDES = [
    # The teacher's quality does not change the cost of a student step; two epochs keep setup short.
    "train.teacher_epochs=2",
]


@dataclass
class Timing:
    wall: float
    cpu: float
    samples: int
    val_acc: list[float]
    test_acc: float


# ---- the hand-written loop --------------------------------------------------------------
def bare_train(student: nn.Module, teacher: nn.Module | None, data, modalities: list[str],
               teacher_modalities: list[str], epochs: int, batch_size: int, lr: float, seed: int,
               ce_weight: float, kd_weight: float, temperature: float,
               cached_teacher_logits: torch.Tensor | None = None) -> Timing:
    """RepDistiller-style KD (or CE-only when ``teacher`` and the cache are None) on in-memory tensors."""
    tr, va, te = data.split("train"), data.split("val"), data.split("test")
    mods = sorted(set(modalities) | set(teacher_modalities if cached_teacher_logits is None else []))
    x_tr = {m: data.inputs[m][tr.indices] for m in mods}
    y_tr = data.labels[tr.indices]
    n = len(tr)
    bs = min(batch_size, n)
    steps = max(1, epochs * ((n + bs - 1) // bs))
    opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(seed + 12345)  # the engine's data order for this seed
    torch.manual_seed(seed + 777)  # the engine's dropout stream for this seed
    use_teacher = teacher is not None or cached_teacher_logits is not None
    T = temperature

    def validate(split) -> float:
        student.eval()
        correct = 0
        with torch.no_grad():
            for s in range(0, len(split), 512):
                idx = split.indices[s : s + 512]
                out = student({m: data.inputs[m][idx] for m in modalities})
                correct += int((out.logits.argmax(1) == data.labels[idx]).sum())
        student.train()
        return correct / len(split)

    t0, c0 = time.perf_counter(), time.process_time()
    best, best_state, vals = -1.0, None, []
    for _ in range(epochs):
        student.train()
        perm = torch.randperm(n, generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for start in range(0, n, bs):
            idx = perm[start : start + bs]
            y = y_tr[idx]
            logit_s = student({m: x_tr[m][idx] for m in modalities}).logits
            loss = F.cross_entropy(logit_s, y)
            if use_teacher:
                if cached_teacher_logits is not None:
                    logit_t = cached_teacher_logits[idx]
                else:
                    with torch.no_grad():
                        logit_t = teacher({m: x_tr[m][idx] for m in teacher_modalities}).logits
                # the engine's arithmetic (log-probability target), so both reach the same accuracy to the
                # last sample; RepDistiller's softmax target is the same KL up to rounding, which over a
                # few epochs is enough to flip a validation prediction or two
                kl = F.kl_div(F.log_softmax(logit_s / T, dim=1), F.log_softmax(logit_t / T, dim=1),
                              reduction="batchmean", log_target=True) * T**2
                loss = ce_weight * loss + kd_weight * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)  # RepDistiller's AverageMeters: loss and top-1
            correct += int((logit_s.detach().argmax(1) == y).sum())
            seen += len(idx)
        acc = validate(va)
        vals.append(acc)
        if acc > best:
            best, best_state = acc, {k: v.detach().clone() for k, v in student.state_dict().items()}
    student.load_state_dict(best_state)
    test = validate(te)
    return Timing(time.perf_counter() - t0, time.process_time() - c0, epochs * n, vals, test)


# ---- the engine ---------------------------------------------------------------------------
def engine_train(exp, losses: dict, cache: bool) -> Timing:
    from kdcore.train.trainer import train_phase

    cfg = exp.student_phase("kd" if any(k != "ce" for k in losses) else "baseline", losses)
    if not cache:
        cfg.teacher_cache = None
    events: list = []
    t0, c0 = time.perf_counter(), time.process_time()
    res = train_phase(cfg, exp.data, exp.spec.train, exp.device, events.append, lambda: False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(exp.data.split("train"))
    vals = [h["val_acc"] for h in res.history]
    return Timing(wall, cpu, cfg.epochs * n, vals, res.test_acc)


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def run_bench(spec, repeats: int = 5, threads: int | None = 1,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every variant ``repeats`` times, interleaved; return the report dict."""
    from kdcore.core.spec import LossTerm
    from kdcore.pipeline.experiment import Experiment

    if threads:
        torch.set_num_threads(threads)
    say = progress or (lambda s: None)
    if spec.distill.losses.keys() - {"ce", "kd"}:
        raise ValueError("bench compares against a hand-written CE + KD loop; use a spec whose "
                         f"distill.losses are ce and kd (got {', '.join(spec.distill.losses)})")
    if spec.distill.weighting != "fixed" or spec.distill.temperature_schedule != "constant":
        raise ValueError("bench needs distill.weighting=fixed and distill.temperature_schedule=constant")
    if spec.train.optimizer != "adam" or spec.train.weight_decay:
        raise ValueError("bench's hand-written loop uses Adam without weight decay (train.optimizer=adam)")
    exp = Experiment(spec)
    say("setup: loading data, training the teacher briefly, building the teacher cache")
    exp.setup()
    tr = spec.train
    ce_w = spec.distill.losses["ce"].weight if "ce" in spec.distill.losses else 0.0
    kd_w = spec.distill.losses["kd"].weight if "kd" in spec.distill.losses else 0.0
    s_mods, t_mods = spec.student_modalities(), spec.teacher_modalities()
    seed = spec.data.seed + 1  # student phases use seed offset 1 (Experiment.student_phase)
    with torch.no_grad():
        from kdcore.train.evaluate import predict

        cached = predict(exp.teacher, exp.data.split("train"), t_mods, 512, exp.device).logits.to(exp.device)

    def bare(kind: str) -> Timing:
        student = exp.new_student()
        common = dict(data=exp.data, modalities=s_mods, epochs=tr.student_epochs, batch_size=tr.batch_size,
                      lr=tr.lr, seed=seed, temperature=spec.distill.temperature)
        if kind == "student":
            return bare_train(student, None, teacher_modalities=[], ce_weight=1.0, kd_weight=0.0, **common)
        return bare_train(student, None if kind == "kd_cached" else exp.teacher, teacher_modalities=t_mods,
                          ce_weight=ce_w, kd_weight=kd_w,
                          cached_teacher_logits=cached if kind == "kd_cached" else None, **common)

    variants: dict[str, Callable[[], Timing]] = {
        "engine_kd": lambda: engine_train(exp, spec.distill.losses, cache=False),
        "bare_kd": lambda: bare("kd"),
        "engine_kd_cached": lambda: engine_train(exp, spec.distill.losses, cache=True),
        "bare_kd_cached": lambda: bare("kd_cached"),
        "engine_student": lambda: engine_train(exp, {"ce": LossTerm(weight=1.0)}, cache=False),
        "bare_student": lambda: bare("student"),
    }
    names = list(variants)
    load_before = os.getloadavg()[0]
    # one untimed warm-up of each variant (allocator, lazy init)
    for name in names:
        variants[name]()
    runs: dict[str, list[Timing]] = {k: [] for k in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            runs[name].append(variants[name]())
        say(f"repeat {r + 1}/{repeats} done")

    def sps(name: str, clock: str) -> float:
        return _median([t.samples / getattr(t, clock) for t in runs[name]])

    def paired(a: str, b: str, clock: str) -> float:
        return _median([getattr(x, clock) / getattr(y, clock) for x, y in zip(runs[a], runs[b])])

    ratios = {}
    for label, a, b in (("engine_over_bare_kd", "engine_kd", "bare_kd"),
                        ("engine_over_bare_kd_cached", "engine_kd_cached", "bare_kd_cached"),
                        ("engine_over_bare_student", "engine_student", "bare_student"),
                        ("cached_kd_over_student_only", "engine_kd_cached", "engine_student"),
                        ("bare_cached_kd_over_student_only", "bare_kd_cached", "bare_student"),
                        ("cache_speedup", "engine_kd", "engine_kd_cached")):
        ratios[label] = {"wall": round(paired(a, b, "wall"), 4), "cpu": round(paired(a, b, "cpu"), 4),
                         # timeit's convention: the fastest repeat is the one least disturbed by the machine
                         "cpu_min": round(min(t.cpu for t in runs[a]) / min(t.cpu for t in runs[b]), 4)}
    def same_acc(a: str, b: str) -> bool:  # float32 (engine) vs Python float (bare) accuracies
        x, y = runs[a][0], runs[b][0]
        return len(x.val_acc) == len(y.val_acc) and all(
            abs(p - q) < 1e-6 for p, q in zip(x.val_acc + [x.test_acc], y.val_acc + [y.test_acc]))

    same = {"kd": same_acc("engine_kd", "bare_kd"), "kd_cached": same_acc("engine_kd_cached", "bare_kd_cached"),
            "student": same_acc("engine_student", "bare_student")}
    return {
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "preset": spec.name,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(exp.device),
        "repeats": repeats,
        "epochs": tr.student_epochs,
        "batch_size": tr.batch_size,
        "train_samples": len(exp.data.split("train")),
        "teacher_cache": exp.teacher_cache.describe() if exp.teacher_cache else "",
        "samples_per_s": {name: {"wall": round(sps(name, "wall"), 1), "cpu": round(sps(name, "cpu"), 1)}
                          for name in names},
        "ratios": ratios,
        "same_accuracy": same,
        "val_acc": {name: runs[name][0].val_acc for name in names},
        "cpu_seconds": {name: [round(t.cpu, 4) for t in runs[name]] for name in names},
        "targets": {"engine_over_bare": 1.05, "cached_kd_over_student_only": 1.15},
    }


def bench_table(rep: dict[str, Any]) -> str:
    s, r = rep["samples_per_s"], rep["ratios"]
    lines = [
        f"KD Lab bench — preset {rep['preset']}, {rep['train_samples']} training samples, batch "
        f"{rep['batch_size']}, {rep['epochs']} epochs per run, {rep['repeats']} interleaved repeats, "
        f"{rep['threads']} torch thread(s), {rep['device']}, torch {rep['torch']}",
        f"{'variant':<20} {'samples/s (wall)':>17} {'samples/s (cpu)':>16}",
    ]
    for name, v in s.items():
        lines.append(f"{name:<20} {v['wall']:>17,.0f} {v['cpu']:>16,.0f}")
    lines.append("")
    lines.append(f"{'ratio (time ÷ time, median of paired repeats)':<50} {'wall':>7} {'cpu':>7} {'cpu min':>8}  target")
    targets = {"engine_over_bare_kd": "≤ 1.05", "engine_over_bare_kd_cached": "≤ 1.05",
               "engine_over_bare_student": "≤ 1.05", "cached_kd_over_student_only": "≤ 1.15"}
    for name, v in r.items():
        lines.append(f"{name:<50} {v['wall']:>7.3f} {v['cpu']:>7.3f} {v.get('cpu_min', float('nan')):>8.3f}  "
                     f"{targets.get(name, '')}")
    ok = rep["same_accuracy"]
    lines.append("")
    lines.append("engine and bare loop reach the same validation accuracy every epoch: "
                 + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in ok.items()))
    ov = r["engine_over_bare_kd_cached"]
    lines.append(f"engine overhead (default path, teacher cache on): {100 * (ov['cpu'] - 1):+.1f}% CPU time, "
                 f"{100 * (ov['wall'] - 1):+.1f}% wall-clock")
    for label, key, target in (("engine ÷ bare loop", "engine_over_bare_kd_cached", 1.05),
                               ("engine ÷ bare loop (teacher per step)", "engine_over_bare_kd", 1.05),
                               ("cached KD ÷ student-only", "cached_kd_over_student_only", 1.15)):
        v = r[key]
        lines.append(f"  {label:<38} ≤ {target}: CPU time {'PASS' if v['cpu'] <= target else 'FAIL'} "
                     f"({v['cpu']:.3f}), wall {'PASS' if v['wall'] <= target else 'FAIL'} ({v['wall']:.3f}), "
                     f"fastest repeats {'PASS' if v['cpu_min'] <= target else 'FAIL'} ({v['cpu_min']:.3f})")
    load = rep.get("load_average")
    if load:
        lines.append(f"load average during the run: {load[0]:.1f} → {load[1]:.1f} on {rep['cpu_count']} CPUs "
                     "(wall-clock ratios are only trustworthy on an idle machine; CPU-time ratios much less "
                     "sensitive to other processes)")
    return "\n".join(lines)


def main_bench(spec, repeats: int, threads: int | None, as_json: bool, progress=None) -> dict[str, Any]:
    rep = run_bench(spec, repeats=repeats, threads=threads, progress=progress)
    print(json.dumps(rep, indent=2) if as_json else bench_table(rep))
    return rep


__all__ = ["BENCH_OVERRIDES", "bare_train", "bench_table", "engine_train", "main_bench", "run_bench"]
