"""Occlusion — Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014
(arXiv:1311.2901).

The drop of the target logit when a ``window`` (pixels / time-frequency bins over all channels, pixels
of one video frame, or features) is replaced by the baseline, slid with ``stride`` (Captum
``Occlusion``); text is occluded one whole token at a time, so a token's score is the mean over its
embedding dimensions.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor

from kdcore.explain.attribution import AttributionInputs, AttributionMethod, MethodParams, register_attribution


@register_attribution
class Occlusion(AttributionMethod):
    """Occlusion — Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014."""

    name = "occlusion"
    title = "Occlusion"
    summary = "change of the target logit when a sliding window is set to the baseline"
    paper = "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014"
    order = 40
    token_reduce = "mean"  # a window covers a whole token: every embedding dim holds the same score

    class Params(MethodParams):
        window: int = Field(4, ge=1, le=512, description="window side (pixels / bins) or length (features)")
        stride: int | None = Field(None, ge=1, le=512, description="default: max(1, window // 2)")
        baseline: Literal["zeros", "mean"] = "zeros"  # what an occluded window is set to
        internal_batch_size: int | None = Field(None, ge=1, le=1 << 20, description="perturbations per eval")

    def run(self, ctx: AttributionInputs) -> tuple[Tensor, ...]:
        from captum.attr import Occlusion as CaptumOcclusion

        w = int(self.params.window)
        s = int(self.params.stride or max(1, w // 2))
        windows, strides = [], []
        for m, x in zip(ctx.modalities, ctx.inputs):
            if m in ctx.token_mods:
                windows.append((1, x.shape[2]))
                strides.append((1, x.shape[2]))
            elif x.dim() == 5:  # video: a window of pixels in one frame at a time (per-frame maps)
                windows.append((x.shape[1], 1, min(w, x.shape[3]), min(w, x.shape[4])))
                strides.append((x.shape[1], 1, min(s, x.shape[3]), min(s, x.shape[4])))
            elif x.dim() == 4:
                windows.append((x.shape[1], min(w, x.shape[2]), min(w, x.shape[3])))
                strides.append((x.shape[1], min(s, x.shape[2]), min(s, x.shape[3])))
            else:
                windows.append(tuple(min(w, d) for d in x.shape[1:]))
                strides.append(tuple(min(s, d) for d in x.shape[1:]))
        return CaptumOcclusion(ctx.forward).attribute(
            ctx.inputs, sliding_window_shapes=tuple(windows), strides=tuple(strides), baselines=ctx.baselines,
            target=ctx.target, additional_forward_args=ctx.extra,
            perturbations_per_eval=int(self.params.internal_batch_size or 64))
