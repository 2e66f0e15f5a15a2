"""Grad-CAM — Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra, "Grad-CAM: Visual Explanations
from Deep Networks via Gradient-based Localization", ICCV 2017 (arXiv:1610.02391).

Captum ``LayerGradCam`` on each convolutional encoder's last feature map (ReLU of the
gradient-weighted channel sum), upsampled to the input size with ``LayerAttribution.interpolate``
(bilinear) and repeated over the input channels; for a video encoder, bilinear per frame (a
single-frame encoder's map lands on its frame). Image, spectrogram and video modalities with a CNN
encoder only (the others are skipped with a note); the maps live on each encoder's own feature
scale, so no shares are computed.
"""

from __future__ import annotations

from torch import Tensor

from kdcore.explain.attribution import (Attribution, AttributionError, AttributionInputs, AttributionMethod,
                                        MethodParams, gradcam_layer, register_attribution)


@register_attribution
class GradCam(AttributionMethod):
    """Grad-CAM — Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks", ICCV 2017."""

    name = "gradcam"
    title = "Grad-CAM (image / spectrogram / video)"
    summary = "gradient-weighted last conv feature map, upsampled to the input (CNN encoders only)"
    paper = ("Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization, "
             "ICCV 2017")
    order = 50
    input_grad = False  # the layer hook needs fresh leaves per modality (cloned below)

    class Params(MethodParams):
        pass

    def explain(self, ctx: AttributionInputs) -> Attribution:
        from captum.attr import LayerAttribution, LayerGradCam

        maps: dict[str, Tensor] = {}
        for m, x in zip(ctx.modalities, ctx.inputs):
            layer = gradcam_layer(ctx.net, m)
            if layer is None or x.dim() not in (4, 5):
                ctx.notes.append(f"Grad-CAM needs a convolutional encoder over an image, spectrogram or video; "
                                 f"{m} has none, skipped")
                continue
            lgc = LayerGradCam(ctx.forward, layer)
            inp = tuple(t.clone().requires_grad_(True) for t in ctx.inputs)
            cam = lgc.attribute(inp, target=ctx.target, additional_forward_args=ctx.extra, relu_attributions=True)
            if x.dim() == 5:  # video: the encoder puts its map back on the frames (kdcore.models.video_encoders)
                maps[m] = ctx.net.encoders[m].cam_to_input(cam.detach(), tuple(x.shape))
                continue
            cam = LayerAttribution.interpolate(cam.detach(), tuple(x.shape[2:]), interpolate_mode="bilinear")
            maps[m] = cam.expand(-1, x.shape[1], -1, -1).contiguous()
        if not maps:
            raise AttributionError("method=gradcam needs an image or spectrogram (or video) modality with a CNN encoder; "
                                   "this model has " + ", ".join(f"{m} ({ctx.kinds[m]})" for m in ctx.modalities))
        got = [m for m in ctx.modalities if m in maps]
        return Attribution(self.name, tuple(got), {m: ctx.kinds[m] for m in got},
                           {m: v.detach().cpu() for m, v in maps.items()}, ctx.target.cpu(), ctx.logits.cpu(), None,
                           {}, ctx.notes)
