"""Teacher-output cache: same training as a live teacher, lazy per-field gathering, invalidation
when it would be wrong, bounded memory."""

import pytest
import torch

from kdcore.train.cache import CachedOutput, TeacherCache
from kdcore.pipeline.experiment import Experiment
from kdcore.train.trainer import train_phase


@pytest.fixture(scope="module")
def exp():
    from kdcore.presets import load_preset

    spec = load_preset("digits-av").with_overrides([
        "train.teacher_epochs=1", "train.student_epochs=2", "train.batch_size=128", "data.train_limit=300"])
    e = Experiment(spec)
    e.setup()
    return e


def _phase(exp, cache: bool):
    cfg = exp.student_phase("kd", exp.spec.distill.losses)
    if not cache:
        cfg.teacher_cache = None
    events = []
    res = train_phase(cfg, exp.data, exp.spec.train, exp.device, events.append, lambda: False)
    return res, events


def test_cached_and_uncached_kd_give_identical_metrics(exp):
    assert exp.teacher_cache.enabled
    on, ev_on = _phase(exp, cache=True)
    off, ev_off = _phase(exp, cache=False)
    assert [h["val_acc"] for h in on.history] == [h["val_acc"] for h in off.history]
    assert on.test_acc == off.test_acc and on.best_epoch == off.best_epoch
    for a, b in zip(on.history, off.history):
        assert a["train_acc"] == b["train_acc"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    steps_on = [e for e in ev_on if e.kind == "StepLosses"]
    steps_off = [e for e in ev_off if e.kind == "StepLosses"]
    assert len(steps_on) == len(steps_off) > 0
    for a, b in zip(steps_on, steps_off):
        assert a.terms["kd"] == pytest.approx(b.terms["kd"], rel=1e-4, abs=1e-6)
    started = [e for e in ev_on if e.kind == "PhaseStarted"][0]
    assert started.teacher_cache.startswith("on")


def test_cached_output_is_lazy_and_matches_the_live_teacher(exp):
    cache, tr = exp.teacher_cache, exp.data.split("train")
    rows = torch.tensor([5, 0, 17, 3])
    out = cache.get(rows)
    assert isinstance(out, CachedOutput) and "logits" not in out.__dict__  # nothing gathered yet
    live = exp.teacher(tr.batch(rows, exp.spec.teacher_modalities()).inputs)
    torch.testing.assert_close(out.logits, live.logits, rtol=1e-4, atol=1e-5)
    assert "logits" in out.__dict__ and "features" not in out.__dict__  # KD reads logits only
    for m in live.features:
        torch.testing.assert_close(out.features[m], live.features[m], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.attention, live.attention, rtol=1e-4, atol=1e-5)


def _fresh_cache(exp, **kw):
    return TeacherCache.build(exp.teacher, exp.data.split("train"), exp.spec.teacher_modalities(), exp.device, **kw)


def test_cache_invalidated_when_teacher_weights_change(exp):
    cache = _fresh_cache(exp)
    assert cache.enabled and cache.describe() == "on"
    p = next(exp.teacher.parameters())
    with torch.no_grad():
        p.add_(0.0)  # any in-place write bumps the version counter
    try:
        assert not cache.enabled
        assert "weights changed" in cache.describe()
    finally:
        exp.teacher_cache = _fresh_cache(exp)  # the module-scoped experiment keeps a valid cache


def test_cache_invalidated_in_train_mode_and_when_inputs_change(exp):
    cache = _fresh_cache(exp)
    exp.teacher.train()
    try:
        assert not cache.enabled and "training mode" in cache.reason
    finally:
        exp.teacher.eval()
    cache = _fresh_cache(exp)
    m = exp.spec.teacher_modalities()[0]
    original = exp.data.inputs[m]
    exp.data.inputs[m] = original.clone()  # e.g. per-epoch noise resampling replaces the tensor
    try:
        assert not cache.enabled and "replaced" in cache.reason
    finally:
        exp.data.inputs[m] = original
    cache = _fresh_cache(exp)
    original.mul_(1.0)  # modified in place
    assert not cache.enabled and "inputs changed" in cache.reason
    exp.teacher_cache = _fresh_cache(exp)


def test_trainer_falls_back_to_the_live_teacher_when_invalidated(exp):
    cfg = exp.student_phase("kd", exp.spec.distill.losses)
    cfg.teacher_cache = _fresh_cache(exp)
    exp.teacher.train()
    exp.teacher.eval()  # back in eval mode: still valid
    assert cfg.teacher_cache.enabled
    with torch.no_grad():
        next(exp.teacher.parameters()).mul_(1.0)  # same values, but the cache cannot know: invalidated
    events = []
    res = train_phase(cfg, exp.data, exp.spec.train, exp.device, events.append, lambda: False)
    started = [e for e in events if e.kind == "PhaseStarted"][0]
    assert started.teacher_cache.startswith("off: invalidated")
    ref, _ = _phase(exp, cache=False)
    assert [h["val_acc"] for h in res.history] == [h["val_acc"] for h in ref.history]
    exp.teacher_cache = _fresh_cache(exp)


def test_cache_is_bounded_in_memory(exp):
    off = _fresh_cache(exp, max_bytes=1024)
    assert not off.enabled and "MiB > limit" in off.describe()
    full = _fresh_cache(exp)
    core = sum(full.output.__dict__[f].numel() * 4 for f in ("logits", "fused")) + sum(
        t.numel() * 4 for t in [*full.output.features.values(), full.output.attention])
    no_maps = _fresh_cache(exp, max_bytes=core + 1024)  # room for the core outputs, not the maps
    assert no_maps.enabled and "feature_maps" not in no_maps.stored and "not cached" in no_maps.describe()
    assert no_maps.nbytes() < full.nbytes()
    rows = torch.tensor([1, 2, 3])
    inputs = exp.data.split("train").batch(rows, exp.spec.teacher_modalities()).inputs
    got = no_maps.get(rows, inputs).feature_maps  # computed by a live forward for this batch
    want = full.get(rows).feature_maps
    for m in want:
        for a, b in zip(got[m], want[m]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_modality_dropout_does_not_invalidate_an_eval_mode_teacher():
    from kdcore.data import load_data
    from kdcore.models import build_model
    from kdcore.presets import load_preset

    spec = load_preset("digits-av").with_overrides(["teacher.modality_dropout=0.5", "data.train_limit=100"])
    data = load_data(spec.data)
    torch.manual_seed(0)
    teacher = build_model(spec.teacher, spec.teacher_modalities(), data).eval()
    cache = TeacherCache.build(teacher, data.split("train"), spec.teacher_modalities(), "cpu")
    rows = torch.arange(8)
    live = teacher(data.split("train").batch(rows, spec.teacher_modalities()).inputs)
    assert cache.enabled
    torch.testing.assert_close(cache.get(rows).logits, live.logits, rtol=1e-4, atol=1e-5)
