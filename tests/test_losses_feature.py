"""Feature and relation losses (FitNets, AT, AB, SP, RKD, PKT) against independent numpy / loop
references, zero when student equals teacher, and mismatched widths / spatial sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdcore.methods.losses import LOSSES, LossSetup, StepContext
from kdcore.methods.losses import functional as LF
from kdcore.methods.losses._select import Regressor
from kdcore.models.output import ModelOutput


def out(fused=None, features=None, maps=None, b=None, c=3, attention=None, mods=None) -> ModelOutput:
    features = features or {}
    maps = maps or {}
    mods = tuple(mods or list(dict.fromkeys([*features, *maps])) or ("image",))
    b = b or next(iter([*features.values(), *[m[0] for m in maps.values()], fused]), None).shape[0]
    feats = {m: features.get(m, torch.zeros(b, 2)) for m in mods}
    return ModelOutput(logits=torch.zeros(b, c), features=feats,
                       fused=fused if fused is not None else torch.zeros(b, 2), attention=attention,
                       modalities=mods, feature_maps={m: maps.get(m, []) for m in mods})


def ctx(b, c=3):
    return StepContext(labels=torch.zeros(b, dtype=torch.long), epoch=0, total_epochs=1, step=0, temperature=4.0)


def build(name, s, t, **params):
    return LOSSES[name](LossSetup(s, t, 3, 1), **params)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---- FitNets ------------------------------------------------------------------------------
def test_fitnet_functional_is_half_mean_square():
    s, t = rand(2, 3, 2, 2, seed=1), rand(2, 3, 2, 2, seed=2)
    ref = 0.5 * np.mean((t.numpy() - s.numpy()) ** 2)
    assert LF.fitnet_loss(s, t).item() == pytest.approx(ref, rel=1e-12)
    assert LF.fitnet_loss(t, t).item() == 0.0


def test_fitnet_same_shape_starts_at_identity_and_is_zero_when_equal():
    x = torch.randn(3, 8, 4, 4)
    s, t = out(maps={"image": [x.clone()]}), out(maps={"image": [x.clone()]})
    loss = build("fitnet", s, t)
    assert loss(s, t, ctx(3))["fitnet"].item() == pytest.approx(0.0, abs=1e-10)
    y = torch.randn(3, 8, 4, 4)
    t2 = out(maps={"image": [y]})
    ref = 0.5 * np.mean((y.numpy() - x.numpy()) ** 2)
    assert loss(s, t2, ctx(3))["fitnet"].item() == pytest.approx(ref, rel=1e-5)


def test_fitnet_regressor_is_a_1x1_conv_then_resize():
    """Mismatched width and spatial size: r(F_S) has the teacher's shape; for equal spatial sizes the
    value equals an explicit per-position matrix product (numpy einsum)."""
    s_map, t_map = torch.randn(2, 4, 4, 4), torch.randn(2, 32, 2, 2)
    loss = build("fitnet", out(maps={"image": [s_map]}), out(maps={"image": [torch.randn(2, 16, 4, 4), t_map]}))
    assert "4→32" in loss.note and "bilinear 2×2" in loss.note and "map 1" in loss.note
    r = loss.regressor(s_map)
    assert r.shape == t_map.shape
    # a constant map stays constant through the (anti-aliased bilinear) resize
    const = torch.ones(1, 4, 4, 4)
    y = loss.regressor(const)
    assert torch.allclose(y, y[:, :, :1, :1].expand_as(y), atol=1e-6)
    # same spatial size: r is a 1×1 conv, i.e. W·x + b at every position
    reg = Regressor(torch.randn(2, 4, 3, 3), torch.randn(2, 6, 3, 3))
    x = torch.randn(2, 4, 3, 3)
    w = reg.conv.weight.detach().numpy()[:, :, 0, 0]
    bias = reg.conv.bias.detach().numpy()
    ref = np.einsum("oc,bchw->bohw", w, x.numpy()) + bias[None, :, None, None]
    np.testing.assert_allclose(reg(x).detach().numpy(), ref, rtol=1e-5, atol=1e-6)


def test_fitnet_vectors_and_sequences():
    # vectors: a linear regressor 16 → 64
    s, t = out(fused=torch.randn(5, 16)), out(fused=torch.randn(5, 64))
    loss = build("fitnet", s, t, modality="fused")
    w = loss.regressor.conv.weight[:, :, 0, 0].detach()
    bias = loss.regressor.conv.bias.detach()
    ref = 0.5 * ((t.fused - (s.fused @ w.T + bias)) ** 2).mean()
    assert loss(s, t, ctx(5))["fitnet"].item() == pytest.approx(ref.item(), rel=1e-5)
    # sequences [B, L, C] with different widths
    s, t = out(maps={"text": [torch.randn(2, 12, 16)]}), out(maps={"text": [torch.randn(2, 12, 64)]})
    loss = build("fitnet", s, t)
    assert loss.regressor(s.feature_maps["text"][0]).shape == (2, 12, 64)
    assert torch.isfinite(loss(s, t, ctx(2))["fitnet"])


def test_fitnet_default_pair_and_bad_addresses():
    s = out(maps={"audio": [torch.randn(2, 4, 8, 8)], "image": [torch.randn(2, 4, 4, 4)]}, mods=("image", "audio"))
    t = out(maps={"audio": [torch.randn(2, 8, 4, 4)]}, mods=("audio",))
    loss = build("fitnet", s, t)  # first common modality: audio
    assert loss.note.startswith("student audio map 0") and "teacher audio map 0" in loss.note
    cross = build("fitnet", s, t, modality="image", teacher_modality="audio", layer=0)
    assert cross.regressor(s.feature_maps["image"][0]).shape == (2, 8, 4, 4)
    with pytest.raises(ValueError, match=r"params.modality='video'.*allowed: fused, image, audio"):
        build("fitnet", s, t, modality="video")
    with pytest.raises(ValueError, match=r"params.teacher_layer=3 out of range.*\[-1, 0\]"):
        build("fitnet", s, t, teacher_layer=3)
    # no shared modality: falls back to the fused features
    t_other = out(maps={"text": [torch.randn(2, 12, 8)]}, fused=torch.randn(2, 8), mods=("text",))
    assert build("fitnet", s, t_other).note.startswith("student fused")


# ---- attention transfer -------------------------------------------------------------------
def np_at(s, t, p=2.0):
    total = 0.0
    for sb, tb in zip(s, t):
        qs = (np.abs(sb) ** p).mean(0).ravel()
        qt = (np.abs(tb) ** p).mean(0).ravel()
        qs, qt = qs / np.linalg.norm(qs), qt / np.linalg.norm(qt)
        total += np.mean((qs - qt) ** 2)
    return total / len(s)


def test_at_matches_numpy_different_channels():
    s, t = rand(3, 4, 5, 5, seed=1), rand(3, 32, 5, 5, seed=2)
    assert LF.at_loss(s, t).item() == pytest.approx(np_at(s.numpy(), t.numpy()), rel=1e-10)
    assert LF.at_loss(s, t, p=1.0).item() == pytest.approx(np_at(s.numpy(), t.numpy(), 1.0), rel=1e-10)
    assert LF.at_loss(t, t).item() == pytest.approx(0.0, abs=1e-15)
    # same attention, different channel count and scale: still zero
    assert LF.at_loss(torch.cat([t, t], dim=1) * 3, t).item() == pytest.approx(0.0, abs=1e-12)


def test_at_pools_the_larger_map():
    s, t = rand(2, 4, 4, 4, seed=3), rand(2, 8, 2, 2, seed=4)
    pooled = s.numpy().reshape(2, 4, 2, 2, 2, 2).mean(axis=(3, 5))  # 2×2 block averages
    assert LF.at_loss(s, t).item() == pytest.approx(np_at(pooled, t.numpy()), rel=1e-10)
    assert LF.at_loss(t, s).item() == pytest.approx(np_at(t.numpy(), pooled), rel=1e-10)


def test_at_module_pairs_by_relative_depth_and_sums_terms():
    sm = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4)]
    tm = [torch.randn(2, 16, 8, 8), torch.randn(2, 32, 4, 4), torch.randn(2, 64, 2, 2), torch.randn(2, 64, 2, 2)]
    s, t = out(maps={"image": sm, "text": [torch.randn(2, 12, 8)]}), out(maps={"image": tm, "text": [torch.randn(2, 12, 32)]})
    loss = build("at", s, t)
    assert loss.pairs == [("image", 0, 1), ("image", 1, 3), ("text", 0, 0)]
    terms = loss(s, t, ctx(2))
    assert set(terms) == {"at/image.0", "at/image.1", "at/text"}
    assert terms["at/image.1"].item() == pytest.approx(LF.at_loss(sm[1], tm[3]).item(), rel=1e-6)
    last = build("at", s, t, pairs="last", modality="image")
    assert last.pairs == [("image", 1, 3)] and set(last(s, t, ctx(2))) == {"at/image"}


def test_at_refuses_vector_only_models():
    s, t = out(maps={"v": [torch.randn(2, 8)]}), out(maps={"v": [torch.randn(2, 16)]})
    with pytest.raises(ValueError, match="spatial feature maps"):
        build("at", s, t)


# ---- activation boundaries ----------------------------------------------------------------
def test_ab_hand_computed():
    s = torch.tensor([[0.5, -2.0, 0.3, 2.0]])
    t = torch.tensor([[1.0, -1.0, -1.0, 0.0]])
    # on, s=.5: (1−.5)²=.25 · off, s=−2: 0 · off, s=.3: 1.3²=1.69 · off (t = 0), s=2: 3²=9
    assert LF.ab_loss(s, t).item() == pytest.approx((0.25 + 0 + 1.69 + 9) / 4, rel=1e-6)
    assert LF.ab_loss(torch.tensor([[1.5, -1.0]]), torch.tensor([[2.0, -3.0]])).item() == 0.0


def test_ab_matches_loop_reference_and_module_uses_projection():
    s, t = rand(3, 5, seed=5), rand(3, 5, seed=6)
    ref = np.mean([[(max(0, 1 - a) ** 2 if b > 0 else max(0, 1 + a) ** 2) for a, b in zip(r, q)]
                   for r, q in zip(s.numpy(), t.numpy())])
    assert LF.ab_loss(s, t).item() == pytest.approx(ref, rel=1e-12)
    so, to = out(fused=torch.randn(4, 16)), out(fused=torch.randn(4, 64))
    loss = build("ab", so, to, margin=0.5)
    proj = loss.projector(so.fused)
    assert proj.shape == (4, 64) and "fused" in loss.note
    assert loss(so, to, ctx(4))["ab"].item() == pytest.approx(LF.ab_loss(proj, to.fused, 0.5).item(), rel=1e-6)


# ---- similarity preserving ---------------------------------------------------------------
def np_sp(s, t):
    b = len(s)
    def g(x):
        x = x.reshape(b, -1)
        m = x @ x.T
        return m / np.linalg.norm(m, axis=1, keepdims=True)
    return float(((g(t) - g(s)) ** 2).sum() / b**2)


def test_sp_matches_numpy_and_is_zero_when_equal():
    s, t = rand(6, 16, seed=7), rand(6, 4, 3, 3, seed=8)
    assert LF.sp_loss(s, t).item() == pytest.approx(np_sp(s.numpy(), t.numpy()), rel=1e-10)
    assert LF.sp_loss(t, t).item() == pytest.approx(0.0, abs=1e-15)
    so, to = out(fused=s.float()), out(fused=torch.randn(6, 64))
    assert build("sp", so, to)(so, to, ctx(6))["sp"].item() > 0


# ---- RKD -----------------------------------------------------------------------------------
def huber(x):
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def np_rkd(s, t):
    b = len(s)
    def dists(e):
        return np.array([[np.linalg.norm(e[i] - e[j]) for j in range(b)] for i in range(b)])
    ds, dt = dists(s), dists(t)
    ds, dt = ds / ds[ds > 0].mean(), dt / dt[dt > 0].mean()
    dist = np.mean([huber(ds[i, j] - dt[i, j]) for i in range(b) for j in range(b)])

    def angle(e, i, j, k):
        u, v = e[i] - e[j], e[k] - e[j]
        nu, nv = np.linalg.norm(u), np.linalg.norm(v)
        if nu == 0 or nv == 0:
            return 0.0
        return float(u @ v / (nu * nv))
    ang = np.mean([huber(angle(s, i, j, k) - angle(t, i, j, k)) for i in range(b) for j in range(b) for k in range(b)])
    return dist, ang


def test_rkd_matches_loop_reference():
    s, t = rand(5, 7, seed=9), rand(5, 3, seed=10) * 4
    d, a = LF.rkd_parts(s, t)
    rd, ra = np_rkd(s.numpy(), t.numpy())
    assert d.item() == pytest.approx(rd, rel=1e-6)
    assert a.item() == pytest.approx(ra, rel=1e-6)
    assert LF.rkd_loss(s, t).item() == pytest.approx(25 * rd + 50 * ra, rel=1e-6)


def test_rkd_zero_when_equal_or_scaled_and_batch_of_one():
    t = rand(6, 8, seed=11)
    d, a = LF.rkd_parts(t, t)
    assert d.item() == pytest.approx(0.0, abs=1e-12) and a.item() == pytest.approx(0.0, abs=1e-12)
    d, a = LF.rkd_parts(3.0 * t, t)  # distances are normalised by their mean, angles are scale-free
    assert d.item() == pytest.approx(0.0, abs=1e-12) and a.item() == pytest.approx(0.0, abs=1e-12)
    x = torch.randn(1, 4, requires_grad=True)
    d, a = LF.rkd_parts(x, torch.randn(1, 9))
    (d + a).backward()
    assert d.item() == 0.0 and a.item() == 0.0 and torch.isfinite(x.grad).all()


def test_rkd_module_two_named_weighted_terms():
    so, to = out(fused=torch.randn(5, 16)), out(fused=torch.randn(5, 64))
    terms = build("rkd", so, to)(so, to, ctx(5))
    d, a = LF.rkd_parts(so.fused, to.fused)
    assert terms["rkd/dist"].item() == pytest.approx(25 * d.item(), rel=1e-6)
    assert terms["rkd/angle"].item() == pytest.approx(50 * a.item(), rel=1e-6)


def test_rkd_gradient_is_finite_with_duplicate_samples():
    x = torch.randn(3, 4)
    s = torch.cat([x, x[:1]]).requires_grad_(True)  # rows 0 and 3 coincide
    LF.rkd_loss(s, torch.randn(4, 6)).backward()
    assert torch.isfinite(s.grad).all()


# ---- PKT -----------------------------------------------------------------------------------
def np_pkt(s, t, eps=1e-7):
    def cond(f):
        f = f.reshape(len(f), -1)
        f = f / (np.linalg.norm(f, axis=1, keepdims=True) + eps)
        k = (f @ f.T + 1) / 2
        return k / k.sum(1, keepdims=True)
    ps, pt = cond(s), cond(t)
    b = len(s)
    return sum(pt[i, j] * math.log((pt[i, j] + eps) / (ps[i, j] + eps)) for i in range(b) for j in range(b)) / b**2


def test_pkt_matches_loop_reference_and_is_zero_when_equal():
    s, t = rand(5, 16, seed=12), rand(5, 64, seed=13)
    assert LF.pkt_loss(s, t).item() == pytest.approx(np_pkt(s.numpy(), t.numpy()), rel=1e-9)
    assert LF.pkt_loss(t, t).item() == pytest.approx(0.0, abs=1e-15)
    assert LF.pkt_loss(2 * t, t).item() == pytest.approx(0.0, abs=1e-12)  # cosine kernel: scale-free
