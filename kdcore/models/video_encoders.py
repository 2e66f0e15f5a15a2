"""Encoders for the ``video`` modality kind: clips ``[B, C, T, H, W]`` (the Conv3d layout).

Registered like every encoder (:func:`kdcore.models.encoders.register`), for the ``video`` kind only,
so the spec refuses them on an image, spectrogram, tokens or vector modality (and refuses the 2-D
encoders on a video) with a line naming the field.

* ``conv3d`` (teacher, the default for video) — ``depth`` blocks of Conv3d 3×3×3-BN-ReLU (width
  doubles per block), 1×2×2 max-pool (space only, while the map is ≥ 4 pixels: every frame keeps
  its own map), global average pool over time and space, Linear → ``dim``.
* ``cnn_gru`` (teacher) — the 2-D :class:`~kdcore.models.encoders.CNNEncoder` blocks on every frame,
  spatial mean → a sequence [B, T, C] → GRU (``dim`` units) → last hidden state → Linear → ``dim``.
* ``frame_cnn`` (student) — the same 2-D CNN on **one** frame only (the middle one, T // 2): what a
  single-image model of the clip sees.
* ``pooled_cnn`` (student) — the 2-D CNN on every frame, features averaged over time (no order).

Every encoder keeps its convolutional blocks in ``self.blocks``, each block mapping a clip to a
clip-shaped map ``[B, C', T', H', W']`` (Grad-CAM hooks the last one and
:meth:`VideoEncoder.cam_to_input` puts its map back on the frames). The ``feature_maps`` it returns
are those maps **averaged over time** ``[B, C', H', W']``, so the feature losses (FitNets, attention
transfer) pair a video teacher with a single-frame student or an image model unchanged.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdcore.data.base import ModalityInfo
from kdcore.models.encoders import Encoder, register


class PerFrame(nn.Module):
    """A 2-D module applied to every frame: ``[B, C, T, H, W] → [B, C', T, H', W']``."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        y = self.inner(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


def _cnn_blocks(in_ch: int, side: int, width: int, depth: int, three_d: bool) -> tuple[nn.ModuleList, int]:
    """conv-BN-ReLU(-pool) blocks as in :class:`~kdcore.models.encoders.CNNEncoder`, 3-D or per frame."""
    blocks, ch, h = [], in_ch, side
    for i in range(depth):
        out = width * (2**i)
        if three_d:
            layers: list[nn.Module] = [nn.Conv3d(ch, out, 3, padding=1, bias=False), nn.BatchNorm3d(out), nn.ReLU()]
            if h >= 4:
                layers.append(nn.MaxPool3d((1, 2, 2)))
                h //= 2
            blocks.append(nn.Sequential(*layers))
        else:
            layers = [nn.Conv2d(ch, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            if h >= 4:
                layers.append(nn.MaxPool2d(2))
                h //= 2
            blocks.append(PerFrame(nn.Sequential(*layers)))
        ch = out
    return nn.ModuleList(blocks), ch


class VideoEncoder(Encoder):
    """Base of the video encoders: ``forward(clip) -> (feature [B, D], time-mean maps)``."""

    frames: int  # clip length the encoder was built for
    frame: int | None = None  # the one frame a single-frame encoder looks at

    def _maps(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        maps = []
        for block in self.blocks:
            x = block(x)
            maps.append(x.mean(2))
        return x, maps

    def cam_to_input(self, cam: Tensor, shape: tuple[int, ...]) -> Tensor:
        """A Grad-CAM map of the last block ``[B, 1, T', h, w]`` → the input's shape ``[B, C, T, H, W]``:
        bilinear per frame when T' = T; a single-frame encoder's map goes on its frame (0 elsewhere)."""
        b, c, t, h, w = shape
        tc = cam.shape[2]
        per = F.interpolate(cam.transpose(1, 2).reshape(b * tc, 1, *cam.shape[-2:]), size=(h, w), mode="bilinear",
                            align_corners=False).reshape(b, tc, 1, h, w).transpose(1, 2)
        if tc == t:
            out = per
        elif self.frame is not None and tc == 1:
            out = per.new_zeros(b, 1, t, h, w)
            out[:, :, self.frame] = per[:, :, 0]
        else:
            out = F.interpolate(cam, size=(t, h, w), mode="trilinear", align_corners=False)
        return out.expand(-1, c, -1, -1, -1).contiguous()


class Conv3DEncoder(VideoEncoder):
    """Small 3-D CNN: Conv3d 3×3×3 blocks, space-only pooling, global average pool, Linear → ``dim``."""

    def __init__(self, in_ch: int, frames: int, side: int, width: int, depth: int, dim: int):
        super().__init__()
        self.frames = frames
        self.blocks, ch = _cnn_blocks(in_ch, side, width, depth, three_d=True)
        self.proj = nn.Linear(ch, dim)
        self.out_dim = dim

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        x, maps = self._maps(x)
        return self.proj(x.mean(dim=(2, 3, 4))), maps


class FrameGRUEncoder(VideoEncoder):
    """Per-frame 2-D CNN → spatial mean → GRU over the frames → last hidden state → Linear → ``dim``."""

    def __init__(self, in_ch: int, frames: int, side: int, width: int, depth: int, dim: int):
        super().__init__()
        self.frames = frames
        self.blocks, ch = _cnn_blocks(in_ch, side, width, depth, three_d=False)
        self.rnn = nn.GRU(ch, dim, batch_first=True)
        self.proj = nn.Linear(dim, dim)
        self.out_dim = dim

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        x, maps = self._maps(x)
        seq = x.mean(dim=(3, 4)).transpose(1, 2)  # [B, T, C]
        _, h = self.rnn(seq)
        return self.proj(h[-1]), maps


class FrameCNNEncoder(VideoEncoder):
    """The 2-D CNN on one frame of the clip (``frame`` = T // 2, or every frame averaged with ``pool``)."""

    def __init__(self, in_ch: int, frames: int, side: int, width: int, depth: int, dim: int, pool: bool = False):
        super().__init__()
        self.frames = frames
        self.frame = None if pool else frames // 2
        self.blocks, ch = _cnn_blocks(in_ch, side, width, depth, three_d=False)
        self.proj = nn.Linear(ch, dim)
        self.out_dim = dim

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        if self.frame is not None:
            x = x[:, :, self.frame:self.frame + 1]
        x, maps = self._maps(x)
        return self.proj(x.mean(dim=(2, 3, 4))), maps


def _shape(info: ModalityInfo) -> tuple[int, int, int]:
    if len(info.shape) != 4:
        raise ValueError(f"{info.name}: a video encoder needs clips [C, T, H, W], got shape {info.shape}")
    c, t, h, w = info.shape
    return c, t, min(h, w)


@register("conv3d", kinds=("video",), default_for=("video",))
def _conv3d(info: ModalityInfo, width: int, depth: int, dim: int) -> Encoder:
    return Conv3DEncoder(*_shape(info), width, depth, dim)


@register("cnn_gru", kinds=("video",))
def _cnn_gru(info: ModalityInfo, width: int, depth: int, dim: int) -> Encoder:
    return FrameGRUEncoder(*_shape(info), width, depth, dim)


@register("frame_cnn", kinds=("video",))
def _frame_cnn(info: ModalityInfo, width: int, depth: int, dim: int) -> Encoder:
    return FrameCNNEncoder(*_shape(info), width, depth, dim)


@register("pooled_cnn", kinds=("video",))
def _pooled_cnn(info: ModalityInfo, width: int, depth: int, dim: int) -> Encoder:
    return FrameCNNEncoder(*_shape(info), width, depth, dim, pool=True)


__all__ = ["Conv3DEncoder", "FrameCNNEncoder", "FrameGRUEncoder", "PerFrame", "VideoEncoder"]
