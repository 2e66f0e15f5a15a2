"""Per-modality encoders. Each maps a modality tensor to a feature vector [B, D] and exposes its
intermediate feature maps (for FitNets / AT / hint losses). Registered by architecture name."""

from __future__ import annotations

from typing import Callable

import torch
import torchvision
from torch import Tensor, nn

from kdcore.data.base import ModalityInfo

ENCODERS: dict[str, Callable[..., "Encoder"]] = {}
ENCODER_KINDS: dict[str, tuple[str, ...]] = {}  # architecture -> the modality kinds it fits
DEFAULT_FOR: dict[str, str] = {}  # modality kind -> default architecture


def register(name: str, kinds: tuple[str, ...], default_for: tuple[str, ...] = ()):
    """Register an encoder builder for the modality ``kinds`` it fits (and as the default
    architecture of ``default_for`` kinds); spec validation reads this through the catalog."""

    def deco(fn):
        ENCODERS[name] = fn
        ENCODER_KINDS[name] = tuple(kinds)
        for kind in default_for:
            DEFAULT_FOR[kind] = name
        return fn

    return deco


class Encoder(nn.Module):
    """``forward(x) -> (feature [B, D], feature_maps list[Tensor])``."""

    out_dim: int


class CNNEncoder(Encoder):
    """Small VGG-style CNN: ``depth`` blocks of conv3×3-BN-ReLU (width doubles per block, 2×2 max-pool
    while the map is ≥ 4 pixels), global average pool, linear projection to ``dim``."""

    def __init__(self, in_ch: int, spatial: tuple[int, int], width: int, depth: int, dim: int):
        super().__init__()
        blocks, ch, h = [], in_ch, min(spatial)
        for i in range(depth):
            out = width * (2**i)
            layers: list[nn.Module] = [nn.Conv2d(ch, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            if h >= 4:
                layers.append(nn.MaxPool2d(2))
                h //= 2
            blocks.append(nn.Sequential(*layers))
            ch = out
        self.blocks = nn.ModuleList(blocks)
        self.proj = nn.Linear(ch, dim)
        self.out_dim = dim

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        maps = []
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return self.proj(x.mean(dim=(2, 3))), maps


class TorchvisionEncoder(Encoder):
    """A torchvision backbone adapted to small 1-channel inputs (stride-1 stem, no weight download)."""

    def __init__(self, arch: str, in_ch: int, dim: int):
        super().__init__()
        if arch == "resnet18":
            net = torchvision.models.resnet18(weights=None)
            net.conv1 = nn.Conv2d(in_ch, 64, 3, 1, 1, bias=False)
            net.maxpool = nn.Identity()
            self.stages = nn.ModuleList([nn.Sequential(net.conv1, net.bn1, net.relu),
                                         net.layer1, net.layer2, net.layer3, net.layer4])
            ch = 512
        elif arch == "mobilenet_v2":
            net = torchvision.models.mobilenet_v2(weights=None)
            stem = net.features[0]
            stem[0] = nn.Conv2d(in_ch, stem[0].out_channels, 3, 1, 1, bias=False)
            f = net.features
            self.stages = nn.ModuleList([f[0:2], f[2:4], f[4:7], f[7:14], f[14:]])
            ch = net.last_channel
        elif arch == "shufflenet_v2_x0_5":
            net = torchvision.models.shufflenet_v2_x0_5(weights=None)
            c0 = net.conv1[0].out_channels
            net.conv1[0] = nn.Conv2d(in_ch, c0, 3, 1, 1, bias=False)
            self.stages = nn.ModuleList([net.conv1, net.stage2, net.stage3, net.stage4, net.conv5])
            ch = net.conv5[0].out_channels
        else:
            raise ValueError(f"unknown torchvision encoder {arch!r}")
        self.proj = nn.Linear(ch, dim)
        self.out_dim = dim

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return self.proj(x.mean(dim=(2, 3))), maps


class MLPEncoder(Encoder):
    """``depth`` hidden layers Linear-ReLU of ``width`` units (on the flattened input), then Linear → dim."""

    def __init__(self, in_dim: int, width: int, depth: int, dim: int):
        super().__init__()
        layers, d = [], in_dim
        for _ in range(depth):
            layers.append(nn.Sequential(nn.Linear(d, width), nn.ReLU()))
            d = width
        self.hidden = nn.ModuleList(layers)
        self.proj = nn.Linear(d, dim)
        self.out_dim = dim

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = x.flatten(1)
        maps = []
        for layer in self.hidden:
            x = layer(x)
            maps.append(x)
        return self.proj(x), maps


class GRUTextEncoder(Encoder):
    """Character embedding → bidirectional GRU (``depth`` layers, ``width`` units) → masked mean → Linear."""

    def __init__(self, vocab: int, width: int, depth: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, width, padding_idx=0)
        self.rnn = nn.GRU(width, width, num_layers=depth, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * width, dim)
        self.out_dim = dim

    def forward(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        return self.forward_embedded(self.embedding(tokens), tokens)

    def forward_embedded(self, emb: Tensor, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        mask = (tokens != 0).unsqueeze(-1).float()
        h, _ = self.rnn(emb)
        pooled = (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.proj(pooled), [h]


class TransformerTextEncoder(Encoder):
    """Character embedding + learned positions → TransformerEncoder (``depth`` layers) → masked mean → Linear."""

    def __init__(self, vocab: int, width: int, depth: int, dim: int, max_len: int = 64):
        super().__init__()
        width = max(4, (width // 4) * 4)
        self.embedding = nn.Embedding(vocab, width, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(1, max_len, width))
        layer = nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)
        self.proj = nn.Linear(width, dim)
        self.out_dim = dim

    def forward(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        return self.forward_embedded(self.embedding(tokens), tokens)

    def forward_embedded(self, emb: Tensor, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        pad = tokens == 0
        h = self.encoder(emb + self.pos[:, : emb.shape[1]], src_key_padding_mask=pad)
        mask = (~pad).unsqueeze(-1).float()
        pooled = (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.proj(pooled), [h]


@register("cnn", kinds=("image", "spectrogram"), default_for=("image", "spectrogram"))
def _cnn(info: ModalityInfo, width: int, depth: int, dim: int) -> Encoder:
    return CNNEncoder(info.shape[0], info.shape[1:], width, depth, dim)


for _arch in ("resnet18", "mobilenet_v2", "shufflenet_v2_x0_5"):
    register(_arch, kinds=("image", "spectrogram"))(lambda info, width, depth, dim, _a=_arch: TorchvisionEncoder(_a, info.shape[0], dim))


@register("mlp", kinds=("image", "spectrogram", "vector"), default_for=("vector",))
def _mlp(info: ModalityInfo, width: int, depth: int, dim: int) -> Encoder:
    in_dim = 1
    for s in info.shape:
        in_dim *= s
    return MLPEncoder(in_dim, width, depth, dim)


@register("gru", kinds=("tokens",), default_for=("tokens",))
def _gru(info: ModalityInfo, width: int, depth: int, dim: int) -> Encoder:
    return GRUTextEncoder(info.vocab_size, width, depth, dim)


@register("transformer", kinds=("tokens",))
def _transformer(info: ModalityInfo, width: int, depth: int, dim: int) -> Encoder:
    return TransformerTextEncoder(info.vocab_size, width, depth, dim, max_len=max(64, info.shape[0]))
