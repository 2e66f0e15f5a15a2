"""AppTest tests for the live Train page: start a job, poll with repeated ``at.run()``, see the charts
and the result table; stop, pause/resume, leave and come back, queue position."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from kdcore.presets import load_preset

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600


@pytest.fixture
def micro_spec():
    return load_preset("digits-av").with_overrides([
        "name=micro", "data.train_limit=40", "train.teacher_epochs=1", "train.student_epochs=1",
        "train.batch_size=16",
    ])


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
        return at

    yield _open
    from ui.state import get_manager

    get_manager().stop_all(wait=120)
    st.cache_resource.clear()


def manager():
    from ui.state import get_manager

    return get_manager()


def chart_titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def poll(at: AppTest, until, timeout: float = TIMEOUT, every: float = 0.5) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        no_exception(at)
        if until(at):
            return True
        time.sleep(every)
    return False


def test_start_poll_charts_then_result_table(open_page, micro_spec):
    at = open_page("pages/2_Train.py", micro_spec).run()
    no_exception(at)
    assert any("No job yet" in i.value for i in at.info)
    at.button(key="train-run-current").click().run()
    no_exception(at)
    job = manager().get(at.session_state["job_id"])
    assert job is not None and job.spec.name == "micro"
    seen_live_chart = False

    def live_or_done(a: AppTest) -> bool:
        nonlocal seen_live_chart
        if "Loss terms per step" in chart_titles(a) and not job.done:
            seen_live_chart = True
        return len(a.dataframe) > 0

    assert poll(at, live_or_done), "the result table never appeared"
    assert seen_live_chart, "no loss chart while the job was running"
    titles = chart_titles(at)
    assert "Loss terms per step" in titles and "Accuracy per epoch" in titles
    df = at.dataframe[0].value
    assert list(df["phase"]) == ["teacher", "baseline", "kd"]
    assert any(m.value.startswith("**Verdict:**") for m in at.markdown)
    progress = [p.proto.text for p in at.get("progress")]
    assert all("done in" in t for t in progress), progress
    assert Path(job.snapshot().run_dir).is_dir()
    # the smoothing slider redraws the loss chart
    at.slider(key="train-smoothing").set_value(0.0).run()
    no_exception(at)


def test_stop_pause_resume_and_coming_back(open_page, micro_spec):
    spec = micro_spec.with_overrides(["train.teacher_epochs=30", "name=long"])
    at = open_page("pages/2_Train.py", spec).run()
    at.button(key="train-run-current").click().run()
    job = manager().get(at.session_state["job_id"])
    assert poll(at, lambda a: any(b.key == "train-pause" for b in a.button))
    at.button(key="train-pause").click().run()
    no_exception(at)
    assert job.paused
    assert any("status: **paused**" in m.value for m in at.markdown)
    assert any(b.key == "train-resume" for b in at.button)
    # leave the page and come back: the job is still there, still paused, and shown
    at.switch_page("pages/1_Setup.py").run()
    no_exception(at)
    at.switch_page("pages/2_Train.py").run()
    no_exception(at)
    assert job.paused and not job.done
    assert any("status: **paused**" in m.value for m in at.markdown)
    at.button(key="train-resume").click().run()
    assert not job.paused
    at.button(key="train-stop").click().run()
    no_exception(at)
    assert job.wait(TIMEOUT)
    assert job.snapshot().status == "stopped"
    assert poll(at, lambda a: any("The run stopped" in w.value for w in a.warning), timeout=30)


def test_queue_position_is_visible(open_page, micro_spec, monkeypatch):
    monkeypatch.setenv("KDLAB_MAX_JOBS", "1")
    st.cache_resource.clear()
    first = manager().submit(micro_spec.with_overrides(["train.teacher_epochs=30", "name=first"]))
    second = manager().submit(micro_spec.with_overrides(["name=second"]))
    at = open_page("pages/2_Train.py")
    at.session_state["job_id"] = second.id
    at.run()
    no_exception(at)
    assert any("queue at position 1" in i.value for i in at.info)
    assert any("queued (position 1)" in m.value for m in at.markdown)
    # the job picker lists both jobs; stopping the queued one works from the page
    options = " ".join(at.selectbox[0].options)
    assert f"first · {first.id}" in options and f"second · {second.id}" in options
    at.button(key="train-stop").click().run()
    no_exception(at)
    assert second.snapshot().status == "stopped"
