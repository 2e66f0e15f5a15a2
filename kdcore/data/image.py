"""Image noise knobs: Gaussian noise and a random occluding square, drawn once from the seed."""

from __future__ import annotations

import torch
from torch import Tensor


def add_image_noise(images: Tensor, sigma: float, occlusion: float, generator: torch.Generator) -> Tensor:
    """images: [N, 1, H, W] in [0, 1]. Returns a noisy copy (values not clipped, so σ is exact)."""
    out = images.clone()
    if sigma > 0:
        out = out + sigma * torch.randn(out.shape, generator=generator)
    if occlusion > 0:
        n, _, h, w = out.shape
        side_h, side_w = max(1, round(occlusion * h)), max(1, round(occlusion * w))
        top = torch.randint(0, h - side_h + 1, (n,), generator=generator)
        left = torch.randint(0, w - side_w + 1, (n,), generator=generator)
        rows = torch.arange(h)[None, :, None]
        cols = torch.arange(w)[None, None, :]
        mask = ((rows >= top[:, None, None]) & (rows < (top + side_h)[:, None, None])
                & (cols >= left[:, None, None]) & (cols < (left + side_w)[:, None, None]))
        out = out.masked_fill(mask[:, None], 0.0)
    return out
