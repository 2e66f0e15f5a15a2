"""Students trained together (kdcore.train.stacked): the batchable GRU is nn.GRU, a stacked group
gives every student the numbers it gets alone, and what cannot be stacked falls back and says why."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from kdcore.core.events import EpochMetrics, PhaseStarted, StepLosses
from kdcore.core.spec import LossTerm
from kdcore.models.stackable import BatchableGRU, stackable_copy
from kdcore.pipeline.experiment import Experiment
from kdcore.pipeline.grid import run_grid
from kdcore.presets import load_preset
from kdcore.train.stacked import _vector_reason, stack_reason, train_group
from kdcore.train.evaluate import evaluate
from kdcore.train.trainer import train_phase
from kdcore.train.callbacks import LambdaCallback

FAST = ["train.teacher_epochs=1", "train.student_epochs=2", "train.threads=1"]


def test_batchable_gru_is_nn_gru_values_and_gradients():
    torch.manual_seed(0)
    gru = nn.GRU(5, 3, num_layers=2, batch_first=True, bidirectional=True)
    twin = BatchableGRU(gru)
    assert [n for n, _ in twin.named_parameters()] == [n for n, _ in gru.named_parameters()]
    x = torch.randn(4, 6, 5, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    out, h = gru(x)
    out2, h2 = twin(x2)
    assert out2.shape == out.shape == (4, 6, 6) and h2.shape == h.shape == (4, 4, 3)
    torch.testing.assert_close(out2, out, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(h2, h, atol=1e-6, rtol=1e-5)
    (out.square().sum() + h.sum()).backward()
    (out2.square().sum() + h2.sum()).backward()
    torch.testing.assert_close(x2.grad, x.grad, atol=1e-5, rtol=1e-5)
    for (name, p), (_, q) in zip(gru.named_parameters(), twin.named_parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-5, msg=name)


def test_batchable_gru_under_vmap_and_refusals():
    torch.manual_seed(1)
    grus = [nn.GRU(2, 3, batch_first=True) for _ in range(3)]
    params, _ = torch.func.stack_module_state([BatchableGRU(g) for g in grus])
    base = BatchableGRU(grus[0]).to("meta")
    x = torch.randn(2, 4, 2)
    out = torch.func.vmap(lambda p: torch.func.functional_call(base, p, (x,))[0])(params)
    for i, g in enumerate(grus):
        torch.testing.assert_close(out[i], g(x)[0], atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="dropout"):
        stackable_copy(nn.Sequential(nn.GRU(2, 3, num_layers=2, dropout=0.5, batch_first=True)))
    with pytest.raises(ValueError, match="LSTM"):
        stackable_copy(nn.Sequential(nn.LSTM(2, 3, batch_first=True)))


def _setup(temperatures):
    """One experiment set up per temperature, all sharing the first one's data, teacher and init."""
    spec = load_preset("digits-av").with_overrides(FAST)
    exps = [Experiment(spec.with_overrides([f"distill.temperature={t}"])) for t in temperatures]
    exps[0].setup()
    for e in exps[1:]:
        for a in ("data", "teacher", "student_init", "teacher_cache", "regime"):
            setattr(e, a, getattr(exps[0], a))
    return exps


def _cfgs(exps):
    return [exps[0].student_phase("baseline", {"ce": LossTerm(weight=1.0)}),
            *(e.student_phase("kd", e.spec.distill.losses) for e in exps)]


def _totals(events):
    return [e.total for e in events if isinstance(e, StepLosses)]


def test_stacked_equals_sequential_per_student():
    """Baseline + two KD students (T = 2, 4) of one seed, 2 epochs: stacked vs one at a time."""
    exps = _setup([2.0, 4.0])
    train, device, data = exps[0].spec.train, exps[0].device, exps[0].data
    seq_events = [[] for _ in range(3)]
    seq = [train_phase(c, data, train, device, seq_events[i].append, lambda: False)
           for i, c in enumerate(_cfgs(exps))]
    # how far float rounding alone moves the sequential baseline: its own run from weights perturbed
    # by 1e-7 (relative); CE-only training at lr 0.01 amplifies it to ~1e-4 within an epoch
    torch.manual_seed(123)
    bumped = _cfgs(exps)[0]
    with torch.no_grad():
        for p in bumped.model.parameters():
            p.mul_(1 + 1e-7 * torch.randn_like(p))
    bumped_events = []
    train_phase(bumped, data, train, device, bumped_events.append, lambda: False)
    rounding = max(abs(x - y) for x, y in zip(_totals(seq_events[0]), _totals(bumped_events)))
    st_events = [[] for _ in range(3)]
    cfgs = _cfgs(exps)
    assert stack_reason(cfgs, train, device) == ""
    stacked, note = train_group(cfgs, data, train, device, [ev.append for ev in st_events], lambda: False)
    assert note.startswith("stacked: 3 students")
    n_val = len(data.split("val"))
    for i in range(3):
        a = [e for e in seq_events[i] if isinstance(e, StepLosses)]
        b = [e for e in st_events[i] if isinstance(e, StepLosses)]
        assert len(a) == len(b) > 2 and a[0].phase == b[0].phase
        for x, y in zip(a, b):
            assert (x.step, x.epoch, x.temperature, x.lr, x.weights) == (y.step, y.epoch, y.temperature, y.lr,
                                                                         y.weights)
            assert x.terms.keys() == y.terms.keys()
        diff = max(abs(x.total - y.total) for x, y in zip(a, b))
        term_diff = max(abs(x.terms[k] - y.terms[k]) / max(1.0, abs(x.terms[k])) for x, y in zip(a, b) for k in x.terms)
        ea = [e.val_acc for e in seq_events[i] if isinstance(e, EpochMetrics)]
        eb = [e.val_acc for e in st_events[i] if isinstance(e, EpochMetrics)]
        if i > 0:  # the KD students: the same numbers up to float rounding, the same accuracies
            assert diff < 1e-4 and term_diff < 1e-4, (i, diff, term_diff)  # measured ≤ 5e-5 (T² = 16)
            assert ea == eb
            assert (stacked[i].best_epoch, stacked[i].val_acc, stacked[i].test_acc) == (
                seq[i].best_epoch, seq[i].val_acc, seq[i].test_acc)
        else:  # the baseline: no further from the sequential run than rounding moves that run itself
            assert diff <= max(1e-5, 3 * rounding), (diff, rounding)
            assert ea == pytest.approx(eb, abs=1.01 / n_val)  # at most one validation sample apart
            assert stacked[i].best_epoch == seq[i].best_epoch
        started = next(e for e in st_events[i] if isinstance(e, PhaseStarted))
        assert "stacked" in started.stacked
    # the best weights went back into each student's own module (nn.GRU included), which scores them
    for i in range(3):
        state = cfgs[i].model.state_dict()
        assert state.keys() == stacked[i].best_state.keys() == seq[i].best_state.keys()
        assert all(torch.equal(state[k], stacked[i].best_state[k]) for k in state)
        assert evaluate(cfgs[i].model, data.split("test"), cfgs[i].modalities).acc == stacked[i].test_acc
    assert stacked[1].history[-1]["train_loss"] == pytest.approx(seq[1].history[-1]["train_loss"], rel=1e-5)



def test_losses_inside_the_vmap_equal_sequential_and_refusals_say_why():
    """KD students that differ only in T and the loss weights (a temperature / weight sweep) compute
    their losses inside the vmap, one call for all: every step's terms, every epoch's accuracy and
    the best epoch and test accuracy are those of training each alone. A baseline next to them
    (other loss terms) or a loss that is not vmappable keeps the per-student loop, and says why."""
    exps = _setup([2.0, 4.0, 8.0])
    exps[2].spec = exps[2].spec.with_overrides(["distill.losses.ce.weight=0.5", "distill.losses.kd.weight=0.5"])
    train, device, data = exps[0].spec.train, exps[0].device, exps[0].data
    kd_cfgs = _cfgs(exps)[1:]
    assert kd_cfgs[2].weighting.loss_weights == {"ce": 0.5, "kd": 0.5}
    assert _vector_reason(kd_cfgs) == ""
    assert "different loss terms" in _vector_reason(_cfgs(exps))
    dkd = exps[0].spec.with_overrides(["distill.losses={dkd: {weight: 1.0}}"]).distill.losses
    assert "computed per student" in _vector_reason([exps[0].student_phase("kd", dkd)] * 2)
    seq_events = [[] for _ in kd_cfgs]
    seq = [train_phase(c, data, train, device, seq_events[i].append, lambda: False) for i, c in enumerate(kd_cfgs)]
    st_events = [[] for _ in kd_cfgs]
    cfgs = _cfgs(exps)[1:]
    stacked, note = train_group(cfgs, data, train, device, [ev.append for ev in st_events], lambda: False)
    assert note.startswith("stacked: 3 students")
    for i in range(3):
        _assert_same_training(seq_events[i], st_events[i], seq[i], stacked[i])


def _assert_same_training(seq_events, st_events, seq, stacked):
    """One student trained alone vs in a stack: every step's terms within 1e-4 (float rounding),
    every epoch's validation accuracy, the best epoch and the test accuracy equal."""
    a = [e for e in seq_events if isinstance(e, StepLosses)]
    b = [e for e in st_events if isinstance(e, StepLosses)]
    assert len(a) == len(b) > 2
    for x, y in zip(a, b):
        assert (x.step, x.temperature, x.lr, x.weights, x.terms.keys()) == (y.step, y.temperature, y.lr, y.weights,
                                                                            y.terms.keys())
        assert abs(x.total - y.total) < 1e-4 and all(
            abs(x.terms[k] - y.terms[k]) / max(1.0, abs(x.terms[k])) < 1e-4 for k in x.terms), (x, y)
    assert [e.val_acc for e in seq_events if isinstance(e, EpochMetrics)] == [
        e.val_acc for e in st_events if isinstance(e, EpochMetrics)]
    assert (stacked.best_epoch, stacked.val_acc, stacked.test_acc) == (seq.best_epoch, seq.val_acc, seq.test_acc)


def test_masked_dropout_is_f_dropout_for_the_same_random_numbers():
    """The per-member dropout of students of different seeds: the mask drawn from a generator seeded
    as the global RNG gives F.dropout's values and gradient, draw after draw."""
    import torch.nn.functional as F
    from kdcore.models.stackable import MaskedDropout, draw_dropout_mask

    x = torch.randn(64, 16, requires_grad=True)
    torch.manual_seed(7)
    want = [F.dropout(x * k, 0.1, training=True) for k in (1, 2)]
    gen, drop = torch.Generator().manual_seed(7), MaskedDropout(0.1)
    got = []
    for k in (1, 2):
        drop.mask = draw_dropout_mask((64, 16), 0.1, gen)
        got.append(drop(x * k))
    assert all(torch.equal(a, b) for a, b in zip(want, got))
    assert torch.equal(torch.autograd.grad(want[1].sum(), x)[0], torch.autograd.grad(got[1].sum(), x)[0])
    assert torch.equal(drop.eval()(x), x)


def test_padded_embedding_keeps_the_padding_row_frozen_under_vmap_over_batched_ids():
    """torch 2.14: vmap of F.embedding(padding_idx=0) over batched weights and batched token ids
    gives the padding row a gradient for every member but the first; PaddedEmbedding does not,
    and looks up the same values as nn.Embedding."""
    import torch.nn.functional as F
    from torch.func import functional_call, stack_module_state, vmap
    from kdcore.models.stackable import PaddedEmbedding

    torch.manual_seed(0)
    embs = [nn.Embedding(10, 4, padding_idx=0) for _ in range(3)]
    ids = torch.randint(0, 10, (3, 32))
    ids[:, 0] = 0
    w = torch.stack([e.weight.detach() for e in embs]).requires_grad_(True)
    vmap(lambda w, i: F.embedding(i, w, padding_idx=0))(w, ids).sum().backward()
    assert w.grad[0, 0].abs().sum() == 0 and w.grad[1:, 0].abs().sum() > 0  # the torch behaviour worked around
    twins = [PaddedEmbedding(e) for e in embs]
    params, _ = stack_module_state(twins)
    out = vmap(lambda p, i: functional_call(twins[0], p, (i,)))(params, ids)
    assert all(torch.equal(out[k], embs[k](ids[k])) for k in range(3))
    out.sum().backward()
    assert params["weight"].grad[:, 0].abs().sum() == 0 and params["weight"].grad[:, 1:].abs().sum() > 0


@pytest.mark.parametrize("with_baseline", [False, True])
def test_students_of_different_seeds_stack_and_equal_training_each_alone(with_baseline):
    """Students of seeds 0, 1, 2 (each seed its own data split, teacher, initial weights, data order
    and dropout masks) and two temperatures of seed 0 train as one model: every step's loss terms,
    every epoch's validation accuracy, the best epoch and the test accuracy are each student's
    alone. KD students only compute their losses inside the vmap; a baseline beside them keeps the
    per-student loop. Both are checked."""
    spec = load_preset("digits-av").with_overrides(FAST)
    seeds = [Experiment(spec.with_overrides([f"data.seed={s}"])) for s in (0, 1, 2)]
    for e in seeds:
        e.setup()
    assert not torch.equal(seeds[0].data.split("train").indices, seeds[1].data.split("train").indices)
    hot = seeds[0].spec.with_overrides(["distill.temperature=8"])
    cfgs, datas = [], []
    for e in seeds:
        if with_baseline:
            cfgs.append(e.student_phase("baseline", {"ce": LossTerm(weight=1.0)}))
            datas.append(e.data)
        cfgs.append(e.student_phase("kd", e.spec.distill.losses))
        datas.append(e.data)
    seeds[0].spec = hot
    cfgs.append(seeds[0].student_phase("kd", hot.distill.losses))
    datas.append(seeds[0].data)
    train, device = spec.train, seeds[0].device
    assert (_vector_reason(cfgs) == "") is (not with_baseline)
    seq_events = [[] for _ in cfgs]
    seq = [train_phase(c, d, train, device, seq_events[i].append, lambda: False)
           for i, (c, d) in enumerate(zip(cfgs, datas))]
    st_events = [[] for _ in cfgs]
    fresh = [dataclasses.replace(c, model=copy.deepcopy(c.model)) for c in cfgs]
    for c, e in zip(fresh, [e for e in seeds for _ in range(1 + with_baseline)] + [seeds[0]]):
        c.model.load_state_dict(e.student_init)
    stacked, note = train_group(fresh, seeds[0].data, train, device, [ev.append for ev in st_events],
                                lambda: False, datas=datas)
    assert note.startswith(f"stacked: {len(cfgs)} students") and "across 3 seeds" in note
    n_val = len(seeds[0].data.split("val"))
    for i in range(len(cfgs)):
        a = [e for e in seq_events[i] if isinstance(e, StepLosses)]
        b = [e for e in st_events[i] if isinstance(e, StepLosses)]
        assert len(a) == len(b) > 2
        assert abs(a[0].total - b[0].total) < 1e-6  # the same first batch, dropout mask and weights
        if cfgs[i].name == "baseline":  # CE alone at lr 0.01 amplifies float rounding to ~1e-4 in an
            # epoch (test_stacked_equals_sequential_per_student measures it): accuracies within a sample
            assert [e.val_acc for e in seq_events[i] if isinstance(e, EpochMetrics)] == pytest.approx(
                [e.val_acc for e in st_events[i] if isinstance(e, EpochMetrics)], abs=1.01 / n_val)
            assert stacked[i].best_epoch == seq[i].best_epoch
            continue
        _assert_same_training(seq_events[i], st_events[i], seq[i], stacked[i])


def test_what_cannot_be_stacked_says_why_and_trains_alone():
    exps = _setup([2.0])
    train, device, data = exps[0].spec.train, exps[0].device, exps[0].data
    base_cfg, kd_cfg = _cfgs(exps)
    hooked = dataclasses.replace(kd_cfg, callbacks=[LambdaCallback(on_train_batch_end=print)])
    assert "callback LambdaCallback" in stack_reason([base_cfg, hooked], train, device)
    assert "different numbers of rows" in stack_reason(
        [base_cfg, dataclasses.replace(kd_cfg, train_rows=torch.arange(100))], train, device)
    assert "epochs" in stack_reason([base_cfg, dataclasses.replace(kd_cfg, epochs=kd_cfg.epochs + 1)], train, device)
    other_seed = dataclasses.replace(kd_cfg, seed=kd_cfg.seed + 1, model=copy.deepcopy(kd_cfg.model))  # stackable ...
    assert stack_reason([base_cfg, other_seed], train, device) == ""
    other_seed.model.modality_dropout = 0.2  # ... unless the network draws more than its dropout
    assert "modality_dropout" in stack_reason([dataclasses.replace(base_cfg, model=copy.deepcopy(other_seed.model)),
                                               other_seed], train, device)
    assert "layer setting" in stack_reason([base_cfg, other_seed], train, device)
    assert stack_reason([base_cfg, dataclasses.replace(kd_cfg, epochs=kd_cfg.epochs)], train, device) == ""
    kd_cfg.losses["kd"].register_parameter("scale", nn.Parameter(torch.ones(1)))
    assert "learnable parameters" in stack_reason([base_cfg, kd_cfg], train, device)
    compiled = train.model_copy(update={"compile": True})
    assert "compile" in stack_reason(_cfgs(exps), compiled, device)
    events = [[], []]
    base_cfg, kd_cfg = _cfgs(exps)
    kd_cfg = dataclasses.replace(kd_cfg, epochs=kd_cfg.epochs + 1)
    results, note = train_group([base_cfg, kd_cfg], data, train, device, [e.append for e in events], lambda: False)
    assert note.startswith("one at a time:") and "epochs" in note and len(results) == 2
    assert all(next(e for e in ev if isinstance(e, PhaseStarted)).stacked == note for ev in events)


def test_grid_stacks_the_students_of_a_seed_and_matches_one_at_a_time():
    spec = load_preset("digits-av").with_overrides(FAST)
    axes = {"distill.temperature": [2.0, 4.0]}
    stacked = run_grid(spec, axes, seeds=1, stack=True)
    alone = run_grid(spec, axes, seeds=1, stack=False)
    assert len(stacked.stacked) == 2 and "stacked: 3 students (baseline, kd, kd)" in stacked.stacked[0]
    assert "teacher and baseline shared" in stacked.stacked[1]
    assert "Students trained together: seed 0" in stacked.table()
    assert [r["shared"] for r in stacked.rows] == [r["shared"] for r in alone.rows] == [[], ["baseline", "teacher"]]
    for a, b in zip(stacked.rows, alone.rows):
        assert a["point"] == b["point"]
        for phase in ("teacher", "baseline", "kd"):
            assert a["acc"][phase] == pytest.approx(b["acc"][phase], abs=1e-9), phase


def test_grid_stacks_teachers_and_students_across_seeds_and_matches_one_at_a_time():
    """Two seeds × two temperatures: the two seeds' teachers train as one stack, then the students of
    both seeds (2 baselines + 4 KD students) as another; every row's numbers are those of the
    sweep trained one run at a time (to float rounding: at most one test sample apart), and
    seed by seed stacking (``stack_seeds=False``) gives the same rows too."""
    spec = load_preset("digits-av").with_overrides(FAST)
    axes = {"distill.temperature": [2.0, 4.0]}
    together = run_grid(spec, axes, seeds=2, stack=True)
    per_seed = run_grid(spec, axes, seeds=2, stack=True, stack_seeds=False)
    alone = run_grid(spec, axes, seeds=2, stack=False)
    assert any(n.startswith("seeds 0, 1, teachers: stacked: 2 students (teacher, teacher)") and "across 2 seeds" in n
               for n in together.stacked), together.stacked
    assert any("students: stacked: 6 students (baseline, kd, kd, baseline" in n or
               "students: stacked: 6 students (baseline ×2, kd ×4)" in n for n in together.stacked), together.stacked
    assert not any("teachers" in n for n in per_seed.stacked)
    n_test = 1.01 / 360
    key = lambda r: (r["seed"], json.dumps(r["point"]))  # noqa: E731
    for rows in (together.rows, per_seed.rows):
        assert sorted(map(key, rows)) == sorted(map(key, alone.rows))
        for a, b in zip(sorted(rows, key=key), sorted(alone.rows, key=key)):
            for phase in ("teacher", "baseline", "kd"):
                assert a["acc"][phase] == pytest.approx(b["acc"][phase], abs=n_test), (a, b, phase)


def test_sweep_bench_tiny(tmp_path, capsys):
    """The benchmark's shape on a tiny case (its numbers are measured by ``bench --sweep``)."""
    from kdcore.cli.main import main
    from kdcore.pipeline.bench_sweep import main_sweep_bench

    spec = load_preset("digits-av").with_overrides(["train.teacher_epochs=0", "train.student_epochs=1",
                                                    "data.train_limit=128"])
    rep = main_sweep_bench(spec, repeats=1, threads=1, as_json=False, counts=(2,), out_dir=tmp_path)
    assert set(rep["per_student"]) == {"2"} and rep["per_student"]["2"]["ratio"] > 0
    assert rep["sequential_s_per_student"] > 0 and len(rep["sequential_repeats_s"]) == 2
    assert "stacked / one at a time" in capsys.readouterr().out
    assert json.loads(Path(rep["file"]).read_text())["per_student"]["2"] == rep["per_student"]["2"]
    assert main(["bench", "--sweep", "--counts", "2,x"]) == 2
    assert "--counts" in capsys.readouterr().err
    assert main(["bench", "--sweep", "--counts", "1"]) == 2


def test_cli_seed_by_seed_stacks_one_seed_at_a_time(capsys):
    from kdcore.cli.main import main

    args = ["sweep", "--preset", "digits-av", *[a for s in FAST for a in ("--set", s)], "--seeds", "2",
            "--vary", "distill.temperature=2,4", "--no-cache", "--json"]
    assert main([*args, "--seed-by-seed"]) == 0
    notes = json.loads(capsys.readouterr().out)["stacked"]
    assert [n.split(":")[0] for n in notes if "students:" in n] == ["seed 0, students", "seed 1, students"]
    assert not any("teachers" in n for n in notes)


def test_seeds_together_in_rounds_that_keep_few_experiments_alive(monkeypatch):
    """With more grid points × seeds than MAX_ROWS_TOGETHER, the seeds stack in rounds."""
    import kdcore.pipeline.grid as grid

    monkeypatch.setattr(grid, "MAX_ROWS_TOGETHER", 2)
    spec = load_preset("digits-av").with_overrides(FAST)
    g = run_grid(spec, {"distill.temperature": [2.0, 4.0]}, seeds=2, stack=True)
    assert [n.split(":")[0] for n in g.stacked if "students:" in n] == ["seed 0, students", "seed 1, students"]
    assert len(g.rows) == 4
