"""Networks that ``torch.func.vmap`` can batch over a stack of students.

``vmap`` has no batching rule for ``aten::gru.input`` (torch 2.x), so a network with an
``nn.GRU`` text encoder cannot be vmapped as it is. :class:`BatchableGRU` is the same function
written from batchable ops (matmul, sigmoid, tanh), with the same parameters under the same
names, so a state dict moves between the two unchanged. For every layer ``k`` and direction
(PyTorch's gate order r, z, n)::

    r_t = σ(W_ir x_t + b_ir + W_hr h_{t−1} + b_hr)
    z_t = σ(W_iz x_t + b_iz + W_hz h_{t−1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t−1} + b_hn))
    h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}

(Cho et al. 2014, as documented for ``torch.nn.GRU``), h_0 = 0; the reverse direction reads the
padded sequence from its end, as ``nn.GRU`` does on an unpacked batch; layer k+1 reads the
concatenated directions of layer k. Inter-layer dropout (``nn.GRU(dropout>0)``) is not
reproduced: :func:`stackable_copy` refuses such a GRU.

Students of *different seeds* stacked together each need their own dropout masks, drawn from
their own seed's random stream as training alone would draw them; inside ``vmap`` every random op
draws once for all students (``randomness="same"``). :class:`MaskedDropout` is dropout with the
mask handed in: ``x · m`` with ``m = bernoulli(1 − p) / (1 − p)`` drawn outside the vmap, one per
student — for the same random numbers exactly ``F.dropout(x, p, training=True)`` (values and
gradient, checked in ``tests/test_stacked.py``). Such students also see different token ids,
and ``vmap`` of ``nn.Embedding(padding_idx=p)`` over batched ids gives the padding row a gradient
for every student but the first (torch 2.14: measured, up to the size of the real rows' gradients);
:class:`PaddedEmbedding` is the same lookup with the padding row detached. :func:`stackable_copy`
puts both in place when asked (``per_member=True``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BatchableGRU(nn.Module):
    """``nn.GRU(batch_first=True)`` from batchable ops; parameters named as ``nn.GRU`` names them."""

    def __init__(self, gru: nn.GRU):
        super().__init__()
        if not gru.batch_first:
            raise ValueError("BatchableGRU: only batch_first=True GRUs are supported")
        if gru.dropout:
            raise ValueError(f"BatchableGRU: inter-layer dropout={gru.dropout} is not reproduced")
        if getattr(gru, "proj_size", 0):
            raise ValueError("BatchableGRU: proj_size is not supported")
        self.num_layers, self.hidden_size = gru.num_layers, gru.hidden_size
        self.bidirectional, self.bias = gru.bidirectional, gru.bias
        for name, p in gru.named_parameters():
            self.register_parameter(name, nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad))

    def _direction(self, x: Tensor, suffix: str, reverse: bool) -> Tensor:
        w_ih, w_hh = getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}")
        gi = x @ w_ih.t()  # [B, T, 3H], every time step at once
        if self.bias:
            gi = gi + getattr(self, f"bias_ih{suffix}")
        b_hh = getattr(self, f"bias_hh{suffix}") if self.bias else None
        H = self.hidden_size
        h = x.new_zeros(x.shape[0], H)
        steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
        out: list[Tensor] = [None] * x.shape[1]  # type: ignore[list-item]
        for t in steps:
            gh = h @ w_hh.t()
            if b_hh is not None:
                gh = gh + b_hh
            i_r, i_z, i_n = gi[:, t].chunk(3, dim=1)
            h_r, h_z, h_n = gh.chunk(3, dim=1)
            r = torch.sigmoid(i_r + h_r)
            z = torch.sigmoid(i_z + h_z)
            n = torch.tanh(i_n + r * h_n)
            h = (1 - z) * n + z * h
            out[t] = h
        return torch.stack(out, dim=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        finals = []
        for k in range(self.num_layers):
            outs = [self._direction(x, f"_l{k}", False)]
            if self.bidirectional:
                outs.append(self._direction(x, f"_l{k}_reverse", True))
            finals.extend([outs[0][:, -1], *([outs[1][:, 0]] if self.bidirectional else [])])
            x = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
        return x, torch.stack(finals, dim=0)  # (output [B, T, D·H], h_n [layers·D, B, H]) as nn.GRU


class MaskedDropout(nn.Module):
    """Dropout whose scaled mask ``m = bernoulli(1 − p) / (1 − p)`` is the buffer ``mask`` (set
    before each training forward); identity in eval mode, like ``nn.Dropout``."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)
        self.register_buffer("mask", torch.ones(1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask if self.training else x


def draw_dropout_mask(shape: tuple[int, ...], p: float, generator: torch.Generator) -> Tensor:
    """The scaled mask ``F.dropout(x, p, training=True)`` multiplies ``x`` by, for ``x`` of ``shape``,
    drawn as it draws it (``bernoulli_(1 − p)``, then ``/ (1 − p)``) from ``generator`` (CPU)."""
    return torch.empty(shape).bernoulli_(1 - p, generator=generator).div_(1 - p)


def dropout_sites(model: nn.Module) -> list[tuple[str, float]]:
    """``(module name, p)`` of every active ``nn.Dropout`` (p > 0) in ``model``."""
    return [(name, float(mod.p)) for name, mod in model.named_modules() if isinstance(mod, nn.Dropout) and mod.p > 0]


class PaddedEmbedding(nn.Module):
    """``nn.Embedding(padding_idx=p)``: the same rows (``weight``), the padding row's gradient zero,
    written so that ``vmap`` over batched token ids keeps it zero (the row is detached, not masked
    by index in the backward)."""

    def __init__(self, emb: nn.Embedding):
        super().__init__()
        if emb.max_norm is not None or emb.scale_grad_by_freq or emb.sparse:
            raise ValueError("PaddedEmbedding: max_norm, scale_grad_by_freq and sparse are not supported")
        self.padding_idx = int(emb.padding_idx)
        self.weight = nn.Parameter(emb.weight.detach().clone(), requires_grad=emb.weight.requires_grad)

    def forward(self, ids: Tensor) -> Tensor:
        p, w = self.padding_idx, self.weight
        return F.embedding(ids, torch.cat([w[:p], w[p : p + 1].detach(), w[p + 1 :]]))


def _replace(twin: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(twin.get_submodule(parent) if parent else twin, child, new)


def stackable_copy(model: nn.Module, per_member: bool = False) -> nn.Module:
    """A deep copy of ``model`` with every ``nn.GRU`` replaced by an equal :class:`BatchableGRU`
    (same state-dict keys and values) and, with ``per_member`` (students that see different
    batches), every active ``nn.Dropout`` by a :class:`MaskedDropout` and every ``nn.Embedding``
    with a padding index by a :class:`PaddedEmbedding`; raises ``ValueError`` naming a layer it
    cannot replace."""
    twin = copy.deepcopy(model)
    if per_member:
        for name, p in dropout_sites(twin):
            _replace(twin, name, MaskedDropout(p))
        for name, mod in list(twin.named_modules()):
            if isinstance(mod, nn.Embedding) and mod.padding_idx is not None:
                try:
                    _replace(twin, name, PaddedEmbedding(mod))
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
    for name, mod in list(twin.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, nn.GRU):
                try:
                    setattr(mod, child_name, BatchableGRU(child))
                except ValueError as exc:
                    raise ValueError(f"{name + '.' if name else ''}{child_name}: {exc}") from None
            elif isinstance(child, nn.RNNBase):
                raise ValueError(f"{name + '.' if name else ''}{child_name}: {type(child).__name__} has no "
                                 "batchable twin (only nn.GRU)")
    return twin
