"""Efficiency report: what the student costs compared with its teacher.

For each model (teacher and every student phase) this measures

* ``params`` — number of parameters;
* ``flops`` — floating-point operations of one forward pass per sample, counted by
  :class:`torch.utils.flop_counter.FlopCounterMode` on a batch of real samples (it counts
  matrix multiplications and convolutions — 2 FLOPs per multiply-add — which dominate; element-wise
  operations are not counted);
* ``latency_ms_b1`` — CPU latency of one sample (batch 1), and ``latency_ms_b64`` — CPU time per
  sample at batch 64 (throughput view), each the **median** of several timed forward passes in
  eval mode after warm-up, on a CPU copy of the model, one intra-op thread, measured with the
  thread's CPU clock (so load from other processes does not inflate it);
* ``size_bytes`` — the model's size on disk as a safetensors file (bytes of the serialised file);

and for every model relative to the teacher: ``compression`` = teacher params / params and
``speedup_b1`` / ``speedup_b64`` = teacher latency / latency (the teacher itself reads 1.0).

CPU-clock medians are robust to other processes, not to frequency scaling or cache contention.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

EFFICIENCY_KEYS = ("flops", "latency_ms_b1", "latency_ms_b64", "size_bytes", "compression",
                   "speedup_b1", "speedup_b64")


def count_flops(model: nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    """Forward FLOPs per sample of ``model`` on ``inputs`` (a batch)."""
    batch = next(iter(inputs.values())).shape[0]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(inputs)
    return counter.get_total_flops() / batch


def latency_ms(model: nn.Module, inputs: dict[str, torch.Tensor], repeats: int, warmup: int = 2) -> float:
    """Median single-thread CPU milliseconds of one forward on ``inputs`` (no gradients).

    Timed with the calling thread's CPU clock while torch uses one intra-op thread, so that other
    processes competing for the cores (a shared machine, parallel jobs) do not inflate it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times = []
    try:
        with torch.no_grad():
            for i in range(warmup + repeats):
                t0 = time.thread_time()
                model(inputs)
                if i >= warmup:
                    times.append(time.thread_time() - t0)
    finally:
        torch.set_num_threads(threads)
    return 1000 * statistics.median(times)


def size_on_disk(model: nn.Module) -> int:
    """Bytes of the model's state dict serialised as safetensors (what the run folder stores)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return len(safetensors_bytes(state))


def _inputs(data, modalities: list[str], n: int) -> dict[str, torch.Tensor]:
    split = data.split("val") if len(data.split("val")) else data.split("train")
    rows = torch.arange(n) % len(split)
    return {m: t.contiguous() for m, t in split.batch(rows, modalities).inputs.items()}


def measure_model(model: nn.Module, data, modalities: list[str], repeats_b1: int = 10,
                  repeats_b64: int = 3) -> dict[str, float]:
    """Parameters, FLOPs/sample, CPU latency (batch 1 and 64) and safetensors size of ``model``."""
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    x1, x64 = _inputs(data, modalities, 1), _inputs(data, modalities, 64)
    return {
        "params": float(sum(p.numel() for p in cpu_model.parameters())),
        "flops": float(count_flops(cpu_model, x64)),
        "latency_ms_b1": latency_ms(cpu_model, x1, repeats_b1),
        "latency_ms_b64": latency_ms(cpu_model, x64, repeats_b64) / 64,
        "size_bytes": float(size_on_disk(cpu_model)),
    }


def relative(measured: dict[str, float], teacher: dict[str, float]) -> dict[str, float]:
    """Compression ratio and speed-ups of ``measured`` relative to ``teacher``."""
    div = lambda a, b: float(a / b) if b else float("nan")  # noqa: E731
    return {
        "compression": div(teacher["params"], measured["params"]),
        "speedup_b1": div(teacher["latency_ms_b1"], measured["latency_ms_b1"]),
        "speedup_b64": div(teacher["latency_ms_b64"], measured["latency_ms_b64"]),
    }


def efficiency_report(teacher: nn.Module, student: nn.Module, data, teacher_modalities: list[str],
                      student_modalities: list[str]) -> dict[str, Any]:
    """Both models measured, plus the student's compression ratio and speed-up."""
    t = measure_model(teacher, data, teacher_modalities)
    s = measure_model(student, data, student_modalities)
    return {"teacher": t, "student": s, **relative(s, t)}


def efficiency_metrics(exp, phase: str, model: nn.Module) -> dict[str, float]:
    """Per-phase metric (``on_phase_end`` through ``PhaseMetrics``): the efficiency keys for a
    phase's model, relative to the experiment's teacher. Models with the same architecture are
    measured once per experiment (the baseline and KD students share theirs), so their numbers are
    identical by construction. A tree student is measured its own way (:func:`tree_efficiency`)."""
    from kdcore.models.tree import TreeStudent

    if isinstance(model, TreeStudent):
        return tree_efficiency(exp, phase, model)
    memo: dict = exp.__dict__.setdefault("_efficiency_memo", {})

    def measured(net: nn.Module, mods: list[str]) -> dict[str, float]:
        key = (type(net).__name__, sum(p.numel() for p in net.parameters()), tuple(mods),
               tuple((k, tuple(v.shape)) for k, v in net.state_dict().items()))
        if key not in memo:
            memo[key] = measure_model(net, exp.data, mods)
        return memo[key]

    is_teacher = phase == "teacher"
    teacher = model if is_teacher else (exp.teacher if exp.teacher is not None else exp.models.get("teacher"))
    t_mods = exp.spec.teacher_modalities()
    mods = list(getattr(model, "modalities", None) or (t_mods if is_teacher else exp.spec.student_modalities()))
    mine = measured(model, mods)
    ref = mine if is_teacher or teacher is None else measured(teacher, t_mods)
    out = {k: v for k, v in mine.items() if k != "params"}
    out.update(relative(mine, ref))
    return out


# ---- gradient-boosted-tree students (student.kind: tree) ----------------------------------
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


def comparisons_per_sample(model: Any, x: np.ndarray) -> float:
    """Mean number of split comparisons (one float compare each) a sample of ``x`` goes through."""
    leaves = np.asarray(model.booster.predict(x, pred_leaf=True, num_threads=1)).reshape(x.shape[0], -1)
    depths = [_leaf_depths(t) for t in model.booster.dump_model()["tree_info"]]
    total = sum(depths[j][int(leaf)] for row in leaves for j, leaf in enumerate(row))
    return total / max(1, x.shape[0])


def tree_efficiency(exp, phase: str, model: Any) -> dict[str, float]:
    """The efficiency keys of this module for a tree student (:class:`kdcore.models.tree.TreeStudent`):
    ``flops`` = split comparisons per sample (a tree does no multiply-adds), CPU latency at batch 1
    and per sample at batch 64 (median, one thread, the same timer), ``size_bytes`` = bytes of the
    LightGBM text model, and the ratios to the teacher (``compression`` from the learned-number
    count, :meth:`TreeStudent.parameter_count`)."""
    from kdcore.models.tree import features_of

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
