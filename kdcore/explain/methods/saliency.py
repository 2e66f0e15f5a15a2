"""Saliency, |∂y/∂x| — Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks:
Visualising Image Classification Models and Saliency Maps", ICLR workshop 2014 (arXiv:1312.6034).

The absolute gradient of the target logit with respect to each input entry (Captum ``Saliency``);
no knobs besides the target.
"""

from __future__ import annotations

from torch import Tensor

from kdcore.explain.attribution import AttributionInputs, AttributionMethod, MethodParams, register_attribution


@register_attribution
class Saliency(AttributionMethod):
    """Saliency — Simonyan et al., "Deep Inside Convolutional Networks", ICLR workshop 2014."""

    name = "saliency"
    title = "Saliency"
    summary = "absolute gradient |∂y/∂x| of the target logit"
    paper = "Simonyan, Vedaldi & Zisserman, Deep Inside Convolutional Networks, ICLR workshop 2014"
    order = 20

    class Params(MethodParams):
        pass

    def run(self, ctx: AttributionInputs) -> tuple[Tensor, ...]:
        from captum.attr import Saliency as CaptumSaliency

        return CaptumSaliency(ctx.forward).attribute(ctx.inputs, target=ctx.target,
                                                     additional_forward_args=ctx.extra, abs=True)
