"""AppTest tests for the Setup page's data-regime widgets, its issue-10 fixes (messages for bad
numbers, the FitNets weight note, raw fields in an expander, plain words) and lecture mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from kdcore.presets import load_preset

ROOT = Path(__file__).resolve().parents[1]
SETUP = "pages/1_Setup.py"


@pytest.fixture
def open_page(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("KDLAB_FAST", raising=False)
    st.cache_resource.clear()

    def _open(spec=None, query: dict | None = None) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.switch_page(SETUP)
        if spec is not None:
            at.session_state["spec"] = spec.to_dict()
        for k, v in (query or {}).items():
            at.query_params[k] = v
        return at.run()

    yield _open
    st.cache_resource.clear()


def widget(at: AppTest, kind: str, path: str):
    found = [w for w in getattr(at, kind) if (w.key or "").split("@")[0] == path]
    assert found, f"no {kind} for {path}"
    return found[-1]


def has(at: AppTest, kind: str, path: str) -> bool:
    return any((w.key or "").split("@")[0] == path for w in getattr(at, kind))


def ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def regime(at: AppTest) -> dict:
    r = dict(at.session_state["spec"]["data"]["regime"])
    r["teacher_noise_pairs"] = {int(k): v for k, v in r["teacher_noise_pairs"].items()}  # JSON dump: str keys
    return r


# ---- every regime widget changes the session spec (and the URL) ------------------------------
def test_regime_widgets_change_the_spec(open_page):
    at = open_page(load_preset("mfeat-crossmodal"))
    ok(at)
    assert regime(at)["labelled_fraction"] == 1.0 and widget(at, "radio", "data.regime.labels").value == "all"
    # a fraction
    widget(at, "radio", "data.regime.labels").set_value("fraction").run()
    ok(at)
    assert regime(at)["labelled_fraction"] == 0.1  # a useful first value, not 1.0 (= all)
    widget(at, "number_input", "data.regime.labelled_fraction").set_value(0.25).run()
    assert regime(at)["labelled_fraction"] == 0.25 and regime(at)["labels_per_class"] is None
    assert at.query_params["data.regime.labelled_fraction"] == "0.25"
    # k per class
    widget(at, "radio", "data.regime.labels").set_value("per_class").run()
    widget(at, "number_input", "data.regime.labels_per_class").set_value(7).run()
    ok(at)
    assert regime(at)["labels_per_class"] == 7 and regime(at)["labelled_fraction"] == 1.0
    # transfer set
    widget(at, "radio", "data.regime.transfer").set_value("labelled").run()
    assert regime(at)["transfer"] == "labelled"
    assert any("soft targets only" in c.value for c in at.caption)
    # omitted classes and whether they stay in the transfer set
    assert widget(at, "multiselect", "data.regime.omit_classes").options == [str(c) for c in range(10)]
    assert widget(at, "checkbox", "data.regime.omitted_in_transfer").disabled  # nothing omitted yet
    widget(at, "multiselect", "data.regime.omit_classes").set_value([3, 5]).run()
    widget(at, "checkbox", "data.regime.omitted_in_transfer").check().run()
    ok(at)
    assert regime(at)["omit_classes"] == [3, 5] and regime(at)["omitted_in_transfer"] is True
    # a noisy teacher along pairs
    widget(at, "number_input", "data.regime.teacher_label_noise").set_value(0.4).run()
    widget(at, "text_input", "data.regime.teacher_noise_pairs").set_value("4→9, 3 -> 8").run()
    ok(at)
    assert not at.error
    assert regime(at)["teacher_label_noise"] == 0.4 and regime(at)["teacher_noise_pairs"] == {4: 9, 3: 8}
    assert json.loads(at.query_params["data.regime.teacher_noise_pairs"]) == {"4": 9, "3": 8}
    # and back to all labels
    widget(at, "radio", "data.regime.labels").set_value("all").run()
    assert regime(at)["labels_per_class"] is None and regime(at)["labelled_fraction"] == 1.0


def test_preset_regime_shown_in_the_widgets(open_page):
    at = open_page(load_preset("noisy-teacher"))
    ok(at)
    assert widget(at, "number_input", "data.regime.teacher_label_noise").value == 0.6
    assert widget(at, "text_input", "data.regime.teacher_noise_pairs").value == "1→7, 3→8, 4→9, 5→6"
    at = open_page(load_preset("few-labels"))
    assert widget(at, "radio", "data.regime.labels").value == "per_class"
    assert widget(at, "number_input", "data.regime.labels_per_class").value == 5


# ---- URL and YAML round trips -----------------------------------------------------------------
def test_regime_url_round_trip_unit():
    from ui.state import spec_from_query, spec_to_query

    spec = load_preset("mfeat-crossmodal").with_overrides([
        "data.regime.labels_per_class=4", "data.regime.transfer=labelled", "data.regime.omit_classes=[2, 7]",
        "data.regime.omitted_in_transfer=true", "data.regime.teacher_label_noise=0.3",
        "data.regime.teacher_noise_pairs={4: 9, 3: 8}"])
    q = spec_to_query(spec, "mfeat-crossmodal")
    assert json.loads(q["data.regime.teacher_noise_pairs"]) == {"4": 9, "3": 8}
    back, base = spec_from_query(q)
    assert back.to_dict() == spec.to_dict() and back.data.regime.teacher_noise_pairs == {4: 9, 3: 8}
    # removing the pairs of a preset that has some survives the trip too
    d = load_preset("noisy-teacher").to_dict()
    d["data"]["regime"]["teacher_noise_pairs"] = {}
    from kdcore.core.spec import validate_spec

    spec = validate_spec(d)
    assert spec_from_query(spec_to_query(spec, "noisy-teacher"))[0].data.regime.teacher_noise_pairs == {}


def test_regime_link_opens_in_setup(open_page):
    at = open_page(query={"preset": "mfeat-crossmodal", "data.regime.labelled_fraction": "0.2",
                          "data.regime.omit_classes": "[3]", "data.regime.teacher_label_noise": "0.25",
                          "data.regime.teacher_noise_pairs": '{"4":9}'})
    ok(at)
    r = regime(at)
    assert r["labelled_fraction"] == 0.2 and r["omit_classes"] == [3]
    assert r["teacher_label_noise"] == 0.25 and r["teacher_noise_pairs"] == {4: 9}
    assert widget(at, "radio", "data.regime.labels").value == "fraction"
    assert widget(at, "number_input", "data.regime.labelled_fraction").value == 0.2
    assert widget(at, "multiselect", "data.regime.omit_classes").value == [3]
    assert widget(at, "text_input", "data.regime.teacher_noise_pairs").value == "4→9"


def test_regime_yaml_preview_round_trips(open_page):
    from kdcore.core.spec import ExperimentSpec

    at = open_page(load_preset("noisy-teacher"))
    widget(at, "multiselect", "data.regime.omit_classes").set_value([2]).run()
    yaml_block = [c.value for c in at.code if "regime:" in c.value]
    assert yaml_block
    back = ExperimentSpec.from_yaml(yaml_block[0])
    assert back.to_dict() == at.session_state["spec"] and back.data.regime.teacher_noise_pairs[4] == 9


# ---- bad input: a message naming the field, nothing lost --------------------------------------
def test_bad_pairs_text_names_the_field_and_keeps_the_text(open_page):
    at = open_page(load_preset("noisy-teacher"))
    before = regime(at)["teacher_noise_pairs"]
    widget(at, "text_input", "data.regime.teacher_noise_pairs").set_value("4 to 9").run()
    ok(at)
    msgs = [e.value for e in at.error]
    assert any("data.regime.teacher_noise_pairs" in m and "4→9" in m for m in msgs), msgs
    assert widget(at, "text_input", "data.regime.teacher_noise_pairs").value == "4 to 9"  # the text stays
    assert regime(at)["teacher_noise_pairs"] == before  # the last valid spec stays current
    assert at.button(key="setup-run").disabled
    widget(at, "text_input", "data.regime.teacher_noise_pairs").set_value("4→4").run()
    assert any("data.regime.teacher_noise_pairs" in e.value and "itself" in e.value for e in at.error)
    widget(at, "text_input", "data.regime.teacher_noise_pairs").set_value("4→12").run()
    assert any("data.regime.teacher_noise_pairs" in e.value and "0–9" in e.value for e in at.error)
    widget(at, "text_input", "data.regime.teacher_noise_pairs").set_value("4->9").run()
    assert not at.error and regime(at)["teacher_noise_pairs"] == {4: 9}


def test_out_of_range_regime_values_name_field_and_range(open_page):
    at = open_page(load_preset("mfeat-crossmodal"))
    widget(at, "radio", "data.regime.labels").set_value("fraction").run()
    widget(at, "number_input", "data.regime.labelled_fraction").set_value(1.5).run()
    ok(at)
    assert any("data.regime.labelled_fraction" in e.value and "(0, 1]" in e.value for e in at.error)
    assert widget(at, "number_input", "data.regime.labelled_fraction").value == 1.5
    widget(at, "number_input", "data.regime.labelled_fraction").set_value(0.3).run()
    widget(at, "number_input", "data.regime.teacher_label_noise").set_value(1.0).run()
    assert any("data.regime.teacher_label_noise" in e.value and "[0, 1)" in e.value for e in at.error)


def test_negative_loss_weight_names_field_and_range(open_page):
    at = open_page()
    widget(at, "number_input", "distill.losses.kd.weight").set_value(-0.5).run()
    ok(at)
    msgs = [e.value for e in at.error]
    assert any("distill.losses.kd.weight" in m and "[0, 1e+06]" in m for m in msgs), msgs
    assert at.session_state["spec"]["distill"]["losses"]["kd"]["weight"] >= 0
    assert widget(at, "number_input", "distill.losses.kd.weight").value == -0.5


def test_fitnet_weight_note_says_why(open_page):
    at = open_page()
    losses = widget(at, "multiselect", "distill.losses")
    losses.set_value(list(losses.value) + ["fitnet"]).run()
    ok(at)
    assert widget(at, "number_input", "distill.losses.fitnet.weight").value == 100.0
    notes = [c.value for c in at.caption if "fitnet" in c.value]
    assert notes and "default weight" in notes[0] and "Romero" in notes[0], notes
    assert not [c for c in at.caption if "kd's default weight" in c.value]  # no note for CE / KD


# ---- layout and words -------------------------------------------------------------------------
def test_raw_fields_live_in_an_advanced_expander(open_page):
    at = open_page()
    advanced = [e for e in at.expander if e.label == "Advanced: raw fields"]
    assert advanced
    inside = [w.key.split("@")[0] for e in advanced for w in e.text_input] + \
             [w.key.split("@")[0] for e in advanced for w in e.text_area]
    assert "distill.losses.kd.params" in inside and "distill.weighting_params" in inside
    normal = [w.key.split("@")[0] for e in at.expander if e.label != "Advanced: raw fields" for w in e.text_input]
    raw_boxes = {"distill.losses.kd.params", "distill.weighting_params", "distill.temperature_params"}
    assert len([k for k in normal if k in raw_boxes]) == len([k for k in inside if k in raw_boxes])  # nested only


def test_no_internal_jargon_in_setup(open_page):
    at = open_page()
    from ui.setup_form import plain

    texts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    for w in list(at.multiselect) + list(at.selectbox):
        texts += [str(o) for o in w.options] + [w.help or ""]
    for w in list(at.number_input) + list(at.text_input) + list(at.slider):
        texts.append(w.help or "")
    blob = "\n".join(texts)
    assert "§" not in blob and "seed's" not in blob and "docs/" not in blob
    assert plain("activation boundaries (the seed's hinge loss): squared hinge") == \
        "activation boundaries: squared hinge"
    assert plain("KD Lab seed §4.2; hints as in Romero et al. ICLR 2015") == "hints as in Romero et al. ICLR 2015"


def test_mfh_gauss_knobs_start_at_their_defaults(open_page):
    at = open_page(load_preset("mfh-gamma"))
    ok(at)
    labels = {s.label: s for s in at.slider}
    assert {"gamma", "samples", "classes", "mix"} <= set(labels)
    assert labels["samples"].value == 1500 and labels["classes"].value == 2
    widget(at, "slider", "data.noise.classes").set_value(4.0).run()
    ok(at)
    assert widget(at, "multiselect", "data.regime.omit_classes").options == ["0", "1", "2", "3"]


# ---- lecture mode -----------------------------------------------------------------------------
def test_lecture_mode_hides_advanced_fields_and_keeps_their_values(open_page):
    at = open_page()
    widget(at, "number_input", "train.batch_size").set_value(48).run()
    assert has(at, "number_input", "train.batch_size") and has(at, "selectbox", "teacher.fusion")
    at.sidebar.toggle(key="lecture_mode-toggle").set_value(True).run()
    ok(at)
    assert at.session_state["lecture_mode"] is True
    for kind, path in [("number_input", "train.batch_size"), ("selectbox", "teacher.fusion"),
                       ("number_input", "data.seed"), ("text_input", "distill.losses.kd.params"),
                       ("text_input", "name")]:
        assert not has(at, kind, path), path
    assert not [e for e in at.expander if e.label == "Advanced: raw fields"]
    for kind, path in [("selectbox", "data.dataset"), ("multiselect", "student.modalities"),
                       ("multiselect", "distill.losses"), ("number_input", "distill.losses.kd.weight"),
                       ("slider", "distill.temperature"), ("number_input", "train.student_epochs"),
                       ("radio", "data.regime.labels"), ("text_input", "data.regime.teacher_noise_pairs")]:
        assert has(at, kind, path), path
    assert at.session_state["spec"]["train"]["batch_size"] == 48  # hidden, not lost
    widget(at, "number_input", "train.student_epochs").set_value(3).run()
    assert at.session_state["spec"]["train"]["student_epochs"] == 3
    assert at.session_state["spec"]["train"]["batch_size"] == 48
    at.sidebar.toggle(key="lecture_mode-toggle").set_value(False).run()
    ok(at)
    assert widget(at, "number_input", "train.batch_size").value == 48


def test_lecture_mode_helpers():
    from ui.lecture import KEY, lecture_mode, lecture_toggle

    assert KEY == "lecture_mode" and callable(lecture_toggle) and lecture_mode() is False


def test_dataset_change_drops_classes_the_new_dataset_lacks(open_page):
    at = open_page(load_preset("omitted-digit"))
    assert regime(at)["omit_classes"] == [3]
    widget(at, "selectbox", "data.dataset").set_value("mfh-gauss").run()
    ok(at)
    assert at.session_state["spec"]["data"]["dataset"] == "mfh-gauss" and regime(at)["omit_classes"] == []
    assert any("dropped omitted classes 3" in i.value for i in at.info)
    assert not at.error


def test_custom_data_takes_omitted_classes_as_text(open_page, tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog", "eel"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(tmp_path / "imgs" / label / f"{i}.png")
    at = open_page()
    widget(at, "selectbox", "data.dataset").set_value("custom").run()
    widget(at, "text_input", "data.path").set_value(str(tmp_path / "imgs")).run()
    ok(at)
    assert at.session_state["spec"]["data"]["dataset"] == "custom"
    box = widget(at, "text_input", "data.regime.omit_classes")
    box.set_value("1, x").run()
    assert any("data.regime.omit_classes" in e.value and "'x'" in e.value for e in at.error)
    widget(at, "text_input", "data.regime.omit_classes").set_value("1").run()
    ok(at)
    assert not at.error and regime(at)["omit_classes"] == [1]
