"""mfh-gauss: the synthetic Modality Focusing Hypothesis dataset (shapes, seed, shared structure, spec)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kdcore.data import DATASETS
from kdcore.data.mfh_gauss import MFHGauss, shared_count
from kdcore.core.spec import DataSpec, SpecError, validate_spec

ROOT = Path(__file__).resolve().parents[1]


def _load(**noise):
    seed = int(noise.pop("seed", 0))
    return MFHGauss().load(DataSpec(dataset="mfh-gauss", noise=noise, seed=seed))


def _lstsq_acc(data, view):
    """Test accuracy of a least-squares linear classifier (one-hot targets) trained on the train split."""
    x, y = data.inputs[view], data.labels
    tr, te = data.split_index["train"], data.split_index["test"]
    a = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    w = torch.linalg.lstsq(a[tr], torch.nn.functional.one_hot(y[tr]).double()).solution
    return float(((a[te] @ w).argmax(1) == y[te]).double().mean())


def _r2(x, target):
    """R² of the best linear prediction of each target column from x (in-sample, with intercept)."""
    a = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    t = target.double()
    pred = a @ torch.linalg.lstsq(a, t).solution
    return 1 - ((t - pred) ** 2).sum(0) / ((t - t.mean(0)) ** 2).sum(0)


def test_registered_shapes_and_split():
    assert DATASETS["mfh-gauss"] is MFHGauss
    t0 = time.perf_counter()
    d = _load()
    print(f"\nmfh-gauss default generation: {1000 * (time.perf_counter() - t0):.1f} ms")
    assert time.perf_counter() - t0 < 5.0  # loose: measured ~10 ms
    assert d.inputs["view_t"].shape == (1500, 25) and d.inputs["view_s"].shape == (1500, 50)
    assert d.modalities["view_t"].kind == d.modalities["view_s"].kind == "vector"
    assert d.num_classes == 2 and d.class_names == ["0", "1"]
    assert sum(len(v) for v in d.split_index.values()) == 1500
    assert 0.4 < d.labels.float().mean() < 0.6  # a random hyperplane through the origin: balanced
    tr = d.split_index["train"]
    assert torch.allclose(d.inputs["view_s"][tr].mean(0), torch.zeros(50), atol=1e-5)  # train-standardised
    assert "paired" in d.pairing_note.lower()
    big = _load(samples=3000, classes=4)
    assert big.inputs["view_t"].shape == (3000, 25) and big.num_classes == 4
    assert set(big.labels.unique().tolist()) == {0, 1, 2, 3}


def test_deterministic_from_the_seed():
    a, b, c = _load(gamma=0.5), _load(gamma=0.5), _load(gamma=0.5, seed=1)
    for v in ("view_t", "view_s"):
        assert torch.equal(a.inputs[v], b.inputs[v])
        assert not torch.equal(a.inputs[v], c.inputs[v])
    assert torch.equal(a.labels, b.labels) and not torch.equal(a.labels, c.labels)
    assert all(torch.equal(a.split_index[k], b.split_index[k]) for k in a.split_index)


@pytest.mark.parametrize("gamma, shared", [(0.0, 0), (1 / 3, 5), (1.0, 10), (0.5, 7)])
def test_realised_shared_count(gamma, shared):
    assert shared_count(gamma) == shared
    d = _load(gamma=gamma)
    assert d.meta["shared"] == shared
    assert d.meta["gamma"] == pytest.approx(shared / (20 - shared))
    assert d.meta["latent"].shape == (1500, 20 - shared)


def test_gamma_one_student_view_predicts_as_well_as_teacher_view():
    d = _load(gamma=1.0, samples=3000)
    acc_t, acc_s = _lstsq_acc(d, "view_t"), _lstsq_acc(d, "view_s")
    assert acc_t > 0.9 and acc_s > 0.9
    assert abs(acc_t - acc_s) < 0.05
    d0 = _load(gamma=0.0, samples=3000)  # each view sees half of the decisive latents: ~75 % at best
    assert 0.6 < _lstsq_acc(d0, "view_t") < 0.85 and 0.6 < _lstsq_acc(d0, "view_s") < 0.85


def test_views_share_exactly_the_shared_latents():
    n = 5000
    d0 = _load(gamma=0.0, samples=n)
    lat = d0.meta["latent"]
    # γ=0: the teacher-only latents are (linearly) invisible from the student view and vice versa
    assert _r2(d0.inputs["view_s"], lat[:, :10]).max() < 0.03  # chance R² ≈ 50/5000
    assert _r2(d0.inputs["view_t"], lat[:, 10:]).max() < 0.03
    assert _r2(d0.inputs["view_t"], lat[:, :10]).min() > 0.99  # ... but the own view holds them
    d1 = _load(gamma=1.0, samples=n)
    assert _r2(d1.inputs["view_s"], d1.meta["latent"]).min() > 0.99
    assert _r2(d1.inputs["view_t"], d1.meta["latent"]).min() > 0.99
    # before mixing: cross-view feature correlations are ~0 at γ=0 and 1 on the shared dims at γ=1
    raw0, raw1 = _load(gamma=0.0, samples=n, mix=0.0), _load(gamma=1.0, samples=n, mix=0.0)
    c0 = torch.corrcoef(torch.cat([raw0.inputs["view_t"], raw0.inputs["view_s"]], 1).T)[:25, 25:]
    c1 = torch.corrcoef(torch.cat([raw1.inputs["view_t"], raw1.inputs["view_s"]], 1).T)[:25, 25:]
    assert c0.abs().max() < 0.08
    assert torch.diagonal(c1[:10, :10]).min() > 0.999


def test_spec_validates_cross_modal_setting():
    spec = validate_spec({"data": {"dataset": "mfh-gauss", "noise": {"gamma": 0.5}},
                          "teacher": {"modalities": ["view_t"]}, "student": {"modalities": ["view_s"]}})
    assert spec.teacher_modalities() == ["view_t"] and spec.student_modalities() == ["view_s"]


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_bad_gamma_names_the_field_and_range(value):
    with pytest.raises(SpecError) as exc:
        validate_spec({"data": {"dataset": "mfh-gauss", "noise": {"gamma": value}}})
    assert "data.noise.gamma" in str(exc.value) and "[0.0, 1.0]" in str(exc.value)


def test_cli_bad_gamma_exits_2():
    out = subprocess.run([sys.executable, "-m", "kdcore", "run", "--no-save", "--preset", "mfeat-mfh",
                          "--set", "data.dataset=mfh-gauss", "--set", "data.noise={gamma: 1.5}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "data.noise.gamma=1.5" in out.stderr and "[0.0, 1.0]" in out.stderr


def test_engine_runs_end_to_end():
    from kdcore.pipeline.experiment import Experiment
    from kdcore.presets import load_preset

    spec = load_preset("mfeat-mfh").with_overrides([
        "data.dataset=mfh-gauss", "data.noise={gamma: 1.0}", "teacher.modalities=[view_t]",
        "student.modalities=[view_s]", "train.teacher_epochs=3", "train.student_epochs=3", "train.device=cpu"])
    res = Experiment(spec).run()
    assert res.status == "finished"
    assert res.phases["teacher"]["test_acc"] > 0.7  # chance is 0.5
    assert res.phases["kd"]["test_acc"] > 0.6
