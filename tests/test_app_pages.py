"""AppTest tests for the home, Setup, Temperature explorer, Methods and Compare pages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from kdcore.methods.losses import LOSSES
from kdcore.presets import DEFAULT_PRESET, PRESETS, load_preset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def open_page(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("KDLAB_FAST", raising=False)
    monkeypatch.delenv("KDLAB_MAX_JOBS", raising=False)
    st.cache_resource.clear()

    def _open(page: str | None = None, spec=None, query: dict | None = None) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        if page:
            at.switch_page(page)
        if spec is not None:
            at.session_state["spec"] = spec.to_dict()
        for k, v in (query or {}).items():
            at.query_params[k] = v
        return at

    yield _open
    from ui.state import get_manager

    get_manager().stop_all(wait=120)
    st.cache_resource.clear()


def widget(at: AppTest, kind: str, path: str):
    """The Setup widget for spec field ``path`` (keys are ``path@version``)."""
    found = [w for w in getattr(at, kind) if (w.key or "").split("@")[0] == path]
    assert found, f"no {kind} for {path}"
    return found[-1]


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# ---- home ------------------------------------------------------------------------------------
def test_home_loads_with_gallery_figure_and_links(open_page):
    at = open_page().run()
    no_exception(at)
    labels = [b.label for b in at.button]
    assert labels.count("Load in Setup") == len(PRESETS) and labels.count("▶ Run") == len(PRESETS)
    assert any(label.startswith("▶ Run the default preset") for label in labels)
    assert plotly_specs(at), "the home page shows a figure"
    links = {pl.proto.page for pl in at.get("page_link")}
    for page in sorted((ROOT / "pages").glob("*.py")):
        assert page.stem.split("_", 1)[1] in links, page.name


def test_navigation_starts_with_home_and_keeps_every_pages_url(open_page):
    """The sidebar's first entry is the home page (titled, not "app"), and every page file keeps the URL
    path of its name (pages/2_Train.py → /Train), which links, bookmarks and the browser tests use."""
    at = open_page().run()
    no_exception(at)
    pages = list(at._registered_pages.values())  # what st.navigation registered, in sidebar order
    assert pages, "app.py registers its pages with st.navigation"
    assert pages[0]["page_name"] == "Home" and pages[0]["url_pathname"] == "" and not pages[0]["script_path"]
    assert "app" not in [p["page_name"].strip().lower() for p in pages]
    urls = {Path(p["script_path"]).name: p["url_pathname"] for p in pages[1:]}
    assert urls == {f.name: f.stem.split("_", 1)[1] for f in sorted((ROOT / "pages").glob("*.py"))}
    at.switch_page("pages/3_Temperature_explorer.py").run()  # a page by its file, as the other tests open them
    no_exception(at)
    assert any(t.value.startswith("Temperature") for t in at.title), [t.value for t in at.title]


def test_home_load_preset_goes_to_setup(open_page):
    at = open_page().run()
    at.button(key="load-mfeat-crossmodal").click().run()
    no_exception(at)
    assert at.session_state["spec"]["data"]["dataset"] == "mfeat"
    assert any(t.value == "Setup" for t in at.title)


def test_home_runs_the_default_preset_in_one_click(open_page, monkeypatch):
    monkeypatch.setenv("KDLAB_FAST", "1")
    at = open_page().run()
    at.button(key="run-default").click().run()
    no_exception(at)
    assert any(t.value == "Train" for t in at.title)
    from ui.state import get_manager

    jobs = get_manager().jobs()
    assert len(jobs) == 1 and jobs[0].spec.name == DEFAULT_PRESET
    assert at.session_state["job_id"] == jobs[0].id
    assert at.get("progress"), "the Train page shows the job's progress"


# ---- setup -----------------------------------------------------------------------------------
def test_setup_changing_a_setting_changes_the_spec_and_the_url(open_page):
    at = open_page("pages/1_Setup.py").run()
    no_exception(at)
    assert at.session_state["spec"]["train"]["student_epochs"] == load_preset(DEFAULT_PRESET).train.student_epochs
    widget(at, "number_input", "train.student_epochs").set_value(7).run()
    no_exception(at)
    assert at.session_state["spec"]["train"]["student_epochs"] == 7
    assert at.query_params["train.student_epochs"] == "7"
    assert at.query_params["preset"] == DEFAULT_PRESET
    widget(at, "slider", "distill.temperature").set_value(2.5).run()
    assert at.session_state["spec"]["distill"]["temperature"] == 2.5
    widget(at, "multiselect", "student.modalities").set_value(["fou"]).run()
    no_exception(at)
    assert at.session_state["spec"]["student"]["modalities"] == ["fou"]
    assert json.loads(at.query_params["student.modalities"]) == ["fou"]


def test_setup_ensemble_precision_and_compile_widgets(open_page):
    at = open_page("pages/1_Setup.py", spec=load_preset("multi-teacher")).run()
    no_exception(at)
    assert widget(at, "checkbox", "distill.ensemble.on").value is True
    assert widget(at, "multiselect", "distill.ensemble.members").value == ["fou", "fac", "kar", "pix", "zer", "mor"]
    assert widget(at, "selectbox", "distill.ensemble.combine").value == "confidence"
    widget(at, "multiselect", "distill.ensemble.members").set_value(["fou", "kar"]).run()
    widget(at, "selectbox", "distill.ensemble.combine").set_value("mean").run()
    no_exception(at)
    assert at.session_state["spec"]["distill"]["ensemble"] == {"members": [["fou"], ["kar"]], "combine": "mean",
                                                               "include_main": True}
    widget(at, "checkbox", "distill.ensemble.on").uncheck().run()
    assert at.session_state["spec"]["distill"]["ensemble"] is None
    widget(at, "selectbox", "train.precision").set_value("bf16").run()
    widget(at, "checkbox", "train.compile").check().run()
    no_exception(at)
    assert at.session_state["spec"]["train"]["precision"] == "bf16" and at.session_state["spec"]["train"]["compile"]


def test_setup_shows_parameter_counts_live(open_page):
    at = open_page("pages/1_Setup.py").run()
    before = {m.label: m.value for m in at.metric}
    widget(at, "number_input", "student.feature_dim").set_value(64).run()
    after = {m.label: m.value for m in at.metric}
    assert before["teacher parameters"] == after["teacher parameters"]
    assert int(after["student parameters"].replace(",", "")) > int(before["student parameters"].replace(",", ""))


def test_setup_inline_validation_names_the_field(open_page):
    at = open_page("pages/1_Setup.py").run()
    widget(at, "number_input", "data.train_fraction").set_value(0.8).run()
    widget(at, "number_input", "data.val_fraction").set_value(0.3).run()
    no_exception(at)
    msgs = [e.value for e in at.error]
    assert any("train_fraction + val_fraction must be < 1" in m for m in msgs), msgs
    assert at.session_state["spec"]["data"]["train_fraction"] == 0.6  # the last valid spec stays current
    assert at.button(key="setup-run").disabled
    widget(at, "number_input", "data.val_fraction").set_value(0.15).run()
    assert not at.error and at.session_state["spec"]["data"]["train_fraction"] == 0.8
    # bad loss parameters: the message names the field
    widget(at, "text_input", "distill.losses.kd.params").set_value("[1, 2]").run()
    assert any("distill.losses.kd.params" in e.value for e in at.error)
    widget(at, "text_input", "distill.losses.kd.params").set_value('{"bogus": 1}').run()
    no_exception(at)
    assert any("bogus" in e.value for e in at.error)


def test_setup_link_reproduces_the_setup(open_page):
    at = open_page("pages/1_Setup.py", query={"preset": "classic-kd", "train.student_epochs": "3",
                                              "distill.temperature": "2.0", "name": '"shared"'}).run()
    no_exception(at)
    spec = at.session_state["spec"]
    assert spec["data"]["dataset"] == "mnist-5k" and spec["train"]["student_epochs"] == 3
    assert spec["distill"]["temperature"] == 2.0 and spec["name"] == "shared"
    assert widget(at, "slider", "distill.temperature").value == 2.0
    bad = open_page("pages/1_Setup.py", query={"preset": "digits-av", "train.nope": "1"}).run()
    no_exception(bad)
    assert any("train.nope" in w.value for w in bad.warning)


def test_url_round_trip_unit():
    from ui.state import spec_from_query, spec_to_query

    spec = load_preset("digits-crossmodal").with_overrides([
        "train.lr=0.01", "distill.losses={kd: {weight: 1.0}}", "student.encoders.image.width=9", "name=x y"])
    q = spec_to_query(spec, "digits-crossmodal")
    assert q["preset"] == "digits-crossmodal" and "train.lr" in q and "data.dataset" not in q
    back, base = spec_from_query(q)
    assert back.to_dict() == spec.to_dict() and base == "digits-crossmodal"
    from kdcore.core.spec import SpecError

    with pytest.raises(SpecError, match="train.bogus"):
        spec_from_query({"preset": "digits-av", "train.bogus": "1"})
    with pytest.raises(SpecError, match="preset"):
        spec_from_query({"preset": "../etc"})


def test_setup_load_preset_and_change_dataset(open_page):
    at = open_page("pages/1_Setup.py").run()
    at.selectbox(key="setup-preset").set_value("mfeat-crossmodal")
    at.button(key="setup-load-preset").click().run()
    no_exception(at)
    assert at.session_state["spec"]["data"]["dataset"] == "mfeat"
    assert widget(at, "selectbox", "data.dataset").value == "mfeat"
    widget(at, "selectbox", "data.dataset").set_value("digits-av").run()
    no_exception(at)
    spec = at.session_state["spec"]
    assert spec["data"]["dataset"] == "digits-av" and spec["student"]["modalities"] is None
    assert {s.label for s in at.slider} >= {"image_sigma", "audio_snr_db", "text_corruption"}
    assert at.get("audio"), "the spectrogram preview comes with playback"


def test_setup_custom_dataset_takes_a_path_and_reads_its_modalities(open_page, tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(tmp_path / "imgs" / label / f"{i}.png")
    at = open_page("pages/1_Setup.py").run()
    widget(at, "selectbox", "data.dataset").set_value("custom").run()
    no_exception(at)  # no path yet: the page asks for one and names the field
    assert any("data.path is required" in e.value for e in at.error)
    widget(at, "text_input", "data.path").set_value(str(tmp_path / "nope")).run()
    no_exception(at)
    assert any("nope" in e.value for e in at.error)
    assert at.session_state["spec"]["data"]["dataset"] != "custom"  # the last valid spec is kept meanwhile
    widget(at, "text_input", "data.path").set_value(str(tmp_path / "imgs")).run()
    no_exception(at)
    spec = at.session_state["spec"]
    assert spec["data"]["dataset"] == "custom" and spec["data"]["path"] == str(tmp_path / "imgs")
    assert not at.error
    assert widget(at, "multiselect", "data.modalities").options == ["image (image)"]


def test_setup_yaml_preview_matches_spec(open_page):
    at = open_page("pages/1_Setup.py").run()
    yaml_block = [c.value for c in at.code if "distill:" in c.value]
    assert yaml_block
    from kdcore.core.spec import ExperimentSpec

    assert ExperimentSpec.from_yaml(yaml_block[0]).to_dict() == at.session_state["spec"]


# ---- temperature explorer -------------------------------------------------------------------
def test_temperature_explorer_works_without_runs(open_page):
    at = open_page("pages/3_Temperature_explorer.py").run()
    no_exception(at)
    assert at.selectbox(key="tx-source").value == "bundled explorer models"
    titles = [s["layout"].get("title", {}).get("text", "") for s in plotly_specs(at)]
    assert "Softmax at T = 4" in titles and "How T changes the KD signal" in titles
    assert len(at.get("latex")) >= 2 if at.get("latex") else any("\\mathrm{KL}" in m.value for m in at.markdown)
    kl_at_4 = {m.label: m.value for m in at.metric}["KD loss T²·KL"]
    at.slider(key="tx-T").set_value(8.0).run()
    no_exception(at)
    titles = [s["layout"].get("title", {}).get("text", "") for s in plotly_specs(at)]
    assert "Softmax at T = 8" in titles
    assert {m.label: m.value for m in at.metric}["KD loss T²·KL"] != kl_at_4
    at.slider(key="tx-sample").set_value(3).run()
    no_exception(at)


# ---- methods --------------------------------------------------------------------------------
def test_methods_lists_every_registered_method_and_loads_it(open_page):
    at = open_page("pages/4_Methods.py").run()
    no_exception(at)
    labels = " ".join(e.label for e in at.expander)
    for name in LOSSES:
        assert f"**{name}**" in labels, name
    # each method's parameters come from its Params model: default, allowed range or choices, meaning
    text = " ".join(m.value for m in at.markdown)
    assert "- `beta` (default `8.0` · allowed [0.0, 10000.0]) — β, weight of NCKD" in text
    assert "- `pairs` (default `depth` · one of `depth`, `last`)" in text
    assert "- `start` must be < `end`" in text
    spec = load_preset(DEFAULT_PRESET)
    extra = sorted(n for n in LOSSES if n not in spec.distill.losses)[0]
    at.button(key=f"m-loss-{extra}-use").click().run()
    no_exception(at)
    assert extra in at.session_state["spec"]["distill"]["losses"]
    assert any(t.value == "Setup" for t in at.title)


def test_methods_preset_button(open_page):
    at = open_page("pages/4_Methods.py").run()
    at.button(key="m-loss-kd-classic-kd").click().run()
    no_exception(at)
    assert at.session_state["spec"]["data"]["dataset"] == "mnist-5k"


# ---- compare --------------------------------------------------------------------------------
def _fake_run(root: Path, name: str, seed: int, kd: float) -> None:
    """A run folder in the documented format (spec.yaml, metrics.jsonl, result.json)."""
    spec = load_preset(DEFAULT_PRESET).with_overrides([f"name={name}", f"data.seed={seed}"])
    d = root / f"2026-{name}"
    d.mkdir(parents=True)
    spec.save(d / "spec.yaml")
    events = [{"kind": "EpochMetrics", "phase": p, "epoch": e, "train_loss": 1.0, "train_acc": 0.5,
               "val_loss": 1.0, "val_acc": acc * e / 2, "seconds": 1.0, "extra": {}}
              for p, acc in (("baseline", 0.5), ("kd", kd)) for e in (1, 2)]
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    phases = {"teacher": {"test_acc": 0.9, "val_acc": 0.9}, "baseline": {"test_acc": 0.5, "val_acc": 0.5},
              "kd": {"test_acc": kd, "val_acc": kd}}
    (d / "result.json").write_text(json.dumps({"status": "finished", "phases": phases, "kd_gain": kd - 0.5}))


def test_compare_empty_and_with_runs(open_page, tmp_path):
    at = open_page("pages/5_Compare.py").run()
    no_exception(at)
    assert any("No run folders" in i.value for i in at.info)
    root = tmp_path / "runs"
    _fake_run(root, "a", 0, 0.55)
    _fake_run(root, "b", 1, 0.45)
    at = open_page("pages/5_Compare.py").run()
    no_exception(at)
    df = at.dataframe[0].value
    assert len(df) == 2 and "data.seed" in df.columns and "train.lr" not in df.columns
    assert sorted(df["KD gain (points)"]) == pytest.approx([-5.0, 5.0])
    spec = plotly_specs(at)[0]
    assert {t["name"] for t in spec["data"]} == {"2026-a", "2026-b"}
    assert at.get("download_button")
