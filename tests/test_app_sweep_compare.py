"""AppTest: a sweep point opens on Compare (issue #13). Explore's "Open on Compare" (the keyboard
path of a click on the KD-gain chart) lands on Compare with the point's runs, one per seed,
selected and captioned; Compare takes a preselection from the URL (``?runs=id1,id2``) or from
session state, and keeps its selection in the URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from kdcore.pipeline.grid import run_grid
from kdcore.presets import load_preset
from kdcore.store.sweep_store import SweepRunStore
from kdcore.viz.sweep import clicked_point, gain_figure

ROOT = Path(__file__).resolve().parents[1]
COMPARE, EXPLORE = "pages/5_Compare.py", "pages/9_Explore.py"
TIMEOUT = 300
MICRO = {"data.train_limit": "60", "train.batch_size": "32", "train.probe_samples": "16"}


@pytest.fixture
def open_page(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("KDLAB_FAST", raising=False)
    st.cache_resource.clear()

    def _open(page: str, query: dict | None = None) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
        at.switch_page(page)
        for k, v in (query or {}).items():
            at.query_params[k] = v
        return at

    yield _open
    from ui.state import get_manager

    get_manager().stop_all(wait=120)
    st.cache_resource.clear()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def overlay_runs(at: AppTest) -> set[str]:
    """The runs whose curves the Compare page overlays (its one chart's trace names)."""
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return {t["name"] for s in specs for t in s["data"]}


def query(at: AppTest, key: str) -> str:
    v = at.query_params[key]
    return v[0] if isinstance(v, list) else v


def saved_sweep(root: Path):
    spec = load_preset("mfh-gamma").with_overrides(["name=micro-sweep", "train.teacher_epochs=1",
                                                    "train.student_epochs=1", "train.threads=1",
                                                    *[f"{k}={v}" for k, v in MICRO.items()]])
    return run_grid(spec, {"distill.temperature": [1.0, 4.0]}, 2, cache_root=root, store=SweepRunStore(root))


def test_compare_preselects_the_runs_of_the_link_and_says_which_sweep_point(open_page, tmp_path):
    grid = saved_sweep(tmp_path / "runs")
    ids = [r["run_id"] for r in grid.rows if r["point"]["distill.temperature"] == 4.0]
    at = open_page(COMPARE, {"runs": ",".join(ids)}).run()
    no_exception(at)
    table = at.dataframe[0].value
    rows = sorted(at.session_state["cmp-table"]["selection"]["rows"])
    assert sorted(table["run"].iloc[rows]) == sorted(ids)
    assert overlay_runs(at) == set(ids)  # their curves
    assert any("sweep grid point **micro-sweep · temperature=4**" in i.value and "seeds 0, 1" in i.value
               for i in at.info), [i.value for i in at.info]
    assert any("Shared phases" in c.value for c in at.caption)  # the seed's teacher and baseline, trained once
    assert not at.warning
    # the adopted teacher's weights are in the run's own folder: its ONNX export works
    at.toggle(key="cmp-onnx").set_value(True).run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert "Download ONNX zip" in [d.proto.label for d in at.get("download_button")]
    # an unknown id is named; the rest are selected
    at = open_page(COMPARE, {"runs": f"{ids[0]},nope"}).run()
    no_exception(at)
    assert any("nope" in w.value for w in at.warning) and overlay_runs(at) == {ids[0]}
    assert query(at, "runs") == ids[0]  # the URL holds the selection
    # from session state (another page), with its own caption
    at = open_page(COMPARE)
    at.session_state["cmp-preselect"] = {"runs": ids[:1], "caption": "from a test"}
    at.run()
    no_exception(at)
    assert overlay_runs(at) == {ids[0]} and any(i.value == "from a test" for i in at.info)
    assert query(at, "runs") == ids[0]


def test_explore_open_on_compare_lands_with_the_points_runs_selected(open_page):
    setup = json.dumps({"preset": "mfh-gamma", "name": "micro-explore", **MICRO})
    at = open_page(EXPLORE, {"base": "current", "setup": setup, "knob1": "distill.temperature",
                             "values1": "1, 4", "seeds": "2", "te": "1", "se": "1"}).run()
    no_exception(at)
    assert not at.error
    at.button(key="ex-run").click().run()
    from ui.state import get_manager

    job = get_manager().jobs(kind="sweep")[0]
    assert job.wait(TIMEOUT), "the sweep did not finish"
    at.run()
    no_exception(at)
    snap = job.snapshot()
    assert snap.status == "finished", snap.message
    assert all(r.get("run_id") for r in snap.rows)
    assert any("Click a point" in c.value for c in at.caption)
    pick = at.selectbox(key="ex-open-point")
    four = next(o for o in pick.options if "= 4" in o)
    assert "(2 runs)" in four
    pick.set_value(json.dumps({"distill.temperature": 4.0}, sort_keys=True)).run()
    at.button(key="ex-open").click().run()
    no_exception(at)
    assert any(t.value == "Compare runs" for t in at.title), [t.value for t in at.title]
    want = {r["run_id"] for r in snap.rows if r["point"]["distill.temperature"] == 4.0}
    assert len(want) == 2 and overlay_runs(at) == want
    assert set(query(at, "runs").split(",")) == want
    assert any("From the Explore sweep of **micro-explore**" in i.value and "temperature T = 4" in i.value
               and "seeds 0, 1" in i.value for i in at.info), [i.value for i in at.info]


def test_a_clicked_marker_names_its_grid_point():
    summary = [{"point": {"distill.temperature": t, "student.encoder.width": w}, "n": 3,
                "gain": {"mean": 1.0, "std": 0.5}, "verdict": "within noise"} for t in (1, 4) for w in (4, 8)]
    fig = gain_figure(summary, {"distill.temperature": [1, 4], "student.encoder.width": [4, 8]})
    trace = fig.data[1]  # width = 8
    marker = {"curve_number": 1, "point_index": 1, "customdata": list(trace.customdata[1])}
    assert clicked_point(marker) == {"distill.temperature": 4, "student.encoder.width": 8}
    assert clicked_point({"customdata": [0.5, 3]}) is None and clicked_point({}) is None


def test_compare_selection_helpers(tmp_path):
    from ui.compare import derived_caption, parse_run_ids, rows_of, sweep_point_of
    from ui.runs import RunInfo

    assert parse_run_ids(" a, b,,a ") == ["a", "b"] and parse_run_ids(None) == []
    runs = [RunInfo(tmp_path / i, {"name": n}, None) for i, n in (
        ("r2", "multiview-kd · temperature=2 · seed 1"), ("r1", "multiview-kd · temperature=2 · seed 0"),
        ("r0", "a run of its own"))]
    assert rows_of(runs, ["r1", "x", "r2"]) == ([1, 0], ["x"])
    assert sweep_point_of(runs[0]) == ("multiview-kd · temperature=2", 1) and sweep_point_of(runs[2]) is None
    assert derived_caption(runs[:2]) == ("The runs of the sweep grid point **multiview-kd · temperature=2**, one "
                                         "per seed (seeds 0, 1).")
    assert derived_caption(runs) == "" and derived_caption([]) == ""
