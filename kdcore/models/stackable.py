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
"""

from __future__ import annotations

import copy

import torch
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


def stackable_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every ``nn.GRU`` replaced by an equal :class:`BatchableGRU`
    (same state-dict keys and values); raises ``ValueError`` naming a GRU it cannot replace."""
    twin = copy.deepcopy(model)
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
