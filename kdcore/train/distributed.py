"""Data-parallel training under ``torchrun`` (DistributedDataParallel), with the same spec file.

``torchrun --nproc_per_node=N -m kdcore run --preset digits-av`` sets ``WORLD_SIZE``, ``RANK``
and ``LOCAL_RANK``; :func:`init_from_env` then starts the process group (gloo on CPU, nccl on
CUDA, one GPU per process). Semantics:

* ``train.batch_size`` stays the **global** batch: each rank takes ``batch_size / N`` rows.
* Every epoch's permutation is drawn from the same seeded generator on every rank and sharded
  like :class:`torch.utils.data.DistributedSampler` (padded to a multiple of N by repeating its
  head, rank r takes positions r, r+N, …). Rank r's k-th local batch is then exactly its share of
  the single-process run's k-th batch, so the ranks together see the same batches in the same
  order as one process.
* The trained model (student, or the teacher while it trains) is wrapped in DDP, which averages
  gradients; learnable parts of losses and strategies (regressors, learnable temperature, …)
  are averaged by :func:`sync_grads`.
* Per-step loss values are averaged across ranks (one small all-reduce that also carries the
  divergence check, so every rank stops at the same step); epoch train loss/accuracy are summed
  across ranks. Validation runs on every rank on identical weights (DDP keeps parameters and
  buffers in sync), so every rank picks the same best epoch.
* Only rank 0 logs, emits events, writes the run folder and checkpoints.

Batch-norm statistics are per rank (no SyncBatchNorm): that is the one numerical difference
from a single process.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from torch import Tensor, nn


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def active() -> bool:
    return world_size() > 1


def init_from_env(device: str = "auto") -> bool:
    """Start the process group when launched by torchrun (``WORLD_SIZE`` > 1). Returns True if
    this process is part of a multi-process run. Idempotent."""
    if env_world_size() <= 1:
        return False
    if is_initialized():
        return True
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=10))
    return True


def shutdown() -> None:
    if is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def local_batch_size(batch_size: int) -> int:
    """Rows per rank for a global ``batch_size``."""
    w = world_size()
    if batch_size % w:
        raise ValueError(f"train.batch_size={batch_size} must be divisible by the number of processes ({w})")
    return batch_size // w


def shard(perm: Tensor) -> Tensor:
    """This rank's share of an epoch permutation (DistributedSampler semantics, drop_last=False)."""
    w = world_size()
    if w == 1:
        return perm
    n = perm.numel()
    total = -(-n // w) * w
    if total > n:
        perm = torch.cat([perm, perm[: total - n]])
    return perm[rank() : total : w]


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The module the training step calls: DDP around ``model`` in a multi-process run."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=False)


def sync_grads(params: list[nn.Parameter]) -> None:
    """Average gradients of parameters that DDP does not own (loss / strategy parameters)."""
    if not active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    i = 0
    for g in grads:
        g.copy_(flat[i : i + g.numel()].view_as(g))
        i += g.numel()


def mean_across(values: Tensor) -> Tensor:
    """Element-wise mean over ranks (a no-op in one process)."""
    if not active():
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / world_size()


def sum_across(values: Tensor) -> Tensor:
    if not active():
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values


def unowned_params(opt: torch.optim.Optimizer, model: nn.Module) -> list[nn.Parameter]:
    """Optimised parameters that are not the model's (DDP averages only the model's gradients)."""
    owned = {id(p) for p in model.parameters()}
    return [p for g in opt.param_groups for p in g["params"] if id(p) not in owned]
