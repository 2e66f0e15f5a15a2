"""AppTest for the video widgets (issue 15 part 2): the motion knobs and the frame strip on Setup, the
clip on Attention, per-frame attribution maps and the per-frame shares on Attributions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from kdcore.pipeline.experiment import Experiment
from kdcore.presets import load_preset
from kdcore.store.recorder import RunRecorder

ROOT = Path(__file__).resolve().parents[1]
KNOBS = {"video_frames", "video_speed", "video_direction", "video_spread", "video_sigma", "audio_snr_db", "clips"}


@pytest.fixture
def open_page(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("KDLAB_RUNS_DIR", str(runs))
    monkeypatch.delenv("KDLAB_FAST", raising=False)
    st.cache_resource.clear()

    def _open(page: str, spec=None, with_run: Path | None = None) -> AppTest:
        if with_run is not None:
            runs.mkdir(exist_ok=True)
            shutil.copytree(with_run, runs / with_run.name, dirs_exist_ok=True)
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.switch_page(page)
        if spec is not None:
            at.session_state["spec"] = spec.to_dict()
        return at

    yield _open
    from ui.state import get_manager

    get_manager().stop_all(wait=120)
    st.cache_resource.clear()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def figures(at: AppTest) -> dict[str, dict]:
    out = {}
    for c in at.get("plotly_chart"):
        spec = json.loads(c.proto.spec)
        out[spec["layout"].get("title", {}).get("text", "")] = spec
    return out


def widget(at: AppTest, kind: str, path: str):
    found = [w for w in getattr(at, kind) if (w.key or "").split("@")[0] == path]
    assert found, f"no {kind} for {path}"
    return found[-1]


def small(spec):
    return spec.with_overrides(["data.noise.clips=200"])


def test_setup_shows_motion_knobs_and_a_strip_of_frames(open_page):
    at = open_page("pages/1_Setup.py", small(load_preset("video-kd"))).run()
    no_exception(at)
    assert {s.label for s in at.slider} >= KNOBS
    strip = figures(at)["video: 8 frames (as the model sees them)"]
    assert strip["layout"]["xaxis"]["ticktext"] == [f"t={i}" for i in range(8)]
    assert strip["data"][0]["type"] == "heatmap"
    # a shorter clip: the spec and the strip follow
    widget(at, "slider", "data.noise.video_frames").set_value(5.0).run()
    no_exception(at)
    assert at.session_state["spec"]["data"]["noise"]["video_frames"] == 5.0
    assert figures(at)["video: 5 frames (as the model sees them)"]["layout"]["xaxis"]["ticktext"][-1] == "t=4"
    # the per-modality encoder box offers the video encoders only
    widget(at, "checkbox", "student.encoders.video.own").set_value(True).run()
    widget(at, "selectbox", "student.encoders.video.arch").set_value("pooled_cnn").run()
    no_exception(at)
    assert at.session_state["spec"]["student"]["encoders"]["video"]["arch"] == "pooled_cnn"
    assert widget(at, "selectbox", "student.encoders.video.arch").options == ["conv3d", "cnn_gru", "frame_cnn",
                                                                              "pooled_cnn"]


def test_setup_switching_to_the_video_dataset(open_page):
    at = open_page("pages/1_Setup.py", load_preset("digits-av")).run()
    widget(at, "selectbox", "data.dataset").set_value("moving-digits").run()
    no_exception(at)
    spec = at.session_state["spec"]
    assert spec["data"]["dataset"] == "moving-digits" and spec["student"]["modalities"] is None
    assert {s.label for s in at.slider} >= KNOBS
    assert any(t.startswith("video: 8 frames") for t in figures(at))
    assert at.get("audio"), "the paired spoken digit is playable"


@pytest.fixture(scope="module")
def video_run(tmp_path_factory) -> Path:
    spec = load_preset("video-kd").with_overrides([
        "name=video-inspect", "data.noise.clips=200", "data.noise.video_frames=4", "train.teacher_epochs=1",
        "train.student_epochs=1", "train.batch_size=64"])
    exp = Experiment(spec, [], callbacks=[RunRecorder(tmp_path_factory.mktemp("video-runs"))])
    assert exp.run().status == "finished"
    return exp.run_dir


@pytest.mark.slow
def test_attention_page_shows_the_clip(open_page, video_run):
    at = open_page("pages/6_Attention.py", with_run=video_run).run()
    no_exception(at)
    figs = figures(at)
    assert figs["video: 4 frames"]["layout"]["xaxis"]["ticktext"] == ["t=0", "t=1", "t=2", "t=3"]
    assert "α of this sample" in figs


@pytest.mark.slow
def test_attributions_page_maps_every_frame(open_page, video_run):
    at = open_page("pages/7_Attributions.py", with_run=video_run)
    at.run()
    no_exception(at)
    figs = figures(at)
    maps = figs["video (video) — ig, per frame"]
    assert len(maps["data"]) == 4  # the input + teacher, baseline, kd
    shares = figs["video: where in time each model looks (ig)"]
    by_model = {t["name"]: t["y"] for t in shares["data"]}
    assert set(by_model) == {"teacher", "baseline", "kd"}

    def values(y):
        if isinstance(y, dict):  # plotly's typed array
            import base64

            return np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.dtype(y["dtype"])).astype(float)
        return np.asarray(y, dtype=float)

    teacher, kd = values(by_model["teacher"]), values(by_model["kd"])
    assert np.isclose(teacher.sum(), 1.0) and (teacher > 0).all()  # the video teacher looks at every frame
    assert np.allclose(kd, [0, 0, 1, 0])  # the single-frame student only at its frame, T // 2 = 2

    at.selectbox(key="attr-method").set_value("gradcam")
    at.button(key="FormSubmitter:attr-form-Compute attributions").click().run()
    no_exception(at)
    assert "video (video) — gradcam, per frame" in figures(at)
