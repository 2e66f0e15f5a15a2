"""AppTest for the Attention (6) and Attributions (7) pages: finished run folders and a live job."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from kdcore.pipeline.experiment import Experiment
from kdcore.explain import AgreementCallback
from kdcore.presets import load_preset
from kdcore.viz import fast
from kdcore.store.recorder import RunRecorder
from kdcore.train.callbacks import LambdaCallback

ROOT = Path(__file__).resolve().parents[1]
ATTENTION, ATTRIBUTIONS = "pages/6_Attention.py", "pages/7_Attributions.py"
EPOCHS = 2
pytestmark = pytest.mark.slow  # trains one tiny experiment, renders pages that evaluate it


def tiny_spec(epochs: int = EPOCHS, name: str = "inspect"):
    return load_preset("digits-av").with_overrides([
        f"name={name}", f"train.teacher_epochs={epochs}", f"train.student_epochs={epochs}",
        "train.batch_size=128", "data.train_limit=200",
    ])


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inspect-runs")
    exp = Experiment(tiny_spec(), [], callbacks=[RunRecorder(root)])
    exp.add_callback(AgreementCallback(samples=8, steps=4))
    assert exp.run().status == "finished"
    return exp.run_dir


@pytest.fixture
def open_page(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("KDLAB_RUNS_DIR", str(runs))
    monkeypatch.delenv("KDLAB_FAST", raising=False)
    st.cache_resource.clear()

    def _open(page: str, with_run: Path | None = None) -> AppTest:
        if with_run is not None:
            runs.mkdir(exist_ok=True)
            shutil.copytree(with_run, runs / with_run.name, dirs_exist_ok=True)
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.switch_page(page)
        return at

    yield _open
    from ui.state import get_manager

    get_manager().stop_all(wait=120)
    st.cache_resource.clear()


def specs(at: AppTest) -> dict[str, dict]:
    out = {}
    for c in at.get("plotly_chart"):
        spec = json.loads(c.proto.spec)
        title = spec["layout"].get("title", {}).get("text", "")
        out[title] = spec
    return out


def arr(x) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array ``{"dtype", "bdata", "shape"}``."""
    if isinstance(x, dict) and "bdata" in x:
        import base64

        a = np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"]))
        shape = x.get("shape")
        if shape:
            a = a.reshape([int(v) for v in str(shape).split(",")])
        return a.astype(float)
    return np.array(x, dtype=float)


def colorscale(name: str):
    """A named colour map as plotly writes it into the figure JSON."""
    import plotly.graph_objects as go

    return [list(x) for x in go.Heatmap(colorscale=name).colorscale]


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.mark.parametrize("page", [ATTENTION, ATTRIBUTIONS])
def test_pages_without_runs_say_what_to_do(open_page, page):
    at = open_page(page).run()
    no_exception(at)
    assert any("No run yet" in i.value for i in at.info)


def test_attention_page_on_a_finished_run(open_page, run_folder):
    at = open_page(ATTENTION, run_folder).run()
    no_exception(at)
    figs = specs(at)
    heat = figs["Mean attention α per true class"]
    assert [t["type"] for t in heat["data"]] == ["heatmap", "heatmap"]  # teacher | student side by side
    for trace in heat["data"]:
        z = arr(trace["z"])
        assert z.shape == (10, 3)
        assert np.allclose(z.sum(1), 1.0, atol=1e-4)  # α sums to 1 for every class row
    frames = figs["kd: α per class over epochs"]
    assert [f["name"] for f in frames["frames"]] == [str(e) for e in range(1, EPOCHS + 1)]
    lines = figs["Mean α over epochs"]
    assert len(lines["data"]) == 9  # 3 phases × 3 modalities
    bars = figs["α of this sample"]
    assert len(bars["data"]) == 3 and all(np.isclose(arr(t["y"]).sum(), 1.0, atol=1e-4) for t in bars["data"])
    assert "A modality removed at test time" in figs
    assert at.get("audio"), "the sample's spoken digit is playable"
    # legends below the plot, never on the (subplot) titles; the play button beside the slider
    for title in ("Mean α over epochs", "α of this sample", "A modality removed at test time"):
        legend = figs[title]["layout"]["legend"]
        assert legend["orientation"] == "h" and legend["y"] < 0 and legend["yanchor"] == "top", (title, legend)
    slider, menu = frames["layout"]["sliders"][0], frames["layout"]["updatemenus"][0]
    assert slider["x"] > menu["x"] and slider["y"] == menu["y"]
    # the spectrogram in the app's one spectrogram colour map (as on Setup and Attributions)
    spectro = figs["audio: log-mel spectrogram"]["data"][0]
    assert spectro["colorscale"] == colorscale(fast.SPECTROGRAM_SCALE)

    # pick an earlier epoch: the student heatmap follows
    at.toggle(key="att-follow").set_value(False).run()
    at.select_slider(key="att-epoch").set_value(1).run()
    no_exception(at)
    assert "kd (epoch 1)" in json.dumps(specs(at)["Mean attention α per true class"]["layout"])

    # robustness: image noise rises → α and accuracy per level
    at.number_input(key="att-points").set_value(2).run()
    at.button(key="att-sweep").click().run()
    no_exception(at)
    robust = [s for t, s in specs(at).items() if t.startswith("α and accuracy as")]
    assert robust and len(arr(robust[0]["data"][0]["x"])) == 2


def test_attributions_page_on_a_finished_run(open_page, run_folder):
    at = open_page(ATTRIBUTIONS, run_folder).run()
    no_exception(at)
    figs = specs(at)
    shares = figs["Share of total |attribution| per modality"]
    per_model = np.stack([arr(t["x"]) for t in shares["data"]])  # modality × model
    assert per_model.shape == (3, 3) and np.allclose(per_model.sum(0), 1.0, atol=1e-4)
    assert {"image (image) — ig", "audio (spectrogram) — ig", "text: characters coloured by ig attribution"} <= set(figs)
    spectro = figs["audio (spectrogram) — ig"]["data"]
    assert spectro[0]["colorscale"] == colorscale(fast.SPECTROGRAM_SCALE)  # the input
    assert all(t["colorscale"] == colorscale(fast.ATTRIBUTION_SCALE) for t in spectro[1:])  # the maps
    shown = " ".join(c.value for c in at.caption) + " ".join(i.value for i in at.info)
    assert "docs/" not in shown and ".md" not in shown and "kdcore." not in shown
    tokens = figs["text: characters coloured by ig attribution"]["data"][0]
    assert tokens["y"] == ["teacher", "baseline", "kd"] and any(c for c in tokens["text"][0])
    live = figs["Teacher–student attribution agreement (Spearman ρ, all)"]  # recorded by the callback
    assert [t["name"] for t in live["data"]] == ["baseline", "kd"]
    assert all(arr(t["x"]).tolist() == list(range(1, EPOCHS + 1)) for t in live["data"])
    assert at.dataframe, "agreement table"

    # another method through the form
    at.selectbox(key="attr-method").set_value("occlusion")
    at.number_input(key="attr-window").set_value(4)
    at.button(key="FormSubmitter:attr-form-Compute attributions").click().run()
    no_exception(at)
    assert "image (image) — occlusion" in specs(at)

    at.selectbox(key="attr-method").set_value("gradcam")
    at.button(key="FormSubmitter:attr-form-Compute attributions").click().run()
    no_exception(at)
    figs = specs(at)
    assert "image (image) — gradcam" in figs and "audio (spectrogram) — gradcam" in figs
    assert not any(t.startswith("text:") for t in figs)  # Grad-CAM has no text map, and says so
    assert any("Grad-CAM" in c.value for c in at.caption)


def test_pages_follow_a_live_job(open_page):
    """While a job trains, new epochs appear on both pages without a reload."""
    from ui.state import get_manager

    at_att = open_page(ATTENTION)
    at_attr = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at_attr.switch_page(ATTRIBUTIONS)
    # each epoch lasts ≥ 2.5 s, so polls (two page reruns each) see several epochs whatever the machine's speed
    hold = LambdaCallback(on_epoch_end=lambda run: time.sleep(2.5))
    job = get_manager().submit(tiny_spec(epochs=3, name="live"),
                               callbacks=[AgreementCallback(samples=4, steps=2), hold])
    seen_att, seen_attr = set(), set()
    deadline = time.time() + 600
    while time.time() < deadline:
        done = job.done
        at_att.run()
        at_attr.run()
        no_exception(at_att)
        no_exception(at_attr)
        h = specs(at_att).get("Mean α over epochs")
        if h:
            seen_att.add(max(int(arr(t["x"]).max()) for t in h["data"]) if not done else -1)
        a = specs(at_attr).get("Teacher–student attribution agreement (Spearman ρ, all)")
        if a:
            seen_attr.add(sum(len(arr(t["x"])) for t in a["data"]) if not done else -1)
        if done:
            break
        time.sleep(0.5)
    assert job.done and job.snapshot().status == "finished"
    assert len(seen_att - {-1}) >= 2, f"attention epochs seen while training: {seen_att}"
    assert len(seen_attr - {-1}) >= 1, f"agreement points seen while training: {seen_attr}"
    # after the job: the per-sample view and the attribution maps are there
    at_att.run()
    at_attr.run()
    assert "α of this sample" in specs(at_att)
    assert "image (image) — ig" in specs(at_attr)
