"""AppTest for the Explore page: opens without exception, a suggested sweep runs to completion as a
sweep job and shows the chart and the verdict table, bad input names the field, the URL round trip."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from kdcore.pipeline.grid import point_spec
from kdcore.presets import load_preset
from ui.explore import (
    NONE,
    check_grid,
    knobs_for,
    parse_values,
    suggested_sweeps,
    sweep_from_query,
    sweep_to_query,
)

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/9_Explore.py"
TIMEOUT = 600


@pytest.fixture
def open_page(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("KDLAB_FAST", raising=False)
    monkeypatch.delenv("KDLAB_MAX_JOBS", raising=False)
    st.cache_resource.clear()

    def _open(query: dict | None = None) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.switch_page(PAGE)
        for k, v in (query or {}).items():
            at.query_params[k] = v
        return at

    yield _open
    from ui.state import get_manager

    get_manager().stop_all(wait=120)
    st.cache_resource.clear()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_page_opens_with_suggestions_and_a_valid_default(open_page):
    at = open_page().run()
    no_exception(at)
    assert any(t.value == "Explore a setting over seeds" for t in at.title)
    labels = [b.label for b in at.button]
    assert "Suggested: gain vs γ" in labels and "Suggested: gain vs temperature" in labels
    assert at.selectbox(key="ex-knob1").value == "distill.temperature"
    assert at.text_input(key="ex-values1").value == "1, 2, 4, 8"
    assert not at.error and not at.button(key="ex-run").disabled
    assert at.query_params["base"] == ["current"] or at.query_params["base"] == "current"


def test_suggested_gamma_sweep_runs_to_completion_with_chart_and_verdicts(open_page):
    at = open_page().run()
    at.button(key="ex-suggest-mfh-gamma").click().run()
    no_exception(at)
    assert at.radio(key="ex-source").value == "a preset" and at.selectbox(key="ex-preset").value == "mfh-gamma"
    assert at.selectbox(key="ex-knob1").value == "data.noise.gamma"
    assert at.text_input(key="ex-values1").value == "0, 0.33, 0.67, 1"
    assert at.number_input(key="ex-seeds").value == 5
    at.number_input(key="ex-te").set_value(2).run()  # shorter training through the page
    at.number_input(key="ex-se").set_value(2).run()
    no_exception(at)
    assert not at.error
    assert at.checkbox(key="ex-together").value is False  # seed by seed: the chart fills in as seeds finish
    at.checkbox(key="ex-together").check().run()  # here: every seed's teachers and students stacked at once
    at.button(key="ex-run").click().run()
    no_exception(at)
    from ui.state import get_manager

    sweeps = get_manager().jobs(kind="sweep")
    assert len(sweeps) == 1 and get_manager().jobs() == []
    job = sweeps[0]
    assert job.spec.train.teacher_epochs == 2 and job.spec.train.student_epochs == 2 and job.total == 20
    assert job.stack_seeds is True
    assert job.wait(TIMEOUT), "the sweep did not finish"
    at.run()
    no_exception(at)
    snap = job.snapshot()
    assert snap.status == "finished", snap.message
    assert any("status: **finished**" in m.value for m in at.markdown)
    specs = plotly_specs(at)
    gain = next(s for s in specs if s["layout"]["title"]["text"].startswith("KD gain vs"))
    assert gain["data"][0]["x"] == [0, 0.33, 0.67, 1]
    assert len(gain["data"][0]["error_y"]["array"]) == 4
    titles = [s["layout"]["title"]["text"] for s in specs]
    assert any(t.startswith("Test accuracy vs") for t in titles)
    assert any(t.startswith("Agreement with the teacher vs") for t in titles)
    table = at.dataframe[0].value
    assert len(table) == 4 and "verdict" in table.columns and set(table["seeds"]) == {5}
    # γ changes the data, so every grid point × seed has its own teacher: 20 teachers in one stack
    assert any("teachers: stacked: 20 students" in n for n in snap.result["stacked"]), snap.result["stacked"]
    assert at.get("download_button")
    # the URL holds the whole sweep
    q = {k: at.query_params[k] for k in at.query_params}
    flat = {k: (v[0] if isinstance(v, list) else v) for k, v in q.items()}
    assert flat["base"] == "mfh-gamma" and flat["knob1"] == "data.noise.gamma" and flat["seeds"] == "5"
    assert flat["values1"] == "0, 0.33, 0.67, 1" and flat["te"] == "2" and flat["se"] == "2"


def test_bad_values_name_the_field(open_page):
    at = open_page().run()
    at.button(key="ex-suggest-mfh-gamma").click().run()
    at.text_input(key="ex-values1").set_value("0, 3").run()
    no_exception(at)
    msgs = [e.value for e in at.error]
    assert any("data.noise.gamma" in m and "[0, 1]" in m for m in msgs), msgs
    assert at.button(key="ex-run").disabled
    at.text_input(key="ex-values1").set_value("").run()
    assert any("data.noise.gamma" in e.value and "give the values" in e.value for e in at.error)
    at.text_input(key="ex-values1").set_value("0, x").run()
    assert any("data.noise.gamma" in e.value and "not a number" in e.value for e in at.error)
    # a grid point the spec rejects: the SpecError text
    at.selectbox(key="ex-preset").set_value("noisy-teacher").run()
    at.selectbox(key="ex-knob1").set_value("data.regime.teacher_label_noise").run()
    at.text_input(key="ex-values1").set_value("0, 0.3").run()
    no_exception(at)
    assert any("teacher_noise_pairs needs teacher_label_noise > 0" in e.value for e in at.error)
    # few seeds: said in plain words
    at.text_input(key="ex-values1").set_value("0.1, 0.3").run()
    at.number_input(key="ex-seeds").set_value(2).run()
    assert not at.error
    assert any("not evidence" in w.value for w in at.warning)


def test_a_link_reopens_the_sweep(open_page):
    query = {"base": "few-labels", "knob1": "data.regime.labels_per_class", "values1": "2, 5",
             "knob2": "distill.temperature", "values2": "1, 4", "seeds": "4", "te": "3"}
    at = open_page(query).run()
    no_exception(at)
    assert at.radio(key="ex-source").value == "a preset" and at.selectbox(key="ex-preset").value == "few-labels"
    assert at.selectbox(key="ex-knob1").value == "data.regime.labels_per_class"
    assert at.text_input(key="ex-values1").value == "2, 5"
    assert at.selectbox(key="ex-knob2").value == "distill.temperature"
    assert at.text_input(key="ex-values2").value == "1, 4"
    assert at.number_input(key="ex-seeds").value == 4 and at.number_input(key="ex-te").value == 3
    assert not at.error
    odd = open_page({"base": "multiview-kd", "knob1": "data.noise.gamma", "values1": "0, 1"}).run()
    no_exception(odd)
    assert any("data.noise.gamma cannot be swept" in w.value for w in odd.warning)
    assert odd.selectbox(key="ex-knob1").value == "distill.temperature" and not odd.error
    bad = open_page({"base": "nope", "knob1": "x"}).run()
    no_exception(bad)
    assert any("base" in w.value and "nope" in w.value for w in bad.warning)
    # the current setup travels whole in the link
    cur = open_page({"base": "current", "knob1": "distill.temperature", "values1": "1, 2", "seeds": "3",
                     "setup": json.dumps({"preset": "digits-av", "train.student_epochs": "7"})}).run()
    no_exception(cur)
    assert cur.session_state["spec"]["train"]["student_epochs"] == 7
    assert cur.radio(key="ex-source").value == "current setup"


def test_url_round_trip_unit():
    sel = {"base": "current", "knob1": "distill.temperature", "values1": "1, 2, 4", "knob2": "student.encoder.width",
           "values2": "4, 8", "seeds": 3, "te": None, "se": 5}
    q = sweep_to_query(sel, {"preset": "digits-av", "train.lr": "0.01"})
    assert "te" not in q and q["se"] == "5"
    back, spec, base = sweep_from_query(q)
    assert {k: back[k] for k in ("base", "knob1", "values1", "knob2", "values2", "seeds", "se")} == \
        {k: sel[k] for k in ("base", "knob1", "values1", "knob2", "values2", "seeds", "se")}
    assert base == "digits-av" and spec.train.lr == 0.01
    one = sweep_from_query(sweep_to_query({**sel, "base": "mfh-gamma", "knob2": NONE}))[0]
    assert one["knob2"] == NONE and "setup" not in sweep_to_query({**sel, "base": "mfh-gamma"})
    with pytest.raises(ValueError, match="seeds"):
        sweep_from_query({"base": "mfh-gamma", "seeds": "11"})


def test_knobs_values_and_suggestions_are_valid():
    gauss = knobs_for(load_preset("mfh-gamma"))
    assert "data.noise.gamma" in gauss and "data.noise.samples" not in gauss
    mfeat = knobs_for(load_preset("multiview-kd"))
    assert "data.noise.gamma" not in mfeat and "distill.temperature" in mfeat
    av = knobs_for(load_preset("digits-av"))
    assert "data.noise.audio_snr_db" in av
    assert parse_values("1, 2, 4", mfeat["student.encoder.width"]) == [1, 2, 4]
    with pytest.raises(ValueError, match="student.encoder.width.*whole"):
        parse_values("1.5", mfeat["student.encoder.width"])
    with pytest.raises(ValueError, match=r"distill.temperature=0 is outside the allowed range \(0, 100\]"):
        parse_values("0", mfeat["distill.temperature"])
    # every suggested sweep is a valid grid of its preset
    names = {p for p, _ in suggested_sweeps()}
    assert {"mfh-gamma", "few-labels", "multiview-kd", "noisy-teacher"} <= names
    for preset, sw in suggested_sweeps():
        base = load_preset(preset)
        assert check_grid(base, sw["vary"]) == [], preset
        for field in sw["vary"]:
            assert field in knobs_for(base), (preset, field)
        point_spec(base, {k: v[0] for k, v in sw["vary"].items()}, 0)


def test_the_form_survives_a_visit_to_another_page(open_page):
    at = open_page().run()
    at.text_input(key="ex-values1").set_value("1, 3").run()
    at.number_input(key="ex-seeds").set_value(4).run()
    at.switch_page("pages/1_Setup.py").run()
    no_exception(at)
    at.switch_page(PAGE).run()
    no_exception(at)
    assert at.text_input(key="ex-values1").value == "1, 3" and at.number_input(key="ex-seeds").value == 4
