"""Loss library: the generic contract every registered loss keeps (finite named terms, mismatched
widths and spatial sizes, batch of 1, 2 classes, gradients only to the student and the loss's own
parameters), the `methods` listing, and the logit losses (KD, DKD, logit MSE) against independent
numpy references."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from kdcore.methods.losses import LOSSES, LossSetup, StepContext
from kdcore.methods.losses import functional as LF
from kdcore.models.output import ModelOutput

MODS = ("image", "audio", "text")


def make_output(width: int, maps: dict[str, list[tuple]], b: int, c: int, mods=MODS, attention=True,
                aux=("parity",), seed=0) -> ModelOutput:
    """A fake network output with leaf tensors that require grad (to detect gradient leaks)."""
    g = torch.Generator().manual_seed(seed)

    def leaf(*shape):
        return torch.randn(*shape, generator=g).requires_grad_(True)

    att = torch.softmax(torch.randn(b, len(mods), generator=g), 1).requires_grad_(True) if attention else None
    return ModelOutput(
        logits=leaf(b, c), features={m: leaf(b, width) for m in mods}, fused=leaf(b, width), attention=att,
        modalities=tuple(mods), feature_maps={m: [leaf(b, *s) for s in maps[m]] for m in mods},
        aux_logits={t: leaf(b, 2) for t in aux},
    )


STUDENT_MAPS = {"image": [(4, 4, 4)], "audio": [(4, 16, 16)], "text": [(12, 16)]}
TEACHER_MAPS = {"image": [(16, 4, 4), (32, 2, 2)], "audio": [(16, 16, 16), (32, 8, 8)], "text": [(12, 64)]}


def pair(b=5, c=10, seed=0):
    s = make_output(16, STUDENT_MAPS, b, c, seed=seed)
    t = make_output(64, TEACHER_MAPS, b, c, seed=seed + 100)
    return s, t


def setup_for(s: ModelOutput, t: ModelOutput, c: int) -> LossSetup:
    return LossSetup(s.detach(), t.detach(), c, 10, {"parity": 2})


def ctx_for(b: int, c: int, epoch: int = 30, T=4.0, seed=0) -> StepContext:
    g = torch.Generator().manual_seed(seed)
    return StepContext(labels=torch.randint(0, c, (b,), generator=g), epoch=epoch, total_epochs=40, step=0,
                       temperature=T, aux={"parity": torch.randint(0, 2, (b,), generator=g)})


# ---- contract of every registered loss --------------------------------------------------
@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("b,c", [(5, 10), (1, 10), (4, 2), (1, 2)])
def test_every_loss_finite_and_gradients_only_to_student(name, b, c):
    s, t = pair(b, c)
    loss = LOSSES[name](setup_for(s, t, c))
    terms = loss(s, t, ctx_for(b, c))
    assert terms, name
    for k, v in terms.items():
        assert k == name or k.startswith(name + "/"), f"term {k!r} of {name} must be named after the loss"
        assert v.shape == () and torch.isfinite(v), (name, k, v)
    total = sum(terms.values())
    if total.requires_grad:
        total.backward()
    for tensor in t.tensors():
        assert tensor.grad is None, f"{name}: gradient leaked into a teacher tensor"
    own = list(loss.parameters())
    if b > 1 and total.requires_grad:
        assert any(x.grad is not None for x in s.tensors()), f"{name}: no gradient reaches the student"
        for p in own:
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: own parameter got no gradient"


def test_every_loss_has_docs_defaults_and_weight():
    for name, cls in LOSSES.items():
        assert cls.summary and cls.family and isinstance(cls.defaults, dict), name
        assert cls.default_weight > 0, name
        if cls.needs_teacher:
            assert cls.paper, name
            assert "L" in (cls.__doc__ or "") or "=" in (cls.__doc__ or ""), f"{name}: docstring needs the formula"


def test_losses_are_listed_by_family_then_order_whatever_the_import_order():
    from kdcore.methods.losses.base import FAMILIES, register

    key = [(FAMILIES.index(c.family), c.order, n) for n, c in LOSSES.items()]
    assert key == sorted(key)
    assert list(LOSSES)[:5] == ["ce", "kd", "dkd", "logit_mse", "fitnet"]  # logit_mse has its own module

    from kdcore.methods.losses.base import DistillLoss

    class Late(DistillLoss):  # registered last, listed inside its family by its order
        """L = 0 (test double)."""
        name, summary, family, order, needs_teacher = "test_late", "-", "logit", 25, False

    try:
        register(Late)
        assert list(LOSSES)[:4] == ["ce", "kd", "test_late", "dkd"]
    finally:
        LOSSES.pop("test_late")
    assert "test_late" not in LOSSES


def test_params_are_a_pydantic_model_and_defaults_are_derived_from_it():
    from pydantic import Field

    from kdcore.core.params import MethodParams
    from kdcore.methods.losses.base import DistillLoss

    s, t = pair()
    dkd = LOSSES["dkd"](setup_for(s, t, 10), beta=2)
    assert (dkd.params.alpha, dkd.params.beta, dkd.params.warmup) == (1.0, 2.0, 20) and dkd.beta == 2.0
    assert LOSSES["dkd"].defaults == {"alpha": 1.0, "beta": 8.0, "warmup": 20}
    with pytest.raises(TypeError, match="nested Params model"):
        class Old(DistillLoss):
            defaults = {"a": 1}
    with pytest.raises(TypeError, match="must subclass"):
        class Bare(DistillLoss):
            class Params:
                a: float = Field(1.0)
    assert issubclass(LOSSES["rkd"].Params, MethodParams)


def test_unknown_param_names_the_allowed_ones():
    s, t = pair()
    with pytest.raises(ValueError, match="allowed: alpha, beta, warmup"):
        LOSSES["dkd"](setup_for(s, t, 10), gamma=2)
    with pytest.raises(ValueError, match=r"params.beta=-1 .*range"):
        LOSSES["dkd"](setup_for(s, t, 10), beta=-1)
    with pytest.raises(ValueError, match=r"^loss 'dkd': params.beta=-1 is outside the allowed range \[0.0, 10000.0\]$"):
        LOSSES["dkd"](setup_for(s, t, 10), beta=-1)
    with pytest.raises(ValueError, match=r"^loss 'dkd': params.alpha='x' is not a number in \[0.0, 10000.0\]$"):
        LOSSES["dkd"](setup_for(s, t, 10), alpha="x")
    with pytest.raises(ValueError, match=r"^loss 'sp': params.layer=1.5 is not a whole number or a string$"):
        LOSSES["sp"](setup_for(s, t, 10), layer=1.5)


def test_methods_cli_lists_every_loss(capsys):
    from kdcore.cli import main

    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    losses = {r["name"]: r for r in rows if r["kind"] == "loss"}
    assert set(LOSSES) <= set(losses)
    for name in ("dkd", "logit_mse", "ab", "fitnet", "at", "sp", "rkd", "pkt", "attention_kd",
                 "modality_feature_kd", "crossmodal_feature_kd", "aux_kd"):
        assert losses[name]["summary"] and "defaults" in losses[name]
    assert losses["fitnet"]["default_weight"] == 100 and losses["at"]["default_weight"] == 1000
    assert losses["sp"]["default_weight"] == 3000 and losses["pkt"]["default_weight"] == 30000
    assert losses["dkd"]["defaults"] == {"alpha": 1.0, "beta": 8.0, "warmup": 20}
    assert losses["rkd"]["defaults"]["w_dist"] == 25 and losses["rkd"]["defaults"]["w_angle"] == 50
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in LOSSES)


# ---- independent numpy references -------------------------------------------------------
def np_softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def np_kl(p, q):
    return float(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0))


ZS = np.array([[1.0, 2.0, 0.5, -1.0], [0.3, -0.2, 2.5, 0.0], [-1.0, 0.0, 1.0, 3.0]])
ZT = np.array([[2.0, 0.5, 1.0, -2.0], [1.5, 0.2, 3.0, -1.0], [0.0, 0.5, 2.0, 1.0]])
Y = np.array([0, 2, 1])


def test_kd_hand_computed_two_classes_includes_T_squared():
    # p_T = softmax([T ln 3, 0] / T) = [3/4, 1/4], p_S = [1/2, 1/2]
    T = 2.0
    zt = torch.tensor([[T * math.log(3.0), 0.0]])
    zs = torch.zeros(1, 2)
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # = 0.130812...
    assert LF.kd_loss(zs, zt, T).item() == pytest.approx(kl * T**2, rel=1e-6)
    assert kl * T**2 == pytest.approx(0.523248, abs=1e-6)


def test_kd_matches_numpy_batchmean():
    T = 3.0
    ref = np.mean([np_kl(np_softmax(t / T), np_softmax(s / T)) for s, t in zip(ZS, ZT)]) * T**2
    got = LF.kd_loss(torch.tensor(ZS), torch.tensor(ZT), T).item()
    assert got == pytest.approx(ref, rel=1e-9)


def np_dkd(zs, zt, y, T):
    tckd, nckd = [], []
    for s, t, k in zip(zs, zt, y):
        ps, pt = np_softmax(s / T), np_softmax(t / T)
        bs, bt = [ps[k], 1 - ps[k]], [pt[k], 1 - pt[k]]
        tckd.append(np_kl(bt, bs) * T**2)
        rest = [j for j in range(len(s)) if j != k]
        hs = ps[rest] / ps[rest].sum()
        ht = pt[rest] / pt[rest].sum()
        nckd.append(np_kl(ht, hs) * T**2)
    return np.array(tckd), np.array(nckd)


def test_dkd_parts_match_numpy_loops():
    T = 2.0
    rt, rn = np_dkd(ZS, ZT, Y, T)
    tckd, nckd = LF.dkd_parts(torch.tensor(ZS), torch.tensor(ZT), torch.tensor(Y), T, per_sample=True)
    np.testing.assert_allclose(tckd.numpy(), rt, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(nckd.numpy(), rn, rtol=1e-7, atol=1e-12)
    full = LF.dkd_loss(torch.tensor(ZS), torch.tensor(ZT), torch.tensor(Y), alpha=1.0, beta=8.0, T=T)
    assert full.item() == pytest.approx(rt.mean() + 8 * rn.mean(), rel=1e-9)


def test_dkd_module_terms_alpha_beta_and_linear_warmup():
    s, t = pair(3, 4)
    with torch.no_grad():
        s.logits.copy_(torch.tensor(ZS))
        t.logits.copy_(torch.tensor(ZT))
    loss = LOSSES["dkd"](setup_for(s, t, 4), alpha=2.0, beta=8.0, warmup=20)
    rt, rn = np_dkd(ZS, ZT, Y, 4.0)
    for epoch, factor in [(0, 1 / 20), (4, 5 / 20), (19, 1.0), (50, 1.0)]:
        ctx = StepContext(labels=torch.tensor(Y), epoch=epoch, total_epochs=60, step=0, temperature=4.0)
        terms = loss(s, t, ctx)
        assert set(terms) == {"dkd/tckd", "dkd/nckd"}
        assert terms["dkd/tckd"].item() == pytest.approx(factor * 2.0 * rt.mean(), rel=1e-5)  # float32
        assert terms["dkd/nckd"].item() == pytest.approx(factor * 8.0 * rn.mean(), rel=1e-5)
    no_ramp = LOSSES["dkd"](setup_for(s, t, 4), warmup=0)
    ctx = StepContext(labels=torch.tensor(Y), epoch=0, total_epochs=60, step=0, temperature=4.0)
    assert no_ramp(s, t, ctx)["dkd/tckd"].item() == pytest.approx(rt.mean(), rel=1e-5)


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_dkd_paper_identity_kd_equals_tckd_plus_weighted_nckd(T):
    """Zhao et al. 2022, Eq. (1) rearranged: KD = TCKD + (1 − p_t^T) · NCKD, per sample and hence for
    the batch mean; DKD with α = β = 1 drops the (1 − p_t^T) coupling and so differs from KD."""
    g = torch.Generator().manual_seed(3)
    zs, zt = torch.randn(16, 7, generator=g) * 3, torch.randn(16, 7, generator=g) * 3
    y = torch.randint(0, 7, (16,), generator=g)
    tckd, nckd = LF.dkd_parts(zs, zt, y, T, per_sample=True)
    pt_target = torch.softmax(zt / T, 1).gather(1, y[:, None]).squeeze(1)
    kd_per = torch.stack([LF.kd_loss(zs[i:i + 1], zt[i:i + 1], T) for i in range(16)])
    torch.testing.assert_close(kd_per, tckd + (1 - pt_target) * nckd, rtol=1e-5, atol=1e-6)
    assert LF.kd_loss(zs, zt, T).item() == pytest.approx((tckd + (1 - pt_target) * nckd).mean().item(), rel=1e-5)
    dkd11 = LF.dkd_loss(zs, zt, y, alpha=1.0, beta=1.0, T=T).item()
    assert dkd11 == pytest.approx((tckd + nckd).mean().item(), rel=1e-6)
    assert dkd11 > LF.kd_loss(zs, zt, T).item()


def test_dkd_two_classes_has_no_non_target_knowledge_and_is_zero_when_equal():
    zs = torch.tensor([[0.5, -0.5], [2.0, 1.0]])
    zt = torch.tensor([[1.5, -0.5], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    tckd, nckd = LF.dkd_parts(zs, zt, y, 4.0)
    assert nckd.item() == pytest.approx(0.0, abs=1e-7)
    assert tckd.item() == pytest.approx(LF.kd_loss(zs, zt, 4.0).item(), rel=1e-5)  # binary = full distribution
    t2, n2 = LF.dkd_parts(zt, zt, y, 4.0)
    assert t2.item() == pytest.approx(0.0, abs=1e-7) and n2.item() == pytest.approx(0.0, abs=1e-7)


def test_dkd_stable_for_very_confident_logits():
    zs = torch.tensor([[80.0, -80.0, 0.0]], requires_grad=True)
    zt = torch.tensor([[-60.0, 90.0, 0.0]])
    tckd, nckd = LF.dkd_parts(zs, zt, torch.tensor([0]), 1.0)
    (tckd + nckd).backward()
    assert torch.isfinite(tckd) and torch.isfinite(nckd) and torch.isfinite(zs.grad).all()


def test_dkd_sample_weight_is_a_weighted_mean():
    rt, rn = np_dkd(ZS, ZT, Y, 2.0)
    w = torch.tensor([1.0, 0.0, 3.0], dtype=torch.float64)
    tckd, nckd = LF.dkd_parts(torch.tensor(ZS), torch.tensor(ZT), torch.tensor(Y), 2.0, sample_weight=w)
    assert tckd.item() == pytest.approx((rt[0] + 3 * rt[2]) / 4, rel=1e-9)
    assert nckd.item() == pytest.approx((rn[0] + 3 * rn[2]) / 4, rel=1e-9)


def test_dkd_learnable_temperature_gets_a_gradient():
    T = torch.tensor(3.0, requires_grad=True)
    tckd, nckd = LF.dkd_parts(torch.tensor(ZS), torch.tensor(ZT), torch.tensor(Y), T)
    (tckd + nckd).backward()
    assert T.grad is not None and torch.isfinite(T.grad)


def test_logit_mse_matches_numpy_and_zero_when_equal():
    ref = np.mean([[(a - b) ** 2 for a, b in zip(s, t)] for s, t in zip(ZS, ZT)])
    assert LF.logit_mse_loss(torch.tensor(ZS), torch.tensor(ZT)).item() == pytest.approx(ref, rel=1e-12)
    s, t = pair(3, 4)
    loss = LOSSES["logit_mse"](setup_for(s, t, 4))
    with torch.no_grad():
        s.logits.copy_(t.logits)
    assert loss(s, t, ctx_for(3, 4))["logit_mse"].item() == 0.0


@pytest.mark.parametrize("name", ["kd", "dkd", "aux_kd"])
def test_logit_losses_zero_when_student_equals_teacher(name):
    s, t = pair(4, 10)
    with torch.no_grad():
        s.logits.copy_(t.logits)
        for k in s.aux_logits:
            s.aux_logits[k].copy_(t.aux_logits[k])
    terms = LOSSES[name](setup_for(s, t, 10))(s, t, ctx_for(4, 10))
    for v in terms.values():
        assert abs(v.item()) < 1e-6


@pytest.mark.parametrize("fn", ["kd", "dkd"])
def test_learnable_temperature_gradient_finite_with_a_saturated_teacher(fn):
    """A teacher probability that underflows to 0 must not turn a learnable T's gradient into NaN."""
    T = torch.tensor(1.0, requires_grad=True)
    zs = torch.tensor([[1.0, 0.0, -1.0]], requires_grad=True)
    zt = torch.tensor([[200.0, -200.0, 0.0]])
    value = LF.kd_loss(zs, zt, T) if fn == "kd" else LF.dkd_loss(zs, zt, torch.tensor([0]), T=T)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(T.grad) and torch.isfinite(zs.grad).all()
