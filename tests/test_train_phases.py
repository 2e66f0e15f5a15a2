"""kdcore.train.phases.ce_phase: the one CE-only phase builder (main teacher, ensemble members).

The teachers an Experiment trains through it are bit-identical to the ones the phase built by
hand (probe under no_grad, eval → train, CE weight 1, fixed weighting, constant T = 1) gave."""

import torch

from kdcore.core.spec import ExperimentSpec
from kdcore.methods.losses import LOSSES, LossSetup
from kdcore.methods.strategies import TEMPERATURE_SCHEDULES, WEIGHTINGS
from kdcore.models import build_model
from kdcore.pipeline.experiment import Experiment
from kdcore.train.phases import ce_phase
from kdcore.train.trainer import PhaseConfig, train_phase


def tiny_spec(*extra: str) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "name": "tiny",
        "data": {"dataset": "mfeat", "modalities": ["fou", "zer", "mor"], "train_limit": 150, "seed": 0},
        "teacher": {"feature_dim": 16, "encoder": {"width": 16, "depth": 1}},
        "student": {"feature_dim": 8, "encoder": {"width": 8, "depth": 1}},
        "train": {"teacher_epochs": 2, "student_epochs": 1, "batch_size": 50, "device": "cpu"},
    }).with_overrides(list(extra))


def old_style_phase(name, model, mods, data, epochs, lr, seed, device, train_labels=None) -> PhaseConfig:
    """The construction experiment.py and recipes/ensemble.py each wrote out before ce_phase."""
    probe_b = data.split("train").batch(torch.arange(2), mods).to(device)
    with torch.no_grad():
        model.eval()
        probe = model(probe_b.inputs)
        model.train()
    setup = LossSetup(probe, None, data.num_classes, epochs, dict(data.aux_classes))
    return PhaseConfig(
        name=name, model=model, modalities=mods,
        losses={"ce": LOSSES["ce"](setup)}, loss_weights={"ce": 1.0},
        weighting=WEIGHTINGS["fixed"]({"ce": 1.0}), schedule=TEMPERATURE_SCHEDULES["constant"](1.0),
        epochs=epochs, lr=lr, seed=seed, train_labels=train_labels,
    )


def test_ce_phase_has_only_ce_weight_one_constant_t1():
    spec = tiny_spec()
    exp = Experiment(spec)
    from kdcore.data import load_data

    data = load_data(spec.data)
    torch.manual_seed(0)
    net = build_model(spec.teacher, spec.teacher_modalities(), data)
    net.eval()
    labels = torch.zeros(len(data.split("train")), dtype=torch.long)
    cfg = ce_phase("t", net, spec.teacher_modalities(), data, epochs=3, lr=0.01, seed=7, device=exp.device,
                   train_labels=labels)
    assert list(cfg.losses) == ["ce"] and type(cfg.losses["ce"]) is LOSSES["ce"]
    assert cfg.loss_weights == {"ce": 1.0}
    assert type(cfg.weighting) is type(WEIGHTINGS["fixed"]({"ce": 1.0})) and cfg.weighting.loss_weights == {"ce": 1.0}
    assert type(cfg.schedule) is type(TEMPERATURE_SCHEDULES["constant"](1.0))
    assert cfg.schedule.value(0.0) == 1.0 and cfg.schedule.value(1.0) == 1.0
    assert (cfg.name, cfg.epochs, cfg.lr, cfg.seed) == ("t", 3, 0.01, 7)
    assert cfg.modalities == spec.teacher_modalities() and cfg.model is net and net.training
    assert cfg.train_labels is labels
    assert cfg.teacher is None and cfg.teacher_cache is None and cfg.train_rows is None


def test_experiment_teachers_match_the_hand_built_phase_bitwise():
    spec = tiny_spec("distill.ensemble.members=[[fou], [zer]]")
    exp = Experiment(spec)
    exp.setup()
    data, dev, tr = exp.data, exp.device, spec.train
    jobs = [("teacher", spec.teacher_modalities(), spec.data.seed)]
    members = spec.distill.ensemble.members
    jobs += [(f"teacher_{m[0]}", list(m), spec.data.seed + 101 + i) for i, m in enumerate(members)]
    for name, mods, seed in jobs:
        torch.manual_seed(seed)
        net = build_model(spec.teacher, mods, data).to(dev)
        cfg = old_style_phase(name, net, mods, data, tr.teacher_epochs, tr.teacher_lr or tr.lr, seed, dev)
        want = train_phase(cfg, data, tr, dev, lambda e: None, lambda: False)
        got = exp.results[name]
        assert got.test_acc == want.test_acc and got.val_acc == want.val_acc and got.best_epoch == want.best_epoch
        assert got.best_state.keys() == want.best_state.keys()
        assert all(torch.equal(got.best_state[k], want.best_state[k]) for k in want.best_state), name
