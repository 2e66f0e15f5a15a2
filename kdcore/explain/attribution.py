"""Captum attributions for multimodal networks, behind one call: :func:`attribute`.

``attribute(model, inputs, method, target, params)`` runs one Captum method on **a deep copy of
the model in eval mode** (never the instance that is being trained: hooks and train/eval toggles
must not race a training thread) and returns an :class:`Attribution` whose per-modality maps have
the shape of that modality's input:

* image / spectrogram ``[B, C, H, W]``  — pixel / time-frequency maps;
* tokens ``[B, L]``                      — one score per character token (pads are 0);
* vector ``[B, F]``                      — one score per feature.

Multimodal inputs go to Captum as one tuple (one tensor per modality, with a tuple of baselines),
so a single call attributes every modality at once. Token ids cannot take gradients, so text is
attributed at the output of its embedding layer (``MultimodalNet.forward(..., embedded=...)``):
Integrated Gradients there *is* Layer Integrated Gradients on the embedding (Sundararajan et al.
2017; the test suite checks it equals Captum's ``LayerIntegratedGradients``); a token's score is
the sum over its embedding dimensions (the mean for occlusion, whose windows cover a whole token).

Methods (Captum 0.9):

* ``ig``        IntegratedGradients (``steps``, ``baseline``) — Sundararajan et al., ICML 2017.
* ``saliency``  Saliency, |∂y/∂x| — Simonyan et al. 2014.
* ``smoothgrad`` NoiseTunnel(Saliency), ``noise_samples`` draws of N(0, (noise_std·std(x))²) — Smilkov et al. 2017.
* ``occlusion`` Occlusion with a ``window`` (pixels / time-frequency bins, or features) and ``stride``;
  one token at a time for text — Zeiler & Fergus 2014.
* ``gradcam``   LayerGradCam on the encoder's last feature map + ``LayerAttribution.interpolate`` to the
  input size; image and spectrogram modalities with a convolutional encoder only — Selvaraju et al. 2017.

The per-modality **share** of total |attribution| (``Attribution.shares``, rows sum to 1) is the
summary the pages and the CLI report. Grad-CAM maps live on each encoder's own feature scale, so
no shares are computed for Grad-CAM.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

METHODS: dict[str, str] = {
    "ig": "Integrated Gradients",
    "saliency": "Saliency",
    "smoothgrad": "SmoothGrad (NoiseTunnel over Saliency)",
    "occlusion": "Occlusion",
    "gradcam": "Grad-CAM (image / spectrogram)",
}
BASELINES = ("zeros", "mean")
TARGETS = ("label", "pred")
SPATIAL_KINDS = ("image", "spectrogram")


class AttributionError(ValueError):
    """Bad attribution parameters; the message names the field and the allowed range."""


@dataclass
class AttributionParams:
    """Method parameters with sensible defaults (every field is validated by :meth:`check`)."""

    steps: int = 32  # IG interpolation steps
    baseline: str = "zeros"  # zeros | mean (the reference batch's mean per modality)
    noise_samples: int = 8  # SmoothGrad draws
    noise_std: float = 0.15  # SmoothGrad σ as a fraction of the input's std
    window: int = 4  # occlusion window side (pixels/bins) or length (features)
    stride: int | None = None  # occlusion stride (default: max(1, window // 2))
    internal_batch_size: int | None = None  # IG / occlusion chunking (memory)
    target: str = "label"  # label (true class) | pred (the model's own prediction)

    def check(self) -> "AttributionParams":
        def bad(name: str, rng: str, value) -> AttributionError:
            return AttributionError(f"{name}={value!r} is outside the allowed range {rng}")

        if not 1 <= int(self.steps) <= 1024:
            raise bad("steps", "[1, 1024]", self.steps)
        if self.baseline not in BASELINES:
            raise AttributionError(f"baseline={self.baseline!r}; allowed: {', '.join(BASELINES)}")
        if not 1 <= int(self.noise_samples) <= 256:
            raise bad("noise_samples", "[1, 256]", self.noise_samples)
        if not 0.0 < float(self.noise_std) <= 5.0:
            raise bad("noise_std", "(0, 5]", self.noise_std)
        if not 1 <= int(self.window) <= 512:
            raise bad("window", "[1, 512]", self.window)
        if self.stride is not None and not 1 <= int(self.stride) <= 512:
            raise bad("stride", "[1, 512]", self.stride)
        if self.internal_batch_size is not None and not 1 <= int(self.internal_batch_size) <= 1 << 20:
            raise bad("internal_batch_size", "[1, 1048576]", self.internal_batch_size)
        if self.target not in TARGETS:
            raise AttributionError(f"target={self.target!r}; allowed: {', '.join(TARGETS)}")
        return self


@dataclass
class Attribution:
    method: str
    modalities: tuple[str, ...]  # modalities with a map, in the model's order
    kinds: dict[str, str]
    maps: dict[str, Tensor]  # modality -> map shaped like the modality input (tokens: [B, L])
    target: Tensor  # [B] class attributed
    logits: Tensor  # [B, C] of the (copied) model on the unperturbed inputs
    shares: Tensor | None = None  # [B, M] share of total |attribution| per modality (rows sum to 1)
    tokens: dict[str, Tensor] = field(default_factory=dict)  # text modality -> token ids [B, L]
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.target.numel())

    def flat(self, modality: str) -> Tensor:
        """``[B, F]`` view of one modality's map (pads of text kept as 0)."""
        return self.maps[modality].reshape(len(self), -1)

    def valid(self, modality: str) -> Tensor:
        """``[B, F]`` bool: the entries that are real features (False for text pads)."""
        if modality in self.tokens:
            return (self.tokens[modality] != 0).reshape(len(self), -1)
        return torch.ones(self.flat(modality).shape, dtype=torch.bool)

    def mean_shares(self) -> dict[str, float]:
        if self.shares is None:
            return {}
        s = self.shares.nan_to_num(0.0).mean(0)
        return {m: float(s[i]) for i, m in enumerate(self.modalities)}

    def sample(self, i: int) -> dict[str, Tensor]:
        return {m: v[i] for m, v in self.maps.items()}


# ---- model handling ----------------------------------------------------------------------
def inspect_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with frozen parameters: what every attribution runs on.

    The original (maybe being trained in another thread) is never put in eval mode, hooked or
    given gradients."""
    clone = copy.deepcopy(model)
    clone.eval()
    clone.requires_grad_(False)
    return clone


def model_kinds(model: nn.Module) -> dict[str, str]:
    """Modality kind per modality, read off the encoders (tokens encoders have an embedding)."""
    kinds = {}
    for m in model.modalities:
        enc = model.encoders[m]
        if hasattr(enc, "embedding"):
            kinds[m] = "tokens"
        elif hasattr(enc, "blocks") or hasattr(enc, "stages"):
            kinds[m] = "image"  # image or spectrogram: both [C, H, W]
        else:
            kinds[m] = "vector"
    return kinds


def gradcam_layer(model: nn.Module, modality: str) -> nn.Module | None:
    """The last feature-map module of a convolutional encoder (None for MLP / text encoders)."""
    enc = model.encoders[modality]
    if hasattr(enc, "blocks"):
        return enc.blocks[-1]
    if hasattr(enc, "stages"):
        return enc.stages[-1]
    return None


class _TupleForward(nn.Module):
    """Captum-facing forward: positional tensors in modality order → logits.

    Attributed text modalities arrive as embeddings; then come their token ids and the tensors of
    modalities held fixed (``additional_forward_args``), so Captum expands them together with the
    inputs (IG steps, noise draws, occlusion windows)."""

    def __init__(self, model: nn.Module, modalities: list[str], token_mods: list[str],
                 fixed_mods: list[str] | tuple[str, ...] = ()):
        super().__init__()
        self.model = model
        self.modalities = list(modalities)
        self.token_mods = list(token_mods)
        self.fixed_mods = list(fixed_mods)

    def forward(self, *args: Tensor) -> Tensor:
        k, t = len(self.modalities), len(self.token_mods)
        xs, toks, fixed = args[:k], args[k:k + t], args[k + t:]
        tok = dict(zip(self.token_mods, toks))
        inputs, embedded = dict(zip(self.fixed_mods, fixed)), {}
        for m, x in zip(self.modalities, xs):
            if m in tok:
                inputs[m] = tok[m]
                embedded[m] = x
            else:
                inputs[m] = x
        return self.model(inputs, embedded=embedded or None).logits


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# ---- the one call -----------------------------------------------------------------------
def attribute(model: nn.Module, inputs: dict[str, Tensor], method: str = "ig",
              target: Tensor | None = None, params: AttributionParams | None = None,
              modalities: list[str] | None = None, reference: dict[str, Tensor] | None = None,
              copy_model: bool = True) -> Attribution:
    """Attribute ``model``'s logit of ``target`` to every modality input with one Captum method.

    ``inputs`` maps modality → batch tensor (modalities the model does not see are ignored;
    those it sees but ``modalities`` leaves out are held fixed, not attributed); ``target`` [B] are the
    classes to explain (default: ``params.target`` = the model's prediction when no labels are
    given). ``reference`` (modality → tensor) gives the mean used by ``baseline="mean"`` (default:
    the batch itself). The model is deep-copied and put in eval mode unless ``copy_model=False``
    (only for a model that already is an :func:`inspect_copy`)."""
    from captum.attr import (IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Occlusion,
                             Saliency)

    if method not in METHODS:
        raise AttributionError(f"method={method!r}; allowed: {', '.join(METHODS)}")
    params = (params or AttributionParams()).check()
    net = inspect_copy(model) if copy_model else model
    dev = _device(net)
    mods = [m for m in (modalities or net.modalities) if m in net.modalities and m in inputs]
    if not mods:
        raise AttributionError(f"inputs hold none of the model's modalities ({', '.join(net.modalities)})")
    kinds = {m: k if k == "tokens" else ("image" if inputs[m].dim() == 4 else "vector")
             for m, k in model_kinds(net).items() if m in mods}
    token_mods = [m for m in mods if kinds[m] == "tokens"]
    raw = {m: inputs[m].to(dev) for m in mods}
    fixed = {m: inputs[m].to(dev) for m in net.modalities if m in inputs and m not in mods}
    b = next(iter(raw.values())).shape[0]

    with torch.no_grad():
        logits = net({**raw, **fixed}).logits.detach()
    if target is None:
        target = logits.argmax(1)
    elif params.target == "pred":
        target = logits.argmax(1)
    target = target.to(dev).long()

    # Captum inputs: continuous modalities as they are, text as its embedding.
    xs, base = [], []
    for m in mods:
        if m in token_mods:
            emb = net.encoders[m].embedding(raw[m]).detach()
            xs.append(emb)
            base.append(torch.zeros_like(emb))  # = the PAD embedding (padding_idx 0 stays at zero)
        else:
            x = raw[m].detach().float().clone()
            xs.append(x)
            if params.baseline == "mean":
                ref = (reference or {}).get(m, x).to(dev).float()
                base.append(ref.mean(0, keepdim=True).expand_as(x).contiguous())
            else:
                base.append(torch.zeros_like(x))
    xs_t, base_t = tuple(x.requires_grad_(method != "gradcam") for x in xs), tuple(base)
    toks = tuple(raw[m] for m in token_mods) + tuple(fixed.values())
    fwd = _TupleForward(net, mods, token_mods, list(fixed))
    extra = toks if toks else None
    notes: list[str] = []

    if method == "ig":
        ig = IntegratedGradients(fwd)
        out = ig.attribute(xs_t, baselines=base_t, target=target, additional_forward_args=extra,
                           n_steps=int(params.steps), internal_batch_size=params.internal_batch_size)
    elif method == "saliency":
        out = Saliency(fwd).attribute(xs_t, target=target, additional_forward_args=extra, abs=True)
    elif method == "smoothgrad":
        nt = NoiseTunnel(Saliency(fwd))
        stdevs = tuple(float(params.noise_std) * max(float(x.detach().float().std()), 1e-6) for x in xs_t)
        out = nt.attribute(xs_t, nt_type="smoothgrad", nt_samples=int(params.noise_samples), stdevs=stdevs,
                           target=target, additional_forward_args=extra, abs=True)
    elif method == "occlusion":
        w = int(params.window)
        s = int(params.stride or max(1, w // 2))
        windows, strides = [], []
        for m, x in zip(mods, xs_t):
            if m in token_mods:
                windows.append((1, x.shape[2]))
                strides.append((1, x.shape[2]))
            elif x.dim() == 4:
                windows.append((x.shape[1], min(w, x.shape[2]), min(w, x.shape[3])))
                strides.append((x.shape[1], min(s, x.shape[2]), min(s, x.shape[3])))
            else:
                windows.append(tuple(min(w, d) for d in x.shape[1:]))
                strides.append(tuple(min(s, d) for d in x.shape[1:]))
        out = Occlusion(fwd).attribute(xs_t, sliding_window_shapes=tuple(windows), strides=tuple(strides),
                                       baselines=base_t, target=target, additional_forward_args=extra,
                                       perturbations_per_eval=int(params.internal_batch_size or 64))
    else:  # gradcam
        maps: dict[str, Tensor] = {}
        for m, x in zip(mods, xs_t):
            layer = gradcam_layer(net, m)
            if layer is None or x.dim() != 4:
                notes.append(f"Grad-CAM needs a convolutional encoder over an image or spectrogram; "
                             f"{m} has none, skipped")
                continue
            lgc = LayerGradCam(fwd, layer)
            inp = tuple(t.clone().requires_grad_(True) for t in xs_t)
            cam = lgc.attribute(inp, target=target, additional_forward_args=extra, relu_attributions=True)
            cam = LayerAttribution.interpolate(cam.detach(), tuple(x.shape[2:]), interpolate_mode="bilinear")
            maps[m] = cam.expand(-1, x.shape[1], -1, -1).contiguous()
        if not maps:
            raise AttributionError("method=gradcam needs an image or spectrogram modality with a CNN encoder; "
                                   f"this model has {', '.join(f'{m} ({kinds[m]})' for m in mods)}")
        got = [m for m in mods if m in maps]
        return Attribution("gradcam", tuple(got), {m: kinds[m] for m in got},
                           {m: v.detach().cpu() for m, v in maps.items()}, target.cpu(), logits.cpu(), None,
                           {}, notes)

    out = out if isinstance(out, tuple) else (out,)
    maps = {}
    for m, a in zip(mods, out):
        a = a.detach().float()
        if m in token_mods:
            a = a.mean(-1) if method == "occlusion" else a.sum(-1)
            a = a * (raw[m] != 0).float()  # pads are not tokens a reader sees
        maps[m] = a.cpu()
    totals = torch.stack([maps[m].reshape(b, -1).abs().sum(1) for m in mods], dim=1)
    shares = totals / totals.sum(1, keepdim=True).clamp_min(1e-12)
    return Attribution(method, tuple(mods), {m: kinds[m] for m in mods}, maps, target.cpu(), logits.cpu(),
                       shares, {m: raw[m].cpu() for m in token_mods}, notes)


def token_scores(attr: Attribution, modality: str, i: int) -> list[tuple[str, float]]:
    """``[(character, score), ...]`` for sample ``i`` of a text modality, pads dropped: each score
    sits on the character token it explains."""
    from kdcore.data.text import PAD, decode

    ids = attr.tokens[modality][i]
    keep = ids != PAD
    chars = [decode(t[None]) or "?" for t in ids[keep]]
    return list(zip(chars, attr.maps[modality][i][keep].tolist()))


def attribute_batches(model: nn.Module, inputs: dict[str, Tensor], method: str, target: Tensor | None,
                      params: AttributionParams | None = None, batch_size: int = 8,
                      progress: Callable[[float], None] | None = None, **kw) -> Attribution:
    """:func:`attribute` in chunks of ``batch_size`` samples (one model copy), reporting progress
    in [0, 1] after each chunk — for slow methods in the app."""
    net = inspect_copy(model)
    n = next(iter(inputs.values())).shape[0]
    parts: list[Attribution] = []
    chunks = max(1, math.ceil(n / batch_size))
    for i in range(chunks):
        sl = slice(i * batch_size, min(n, (i + 1) * batch_size))
        part_in = {m: v[sl] for m, v in inputs.items()}
        parts.append(attribute(net, part_in, method, None if target is None else target[sl], params,
                               copy_model=False, **kw))
        if progress is not None:
            progress((i + 1) / chunks)
    return concat(parts)


def concat(parts: list[Attribution]) -> Attribution:
    first = parts[0]
    cat = lambda ts: torch.cat(ts, 0)  # noqa: E731
    return Attribution(
        first.method, first.modalities, first.kinds,
        {m: cat([p.maps[m] for p in parts]) for m in first.maps},
        cat([p.target for p in parts]), cat([p.logits for p in parts]),
        None if first.shares is None else cat([p.shares for p in parts]),
        {m: cat([p.tokens[m] for p in parts]) for m in first.tokens},
        first.notes,
    )
