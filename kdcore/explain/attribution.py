"""Captum attributions for multimodal networks: one registered class per method, one call.

Every method is an :class:`AttributionMethod` subclass in its own module under
:mod:`kdcore.explain.methods`, registered by name with :func:`register_attribution` (the package
imports each of its modules, so **adding a method is adding one file**). A method owns a pydantic
``Params`` model with only its own knobs (ranges checked, unknown keys refused) and is called the
same way as every other::

    attr = ATTRIBUTIONS["ig"](steps=64).attribute(model, inputs, target)          # -> Attribution
    attr = attribute(model, inputs, "ig", target, AttributionParams(steps=64))    # the same, by name

The call runs on **a deep copy of the model in eval mode** (never the instance that is being
trained: hooks and train/eval toggles must not race a training thread) and returns an
:class:`Attribution` whose per-modality maps have the shape of that modality's input:

* image / spectrogram ``[B, C, H, W]``  — pixel / time-frequency maps;
* video ``[B, C, T, H, W]``              — one pixel map per frame;
* tokens ``[B, L]``                      — one score per character token (pads are 0);
* vector ``[B, F]``                      — one score per feature.

Multimodal inputs go to Captum as one tuple (one tensor per modality, with a tuple of baselines),
so a single call attributes every modality at once. Token ids cannot take gradients, so text is
attributed at the output of its embedding layer (``MultimodalNet.forward(..., embedded=...)``):
Integrated Gradients there *is* Layer Integrated Gradients on the embedding (Sundararajan et al.
2017; the test suite checks it equals Captum's ``LayerIntegratedGradients``); a token's score is
the sum over its embedding dimensions (the mean for occlusion, whose windows cover a whole token).

Methods (Captum 0.9), one module each in :mod:`kdcore.explain.methods` (its docstring names the
paper and the knobs): ``ig`` Integrated Gradients, ``saliency``, ``smoothgrad`` (NoiseTunnel over
Saliency), ``occlusion``, ``gradcam`` (image / spectrogram encoders only). :data:`METHODS` is the
live name → title view of :data:`ATTRIBUTIONS`, in display order.

The per-modality **share** of total |attribution| (``Attribution.shares``, rows sum to 1) is the
summary the pages and the CLI report. Grad-CAM maps live on each encoder's own feature scale, so
no shares are computed for Grad-CAM.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Literal, get_args

import annotated_types as at
import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor, nn

from kdcore.core.params import MethodParams as _CoreParams

BASELINES = ("zeros", "mean")
TARGETS = ("label", "pred")
SPATIAL_KINDS = ("image", "spectrogram")


class AttributionError(ValueError):
    """Bad attribution parameters; the message names the field and the allowed range."""


@dataclass
class AttributionParams:
    """Every method's knobs in one flat record, with sensible defaults (validated by :meth:`check`).

    The form the app, the CLI and the callback fill in; :func:`attribute` hands each method only the
    fields its own ``Params`` model declares (the others are ignored)."""

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


# ---- the method contract -------------------------------------------------------------------------
class MethodParams(_CoreParams):
    """Base of every attribution method's ``Params`` model — the lab's one parameter style
    (:class:`kdcore.core.params.MethodParams`, shared with losses, weightings, schedules and phase
    recipes): unknown keys are refused, ranges are declared with ``Field(ge=..., le=...)``. The one
    knob every attribution method shares is which class it explains."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Literal["label", "pred"] = "label"  # label (the given classes) | pred (the model's prediction)


@dataclass
class AttributionInputs:
    """What :meth:`AttributionMethod.prepare` hands to a method: the model copy, Captum's tuple
    inputs (text as its embedding) and baselines, and the bookkeeping to turn Captum's output back
    into per-modality maps."""

    net: nn.Module  # the eval-mode copy everything runs on
    forward: nn.Module  # Captum-facing forward: the tuple ``inputs`` (+ ``extra``) -> logits
    modalities: list[str]  # attributed modalities, in the model's order
    kinds: dict[str, str]  # modality -> tokens | image | vector
    token_mods: list[str]  # attributed text modalities (their ``inputs`` entry is the embedding)
    raw: dict[str, Tensor]  # modality -> the attributed input as given (token ids for text), on the device
    fixed: dict[str, Tensor]  # modalities the model sees but that are held fixed
    logits: Tensor  # [B, C] on the unperturbed inputs
    target: Tensor  # [B] the classes attributed
    inputs: tuple[Tensor, ...]  # Captum inputs, one per attributed modality
    baselines: tuple[Tensor, ...]  # same shapes as ``inputs`` (zeros, or the reference mean)
    extra: tuple[Tensor, ...] | None  # ``additional_forward_args``: token ids, then the fixed modalities
    notes: list[str] = field(default_factory=list)

    @property
    def batch(self) -> int:
        return int(self.target.shape[0])


class AttributionMethod:
    """One attribution method. Subclasses set the class attributes, declare a nested ``Params``
    (a :class:`MethodParams` subclass holding only their own knobs) and implement :meth:`run` (one
    Captum call on an :class:`AttributionInputs`, returning one map per Captum input) — or override
    :meth:`explain` to build the :class:`Attribution` themselves (Grad-CAM). Registered with
    :func:`register_attribution`, a method is reachable by name through :func:`attribute`.

    Built from validated parameters (``IG(steps=8)``, ``IG({"steps": 8})`` or ``IG(IG.Params(steps=8))``),
    every method is called the same way: :meth:`attribute`."""

    name: ClassVar[str]  # registry key (what ``attribute(..., method=...)`` takes)
    title: ClassVar[str]  # label in the app's method box
    summary: ClassVar[str]  # one line: what it computes
    paper: ClassVar[str] = ""  # the method's paper (also in the subclass's docstring)
    order: ClassVar[int] = 100  # position in METHODS (the app's list); ties keep registration order
    input_grad: ClassVar[bool] = True  # Captum inputs require grad (False: the method handles it)
    token_reduce: ClassVar[Literal["sum", "mean"]] = "sum"  # embedding dims -> one score per token
    Params: ClassVar[type[MethodParams]] = MethodParams

    def __init__(self, params: MethodParams | Mapping[str, Any] | None = None, **knobs: Any):
        self.params = self.make_params(params, **knobs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"

    @classmethod
    def make_params(cls, params: MethodParams | Mapping[str, Any] | None = None, **knobs: Any) -> MethodParams:
        """The validated ``Params``; an :class:`AttributionError` names the method, the field and
        the allowed range (or the allowed names, for an unknown key)."""
        if isinstance(params, cls.Params) and not knobs:
            return params
        if isinstance(params, BaseModel):
            params = params.model_dump(exclude_unset=True)
        try:
            return cls.Params(**{**dict(params or {}), **knobs})
        except ValidationError as exc:
            raise AttributionError(f"attribution {cls.name!r}: {params_problem(cls.Params, exc)}") from None

    # -- the one call --------------------------------------------------------------------------------
    def attribute(self, model: nn.Module, inputs: dict[str, Tensor], target: Tensor | None = None,
                  modalities: list[str] | None = None, reference: dict[str, Tensor] | None = None,
                  copy_model: bool = True) -> Attribution:
        """Attribute ``model``'s logit of ``target`` to every modality input.

        ``inputs`` maps modality → batch tensor (modalities the model does not see are ignored;
        those it sees but ``modalities`` leaves out are held fixed, not attributed); ``target`` [B]
        are the classes to explain (default, or with ``params.target="pred"``: the model's
        prediction). ``reference`` (modality → tensor) gives the mean used by ``baseline="mean"``
        (default: the batch itself). The model is deep-copied and put in eval mode unless
        ``copy_model=False`` (only for a model that already is an :func:`inspect_copy`)."""
        return self.explain(self.prepare(model, inputs, target, modalities, reference, copy_model))

    def explain(self, ctx: AttributionInputs) -> Attribution:
        return self.collect(ctx, self.run(ctx))

    def run(self, ctx: AttributionInputs) -> Tensor | tuple[Tensor, ...]:
        raise TypeError(f"{type(self).__name__} must implement run (or explain)")

    # -- shared steps --------------------------------------------------------------------------------
    def prepare(self, model: nn.Module, inputs: dict[str, Tensor], target: Tensor | None = None,
                modalities: list[str] | None = None, reference: dict[str, Tensor] | None = None,
                copy_model: bool = True) -> AttributionInputs:
        net = inspect_copy(model) if copy_model else model
        dev = _device(net)
        mods = [m for m in (modalities or net.modalities) if m in net.modalities and m in inputs]
        if not mods:
            raise AttributionError(f"inputs hold none of the model's modalities ({', '.join(net.modalities)})")
        kinds = {m: k if k == "tokens" else {4: "image", 5: "video"}.get(inputs[m].dim(), "vector")
                 for m, k in model_kinds(net).items() if m in mods}
        token_mods = [m for m in mods if kinds[m] == "tokens"]
        raw = {m: inputs[m].to(dev) for m in mods}
        fixed = {m: inputs[m].to(dev) for m in net.modalities if m in inputs and m not in mods}

        with torch.no_grad():
            logits = net({**raw, **fixed}).logits.detach()
        if target is None or self.params.target == "pred":
            target = logits.argmax(1)
        target = target.to(dev).long()

        # Captum inputs: continuous modalities as they are, text as its embedding.
        baseline = getattr(self.params, "baseline", "zeros")
        xs, base = [], []
        for m in mods:
            if m in token_mods:
                emb = net.encoders[m].embedding(raw[m]).detach()
                xs.append(emb)
                base.append(torch.zeros_like(emb))  # = the PAD embedding (padding_idx 0 stays at zero)
            else:
                x = raw[m].detach().float().clone()
                xs.append(x)
                if baseline == "mean":
                    ref = (reference or {}).get(m, x).to(dev).float()
                    base.append(ref.mean(0, keepdim=True).expand_as(x).contiguous())
                else:
                    base.append(torch.zeros_like(x))
        toks = tuple(raw[m] for m in token_mods) + tuple(fixed.values())
        return AttributionInputs(
            net=net, forward=_TupleForward(net, mods, token_mods, list(fixed)), modalities=mods, kinds=kinds,
            token_mods=token_mods, raw=raw, fixed=fixed, logits=logits, target=target,
            inputs=tuple(x.requires_grad_(self.input_grad) for x in xs), baselines=tuple(base),
            extra=toks if toks else None)

    def collect(self, ctx: AttributionInputs, out: Tensor | tuple[Tensor, ...]) -> Attribution:
        """Captum's per-input output → per-modality maps (one score per token for text, pads 0) and
        the per-modality shares of total |attribution|."""
        out = out if isinstance(out, tuple) else (out,)
        mods, b = ctx.modalities, ctx.batch
        maps = {}
        for m, a in zip(mods, out):
            a = a.detach().float()
            if m in ctx.token_mods:
                a = a.mean(-1) if self.token_reduce == "mean" else a.sum(-1)
                a = a * (ctx.raw[m] != 0).float()  # pads are not tokens a reader sees
            maps[m] = a.cpu()
        totals = torch.stack([maps[m].reshape(b, -1).abs().sum(1) for m in mods], dim=1)
        shares = totals / totals.sum(1, keepdim=True).clamp_min(1e-12)
        return Attribution(self.name, tuple(mods), {m: ctx.kinds[m] for m in mods}, maps, ctx.target.cpu(),
                           ctx.logits.cpu(), shares, {m: ctx.raw[m].cpu() for m in ctx.token_mods}, ctx.notes)


def _num(v: Any) -> str:
    return str(int(v)) if isinstance(v, (int, float)) and float(v).is_integer() else str(v)


def allowed_range(model: type[BaseModel], name: str) -> str | None:
    """``"[1, 1024]"`` / ``"(0, 5]"`` for a field declared with ``Field(ge=.., le=..)`` (None if unbounded)."""
    info = model.model_fields.get(name)
    if info is None:
        return None
    lo = hi = None
    lo_open = hi_open = False
    for c in info.metadata:
        if isinstance(c, at.Ge):
            lo = c.ge
        elif isinstance(c, at.Gt):
            lo, lo_open = c.gt, True
        elif isinstance(c, at.Le):
            hi = c.le
        elif isinstance(c, at.Lt):
            hi, hi_open = c.lt, True
    if lo is None and hi is None:
        return None
    return (("(" if lo_open or lo is None else "[") + ("-∞" if lo is None else _num(lo)) + ", "
            + ("∞" if hi is None else _num(hi)) + (")" if hi_open or hi is None else "]"))


def _choices(annotation: Any) -> list[str]:
    out = []
    for arg in get_args(annotation) or ():
        out += _choices(arg) if get_args(arg) else ([] if arg is type(None) else [str(arg)])
    return out


def params_problem(model: type[BaseModel], exc: ValidationError) -> str:
    """A pydantic error in words: the field, the value and what is allowed."""
    msgs = []
    for err in exc.errors(include_url=False):
        name = ".".join(str(p) for p in err["loc"]) or "params"
        value = err.get("input")
        rng = allowed_range(model, name)
        if err["type"] == "extra_forbidden":
            msgs.append(f"unknown parameter {name!r}; allowed: {', '.join(model.model_fields) or 'none'}")
        elif err["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") and rng:
            msgs.append(f"{name}={value!r} is outside the allowed range {rng}")
        elif err["type"] == "literal_error" and name in model.model_fields:
            choices = [c.strip("'") for c in _choices(model.model_fields[name].annotation)]
            msgs.append(f"{name}={value!r}; allowed: {', '.join(choices)}")
        else:
            msgs.append(f"{name}={value!r}: {err['msg']}" + (f" (allowed range {rng})" if rng else ""))
    return "; ".join(msgs)


# ---- the registry ----------------------------------------------------------------------------------
ATTRIBUTIONS: dict[str, type[AttributionMethod]] = {}


def register_attribution(cls: type[AttributionMethod]) -> type[AttributionMethod]:
    """Class decorator: adds an :class:`AttributionMethod` subclass to :data:`ATTRIBUTIONS` by its ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, AttributionMethod)):
        raise TypeError(f"register_attribution takes an AttributionMethod subclass, not {cls!r}")
    for attr in ("name", "title", "summary"):
        if not isinstance(getattr(cls, attr, None), str) or not getattr(cls, attr):
            raise TypeError(f"attribution class {cls.__name__} needs a non-empty class attribute {attr!r}")
    if not (isinstance(cls.Params, type) and issubclass(cls.Params, MethodParams)):
        raise TypeError(f"attribution {cls.name!r}: Params must subclass MethodParams")
    if cls.name in ATTRIBUTIONS:
        raise ValueError(f"attribution {cls.name!r} registered twice")
    ATTRIBUTIONS[cls.name] = cls
    return cls


def ordered_methods() -> list[type[AttributionMethod]]:
    return sorted(ATTRIBUTIONS.values(), key=lambda c: c.order)  # stable: ties keep registration order


class _Titles(Mapping):
    """``METHODS``: registered method name → title, in display order — a live view of the registry."""

    def __getitem__(self, name: str) -> str:
        return ATTRIBUTIONS[name].title

    def __iter__(self) -> Iterator[str]:
        return iter([c.name for c in ordered_methods()])

    def __len__(self) -> int:
        return len(ATTRIBUTIONS)

    def __repr__(self) -> str:
        return repr(dict(self))


METHODS: Mapping[str, str] = _Titles()


def get_attribution(method: str) -> type[AttributionMethod]:
    """The registered class for ``method``; an :class:`AttributionError` (a ``ValueError``) names the
    method and the allowed names."""
    cls = ATTRIBUTIONS.get(method) if isinstance(method, str) else None
    if cls is None:
        raise AttributionError(f"unknown attribution method: method={method!r}; allowed: {', '.join(METHODS)}")
    return cls


def method_params(method: str | type[AttributionMethod],
                  params: AttributionParams | MethodParams | Mapping[str, Any] | None = None) -> MethodParams:
    """``method``'s validated ``Params`` from any accepted form: the flat :class:`AttributionParams`
    (checked, then only the fields the method declares are kept), a mapping, or a ``Params`` model."""
    cls = get_attribution(method) if isinstance(method, str) else method
    if params is None or isinstance(params, AttributionParams):
        flat = (params or AttributionParams()).check()
        own = {f.name: getattr(flat, f.name) for f in fields(flat) if f.name in cls.Params.model_fields}
        return cls.make_params(own)
    return cls.make_params(params)


# ---- the one call (by name) -----------------------------------------------------------------------
def attribute(model: nn.Module, inputs: dict[str, Tensor], method: str = "ig",
              target: Tensor | None = None,
              params: AttributionParams | MethodParams | Mapping[str, Any] | None = None,
              modalities: list[str] | None = None, reference: dict[str, Tensor] | None = None,
              copy_model: bool = True) -> Attribution:
    """Attribute ``model``'s logit of ``target`` to every modality input with the registered method
    ``method``: ``ATTRIBUTIONS[method](params).attribute(model, inputs, target, modalities, reference,
    copy_model)`` (see :meth:`AttributionMethod.attribute`). ``params`` is the flat
    :class:`AttributionParams` (each method takes the fields it knows), a mapping or the method's
    own ``Params``."""
    from kdcore.models.tree import TreeStudent

    if isinstance(model, TreeStudent):  # no gradients for Captum: the trees' own contributions
        return tree_attribution(model, inputs, target, params)
    cls = get_attribution(method)
    return cls(method_params(cls, params)).attribute(model, inputs, target, modalities, reference, copy_model)


TREE_NOTE = ("tree student: LightGBM pred_contrib (TreeSHAP contributions to the class's raw score; Lundberg et al. "
             "2020), beside the teacher's Captum method on the same features")


def tree_attribution(model, inputs: dict[str, Tensor], target: Tensor | None = None, params: Any = None) -> Attribution:
    """A gradient-boosted-tree student's attribution (:class:`kdcore.models.tree.TreeStudent`): its exact
    SHAP values for trees, φ_j with Σ_j φ_j + φ_0 = raw score of the target class (TreeSHAP, Lundberg et al.,
    Nature MI 2020; LightGBM ``pred_contrib``), split into the student's modalities like a Captum map."""
    import numpy as np

    from kdcore.models.tree import features_of

    mods = [m for m in model.modalities if m in inputs]
    if not mods:
        raise AttributionError(f"inputs hold none of the model's modalities ({', '.join(model.modalities)})")
    x = features_of(inputs, model.modalities, model.widths)
    logits = torch.from_numpy(model.raw_scores(x)).float()
    if target is None or getattr(params, "target", "label") == "pred" or (
            isinstance(params, Mapping) and params.get("target") == "pred"):
        target = logits.argmax(1)
    target = target.cpu().long()
    contrib = model.contributions(x)[np.arange(x.shape[0]), target.numpy(), :-1]  # [B, F], bias dropped
    maps, col = {}, 0
    for m in model.modalities:
        w = model.widths[m]
        if m in mods:
            maps[m] = torch.from_numpy(contrib[:, col:col + w].copy()).float().reshape(inputs[m].shape)
        col += w
    b = x.shape[0]
    totals = torch.stack([maps[m].reshape(b, -1).abs().sum(1) for m in mods], dim=1)
    shares = totals / totals.sum(1, keepdim=True).clamp_min(1e-12)
    return Attribution("pred_contrib", tuple(mods), {m: "vector" for m in mods}, maps, target, logits, shares,
                       {}, [TREE_NOTE])


def token_scores(attr: Attribution, modality: str, i: int) -> list[tuple[str, float]]:
    """``[(character, score), ...]`` for sample ``i`` of a text modality, pads dropped: each score
    sits on the character token it explains."""
    from kdcore.data.text import PAD, decode

    ids = attr.tokens[modality][i]
    keep = ids != PAD
    chars = [decode(t[None]) or "?" for t in ids[keep]]
    return list(zip(chars, attr.maps[modality][i][keep].tolist()))


def attribute_batches(model: nn.Module, inputs: dict[str, Tensor], method: str, target: Tensor | None,
                      params: AttributionParams | MethodParams | Mapping[str, Any] | None = None, batch_size: int = 8,
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
