"""AppTests for the lessons (issue 11 §5, issue 10's Compare defects): the home gallery grouped by
lesson; the Train page after a finished omitted-digit run (what to look at, the new metric columns,
the omitted-class and per-class charts, an honest verdict, with and without a stored multi-seed
result); Compare with the KD gain and the differing settings first; the seed group's verdict."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pytest
import streamlit as st
import yaml
from streamlit.testing.v1 import AppTest

import kdcore.presets as presets
from kdcore.presets import DEFAULT_PRESET, PRESETS, lessons, load_preset
from kdcore.store.recorder import RunRecorder

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600


@pytest.fixture
def open_page(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("KDLAB_FAST", raising=False)
    monkeypatch.delenv("KDLAB_MAX_JOBS", raising=False)
    # no stored multi-seed results unless a test writes them
    monkeypatch.setattr(presets, "MEASURED_FILE", tmp_path / "measured.json")
    st.cache_resource.clear()

    def _open(page: str | None = None) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        if page:
            at.switch_page(page)
        return at

    yield _open
    from ui.state import get_manager

    get_manager().stop_all(wait=120)
    st.cache_resource.clear()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def chart_titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]


def chart(at: AppTest, title: str) -> dict:
    for c in at.get("plotly_chart"):
        spec = json.loads(c.proto.spec)
        if title in spec["layout"].get("title", {}).get("text", ""):
            return spec
    raise AssertionError(f"no chart titled {title!r}: {chart_titles(at)}")


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [i.value for i in at.info] + [c.value for c in at.caption])


def displayed(df_element) -> pd.DataFrame:
    """What the table shows: the Styler's display values when styled, else the data."""
    arrow = df_element.proto.arrow_data
    if arrow.styler.display_values:
        return pa.ipc.open_stream(io.BytesIO(arrow.styler.display_values)).read_all().to_pandas()
    return df_element.value


# ---- home -----------------------------------------------------------------------------------
def test_home_gallery_is_grouped_by_lesson(open_page, tmp_path):
    (tmp_path / "measured.json").write_text(json.dumps({
        "omitted-digit": {"preset": "omitted-digit", "overrides": [], "seeds": 5, "verdict": "KD helps",
                          "kd_gain": {"mean": 10.7, "std": 1.2, "n": 5, "per_seed": [9, 10, 11, 11.5, 12]},
                          "metrics": {"baseline.omitted_acc": {"mean": 0.0, "std": 0.0},
                                      "kd.omitted_acc": {"mean": 0.86, "std": 0.03}}},
        "omitted-digit · no 3s in transfer": {"preset": "omitted-digit", "overrides": ["x"], "seeds": 5,
                                              "verdict": "within noise",
                                              "kd_gain": {"mean": 0.4, "std": 1.0, "n": 5}}}))
    at = open_page().run()
    no_exception(at)
    heads = [h.value for h in at.subheader]
    groups = ["KD helps", "KD hurts", "Why (and when it does not)", "Methods"]
    assert all(g in heads for g in groups), heads
    assert [h for h in heads if h in groups] == groups  # in this order
    # each preset once, under its group
    les = lessons()
    # group headings and card titles in page order
    order = [e.value if e.type == "subheader" else e.value[5:] for e in at.main
             if e.type == "subheader" or (e.type == "markdown" and e.value.startswith("#### "))]
    for name in PRESETS:
        assert order.count(name) == 1, name
        group = {"helps": "KD helps", "hurts": "KD hurts", "why": "Why (and when it does not)"}.get(
            (les.get(name) or {}).get("group"), "Methods")
        before = [h for h in order[:order.index(name)] if h in groups]
        assert before[-1] == group, (name, before)
    page = texts(at)
    assert les["omitted-digit"]["claim"] in page
    assert "over 5 seeds: +10.7 ± 1.2 points — KD helps; omitted class: baseline 0 % → KD 86 %" in page
    assert "no 3s in transfer* over 5 seeds: +0.4 ± 1.0 points — within noise" in page
    assert "Not measured over seeds yet" in page  # the presets the sweep has not stored
    labels = [b.label for b in at.button]
    assert labels.count("▶ Run") == len(PRESETS) and labels.count("Load in Setup") == len(PRESETS)
    assert any(label.startswith("▶ Run the default preset") for label in labels)


def test_home_lecture_mode_folds_the_details(open_page):
    at = open_page().run()
    no_exception(at)
    assert not at.expander, "outside lecture mode the details are on the cards"
    at.sidebar.toggle(key="lecture_mode-toggle").set_value(True).run()
    no_exception(at)
    assert at.session_state["lecture_mode"] is True
    assert len(at.expander) >= len(PRESETS)
    details = "\n".join(c.value for e in at.expander for c in e.caption)
    assert "dataset **mfeat**" in details
    assert load_preset("omitted-digit").description.strip()[:40] in "\n".join(
        m.value for e in at.expander for m in e.markdown)


# ---- train ----------------------------------------------------------------------------------
def test_train_after_an_omitted_digit_run_shows_the_lesson(open_page, monkeypatch, tmp_path):
    monkeypatch.setenv("KDLAB_FAST", "1")  # the shrunken preset (ui.state.FAST_OVERRIDES), name unchanged
    at = open_page().run()
    at.button(key="run-omitted-digit").click().run()
    no_exception(at)
    assert any(t.value == "Train" for t in at.title)
    look_at = lessons()["omitted-digit"]["look_at"]
    assert any(look_at in i.value for i in at.info), "what to look at is shown while it runs"
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and not (len(at.dataframe) and "Per-class test accuracy" in chart_titles(at)):
        time.sleep(1.0)
        at.run()
        no_exception(at)
    assert len(at.dataframe), "the result table never appeared"
    assert any(look_at in i.value for i in at.info) and any(lessons()["omitted-digit"]["claim"] in i.value
                                                            for i in at.info)
    df = at.dataframe[0].value
    assert list(df["phase"]) == ["teacher", "baseline", "kd"]
    for col in ("agreement with teacher (%)", "KL(teacher‖student)", "ECE", "omitted-class acc (%)",
                "omitted-class acc, bias-corrected (%)", "fitted bias"):
        assert col in df.columns, col
    cells = [str(v) for v in df.to_numpy().ravel()]
    assert "None" not in cells and "nan" not in cells
    # the two charts: omitted-class accuracy (baseline vs KD, before / after correction) and per class
    om = chart(at, "Accuracy on the omitted classes")
    assert [t["name"] for t in om["data"]] == ["baseline (no KD)", "KD student"]
    assert any("bias" in s for t in om["data"] for s in t["text"])
    # the chart shows the table's numbers (2 epochs on 150 samples: the values themselves mean little)
    assert om["data"][0]["y"][0] == pytest.approx(float(df["omitted-class acc (%)"].iloc[1]), abs=0.01)
    assert om["data"][1]["y"][1] == pytest.approx(float(df["omitted-class acc, bias-corrected (%)"].iloc[2]),
                                                  abs=0.01)
    pc = chart(at, "Per-class test accuracy")
    assert len(pc["data"]) == 3 and len(pc["data"][0]["x"]) == 10
    verdict = [m.value for m in at.markdown if m.value.startswith("**Verdict:**")]
    assert verdict and "One seed is not evidence" in verdict[0] and "Repeat this experiment over 3 seeds" in verdict[0]
    assert "python -m kdcore" not in verdict[0]
    assert any(b.key == "train-seeds" for b in at.button)
    # with a stored multi-seed result of exactly these settings, the verdict shows it beside the run
    from ui.state import FAST_OVERRIDES

    (tmp_path / "measured.json").write_text(json.dumps({"omitted-digit · fast": {
        "preset": "omitted-digit", "overrides": FAST_OVERRIDES, "seeds": 3, "verdict": "KD helps",
        "kd_gain": {"mean": 10.7, "std": 1.2, "n": 3, "per_seed": [9.5, 10.7, 11.9]}}}))
    at.run()
    no_exception(at)
    verdict = [m.value for m in at.markdown if m.value.startswith("**Verdict:**")]
    assert "measured over seeds: KD helps: +10.7 ± 1.2 points over 3 seeds" in verdict[0]
    assert "One seed is not evidence" not in verdict[0]


def test_seed_group_summary_uses_the_two_std_verdict():
    from ui.seeds import base_preset_of, seed_group_summary

    def snap(seed, kd, status="finished"):
        ph = {"teacher": {"test_acc": 0.9}, "baseline": {"test_acc": 0.5}, "kd": {"test_acc": kd, "agreement": 0.8}}
        return SimpleNamespace(spec=SimpleNamespace(data=SimpleNamespace(seed=seed)), state_label=status,
                               status=status, done=True, result={"status": status, "phases": ph})

    snaps = {"a": snap(0, 0.60), "b": snap(1, 0.61), "c": snap(2, 0.59)}
    manager = SimpleNamespace(get=lambda i: SimpleNamespace(snapshot=lambda: snaps[i]))
    g = seed_group_summary(manager, list(snaps))
    assert g["done"] and g["n"] == 3
    assert g["verdict"].startswith("KD helps: +10.0 ± 1.0 points over 3 seeds")
    assert list(g["table"]["KD gain (points)"]) == pytest.approx([10.0, 11.0, 9.0])
    two = seed_group_summary(manager, ["a", "b"])
    assert "fewer than 3 seeds are not evidence" in two["verdict"]
    spec = load_preset("digits-av")
    assert base_preset_of(spec) == "digits-av"
    assert base_preset_of(spec.with_overrides(["name=digits-av · width 8"])) == "digits-av"
    assert base_preset_of(spec.with_overrides(["name=few-labels-seed2"])) == "few-labels"
    assert base_preset_of(spec.with_overrides(["name=my own run"])) is None


# ---- compare --------------------------------------------------------------------------------
def _run_folder(root: Path, name: str, spec: dict, phases: dict) -> None:
    d = root / f"2026-{name}"
    d.mkdir(parents=True)
    (d / "spec.yaml").write_text(yaml.safe_dump(spec))
    (d / "metrics.jsonl").write_text("")
    gain = phases["kd"]["test_acc"] - phases["baseline"]["test_acc"]
    (d / "result.json").write_text(json.dumps({"status": "finished", "phases": phases, "kd_gain": gain}))


def test_compare_shows_the_gain_and_the_differing_settings_first(open_page, tmp_path):
    root = tmp_path / "runs"
    base = load_preset(DEFAULT_PRESET).to_dict()
    a = json.loads(json.dumps(base))
    a["name"], a["data"]["seed"], a["train"]["lr"] = "run a", 0, 0.001
    a["distill"]["losses"]["fitnet"] = {"weight": 0.1, "params": {}}
    b = json.loads(json.dumps(base))
    b["name"], b["data"]["seed"], b["train"]["lr"] = "run b", 1, 0.003
    b["distill"]["losses"]["fitnet"] = {"weight": 0.1, "params": None}
    _run_folder(root, "a", a, {"teacher": {"test_acc": 0.9}, "baseline": {"test_acc": 0.5, "agreement": 0.6},
                               "kd": {"test_acc": 0.6, "agreement": 0.8, "ece": 0.05, "omitted_acc": 0.7}})
    _run_folder(root, "b", b, {"teacher": {"test_acc": 0.9}, "baseline": {"test_acc": 0.5},
                               "kd": {"test_acc": 0.45}})
    at = open_page("pages/5_Compare.py").run()
    no_exception(at)
    df = at.dataframe[0].value
    cols = list(df.columns)
    assert cols[:5] == ["run", "name", "status", "data.seed", "train.lr"], cols
    assert not any("fitnet" in c for c in cols), "{} and None are the same: no difference to show"
    assert cols.index("KD gain (points)") == 5
    rows = df.set_index("name")
    assert rows.loc["run a", "KD gain (points)"] == pytest.approx(10.0)
    assert rows.loc["run b", "KD gain (points)"] == pytest.approx(-5.0)
    for col in ("kd agreement with teacher (%)", "kd ECE", "kd omitted-class acc (%)"):
        assert col in cols, col
    assert rows.loc["run a", "kd agreement with teacher (%)"] == pytest.approx(80.0)
    shown = displayed(at.dataframe[0])
    cells = [str(v) for v in shown.to_numpy().ravel()]
    assert "None" not in cells and "nan" not in cells and "–" in cells


def test_compare_onnx_download_of_a_real_run_and_a_clear_error_without_checkpoints(open_page, tmp_path):
    from kdcore.pipeline.experiment import Experiment

    root = tmp_path / "runs"
    spec = load_preset(DEFAULT_PRESET).with_overrides(["train.teacher_epochs=1", "train.student_epochs=1",
                                                       "name=onnx-run"])
    assert Experiment(spec, callbacks=[RunRecorder(root)]).run().status == "finished"
    at = open_page("pages/5_Compare.py").run()
    no_exception(at)
    at.toggle(key="cmp-onnx").set_value(True).run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert at.get("download_button"), "a parity-checked ONNX zip to download"
    # a run folder without checkpoints: one clear line, no traceback
    empty = load_preset(DEFAULT_PRESET).to_dict()
    empty["name"] = "no checkpoints"
    _run_folder(root, "zzzz-empty", empty, {"teacher": {"test_acc": 0.9}, "baseline": {"test_acc": 0.5},
                                            "kd": {"test_acc": 0.6}})
    at = open_page("pages/5_Compare.py").run()
    at.toggle(key="cmp-onnx").set_value(True).run()
    no_exception(at)
