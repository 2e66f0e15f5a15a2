"""Multimodal losses (modality-attention KD, attention-weighted per-modality feature KD, cross-modal
feature KD) and per-head auxiliary KD, against independent numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdcore.methods.losses import LOSSES, LossSetup, StepContext
from kdcore.methods.losses import functional as LF
from kdcore.models.output import ModelOutput


def out(mods, width, b=4, attention=True, seed=0, aux=()) -> ModelOutput:
    g = torch.Generator().manual_seed(seed)
    att = torch.softmax(torch.randn(b, len(mods), generator=g) * 2, 1) if attention else None
    return ModelOutput(logits=torch.randn(b, 10, generator=g),
                       features={m: torch.randn(b, width, generator=g) for m in mods},
                       fused=torch.randn(b, width, generator=g), attention=att, modalities=tuple(mods),
                       feature_maps={m: [] for m in mods},
                       aux_logits={k: torch.randn(b, 2, generator=g) for k in aux})


def ctx(b=4, T=4.0):
    return StepContext(labels=torch.zeros(b, dtype=torch.long), epoch=0, total_epochs=1, step=0, temperature=T)


def build(name, s, t, **params):
    return LOSSES[name](LossSetup(s, t, 10, 1, {k: 2 for k in s.aux_logits}), **params)


# ---- attention_kd ------------------------------------------------------------------------
def np_attention_kl(a_s, a_t):
    total = 0.0
    for rs, rt in zip(a_s, a_t):
        rs, rt = rs / rs.sum(), rt / rt.sum()
        total += sum(p * math.log(p / q) for p, q in zip(rt, rs) if p > 0)
    return total / len(a_s)


def test_attention_kd_renormalises_over_shared_modalities():
    s = out(("image", "audio"), 16, seed=1)
    t = out(("text", "audio", "image"), 64, seed=2)
    loss = build("attention_kd", s, t)
    assert loss.applicable and loss.shared == ["image", "audio"]
    ref = np_attention_kl(s.attention.numpy()[:, [0, 1]], t.attention.numpy()[:, [2, 1]])
    assert loss(s, t, ctx())["attention_kd"].item() == pytest.approx(ref, rel=1e-5)


def test_attention_kd_zero_when_equal_and_handles_an_absent_modality():
    s = out(("image", "audio", "text"), 16, seed=3)
    t = out(("image", "audio", "text"), 64, seed=4)
    loss = build("attention_kd", s, t)
    t.attention = s.attention.clone()
    assert loss(s, t, ctx())["attention_kd"].item() == pytest.approx(0.0, abs=1e-7)
    # an absent modality has α = 0 on both sides: it contributes nothing, the rest is renormalised
    a = torch.tensor([[0.5, 0.5, 0.0]])
    b = torch.tensor([[0.2, 0.6, 0.0]])
    ref = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert LF.modality_attention_kl(b, a).item() == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("case", ["student_concat", "teacher_mean", "one_shared"])
def test_attention_kd_not_applicable_is_zero_with_a_note(case):
    s = out(("image", "audio"), 16, attention=case != "student_concat")
    t = out(("audio",) if case == "one_shared" else ("image", "audio"), 64, attention=case != "teacher_mean")
    with pytest.warns(UserWarning, match="attention_kd.*not applicable"):
        loss = build("attention_kd", s, t)
    assert not loss.applicable and loss.note.startswith("not applicable")
    assert loss(s, t, ctx())["attention_kd"].item() == 0.0


def test_attention_kd_gradient_reaches_student_attention_only():
    s, t = out(("image", "audio"), 16, seed=5), out(("image", "audio"), 64, seed=6)
    s.attention.requires_grad_(True)
    t.attention.requires_grad_(True)
    build("attention_kd", s, t)(s, t, ctx())["attention_kd"].backward()
    assert s.attention.grad is not None and t.attention.grad is None


# ---- modality_feature_kd -------------------------------------------------------------------
def test_modality_feature_kd_matches_loop_reference():
    s = out(("image", "audio"), 16, seed=7)
    t = out(("audio", "image", "text"), 64, seed=8)
    loss = build("modality_feature_kd", s, t)
    terms = loss(s, t, ctx())
    assert set(terms) == {"modality_feature_kd/image", "modality_feature_kd/audio"}
    proj = {m: (loss.projectors[m].conv.weight[:, :, 0, 0].detach().numpy(),
                loss.projectors[m].conv.bias.detach().numpy()) for m in ("image", "audio")}
    a_t = t.attention.numpy()
    total = 0.0
    for i in range(4):
        w = {"image": a_t[i, 1], "audio": a_t[i, 0]}
        norm = w["image"] + w["audio"]
        for m in ("image", "audio"):
            wm, bm = proj[m]
            p = wm @ s.features[m].numpy()[i] + bm
            total += (w[m] / norm) * np.mean((p - t.features[m].numpy()[i]) ** 2)
    assert sum(v.item() for v in terms.values()) == pytest.approx(total / 4, rel=1e-5)


def test_modality_feature_kd_uniform_without_attention_and_zero_when_equal():
    s = out(("image", "audio"), 8, seed=9)
    t = out(("image", "audio"), 8, attention=False, seed=10)
    loss = build("modality_feature_kd", s, t)  # equal widths: projectors start as the identity
    assert "uniform" in loss.note
    terms = loss(s, t, ctx())
    ref = {m: 0.5 * np.mean((s.features[m].numpy() - t.features[m].numpy()) ** 2) for m in ("image", "audio")}
    for m in ("image", "audio"):
        assert terms[f"modality_feature_kd/{m}"].item() == pytest.approx(ref[m], rel=1e-5)
    t.features = {m: v.clone() for m, v in s.features.items()}
    assert all(v.item() == pytest.approx(0.0, abs=1e-10) for v in loss(s, t, ctx()).values())


def test_modality_feature_kd_needs_a_shared_modality():
    with pytest.raises(ValueError, match="needs a modality both networks see"):
        build("modality_feature_kd", out(("image",), 8), out(("audio",), 8))


# ---- crossmodal_feature_kd -----------------------------------------------------------------
@pytest.mark.parametrize("distance", ["mse", "cosine"])
def test_crossmodal_feature_kd_matches_reference(distance):
    s = out(("image",), 16, seed=11)
    t = out(("audio", "text"), 64, seed=12)
    loss = build("crossmodal_feature_kd", s, t, distance=distance)
    w = loss.regressors["image"].conv.weight[:, :, 0, 0].detach().numpy()
    bias = loss.regressors["image"].conv.bias.detach().numpy()
    vals = []
    for i in range(4):
        p = w @ s.features["image"].numpy()[i] + bias
        q = t.fused.numpy()[i]
        vals.append(np.mean((p - q) ** 2) if distance == "mse"
                    else 1 - p @ q / (np.linalg.norm(p) * np.linalg.norm(q)))
    terms = loss(s, t, ctx())
    assert set(terms) == {"crossmodal_feature_kd/image"}
    assert terms["crossmodal_feature_kd/image"].item() == pytest.approx(np.mean(vals), rel=1e-5)


def test_crossmodal_feature_kd_zero_when_feature_equals_fused_and_params_checked():
    s, t = out(("image", "audio"), 8, seed=13), out(("image", "audio"), 8, seed=14)
    s.features["image"] = t.fused.clone()
    loss = build("crossmodal_feature_kd", s, t, modalities=["image"], distance="cosine")
    assert loss(s, t, ctx())["crossmodal_feature_kd/image"].item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="params.distance='l1'; allowed: mse, cosine"):
        build("crossmodal_feature_kd", s, t, distance="l1")
    with pytest.raises(ValueError, match="params.modalities"):
        build("crossmodal_feature_kd", s, t, modalities=["video"])


# ---- aux_kd -----------------------------------------------------------------------------------
def np_kd(zs, zt, T):
    def sm(z):
        e = np.exp(z / T - (z / T).max())
        return e / e.sum()
    return np.mean([sum(p * math.log(p / q) for p, q in zip(sm(t), sm(s))) for s, t in zip(zs, zt)]) * T**2


def test_aux_kd_one_term_per_task_each_hinton_kd():
    s = out(("image",), 8, seed=15, aux=("parity", "ge5"))
    t = out(("image",), 8, seed=16, aux=("parity", "ge5"))
    terms = build("aux_kd", s, t)(s, t, ctx(T=2.0))
    assert set(terms) == {"aux_kd/parity", "aux_kd/ge5"}
    for k in ("parity", "ge5"):
        ref = np_kd(s.aux_logits[k].numpy(), t.aux_logits[k].numpy(), 2.0)
        assert terms[f"aux_kd/{k}"].item() == pytest.approx(ref, rel=1e-5)


def test_aux_kd_without_tasks_says_how_to_enable_them():
    with pytest.raises(ValueError, match="set data.aux_tasks .*parity"):
        build("aux_kd", out(("image",), 8), out(("image",), 8))


def test_attention_kd_skips_a_modality_the_student_dropped_for_that_sample():
    a_t = torch.tensor([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]])
    a_s = torch.tensor([[0.0, 0.4, 0.6], [0.1, 0.3, 0.6]])  # sample 0: image dropped (α = 0)
    row0 = (0.3 / 0.8) * math.log((0.3 / 0.8) / 0.4) + (0.5 / 0.8) * math.log((0.5 / 0.8) / 0.6)
    row1 = 0.2 * math.log(0.2 / 0.1) + 0.3 * math.log(0.3 / 0.3) + 0.5 * math.log(0.5 / 0.6)
    assert LF.modality_attention_kl(a_s, a_t).item() == pytest.approx((row0 + row1) / 2, rel=1e-5)
