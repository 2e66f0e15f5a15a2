"""Extra phases (ARD, pruning with and without KD), adversarial attacks, missing-modality
evaluation, the result table's extra columns, and the presets of this package."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdcore.cli import result_table
from kdcore.data import load_data
from kdcore.train.evaluate import evaluate
from kdcore.pipeline.experiment import Experiment
from kdcore.train.missing import missing_modality_accuracy
from kdcore.models import build_model
from kdcore.presets import load_preset
from kdcore.core.spec import ExperimentSpec, SpecError
from kdcore.methods.adversarial import fgsm_attack, pgd_attack, robust_accuracy
from kdcore.methods.pruning import PruningSchedule, cubic_sparsity, prunable, prune_to, sparsity
from kdcore.store.recorder import RunRecorder


SHORT = ["train.teacher_epochs=1", "train.student_epochs=1", "data.train_limit=60", "train.device=cpu"]


def tiny_mfeat(*extra: str) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "name": "tiny",
        "data": {"dataset": "mfeat", "modalities": ["fou", "zer", "mor"], "train_limit": 150, "seed": 0},
        "teacher": {"feature_dim": 16, "encoder": {"width": 16, "depth": 1}},
        "student": {"feature_dim": 8, "encoder": {"width": 8, "depth": 1}},
        "train": {"teacher_epochs": 2, "student_epochs": 3, "batch_size": 50, "device": "cpu"},
    }).with_overrides(list(extra))


@pytest.fixture(scope="module")
def digits_model():
    """A small trimodal digits-av model (image, audio, text tokens) trained for a few steps."""
    spec = load_preset("feature-kd").with_overrides(SHORT)  # same data as the digits preset tests (cached)
    data = load_data(spec.data)
    torch.manual_seed(0)
    model = build_model(spec.student, spec.student_modalities(), data)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    tr = data.split("train")
    for _ in range(15):
        b = tr.all()
        loss = F.cross_entropy(model(b.inputs).logits, b.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    model.eval()
    return model, data


# ---- attacks ---------------------------------------------------------------------------------
def test_pgd_stays_in_the_eps_ball_leaves_tokens_and_increases_the_loss(digits_model):
    model, data = digits_model
    b = data.split("test").batch(torch.arange(64))
    eps = 0.3
    adv = pgd_attack(model, b.inputs, b.labels, eps, step_size=0.1, steps=5,
                     generator=torch.Generator().manual_seed(0))
    for m in ("image", "audio"):
        d = (adv[m] - b.inputs[m]).abs().max()
        assert float(d) <= eps + 1e-6 and float(d) > 0
    assert torch.equal(adv["text"], b.inputs["text"])  # tokens are not perturbed
    with torch.no_grad():
        clean = F.cross_entropy(model(b.inputs).logits, b.labels)
        attacked = F.cross_entropy(model(adv).logits, b.labels)
    assert float(attacked) > float(clean)
    assert model.training is False  # the mode is restored
    assert all(p.grad is None for p in model.parameters())  # no parameter gradients accumulate


def test_fgsm_is_one_signed_gradient_step():
    torch.manual_seed(0)
    lin = nn.Linear(4, 3)

    class Net(nn.Module):
        def forward(self, inputs, present=None, embedded=None):
            from kdcore.models.output import ModelOutput

            z = lin(inputs["v"])
            return ModelOutput(z, {}, z, None, ("v",))

    x = torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 0, 1])
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(lin(xr), y).backward()
    adv = fgsm_attack(Net(), {"v": x}, y, 0.1)
    assert torch.allclose(adv["v"], x + 0.1 * xr.grad.sign())


def test_robust_accuracy_is_at_most_clean_accuracy(digits_model):
    model, data = digits_model
    test = data.split("test")
    mods = list(model.modalities)
    clean = evaluate(model, test, mods).acc
    assert robust_accuracy(model, test, mods, 0.0, "pgd") == pytest.approx(clean)
    fgsm = robust_accuracy(model, test, mods, 0.5, "fgsm")
    pgd = robust_accuracy(model, test, mods, 0.5, "pgd", steps=5)
    assert pgd <= clean and fgsm <= clean and pgd < clean


# ---- pruning ----------------------------------------------------------------------------------
def test_cubic_schedule_values():
    assert cubic_sparsity(0, 100, 0.8, 0.0, 0.5) == 0.0
    assert cubic_sparsity(25, 100, 0.8, 0.0, 0.5) == pytest.approx(0.8 * (1 - 0.5**3))
    assert cubic_sparsity(50, 100, 0.8, 0.0, 0.5) == 0.8
    assert cubic_sparsity(99, 100, 0.8, 0.0, 0.5) == 0.8
    assert cubic_sparsity(5, 100, 0.8, 0.1, 0.5) == 0.0


def test_global_magnitude_pruning_reaches_the_target_and_removes_the_smallest_weights():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    targets = prunable(net)
    everything = torch.cat([m.weight.detach().abs().flatten() for m, _ in targets])
    sched = PruningSchedule(net, 0.7, total_steps=50, start=0.0, end=0.6, every=5)
    for step in range(50):
        sched(step)
        if step == 10:
            assert 0.0 < sparsity(targets) < 0.7  # gradual
    n = everything.numel()
    assert sparsity(targets) == pytest.approx(round(0.7 * n) / n)
    # global L1: every surviving weight is at least as large as every pruned one (weights unchanged here)
    kept = torch.cat([m.weight.detach().flatten() for m, _ in targets])
    assert float(everything[kept != 0].min()) >= float(everything[kept == 0].max())
    prune_to(targets, 0.7)  # idempotent
    assert sparsity(targets) == pytest.approx(round(0.7 * n) / n)
    assert sched.first_full_epoch(steps_per_epoch=10) == 4  # t1 = 30 → epoch 4 ends at step 39


def test_prune_phases_reach_target_sparsity_and_compare_with_and_without_kd(tmp_path):
    spec = tiny_mfeat("distill.extra_phases=[prune_kd, prune_ce]", "distill.phase_params.prune_kd.sparsity=0.75",
                      "distill.phase_params.prune_ce.sparsity=0.75", "distill.phase_params.prune_kd.end=0.5",
                      "distill.phase_params.prune_ce.end=0.5", "train.student_epochs=4")
    events = []
    exp = Experiment(spec, [events.append], callbacks=[RunRecorder(tmp_path)])
    res = exp.run()
    assert res.status == "finished", res.message
    for name in ("prune_kd", "prune_ce"):
        r = res.phases[name]
        assert r["sparsity"] == pytest.approx(0.75, abs=0.005)
        assert 0 < r["model_sparsity"] < r["sparsity"]
        assert r["best_epoch"] >= 2  # chosen only among epochs that end at the target sparsity
        model = exp.models[name]
        zeros = sum(int((m.weight == 0).sum()) for m, _ in prunable(model))
        assert zeros / sum(m.weight.numel() for m, _ in prunable(model)) == pytest.approx(r["sparsity"])
        # masks were made permanent: the checkpoint loads into a plain student
        from kdcore.models.checkpoints import load_into

        fresh = build_model(spec.student, spec.student_modalities(), exp.data)
        load_into(fresh, exp.run_dir / "checkpoints" / f"{name}.safetensors")
        assert evaluate(fresh, exp.data.split("test"), spec.student_modalities()).acc == pytest.approx(r["test_acc"])
    kd_steps = [e for e in events if e.kind == "StepLosses" and e.phase == "prune_kd"]
    ce_steps = [e for e in events if e.kind == "StepLosses" and e.phase == "prune_ce"]
    assert "kd" in kd_steps[0].terms and set(ce_steps[0].terms) == {"ce"}
    table = result_table(res.to_dict())
    assert "sparsity" in table and "75.00%" in table


# ---- ARD ---------------------------------------------------------------------------------------
def test_ard_phase_trains_on_pgd_and_reports_robust_accuracy_for_every_phase():
    spec = tiny_mfeat("distill.extra_phases=[ard]", "distill.phase_params.ard.epsilon=0.3",
                      "distill.phase_params.ard.steps=2", "distill.phase_params.ard.eval_steps=3")
    events = []
    exp = Experiment(spec, [events.append])
    seen = {}
    res = exp.run()
    assert res.status == "finished", res.message
    for name in ("teacher", "baseline", "kd", "ard"):
        r = res.phases[name]
        assert r["robust_eps"] == 0.3
        assert 0.0 <= r["pgd_acc"] <= r["test_acc"] + 1e-9 and 0.0 <= r["fgsm_acc"] <= 1.0
    steps = [e for e in events if e.kind == "StepLosses" and e.phase == "ard"]
    assert set(steps[0].terms) == {"kd", "ce_clean"} and steps[0].weights == pytest.approx(
        {"kd": 0.9, "ce_clean": 0.1})
    finished = {e.phase: e for e in events if e.kind == "PhaseFinished"}
    assert "pgd_acc" in finished["ard"].extra
    table = result_table(res.to_dict())
    assert "FGSM" in table and "PGD" in table and "ε = 0.3" in table
    del seen


def test_ard_student_input_is_adversarial_and_teacher_sees_clean():
    """The ARD callback's input transform returns PGD inputs within ε; the KD term uses the
    clean-input teacher cache."""
    spec = tiny_mfeat("distill.extra_phases=[ard]", "distill.phase_params.ard.epsilon=0.2",
                      "distill.phase_params.ard.steps=2", "train.student_epochs=1")
    exp = Experiment(spec)
    exp.setup()
    from kdcore.pipeline.recipes.extra import AdversarialInputs, build_ard

    cfg = build_ard(exp)
    (transform,) = [cb for cb in cfg.callbacks if isinstance(cb, AdversarialInputs)]
    assert cfg.teacher_cache is not None and cfg.teacher_cache.enabled  # clean teacher outputs
    b = exp.data.split("train").batch(torch.arange(20), spec.student_modalities())
    adv = transform.on_before_forward(None, b.inputs, b.labels)
    for m in spec.student_modalities():
        assert float((adv[m] - b.inputs[m]).abs().max()) <= 0.2 + 1e-6
        assert not torch.equal(adv[m], b.inputs[m])


def test_phase_params_are_validated_with_field_names():
    with pytest.raises(SpecError, match="phase_params.ard: unknown parameter 'eps'"):
        tiny_mfeat("distill.phase_params.ard.eps=0.1")
    with pytest.raises(SpecError, match=r"phase_params.prune_kd.sparsity=1.5: allowed range"):
        tiny_mfeat("distill.phase_params.prune_kd.sparsity=1.5")
    with pytest.raises(SpecError, match="unknown phase 'prune'"):
        tiny_mfeat("distill.extra_phases=[prune]")
    # start < end is PruneParams.ordered: checked from the catalog when the spec loads, and by the model
    with pytest.raises(SpecError, match="phase_params.prune_kd: start must be < end"):
        tiny_mfeat("distill.phase_params.prune_kd.start=0.7")
    with pytest.raises(SpecError, match="phase_params.prune_ce: start must be < end"):
        tiny_mfeat("distill.phase_params.prune_ce.start=0.5", "distill.phase_params.prune_ce.end=0.5")
    from kdcore.pipeline.recipes.registry import RECIPES

    assert RECIPES["prune_kd"].params({"end": 0.9}).end == 0.9 and RECIPES["prune_kd"].params().start == 0.0
    with pytest.raises(ValueError, match="phase_params.prune_kd: start must be < end"):
        RECIPES["prune_kd"].params({"start": 0.7})
    with pytest.raises(ValueError, match=r"phase_params.ard: steps=101 is outside the allowed range \[0, 100\]"):
        RECIPES["ard"].params({"steps": 101})


def test_a_phase_parameter_without_a_range_is_refused_at_registration():
    from pydantic import Field

    from kdcore.core.params import MethodParams
    from kdcore.pipeline.recipes.registry import RECIPES, register_phase

    class Loose(MethodParams):
        rate: float = 0.5
        flag: bool = False

    class Bounded(MethodParams):
        rate: float = Field(0.5, ge=0.0, le=1.0)

    with pytest.raises(ValueError, match=r"phase 'loose': no allowed range for parameter\(s\) \['rate'\]"):
        register_phase("loose", lambda exp: None, "", Loose)
    with pytest.raises(ValueError, match="phase 'ard' registered twice"):
        register_phase("ard", lambda exp: None, "", Bounded)
    assert "loose" not in RECIPES


# ---- missing modalities -------------------------------------------------------------------------
def test_missing_modality_accuracy_equals_evaluation_without_that_modality(digits_model):
    model, data = digits_model
    test = data.split("test")
    got = missing_modality_accuracy(model, test, ["image", "audio", "text"])
    assert set(got) == {"acc_without_image", "acc_without_audio", "acc_without_text"}
    # same as masking the modality out with `present`
    present = torch.ones(len(test), 3, dtype=torch.bool)
    present[:, 1] = False
    masked = evaluate(model, test, ["image", "audio", "text"], present=present).acc
    assert got["acc_without_audio"] == pytest.approx(masked)
    assert got["acc_without_audio"] == pytest.approx(evaluate(model, test, ["image", "text"]).acc)
    assert missing_modality_accuracy(model, test, ["image"]) == {}


def test_experiment_result_has_missing_modality_accuracy_for_teacher_and_students():
    spec = tiny_mfeat("student.modality_dropout=0.3", "train.student_epochs=2")
    events = []
    res = Experiment(spec, [events.append]).run()
    assert res.status == "finished", res.message
    for name in ("teacher", "baseline", "kd"):
        assert {f"acc_without_{m}" for m in ("fou", "zer", "mor")} <= set(res.phases[name])
    fin = {e.phase: e for e in events if e.kind == "PhaseFinished"}
    assert "acc_without_mor" in fin["kd"].extra
    assert "−zer" in result_table(res.to_dict())


# ---- presets -------------------------------------------------------------------------------------
MY_PRESETS = ["dkd-vs-kd", "feature-kd", "attention-kd", "adaptive", "multitask", "robust", "sparse",
              "multi-teacher", "mfeat-mfh", "c2kd-filter"]


@pytest.mark.parametrize("name", MY_PRESETS)
def test_preset_validates_describes_itself_and_a_short_version_runs(name):
    spec = load_preset(name)
    assert spec.name == name and len(spec.description.split()) > 30
    assert ExperimentSpec.from_yaml(spec.to_yaml()) == spec
    short = spec.with_overrides(SHORT)
    if "ard" in short.distill.extra_phases:
        short = short.with_overrides(["distill.phase_params.ard.steps=1", "distill.phase_params.ard.eval_steps=1"])
    res = Experiment(short).run()
    assert res.status == "finished", res.message
    assert {"teacher", "baseline", "kd", *short.distill.extra_phases} <= set(res.phases)
