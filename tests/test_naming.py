"""Run names: the preset's name plus what was changed versus the preset (kdcore.presets.naming)."""

from __future__ import annotations

import pytest

from kdcore.presets.naming import MAX_LEN, join_parts, run_label
from kdcore.presets import load_preset


@pytest.fixture(scope="module")
def base():
    return load_preset("digits-av")


def test_unchanged_preset_keeps_its_name(base):
    assert run_label(base, "digits-av") == "digits-av"


def test_the_issue_example(base):
    spec = base.with_overrides(["student.encoder.width=8", "student.modalities=[image,text]",
                                "distill.temperature=4", 'distill.losses.fitnet={"weight": 1}'])
    assert run_label(spec, "digits-av") == "digits-av · width 8 · −audio · T4 · +fitnet"


def test_regimes_seed_losses_and_added_modality(base):
    spec = base.with_overrides(["data.regime.labelled_fraction=0.1", "data.regime.omit_classes=[3]",
                                "data.regime.teacher_label_noise=0.6"])
    assert run_label(spec, "digits-av") == "digits-av · 10 % labels · omit 3 · teacher noise 0.6"
    assert run_label(base.with_overrides(["data.seed=2"]), "digits-av") == "digits-av · seed 2"
    spec = base.with_overrides(["student.modalities=[image]"])
    back = spec.with_overrides(["student.modalities=[image,audio]"])
    assert run_label(back, "digits-av", base=spec) == "digits-av · +audio"
    no_kd = base.with_overrides(['distill.losses={"ce": {"weight": 1}}'])
    assert run_label(no_kd, "digits-av") == "digits-av · −kd · ce 1"


def test_dataset_switch_says_custom_data(base, tmp_path):
    d = base.to_dict()
    d["data"]["dataset"] = "mfeat"
    d["data"]["noise"] = {}
    d["teacher"]["encoders"] = d["student"]["encoders"] = {}
    from kdcore.core.spec import validate_spec

    spec = validate_spec(d)
    label = run_label(spec, "digits-av")
    assert label.startswith("digits-av · mfeat"), label
    assert "−audio" not in label  # modality differences of another data set are not listed


def test_user_names_are_kept_and_generated_names_remade(base):
    assert run_label(base.with_overrides(["name=my run"]), "digits-av") == "my run"
    again = base.with_overrides(["name=digits-av · width 8", "student.encoder.width=8", "data.seed=1"])
    assert run_label(again, "digits-av") == "digits-av · width 8 · seed 1"
    assert run_label(base, None) == base.name
    assert run_label(base, "no-such-preset") == base.name


def test_long_labels_are_cut_with_an_ellipsis(base):
    spec = base.with_overrides(["student.encoder.width=8", "student.encoder.depth=3", "student.feature_dim=32",
                                "distill.temperature=7", "train.student_epochs=99", "train.lr=0.001",
                                "data.seed=5", "train.batch_size=16", 'distill.losses.fitnet={"weight": 1}'])
    label = run_label(spec, "digits-av")
    assert len(label) <= MAX_LEN and label.endswith("…"), label
    assert label.startswith("digits-av · width 8 · depth 3")
    assert len(join_parts("x" * 100, ["a"])) <= MAX_LEN
    assert join_parts("p", []) == "p"


def test_a_submitted_job_is_named_from_its_preset_and_edits(tmp_path, monkeypatch):
    """The Train page's run button (ui.state.submit) names the job by run_label; the tab's spec keeps
    its own name."""
    from pathlib import Path

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KDLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("KDLAB_FAST", raising=False)
    st.cache_resource.clear()
    spec = load_preset("digits-av").with_overrides([
        "student.encoder.width=8", "data.train_limit=40", "train.teacher_epochs=1", "train.student_epochs=1"])
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=300)
    at.switch_page("pages/2_Train.py")
    at.session_state["spec"] = spec.to_dict()
    at.session_state["preset"] = "digits-av"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key="train-run-current").click().run()
    assert not at.exception, [e.value for e in at.exception]
    from ui.state import get_manager

    try:
        job = get_manager().get(at.session_state["job_id"])
        assert job.spec.name == "digits-av · width 8 · 40 train · 1 epochs · teacher 1 epochs", job.spec.name
        assert at.session_state["spec"]["name"] == "digits-av"
    finally:
        get_manager().stop_all(wait=120)
        st.cache_resource.clear()


def test_fast_epoch_hold_only_in_fast_mode_and_a_bad_value_is_named(monkeypatch):
    """The browser tests' epoch hold (``KDLAB_FAST_EPOCH_HOLD_S``) applies in fast mode only; a value that is
    not a number is refused with the variable's name."""
    from ui import state

    monkeypatch.setenv("KDLAB_FAST_EPOCH_HOLD_S", "0.4")
    monkeypatch.delenv("KDLAB_FAST", raising=False)
    assert state.fast_epoch_hold_s() == 0.0
    monkeypatch.setenv("KDLAB_FAST", "1")
    assert state.fast_epoch_hold_s() == 0.4
    monkeypatch.setenv("KDLAB_FAST_EPOCH_HOLD_S", "soon")
    with pytest.raises(ValueError, match="KDLAB_FAST_EPOCH_HOLD_S"):
        state.fast_epoch_hold_s()
