"""Tree students (student.kind: tree, LightGBM): the soft cross-entropy objective against hand-computed
values, a tree that moves toward the teacher's soft targets on a hand-made case, text checkpoints without
pickle, a full run with the engine's events and result row, resume, export, bad input and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from kdcore.core.spec import ExperimentSpec, SpecError
from kdcore.core.tree_spec import TreeSpec
from kdcore.data.base import ModalityInfo, TensorData
from kdcore.models.tree import TreeStudent
from kdcore.train.tree import TreePhaseConfig, soft_ce_grad_hess, soft_ce_terms, train_tree_phase
from kdcore.store.recorder import RunRecorder

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["train.teacher_epochs=2", "student.tree.rounds=12", "student.tree.early_stopping=0"]


def tiny_tree_spec(name: str = "tree-test") -> ExperimentSpec:
    from kdcore.presets import load_preset

    return load_preset("tree-student").with_overrides([f"name={name}", *QUICK])


# ---- the objective ------------------------------------------------------------------------------
def test_soft_ce_gradient_and_hessian_hand_computed():
    # z = [0, 0], label 1, teacher logits [2, 0], T = 2, w_ce 0.1, w_kd 0.9:
    # p = p^T = [.5, .5]; q^T = softmax([1, 0]) = [e/(e+1), 1/(e+1)] = [.73106, .26894]
    # grad = 0.1·(p − y) + 0.9·2·(p^T − q^T) = [0.05 − 0.41591, −0.05 + 0.41591]; hess = 0.1·.25 + 0.9·.25
    z = np.zeros((1, 2))
    onehot = np.array([[0.0, 1.0]])
    q_log = np.log(np.array([[math.e / (math.e + 1), 1 / (math.e + 1)]]))
    g, h = soft_ce_grad_hess(z, onehot, np.array([True]), q_log, 2.0, 0.1, 0.9)
    assert g == pytest.approx(np.array([[-0.365910, 0.365910]]), abs=1e-5)
    assert h == pytest.approx(np.array([[0.25, 0.25]]))
    terms = soft_ce_terms(z, onehot, np.array([True]), q_log, 2.0)
    assert terms["ce"] == pytest.approx(math.log(2))
    q = np.exp(q_log[0])
    assert terms["kd"] == pytest.approx(4 * float((q * (np.log(q) - np.log(0.5))).sum()))


def test_gradient_matches_finite_differences_of_the_loss():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 3))
    y = np.array([0, 2, 1, -1, 2])  # one unlabelled transfer sample: no CE on it
    lab = y >= 0
    onehot = np.zeros((5, 3))
    onehot[lab, y[lab]] = 1
    t = rng.normal(size=(5, 3)) * 3
    T = 3.0
    q_log = t / T - np.log(np.exp(t / T).sum(1, keepdims=True))

    def loss(zz):  # sum over samples of the module's L (the gradient is per sample)
        terms_ce = soft_ce_terms(zz, onehot, lab, None, T)["ce"] * lab.sum()
        terms_kd = soft_ce_terms(zz, onehot, lab, q_log, T)["kd"] * len(zz)
        return 0.3 * terms_ce + 0.7 * terms_kd

    g, _ = soft_ce_grad_hess(z, onehot, lab, q_log, T, 0.3, 0.7)
    eps = 1e-6
    num = np.zeros_like(z)
    for i in range(5):
        for k in range(3):
            d = np.zeros_like(z)
            d[i, k] = eps
            num[i, k] = (loss(z + d) - loss(z - d)) / (2 * eps)
    assert g == pytest.approx(num, abs=1e-5)


# ---- a hand-made case: the distilled tree follows the teacher, not the labels ----------------------
def _line_data(n: int = 600, seed: int = 0) -> TensorData:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=gen)
    labels = (x[:, 0] > 0.5).long()  # the labels switch at 0.5 ...
    idx = torch.randperm(n, generator=gen)
    split = {"train": idx[: n // 2], "val": idx[n // 2: 3 * n // 4], "test": idx[3 * n // 4:]}
    return TensorData("line", {"x": ModalityInfo("x", "vector", (1,), "one number")}, {"x": x}, labels, 2,
                      ["0", "1"], split)


def test_distilled_tree_moves_toward_the_teachers_soft_targets():
    data = _line_data()
    x = data.inputs["x"][:, 0]
    teacher_all = torch.stack([torch.zeros_like(x), 12 * (x - 0.3)], 1)  # ... the teacher's at 0.3
    tr = data.split_index["train"]
    # one evaluation, after the last round: the model returned is the fitted one, not an earlier round
    tree = TreeSpec(rounds=60, num_leaves=4, min_data_in_leaf=5, early_stopping=0, eval_every=60)
    base_cfg = TreePhaseConfig("baseline", ["x"], tree, seed=1)
    kd_cfg = TreePhaseConfig("kd", ["x"], tree, seed=1, ce_weight=0.0, kd_weight=1.0, temperature=2.0,
                             teacher_logits=teacher_all[tr])
    quiet = lambda ev: None  # noqa: E731
    _, base = train_tree_phase(base_cfg, data, quiet, lambda: False)
    _, kd = train_tree_phase(kd_cfg, data, quiet, lambda: False)
    probe = torch.linspace(0.02, 0.98, 49)[:, None]
    q = torch.softmax(torch.stack([torch.zeros(49), 12 * (probe[:, 0] - 0.3)], 1) / 2.0, 1)[:, 1]
    p_base = torch.softmax(base({"x": probe}).logits / 2.0, 1)[:, 1]
    p_kd = torch.softmax(kd({"x": probe}).logits / 2.0, 1)[:, 1]
    # the KD tree's softened probabilities sit much closer to the teacher's than the hard-label tree's
    assert float((p_kd - q).abs().mean()) < 0.5 * float((p_base - q).abs().mean())
    between = (probe[:, 0] > 0.34) & (probe[:, 0] < 0.46)  # the labels say 0, the teacher says 1
    assert bool((kd({"x": probe[between]}).logits.argmax(1) == 1).all())
    assert bool((base({"x": probe[between]}).logits.argmax(1) == 0).all())


# ---- checkpoints without pickle ---------------------------------------------------------------------
def test_checkpoint_round_trip_is_text_and_json(tmp_path):
    import lightgbm as lgb

    data = _line_data()
    _, model = train_tree_phase(TreePhaseConfig("baseline", ["x"], TreeSpec(rounds=10, num_leaves=4), seed=1),
                                data, lambda ev: None, lambda: False)
    path = model.save(tmp_path, "baseline")
    assert path.name == "baseline.lgb.txt"
    text = path.read_text(encoding="utf-8")  # LightGBM's own text format, not a pickle
    assert text.startswith("tree\n") and not path.read_bytes().startswith(b"\x80")
    meta = json.loads((tmp_path / "baseline.tree.json").read_text())
    assert meta["format"] == "lightgbm-text" and meta["modalities"] == ["x"] and meta["widths"] == {"x": 1}
    again = TreeStudent.load(tmp_path, "baseline")
    probe = {"x": torch.linspace(0, 1, 33)[:, None]}
    assert torch.equal(model(probe).logits, again(probe).logits)
    assert again.best_round == model.best_round and again.parameter_count() == model.parameter_count()
    plain = lgb.Booster(model_file=str(path))  # readable by LightGBM itself
    assert plain.num_trees() == model.booster.num_trees()
    (tmp_path / "broken.lgb.txt").write_text("not a model")
    (tmp_path / "broken.tree.json").write_text(json.dumps(meta))
    from kdcore.models.tree import TreeCheckpointError

    with pytest.raises(TreeCheckpointError, match="broken.lgb.txt"):
        TreeStudent.load(tmp_path, "broken")


# ---- a whole run --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tree_run(tmp_path_factory):
    from kdcore.pipeline.experiment import Experiment

    root = tmp_path_factory.mktemp("tree-runs")
    events = []
    exp = Experiment(tiny_tree_spec(), [events.append], callbacks=[RunRecorder(root)])
    res = exp.run()
    assert res.status == "finished", res.message
    return exp, res.to_dict(), events, root


def test_run_emits_rounds_as_epochs_and_reports_the_result_row(tree_run):
    exp, result, events, _ = tree_run
    assert exp.phases() == ["teacher", "baseline", "kd"]
    started = {e.phase: e for e in events if e.kind == "PhaseStarted"}
    assert started["kd"].epochs == 12 and started["kd"].steps_per_epoch == 1
    kd_epochs = [e.epoch for e in events if e.kind == "EpochMetrics" and e.phase == "kd"]
    assert kd_epochs == list(range(1, 13))  # one evaluation per boosting round
    steps = [e for e in events if e.kind == "StepLosses" and e.phase == "kd"]
    assert len(steps) == 12 and set(steps[0].terms) == {"ce", "kd"} and steps[0].temperature == 4.0
    assert set(next(e for e in events if e.kind == "StepLosses" and e.phase == "baseline").terms) == {"ce"}
    for phase in ("baseline", "kd"):
        r = result["phases"][phase]
        model = exp.models[phase]
        assert isinstance(model, TreeStudent)
        assert r["params"] == model.parameter_count() > 0
        assert 1 <= r["best_epoch"] <= 12 and 0.0 <= r["agreement"] <= 1.0
        assert r["size_bytes"] == model.size_bytes() and r["latency_ms_b1"] > 0 and r["flops"] > 0
        assert {"acc_without_fou", "acc_without_kar", "kl_to_teacher", "ece"} <= set(r)
        # the reported test accuracy is the saved model's
        te = exp.data.split("test")
        from kdcore.train.evaluate import evaluate

        assert evaluate(model, te, ["fou", "kar"]).acc == pytest.approx(r["test_acc"])
    ck = exp.run_dir / "checkpoints"
    assert {p.name for p in ck.iterdir()} >= {"teacher.safetensors", "baseline.lgb.txt", "baseline.tree.json",
                                            "kd.lgb.txt", "kd.tree.json"}
    from kdcore.pipeline.report import result_table

    assert "Tree students (LightGBM)" in result_table(result)


def test_stopped_tree_run_resumes_without_regrowing_the_finished_tree(tmp_path, tree_run):
    from kdcore.pipeline.experiment import Experiment
    from kdcore.store.resume_run import prepare_resume

    _, reference, _, _ = tree_run
    stop = threading.Event()
    exp = Experiment(tiny_tree_spec(), [lambda ev: stop.set() if ev.kind == "PhaseStarted" and ev.phase == "kd"
                                        else None], callbacks=[RunRecorder(tmp_path)], stop_event=stop)
    assert exp.run().status == "stopped"
    seen = []
    again = prepare_resume(exp.run_id, tmp_path, [seen.append])
    res = again.run()
    assert res.status == "finished", res.message
    assert [e.phase for e in seen if e.kind == "PhaseStarted"] == ["kd"]  # teacher and baseline loaded
    for phase in ("teacher", "baseline", "kd"):  # LightGBM is seeded: the regrown kd tree is the same
        assert res.phases[phase]["test_acc"] == reference["phases"][phase]["test_acc"]


def test_onnx_export_of_a_tree_student_says_it_is_not_supported(tree_run, tmp_path):
    from kdcore.export.onnx_export import OnnxExportError, export_onnx

    exp, _, _, root = tree_run
    with pytest.raises(OnnxExportError, match="ONNX export of tree students is not supported"):
        export_onnx(exp.run_dir, tmp_path / "onnx", ["kd"])
    out = subprocess.run([sys.executable, "-m", "kdcore", "export", exp.run_id, "--onnx", str(tmp_path / "o"),
                          "--runs-dir", str(root)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "ONNX export of tree students is not supported" in out.stderr
    zipped = subprocess.run([sys.executable, "-m", "kdcore", "export", exp.run_id, str(tmp_path / "run.zip"),
                             "--runs-dir", str(root)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert zipped.returncode == 0, zipped.stderr
    import zipfile

    names = zipfile.ZipFile(tmp_path / "run.zip").namelist()
    assert "checkpoints/kd.lgb.txt" in names and "checkpoints/kd.tree.json" in names


# ---- bad input -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides,field", [
    (["data.dataset=digits-av", "student.kind=tree"], "student.kind=tree: modality 'image' has kind image"),
    (["student.kind=tree", "distill.losses.dkd.weight=1"], "distill.losses: a tree student fits ce and kd only"),
    (["student.kind=tree", "distill.extra_phases=[ard]"], "distill.extra_phases"),
    (["student.kind=tree", "distill.weighting=confidence"], "distill.weighting=confidence"),
    (["student.kind=tree", "student.tree.rounds=0"], "student.tree.rounds"),
    (["student.kind=tree", "student.tree.learning_rate=2"], "student.tree.learning_rate"),
    (["student.kind=forest"], "student.kind"),
    (["teacher.kind=tree"], "teacher.kind"),
])
def test_bad_tree_input_gives_one_line_naming_the_field(overrides, field):
    base = ExperimentSpec().with_overrides(["data.dataset=mfeat"])
    with pytest.raises(SpecError) as err:
        base.with_overrides(overrides)
    msg = str(err.value)
    assert field in msg and "\n" not in msg


def test_cli_runs_the_quick_tree_preset():
    out = subprocess.run([sys.executable, "-m", "kdcore", "run", "--preset", "tree-student", "--no-save", "--quiet",
                          *[a for kv in QUICK for a in ("--set", kv)]], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Tree students (LightGBM)" in out.stdout
    rows = {line.split()[0] for line in out.stdout.splitlines() if line.split()}
    assert {"teacher", "baseline", "kd"} <= rows


# ---- attribution: pred_contrib beside the teacher's Captum attributions --------------------------------
def test_tree_attribution_is_pred_contrib_and_sums_to_the_raw_score():
    from kdcore.explain.attribution import attribute

    data = _line_data()
    two = TensorData("line2", {"a": ModalityInfo("a", "vector", (1,), ""), "b": ModalityInfo("b", "vector", (2,), "")},
                     {"a": data.inputs["x"], "b": torch.cat([data.inputs["x"] ** 2, torch.rand(600, 1)], 1)},
                     data.labels, 2, ["0", "1"], data.split_index)
    _, model = train_tree_phase(TreePhaseConfig("baseline", ["a", "b"], TreeSpec(rounds=15, num_leaves=4), seed=1),
                                two, lambda ev: None, lambda: False)
    rows = torch.arange(10)
    inputs = {m: two.inputs[m][rows] for m in ("a", "b")}
    target = two.labels[rows]
    a = attribute(model, inputs, "ig", target)  # any method name: a tree answers with its own contributions
    assert a.method == "pred_contrib" and a.maps["a"].shape == (10, 1) and a.maps["b"].shape == (10, 2)
    x = np.concatenate([inputs["a"].numpy(), inputs["b"].numpy()], 1).astype(np.float64)
    full = model.booster.predict(x, pred_contrib=True).reshape(10, 2, 4)
    bias = torch.from_numpy(full[np.arange(10), target.numpy(), -1]).float()
    total = a.maps["a"].sum(1) + a.maps["b"].sum(1) + bias  # SHAP: contributions + expected value = raw score
    assert torch.allclose(total, a.logits[torch.arange(10), target], atol=1e-4)
    assert torch.allclose(a.shares.sum(1), torch.ones(10))


def test_explain_cli_puts_tree_contributions_beside_the_teachers_captum(tree_run):
    exp, _, _, _ = tree_run
    out = subprocess.run([sys.executable, "-m", "kdcore", "explain", str(exp.run_dir), "--samples", "4", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rep = json.loads(out.stdout)
    assert set(rep["attribution"]) == {"teacher", "baseline", "kd"}
    assert set(rep["agreement"]["kd"]) == {"fou", "kar", "all"}
    assert any(n.startswith("kd: tree student: LightGBM pred_contrib") for n in rep["notes"])


def test_tree_grid_sweep_grows_trees_stacked_or_not(tree_run):
    """A sweep of a tree-student spec grows trees on both grid paths: the stacked default says the
    trees are not stacked, and both give the full run's numbers at the point it shares."""
    from kdcore.pipeline.grid import run_grid

    _, reference, _, _ = tree_run
    spec = tiny_tree_spec()
    axes = {"distill.temperature": [float(spec.distill.temperature), 1.0]}
    stacked = run_grid(spec, axes, 1)
    assert any("tree students" in note and "not stacked" in note for note in stacked.stacked)
    plain = run_grid(spec, axes, 1, stack=False)
    for grid in (stacked, plain):
        row = next(r for r in grid.rows if r["point"]["distill.temperature"] == float(spec.distill.temperature))
        for phase in ("teacher", "baseline", "kd"):
            assert row["acc"][phase] == reference["phases"][phase]["test_acc"]
