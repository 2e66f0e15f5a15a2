"""SmoothGrad — Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by adding
noise", ICML workshop 2017 (arXiv:1706.03825).

The mean of Saliency over ``noise_samples`` noisy copies of the input, noise N(0, (noise_std ·
std(x))²) per modality (Captum ``NoiseTunnel(Saliency)``, ``nt_type="smoothgrad"``).
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from kdcore.explain.attribution import AttributionInputs, AttributionMethod, MethodParams, register_attribution


@register_attribution
class SmoothGrad(AttributionMethod):
    """SmoothGrad — Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017."""

    name = "smoothgrad"
    title = "SmoothGrad (NoiseTunnel over Saliency)"
    summary = "Saliency averaged over noisy copies of the input"
    paper = "Smilkov, Thorat, Kim, Viégas & Wattenberg, SmoothGrad: removing noise by adding noise, 2017"
    order = 30

    class Params(MethodParams):
        noise_samples: int = Field(8, ge=1, le=256, description="noisy draws")
        noise_std: float = Field(0.15, gt=0.0, le=5.0, description="σ as a fraction of the input's std")

    def run(self, ctx: AttributionInputs) -> tuple[Tensor, ...]:
        from captum.attr import NoiseTunnel, Saliency

        nt = NoiseTunnel(Saliency(ctx.forward))
        stdevs = tuple(float(self.params.noise_std) * max(float(x.detach().float().std()), 1e-6) for x in ctx.inputs)
        return nt.attribute(ctx.inputs, nt_type="smoothgrad", nt_samples=int(self.params.noise_samples),
                            stdevs=stdevs, target=ctx.target, additional_forward_args=ctx.extra, abs=True)
