"""kdcore.explain: attention statistics, Captum attributions, teacher–student agreement, the
per-epoch AgreementCallback and the ``explain`` CLI."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from kdcore.data import load_data
from kdcore.pipeline.experiment import Experiment
from kdcore.explain import (METHODS, AgreementCallback, AttributionError, AttributionParams, agreement,
                            agreement_history, alpha_on_split, attention_history, attribute, attribute_batches,
                            class_modality_mean, compare, noise_sweep, probe_rows, removal_sweep, spearman_rows,
                            topk_overlap_rows)
from kdcore.explain.runs import load_run
from kdcore.models import build_model
from kdcore.presets import load_preset
from kdcore.core.spec import ExperimentSpec
from kdcore.store.recorder import RunRecorder

EPOCHS = 2
pytestmark = pytest.mark.slow  # trains one tiny experiment (module fixture)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny digits-av experiment (teacher → baseline → kd) with the agreement callback."""
    spec = load_preset("digits-av").with_overrides([
        f"train.teacher_epochs={EPOCHS}", f"train.student_epochs={EPOCHS}", "train.batch_size=128",
        "data.train_limit=200",
    ])
    events = []
    exp = Experiment(spec, [events.append], callbacks=[RunRecorder(tmp_path_factory.mktemp("runs"))])
    exp.add_callback(AgreementCallback(samples=8, steps=4))
    res = exp.run()
    assert res.status == "finished", res.message
    return exp, events


@pytest.fixture(scope="module")
def mfeat_model():
    spec = ExperimentSpec.model_validate({
        "data": {"dataset": "mfeat", "modalities": ["fou", "pix", "mor"]},
        "teacher": {"feature_dim": 8, "encoder": {"width": 8, "depth": 1}},
    })
    data = load_data(spec.data)
    torch.manual_seed(0)
    return build_model(spec.teacher, spec.teacher_modalities(), data), data


# ---- attention -----------------------------------------------------------------------------
def test_alpha_sums_to_one_per_sample(run):
    exp, _ = run
    te = exp.data.split("test")
    for phase in ("teacher", "kd"):
        st = alpha_on_split(exp.models[phase], te)
        assert st.alpha.shape == (len(te), len(st.modalities))
        assert torch.allclose(st.alpha.sum(1), torch.ones(len(te)), atol=1e-5)
        assert (st.alpha >= 0).all()
    # with a modality removed: its α is exactly 0 and the rest still sums to 1
    present = torch.ones(len(te), 3, dtype=torch.bool)
    present[:, 1] = False
    st = alpha_on_split(exp.models["teacher"], te, present=present)
    assert torch.all(st.alpha[:, 1] == 0)
    assert torch.allclose(st.alpha.sum(1), torch.ones(len(te)), atol=1e-5)


def test_class_modality_mean_by_hand():
    alpha = torch.tensor([[0.2, 0.8], [0.4, 0.6], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 2])
    cm = class_modality_mean(alpha, labels, 3)
    assert torch.allclose(cm[0], torch.tensor([0.3, 0.7]))
    assert torch.isnan(cm[1]).all()
    assert torch.allclose(cm[2], torch.tensor([1.0, 0.0]))


def test_attention_snapshot_emitted_every_epoch_of_every_phase(run):
    _, events = run
    hist = attention_history(events)
    assert set(hist) == {"teacher", "baseline", "kd"}
    for phase, snaps in hist.items():
        assert [s["epoch"] for s in snaps] == list(range(1, EPOCHS + 1))
        for s in snaps:
            assert np.allclose(sum(s["mean"]), 1.0, atol=1e-5)
            rows = [r for r in s["class_mean"] if any(v > 0 for v in r)]
            assert all(np.isclose(sum(r), 1.0, atol=1e-5) for r in rows)


def test_attribution_snapshot_emitted_every_epoch_of_student_phases(run):
    _, events = run
    hist = agreement_history(events)
    assert set(hist) == {"baseline", "kd"}  # the teacher has nobody to agree with
    for phase, snaps in hist.items():
        assert [s["epoch"] for s in snaps] == list(range(1, EPOCHS + 1))
        for s in snaps:
            assert s["modalities"] == ["image", "audio", "text"]
            assert -1.0 <= s["spearman"]["all"] <= 1.0
            assert 0.0 <= s["topk"]["all"] <= 1.0
            assert np.isclose(sum(s["student_shares"].values()), 1.0, atol=1e-5)
            assert np.isclose(sum(s["teacher_shares"].values()), 1.0, atol=1e-5)


def test_removal_and_noise_sweeps(run):
    exp, _ = run
    models = {"teacher": exp.models["teacher"]}
    mods = {"teacher": ["image", "audio", "text"]}
    rows = removal_sweep(models, exp.data.split("test"), mods)
    assert [r["removed"] for r in rows] == ["none", "image", "audio", "text"]
    for r in rows:
        assert np.isclose(sum(r["alpha"].values()), 1.0, atol=1e-5)
        if r["removed"] != "none":
            assert r["alpha"][r["removed"]] == 0.0
    sweep = noise_sweep(models, exp.spec.data, "image_sigma", [0.0, 4.0], mods)
    assert [r["level"] for r in sweep] == [0.0, 4.0]
    assert all(np.isclose(sum(r["alpha"].values()), 1.0, atol=1e-5) for r in sweep)
    with pytest.raises(ValueError, match="image_sigma=9.0 is outside the allowed range"):
        noise_sweep(models, exp.spec.data, "image_sigma", [9.0], mods)
    with pytest.raises(ValueError, match="unknown for digits-av"):
        noise_sweep(models, exp.spec.data, "nope", [0.0], mods)


# ---- attributions ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", list(METHODS))
def test_attribution_shapes_match_inputs(run, method):
    exp, _ = run
    te = exp.data.split("test")
    b = te.batch(torch.arange(4))
    for phase in ("teacher", "kd"):
        a = attribute(exp.models[phase], b.inputs, method, b.labels,
                      AttributionParams(steps=4, noise_samples=2, window=8))
        expected = ("image", "audio") if method == "gradcam" else ("image", "audio", "text")
        assert a.modalities == expected
        for m in expected:
            assert a.maps[m].shape == b.inputs[m].shape, (method, m)
            assert torch.isfinite(a.maps[m]).all()
        if method == "gradcam":
            assert a.shares is None and any("text" in n for n in a.notes)
        else:
            assert torch.allclose(a.shares.sum(1), torch.ones(4), atol=1e-5)


@pytest.mark.parametrize("method", ["ig", "saliency", "smoothgrad", "occlusion"])
def test_vector_views_are_attributed_per_feature(mfeat_model, method):
    model, data = mfeat_model
    b = data.split("test").batch(torch.arange(3))
    a = attribute(model, b.inputs, method, b.labels, AttributionParams(steps=4, noise_samples=2))
    for m in ("fou", "pix", "mor"):
        assert a.maps[m].shape == b.inputs[m].shape  # [B, features]
    with pytest.raises(AttributionError, match="gradcam needs an image or spectrogram"):
        attribute(model, b.inputs, "gradcam", b.labels)


def test_integrated_gradients_completeness(run):
    """Σ IG attributions over all modalities ≈ f(x) − f(baseline) for the target logit."""
    exp, _ = run
    model = exp.models["teacher"]
    b = exp.data.split("test").batch(torch.arange(4))
    a = attribute(model, b.inputs, "ig", b.labels, AttributionParams(steps=256))
    total = sum(a.flat(m).sum(1) for m in a.modalities)
    with torch.no_grad():
        fx = model.eval()(b.inputs).logits.gather(1, b.labels[:, None]).squeeze(1)
        zero_in = {m: torch.zeros_like(v) for m, v in b.inputs.items() if m != "text"}
        emb = {"text": torch.zeros(4, b.inputs["text"].shape[1], model.encoders["text"].embedding.embedding_dim)}
        f0 = model({**zero_in, "text": b.inputs["text"]}, embedded=emb).logits.gather(1, b.labels[:, None]).squeeze(1)
    assert torch.allclose(total, fx - f0, atol=2e-2 * float((fx - f0).abs().max()) + 1e-3)


def test_text_attribution_is_layer_ig_on_the_embedding_and_maps_to_tokens(run):
    from captum.attr import LayerIntegratedGradients

    exp, _ = run
    model = exp.models["teacher"]
    te = exp.data.split("test")
    b = te.batch(torch.arange(5))
    a = attribute(model, b.inputs, "ig", b.labels, AttributionParams(steps=16))
    tokens = b.inputs["text"]
    assert a.maps["text"].shape == tokens.shape
    assert torch.equal(a.tokens["text"], tokens)
    assert (a.maps["text"][tokens == 0] == 0).all()  # pads carry nothing
    # each score sits on the character it explains: the tokens decode to the sample's text
    from kdcore.data.text import decode
    from kdcore.explain.attribution import token_scores

    texts = exp.data.meta["texts"]
    for i in range(5):
        text = texts[int(te.indices[i])][:12]
        assert decode(tokens[i]) == text
        pairs = token_scores(a, "text", i)
        assert "".join(c for c, _ in pairs) == text
        assert [s for _, s in pairs] == a.maps["text"][i, : len(text)].tolist()
    # Captum's own LayerIntegratedGradients on the embedding layer gives the same per-token scores
    net = model.eval()

    def fwd(image, audio, text):
        return net({"image": image, "audio": audio, "text": text}).logits

    # lig's forward takes text first: rebuild with the right argument order
    lig = LayerIntegratedGradients(lambda text, image, audio: fwd(image, audio, text), net.encoders["text"].embedding)
    ref = lig.attribute(tokens, baselines=torch.zeros_like(tokens), target=b.labels,
                        additional_forward_args=(b.inputs["image"], b.inputs["audio"]), n_steps=16)
    ref_tok = (ref.sum(-1) * (tokens != 0)).float()
    only_text = attribute(model, b.inputs, "ig", b.labels, AttributionParams(steps=16), modalities=["text"])
    assert only_text.modalities == ("text",)  # image and audio held fixed at their inputs
    assert torch.allclose(only_text.maps["text"], ref_tok, atol=1e-5)


def test_attribution_never_touches_the_training_instance(run, monkeypatch):
    exp, _ = run
    import kdcore.explain.attribution as A

    model = exp.models["kd"]
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads_before = [p.requires_grad for p in model.parameters()]
    grad_values = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    seen = []
    orig = A._TupleForward.__init__

    def spy(self, net, *args, **kw):
        seen.append(net)
        orig(self, net, *args, **kw)

    monkeypatch.setattr(A._TupleForward, "__init__", spy)
    b = exp.data.split("test").batch(torch.arange(3))
    for method in METHODS:
        attribute(model, b.inputs, method, b.labels, AttributionParams(steps=4, noise_samples=2, window=8))
    attribute_batches(model, b.inputs, "ig", b.labels, AttributionParams(steps=4), batch_size=2)
    assert seen and all(net is not model for net in seen)
    assert all(not net.training for net in seen)
    assert model.training  # still in train mode
    assert [p.requires_grad for p in model.parameters()] == grads_before
    for p, g in zip(model.parameters(), grad_values):  # no gradient written into the trained model
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_callback_works_on_a_copy(run, monkeypatch):
    """The callback's on_epoch_end receives the live model; what it attributes is a deep copy."""
    exp, _ = run
    import kdcore.explain.attribution as A

    seen = []
    orig = A.inspect_copy
    monkeypatch.setattr(A, "inspect_copy", lambda m: seen.append(m) or orig(m))
    emitted = []
    monkeypatch.setattr(exp, "emit", emitted.append)
    live = exp.models["baseline"]
    live.train()
    from kdcore.train.trainer import PhaseRun

    run_state = PhaseRun(None, name="baseline", model=live, context=exp)  # end of the first epoch
    AgreementCallback(samples=4, steps=2).on_epoch_end(run_state)
    assert live.training and live in seen  # copied from, never put in eval mode
    assert emitted and emitted[0].kind == "AttributionSnapshot" and emitted[0].samples == 4


def test_bad_parameters_name_the_field(run):
    exp, _ = run
    b = exp.data.split("test").batch(torch.arange(2))
    with pytest.raises(AttributionError, match=r"steps=0 is outside the allowed range \[1, 1024\]"):
        attribute(exp.models["kd"], b.inputs, "ig", b.labels, AttributionParams(steps=0))
    with pytest.raises(AttributionError, match="baseline='blur'; allowed: zeros, mean"):
        AttributionParams(baseline="blur").check()
    with pytest.raises(AttributionError, match="method='lime'; allowed: ig, saliency"):
        attribute(exp.models["kd"], b.inputs, "lime", b.labels)


# ---- agreement -----------------------------------------------------------------------------
def test_spearman_and_topk_by_hand():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [1.0, 1.0, 2.0, 5.0], [2.0, 2.0, 2.0, 2.0]])
    b = torch.tensor([[10.0, 20.0, 30.0, 40.0], [1.0, 2.0, 3.0, 4.0], [3.0, 1.0, 2.0, 9.0], [1.0, 2.0, 3.0, 4.0]])
    rho = spearman_rows(a, b)
    assert rho[0] == pytest.approx(1.0) and rho[1] == pytest.approx(-1.0)
    assert rho[2] == pytest.approx(spearmanr(a[2], b[2]).statistic, abs=1e-6)  # ties averaged like scipy
    assert torch.isnan(rho[3])  # a constant map has no ranking
    top = topk_overlap_rows(a, b, 2)
    # row 0: top-2 {3, 2} vs {3, 2} → 1; row 1: {0, 1} vs {3, 2} → 0; row 2: {3, 2} vs {3, 0} → 1/2
    assert top[:3].tolist() == [1.0, 0.0, 0.5]


def test_agreement_with_itself_is_one_and_with_a_random_model_near_zero(run):
    exp, _ = run
    te = exp.data.split("test")
    rows = probe_rows(te, 32)
    teacher = exp.models["teacher"]
    same = compare(teacher, teacher, te, rows, "ig", AttributionParams(steps=8)).agreement.mean()
    for m in ("image", "audio", "text", "all"):
        assert same[m]["spearman"] == pytest.approx(1.0) and same[m]["topk"] == pytest.approx(1.0)
    torch.manual_seed(12345)
    rnd = build_model(exp.spec.teacher, exp.spec.teacher_modalities(), exp.data)
    other = compare(teacher, rnd, te, rows, "saliency").agreement.mean()
    assert abs(other["all"]["spearman"]) < 0.2
    assert abs(other["image"]["spearman"]) < 0.3 and abs(other["audio"]["spearman"]) < 0.3


def test_agreement_only_over_shared_modalities(run):
    exp, _ = run
    te = exp.data.split("test")
    spec = exp.spec.with_overrides(["student.modalities=[image]"])
    torch.manual_seed(0)
    img_student = build_model(spec.student, ["image"], exp.data)
    cmp = compare(exp.models["teacher"], img_student, te, probe_rows(te, 6), "saliency")
    assert cmp.agreement.modalities == ["image"]
    assert set(cmp.student.mean_shares()) == {"image"}
    assert cmp.agreement.per_sample().shape == (6, 2)


def test_probe_rows_fixed_and_stratified(run):
    exp, _ = run
    te = exp.data.split("test")
    r1, r2 = probe_rows(te, 20), probe_rows(te, 20)
    assert torch.equal(r1, r2) and len(r1.unique()) == 20
    assert len(te.labels[r1].unique()) == 10  # every class is on the probe


# ---- run folders and the CLI ---------------------------------------------------------------
def test_load_run_rebuilds_the_models(run):
    exp, _ = run
    loaded = load_run(exp.run_dir)
    assert set(loaded.models) == {"teacher", "baseline", "kd"}
    te = exp.data.split("test")
    b = te.batch(torch.arange(8))
    for phase in ("teacher", "kd"):
        with torch.no_grad():
            want = exp.models[phase].eval()(b.inputs).logits
            got = loaded.models[phase](b.inputs).logits
        assert torch.allclose(want, got, atol=1e-5)
    assert attention_history(loaded.events).keys() == {"teacher", "baseline", "kd"}
    assert agreement_history(loaded.events).keys() == {"baseline", "kd"}


def test_cli_explain_json(run):
    from kdcore.cli import main

    exp, _ = run
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["explain", str(exp.run_dir), "--method", "saliency", "--samples", "6", "--json"])
    assert rc == 0
    rep = json.loads(buf.getvalue())
    assert rep["samples"] == 6 and rep["method"] == "saliency"
    assert set(rep["alpha"]) == {"teacher", "baseline", "kd"}
    assert np.isclose(sum(rep["alpha"]["teacher"]["mean"].values()), 1.0, atol=1e-5)
    assert np.isclose(sum(rep["attribution"]["kd"]["shares"].values()), 1.0, atol=1e-5)
    assert set(rep["agreement"]) == {"baseline", "kd"}
    assert set(rep["agreement"]["kd"]) == {"image", "audio", "text", "all"}
    assert len(rep["agreement_history"]["kd"]) == EPOCHS


def test_cli_explain_bad_input(run, tmp_path, capsys):
    from kdcore.cli import main

    exp, _ = run
    assert main(["explain", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["explain", str(exp.run_dir), "--method", "lime"]) == 2
    assert "allowed: ig, saliency" in capsys.readouterr().err
    assert main(["explain", str(exp.run_dir), "--samples", "0"]) == 2
    assert "samples=0" in capsys.readouterr().err


# ---- figure builders (kdcore.viz.attention / kdcore.viz.attributions) ----------------------------
def test_attention_figures_from_snapshots():
    from kdcore.viz.attention import alpha_epochs_figure, alpha_heatmaps, alpha_mean_lines, robustness_figure

    snaps = [{"epoch": e, "modalities": ["image", "audio"], "class_mean": [[0.1 * e, 1 - 0.1 * e]] * 10,
              "mean": [0.1 * e, 1 - 0.1 * e]} for e in (1, 2, 3)]
    fig = alpha_heatmaps({"teacher": snaps[-1], "kd": snaps[0]})
    assert [t.type for t in fig.data] == ["heatmap", "heatmap"] and fig.layout.uirevision
    assert np.allclose(np.asarray(fig.data[1].z).sum(1), 1.0)
    anim = alpha_epochs_figure(snaps)
    assert [f.name for f in anim.frames] == ["1", "2", "3"]
    assert anim.layout.sliders[0].active == 2  # the latest epoch is shown
    lines = alpha_mean_lines({"kd": snaps})
    assert len(lines.data) == 2 and list(lines.data[0].y) == pytest.approx([0.1, 0.2, 0.3])
    rows = [{"level": lv, "model": "teacher", "acc": 0.9 - lv / 10, "alpha": {"image": 1 - lv / 5, "audio": lv / 5}}
            for lv in (0.0, 1.0, 2.0)]
    rob = robustness_figure(rows, "image_sigma")
    assert len(rob.data) == 3 and list(rob.data[0].x) == [0.0, 1.0, 2.0]


def test_attribution_figures():
    from kdcore.viz.attributions import (agreement_epochs_figure, feature_bars_figure, image_maps_figure, normalise,
                                         shares_figure, token_figure)

    assert normalise([0.0, -2.0, 1.0]).tolist() == [0.0, -1.0, 0.5]
    assert normalise([0.0, -2.0, 1.0], signed=False).tolist() == [0.0, 1.0, 0.5]
    assert normalise(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]  # an all-zero map is drawn, not rejected
    img = image_maps_figure(np.ones((1, 8, 8)), {"teacher": np.eye(8)[None], "kd": -np.eye(8)[None]}, "ig")
    assert len(img.data) == 3 and np.asarray(img.data[2].z).min() == -1.0
    tok = token_figure({"teacher": [("o", 0.5), ("n", -1.0), ("e", 0.0)], "kd": [("o", 1.0)]}, "ig")
    assert [list(r) for r in tok.data[0].text] == [["o", "n", "e"], ["o", "", ""]]
    assert np.asarray(tok.data[0].z, dtype=float)[0].tolist() == [0.5, -1.0, 0.0]
    bars = feature_bars_figure({"teacher": [1.0, 2.0], "kd": [0.0, 4.0]}, "saliency", "mor")
    assert list(bars.data[1].y) == [0.0, 1.0]
    sh = shares_figure({"teacher": {"image": 0.25, "audio": 0.75}, "kd": {"image": 0.5, "audio": 0.5}})
    assert np.allclose(np.sum([t.x for t in sh.data], axis=0), 1.0)
    hist = {"kd": [{"epoch": 1, "spearman": {"all": 0.2}, "topk": {"all": 0.3}},
                   {"epoch": 2, "spearman": {"all": 0.4}, "topk": {"all": 0.5}}]}
    ag = agreement_epochs_figure(hist, "topk")
    assert list(ag.data[0].x) == [1, 2] and list(ag.data[0].y) == [0.3, 0.5]
