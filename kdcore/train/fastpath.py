"""The trainer's fast path: how batches reach the device and how the step runs there.

* :class:`BatchSource` gathers the training split's tensors **once per phase** into contiguous
  tensors (the bundled datasets keep some modalities as strided views, which makes every
  per-batch gather scattered). On CUDA the whole split goes to the device when it fits in a
  quarter of the free memory, so a step reads its batch with one on-device ``index_select`` and
  no host→device copy; otherwise it stays in pinned host memory and every batch is copied with
  ``non_blocking=True``. 4-D image tensors are stored ``channels_last`` when requested.
* :func:`autocast` — bf16 autocast (``train.precision: bf16``) on CUDA (and CPU if asked);
  a no-op context for fp32.
* :func:`step_module` — ``torch.compile`` of the trained model's forward for the training step
  (``train.compile: true``): ``mode="reduce-overhead"`` on CUDA (CUDA graphs: one launch per
  graph instead of one per kernel, which is what small-input distillation is bound by), the
  default inductor mode on CPU. Evaluation keeps the eager model.
* :func:`suggest_batch_size` — the batch-size advisor: doubles the batch while samples/s still
  grows by ≥ 10 % and memory allows, and reports the measured curve.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

import torch
from torch import Tensor, nn

from kdcore.data.base import Batch, Split


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class BatchSource:
    """The training split's tensors, gathered once; ``batch(rows)`` returns a :class:`Batch` on the device.

    ``rows`` are positions inside the split (what the teacher cache indexes with)."""

    def __init__(self, split: Split, modalities: list[str], device: torch.device | str,
                 channels_last: bool = False, device_fraction: float = 0.25, labels: Tensor | None = None):
        self.device = torch.device(device)
        d, idx = split.data, split.indices

        def fmt(t: Tensor) -> Tensor:
            t = t.contiguous()
            if channels_last and t.dim() == 4 and t.is_floating_point():
                t = t.contiguous(memory_format=torch.channels_last)
            return t

        inputs = {m: fmt(d.inputs[m][idx]) for m in modalities}
        # ``labels`` (per split position) replaces the data's: a regime's noisy teacher labels, or the
        # students' labels with −1 for the transfer set (whose auxiliary labels are hidden as well)
        labels = (d.labels[idx] if labels is None else labels).contiguous()
        hidden = labels < 0
        aux = {k: v[idx].masked_fill(hidden, -1).contiguous() for k, v in d.aux.items()}
        self.on_device = True
        if self.device.type == "cuda":
            total = _nbytes([*inputs.values(), labels, *aux.values()])
            free, _ = torch.cuda.mem_get_info(self.device)
            self.on_device = total <= device_fraction * free
            if self.on_device:
                mv = lambda t: t.to(self.device, non_blocking=True)  # noqa: E731
            else:
                mv = lambda t: t.pin_memory()  # noqa: E731
            inputs = {k: mv(v) for k, v in inputs.items()}
            labels, aux = mv(labels), {k: mv(v) for k, v in aux.items()}
        elif self.device.type != "cpu":
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            labels, aux = labels.to(self.device), {k: v.to(self.device) for k, v in aux.items()}
        self.inputs, self.labels, self.aux = inputs, labels, aux
        self.channels_last = channels_last

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def rows_on_device(self, rows: Tensor) -> Tensor:
        """Move a permutation (or a slice of one) to where the data lives, once per epoch."""
        return rows.to(self.labels.device, non_blocking=True) if self.on_device else rows

    def batch(self, rows: Tensor) -> Batch:
        if self.on_device:
            sel = lambda t: t.index_select(0, rows)  # noqa: E731
        else:  # pinned host memory → device, asynchronously
            r = rows.cpu()
            sel = lambda t: t.index_select(0, r).pin_memory().to(self.device, non_blocking=True)  # noqa: E731
        return Batch({k: sel(v) for k, v in self.inputs.items()}, sel(self.labels),
                     {k: sel(v) for k, v in self.aux.items()}, rows)

    def describe(self) -> str:
        where = "device" if self.on_device else "pinned host memory"
        return f"train split on {where}" + (", channels_last" if self.channels_last else "")


def precision_dtype(precision: str) -> torch.dtype | None:
    return torch.bfloat16 if precision == "bf16" else None


def autocast(device: torch.device, precision: str):
    """bf16 autocast for ``precision == "bf16"``; a no-op otherwise."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def use_channels_last(device: torch.device, precision: str) -> bool:
    """channels_last pays for convolutions on CUDA tensor cores (bf16); on CPU it does not here."""
    return device.type == "cuda" and precision == "bf16"


def step_module(model: nn.Module, device: torch.device, compile_: bool) -> Callable[..., Any]:
    """The callable the training step uses for the model's forward (compiled when asked)."""
    if not compile_:
        return model
    if device.type != "cuda":
        return torch.compile(model, dynamic=False)
    compiled = torch.compile(model, mode="reduce-overhead", dynamic=False)

    def forward(*args, **kwargs):
        # each call starts a new training iteration: CUDA-graph outputs of the previous step may be reused
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(*args, **kwargs)

    return forward


def fused_optimizer_kwargs(params: list[nn.Parameter]) -> dict[str, Any]:
    """``fused=True`` for Adam/AdamW/SGD when every parameter lives on CUDA: one multi-tensor
    kernel instead of several per parameter."""
    if params and all(p.is_cuda for p in params):
        return {"fused": True}
    return {}


# ---- batch-size advisor --------------------------------------------------------------------
def measure_step(step: Callable[[int], None], batch: int, iters: int, device: torch.device) -> float:
    """Samples/s of ``step(batch)`` (after two warm-up calls)."""
    for _ in range(2):
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batch * iters / (time.perf_counter() - t0)


def suggest_batch_size(step: Callable[[int], None], device: torch.device, start: int = 64,
                       limit: int = 4096, iters: int = 10, min_gain: float = 1.10,
                       max_samples: int | None = None,
                       measure: Callable[[int], float] | None = None) -> dict[str, Any]:
    """Double the batch from ``start`` while throughput grows by ≥ ``min_gain``× per doubling and the
    step fits in memory. ``step(batch)`` runs one full training step at that batch size
    (``measure(batch) -> samples/s`` replaces the timing, for tests).

    Returns ``{"batch_size": chosen, "curve": [{"batch", "samples_per_s"}...], "reason": str}``.
    Larger batches change the optimisation (fewer steps per epoch): scale the learning rate with it.
    """
    curve: list[dict[str, float]] = []
    best, reason = start, f"reached the limit {limit}"
    b = start
    while b <= limit and (max_samples is None or b <= max_samples):
        try:
            sps = measure(b) if measure is not None else measure_step(step, b, iters, device)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            reason = f"batch {b} ran out of device memory"
            break
        curve.append({"batch": b, "samples_per_s": round(sps, 1)})
        if len(curve) > 1 and sps < min_gain * curve[-2]["samples_per_s"]:
            reason = f"doubling to {b} gained < {min_gain:.2f}×"
            break
        best = b
        b *= 2
    return {"batch_size": best, "curve": curve, "reason": reason}
