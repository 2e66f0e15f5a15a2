"""AppTest tests for the tree student in the app: the Setup page's student-kind radio and tree knobs
(values reach the spec, out-of-range and image-modality input name the field), the Train page's
boosting-round axis and result table for a tree job."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from kdcore.presets import load_preset
from kdcore.store.recorder import RunRecorder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def open_page(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("KDLAB_FAST", raising=False)
    monkeypatch.delenv("KDLAB_MAX_JOBS", raising=False)
    st.cache_resource.clear()

    def _open(page: str, spec=None) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.switch_page(page)
        if spec is not None:
            at.session_state["spec"] = spec.to_dict()
        return at.run()

    yield _open
    from ui.state import get_manager

    get_manager().stop_all(wait=120)
    st.cache_resource.clear()


def widget(at: AppTest, kind: str, path: str):
    found = [w for w in getattr(at, kind) if (w.key or "").split("@")[0] == path]
    assert found, f"no {kind} for {path}"
    return found[0]


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_tree_widgets_show_the_preset_and_change_the_spec(open_page):
    at = open_page("pages/1_Setup.py", load_preset("tree-student"))
    no_exception(at)
    assert widget(at, "radio", "student.kind").value == "tree"
    rounds = widget(at, "number_input", "student.tree.rounds")
    assert rounds.value == 300
    assert "1 to 5000" in (rounds.help or "")
    assert not any((w.key or "").startswith("student.fusion") for w in at.selectbox)  # network widgets hidden
    assert any("tree ensemble" in str(m.value) for m in at.metric)
    rounds.set_value(40).run()
    widget(at, "number_input", "student.tree.num_leaves").set_value(7).run()
    no_exception(at)
    spec = at.session_state["spec"]
    assert spec["student"]["kind"] == "tree"
    assert spec["student"]["tree"]["rounds"] == 40 and spec["student"]["tree"]["num_leaves"] == 7
    assert not errors(at)


def test_out_of_range_tree_value_names_the_field(open_page):
    at = open_page("pages/1_Setup.py", load_preset("tree-student"))
    widget(at, "number_input", "student.tree.learning_rate").set_value(3.0).run()
    no_exception(at)
    assert any("student.tree.learning_rate" in e for e in errors(at)), errors(at)


def test_tree_kind_on_an_image_modality_names_the_field(open_page):
    at = open_page("pages/1_Setup.py", load_preset("digits-av"))
    widget(at, "radio", "student.kind").set_value("tree").run()
    no_exception(at)
    assert any("vector modalities only" in w.value for w in at.warning)
    msgs = errors(at)
    assert any(e.startswith("student.kind=tree: modality") for e in msgs), msgs
    assert widget(at, "button", "setup-run").disabled


def _titles(at: AppTest) -> dict[str, dict]:
    out = {}
    for c in at.get("plotly_chart"):
        lay = json.loads(c.proto.spec)["layout"]
        out[lay.get("title", {}).get("text", "")] = lay
    return out


def test_train_page_shows_boosting_rounds_and_the_tree_result(open_page):
    spec = load_preset("tree-student").with_overrides([
        "name=tree-ui", "train.teacher_epochs=1", "student.tree.rounds=8", "student.tree.early_stopping=0"])
    at = open_page("pages/2_Train.py", spec)
    at.button(key="train-run-current").click().run()
    deadline = time.time() + 600
    while time.time() < deadline and not len(at.dataframe):
        time.sleep(0.5)
        at.run()
        no_exception(at)
    assert len(at.dataframe), "the result table never appeared"
    lay = _titles(at)
    assert "boosting round" in lay["Accuracy per epoch"]["xaxis"]["title"]["text"]
    assert "boosting round" in lay["Loss terms per step"]["xaxis"]["title"]["text"]
    df = at.dataframe[0].value
    assert list(df["phase"]) == ["teacher", "baseline", "kd"]


def test_compare_page_lists_a_tree_run_and_explains_onnx(open_page, tmp_path):
    from kdcore.pipeline.experiment import Experiment

    spec = load_preset("tree-student").with_overrides([
        "name=tree-cmp", "train.teacher_epochs=1", "student.tree.rounds=6", "student.tree.early_stopping=0"])
    res = Experiment(spec, callbacks=[RunRecorder(tmp_path / "runs")]).run()
    assert res.status == "finished", res.message
    at = open_page("pages/5_Compare.py")
    no_exception(at)
    df = at.dataframe[0].value
    assert "tree-cmp" in " ".join(map(str, df["name"]))
    at.toggle(key="cmp-onnx").set_value(True).run()
    no_exception(at)
    assert any("ONNX export of tree students is not supported" in e for e in errors(at)), errors(at)


def test_attributions_page_explains_a_tree_run(open_page, tmp_path):
    from kdcore.pipeline.experiment import Experiment

    spec = load_preset("tree-student").with_overrides([
        "name=tree-attr", "train.teacher_epochs=1", "student.tree.rounds=6", "student.tree.early_stopping=0"])
    assert Experiment(spec, callbacks=[RunRecorder(tmp_path / "runs")]).run().status == "finished"
    at = open_page("pages/7_Attributions.py")
    no_exception(at)
    no_exception(at)
    tables = [d.value for d in at.dataframe if "student" in d.value.columns]
    assert tables, "no agreement table"
    table = tables[0]
    assert set(table["student"]) == {"baseline", "kd"}
    assert any("pred_contrib" in c.value for c in at.caption), [c.value for c in at.caption]
