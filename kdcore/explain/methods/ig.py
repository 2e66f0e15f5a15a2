"""Integrated Gradients — Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks",
ICML 2017 (arXiv:1703.01365).

The path integral of the gradient from a baseline (zeros, or the reference batch's mean; text:
the PAD embedding) to the input, by ``steps`` Riemann steps (Captum ``IntegratedGradients``). The
attributions of all modalities together sum to f(x) − f(baseline) (completeness). On text it is
Layer Integrated Gradients on the embedding layer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor

from kdcore.explain.attribution import AttributionInputs, AttributionMethod, MethodParams, register_attribution


@register_attribution
class IntegratedGradients(AttributionMethod):
    """Integrated Gradients — Sundararajan et al., "Axiomatic Attribution for Deep Networks", ICML 2017."""

    name = "ig"
    title = "Integrated Gradients"
    summary = "path integral of ∂y/∂x from a baseline to the input (completeness: sums to f(x) − f(baseline))"
    paper = "Sundararajan, Taly & Yan, Axiomatic Attribution for Deep Networks, ICML 2017"
    order = 10

    class Params(MethodParams):
        steps: int = Field(32, ge=1, le=1024, description="interpolation steps")
        baseline: Literal["zeros", "mean"] = "zeros"  # zeros | mean (the reference batch's mean per modality)
        internal_batch_size: int | None = Field(None, ge=1, le=1 << 20, description="chunking (memory)")

    def run(self, ctx: AttributionInputs) -> tuple[Tensor, ...]:
        from captum.attr import IntegratedGradients as CaptumIG

        return CaptumIG(ctx.forward).attribute(
            ctx.inputs, baselines=ctx.baselines, target=ctx.target, additional_forward_args=ctx.extra,
            n_steps=int(self.params.steps), internal_batch_size=self.params.internal_batch_size)
