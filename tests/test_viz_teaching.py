"""Teaching / attention / attribution figure layouts and the explorer's default-sample rule."""

from __future__ import annotations

import numpy as np
import pytest

from kdcore.viz import fast
from kdcore.viz.attention import alpha_epochs_figure, alpha_mean_lines, removal_figure, sample_alpha_bars
from kdcore.viz.attributions import image_maps_figure, token_figure
from kdcore.viz.teaching import (
    gradient_split_figure,
    hard_vs_soft_figure,
    pick_teaching_sample,
    softmax_bars_figure,
    softmax_t,
    temperature_curves_figure,
)
from kdcore.viz.training import loss_terms_figure, strategy_figure, term_color


# ---- the default sample ------------------------------------------------------------------------
def test_pick_teaching_sample_hand_case():
    big = 10.0
    logits = np.array([
        [0.0, big, 0.0],   # 0: label 0, teacher says 1 — wrong, never picked
        [big, 0.0, 0.0],   # 1: right, almost one-hot: little dark knowledge
        [8.0, 5.0, 0.0],   # 2: right, clear second choice (class 1)
        [3.0, 2.99, 0.0],  # 3: right by a hair: at T = 4 the true class is not clearly first
        [0.0, 0.0, 9.0],   # 4: right, one-hot
    ])
    labels = np.array([0, 0, 0, 0, 2])
    i = pick_teaching_sample(logits, labels, temperature=4.0)
    assert i == 2
    p = softmax_t(logits[i], 4.0)
    assert p.argmax() == labels[i] and p[0] - np.sort(p)[-2] >= 0.1 and np.sort(p)[-2] > 0.25
    # without any clearly-first sample, the correct one with the largest runner-up; with no correct
    # one, the one with the largest true-class probability; nothing to choose from: 0
    assert pick_teaching_sample(logits[[0, 3]], labels[[0, 3]]) == 1
    assert pick_teaching_sample(np.array([[0.0, 5.0], [1.0, 2.0]]), np.array([0, 0])) == 1
    assert pick_teaching_sample(np.zeros((0, 3)), np.zeros(0)) == 0
    with pytest.raises(ValueError):
        pick_teaching_sample(np.zeros((2, 3)), np.zeros(3))


# ---- legends never on titles -------------------------------------------------------------------
def legend_clear_of_title(fig) -> None:
    """Horizontal below the plot area (y < 0, anchored at its top) or vertical right of it (x > 1)."""
    lg = fig.layout.legend
    if fig.layout.showlegend is False:
        return
    below = lg.orientation == "h" and lg.y is not None and lg.y < 0 and lg.yanchor == "top"
    right = lg.x is not None and lg.x > 1
    assert below or right, lg
    if below:  # the bottom margin holds the axis labels and at least one legend row
        assert fig.layout.margin.b >= 55


Z_T, Z_S = [4.0, 1.0, 3.0, -1.0], [2.0, 0.5, 2.5, 0.0]
NAMES = ["0", "1", "2", "3"]
SNAPS = [{"epoch": e, "modalities": ["image", "audio"], "mean": [0.6, 0.4], "class_mean": [[0.6, 0.4]] * 2}
         for e in (1, 2, 3)]


@pytest.mark.parametrize("build", [
    lambda: softmax_bars_figure(Z_T, Z_S, 4.0, NAMES, label=0),
    lambda: temperature_curves_figure(Z_T, Z_S, 4.0),
    lambda: gradient_split_figure(Z_S, Z_T, 0, 4.0, 0.9, NAMES),
    lambda: alpha_mean_lines({"teacher": SNAPS, "kd": SNAPS}),
    lambda: sample_alpha_bars({"teacher": {"image": 1.0, "audio": 0.0}, "kd": {"image": 1.0, "audio": 0.0}}),
    lambda: removal_figure([{"model": m, "removed": r, "acc": 0.5, "alpha": {"image": 0.5, "audio": 0.5}}
                            for m in ("teacher", "kd") for r in ("none", "image")]),
    lambda: loss_terms_figure([{"phase": "kd", "step": i, "terms": {"ce": 1.0, "kd": 0.5}, "total": 1.5}
                               for i in range(3)]),
], ids=["softmax", "t-curves", "grad-split", "mean-alpha", "sample-alpha", "removal", "losses"])
def test_legends_sit_below_the_plot_not_on_the_title(build):
    fig = build()
    legend_clear_of_title(fig)
    fig.to_dict()  # a valid figure
    import plotly.graph_objects as go

    go.Figure(fig.to_dict())  # validated construction: no misspelt property


def test_temperature_axis_has_readable_ticks():
    fig = temperature_curves_figure(Z_T, Z_S, 4.0, t_min=0.5, t_max=20.0)
    for ax in (fig.layout.xaxis, fig.layout.xaxis2):
        assert ax.type == "log"
        assert list(ax.tickvals) == [0.5, 1, 2, 4, 8, 16]
        assert list(ax.ticktext) == ["0.5", "1", "2", "4", "8", "16"]
    assert fast.log_ticks(0.01, 3) == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]
    logy = loss_terms_figure([{"phase": "kd", "step": i, "terms": {"ce": 0.02 * (i + 1)}, "total": 0.02 * (i + 1)}
                              for i in range(5)], log_y=True)
    assert logy.layout.yaxis.tickvals and logy.layout.yaxis.ticktext[0] == "0.02"


def test_hard_vs_soft_title_and_panel_titles_fit():
    fig = hard_vs_soft_figure(0, Z_T, 4.0, NAMES)
    assert fig.layout.margin.t >= 70  # the title sits above the panel titles
    assert all(len(a.text) <= 24 for a in fig.layout.annotations)


def test_sample_alpha_bar_labels_never_overlap():
    fig = sample_alpha_bars({"teacher": {"image": 1.0, "audio": 0.0}, "baseline": {"image": 1.0, "audio": 0.0},
                             "kd": {"image": 1.0, "audio": 0.0}})
    assert fig.layout.uniformtext.mode == "hide" and fig.layout.uniformtext.minsize >= 8
    for tr in fig.data:
        assert tr.textposition == "inside" and all(len(t) <= 3 for t in tr.text)  # "1.0", not "1.00"


def test_play_button_left_of_the_slider():
    fig = alpha_epochs_figure(SNAPS)
    slider, menu = fig.layout.sliders[0], fig.layout.updatemenus[0]
    assert menu.x == 0 and menu.xanchor == "left" and slider.xanchor == "left"
    assert slider.x >= 0.12 and abs(slider.x + slider.len - 1.0) < 1e-9  # the slider starts after the button
    assert menu.y == slider.y and menu.yanchor == slider.yanchor == "top"  # one row below the plot
    assert fig.layout.margin.b >= 100


def test_one_colour_map_per_kind_of_data():
    spec = np.random.default_rng(0).normal(size=(8, 8))
    scales = set()
    for method in ("ig", "saliency"):
        fig = image_maps_figure(spec, {"teacher": spec, "kd": -spec}, method, "audio", spectrogram=True)
        inp, *maps = fig.data
        assert inp.colorscale == go_scale(fast.SPECTROGRAM_SCALE)
        scales |= {m.colorscale for m in maps}
        fig = token_figure({"teacher": [("a", 1.0), ("b", -0.5)]}, method)
        scales.add(fig.data[0].colorscale)
    assert scales == {go_scale(fast.ATTRIBUTION_SCALE)}  # one diverging map, signed or not
    img = image_maps_figure(spec, {"kd": spec}, "ig", "image")
    assert img.data[0].colorscale == go_scale(fast.IMAGE_SCALE)
    from ui.preview import input_figure

    assert input_figure(spec, "s", kind="spectrogram").data[0].colorscale == go_scale(fast.SPECTROGRAM_SCALE)
    assert input_figure(spec, "i").data[0].colorscale == go_scale(fast.IMAGE_SCALE)


def go_scale(name: str):
    import plotly.graph_objects as go

    return go.Heatmap(colorscale=name).colorscale


def test_loss_colours_are_fixed_per_term_name():
    def colours(order):
        steps = [{"phase": "kd", "step": i, "terms": {t: 1.0 for t in order}, "total": 1.0} for i in range(3)]
        fig = loss_terms_figure(steps, smoothing=0.0)
        return {t.name: t.line.color for t in fig.data}

    a = colours(["kd", "ce"])
    b = colours(["fitnet", "ce", "kd", "my_term"])
    assert a["ce"] == b["ce"] and a["kd"] == b["kd"] and a["total"] == b["total"]
    assert b["my_term"] == term_color("my_term") == colours(["my_term", "zz"])["my_term"]
    steps = [{"phase": "kd", "step": i, "terms": {"ce": 1, "kd": 1}, "total": 2, "weights": {"ce": 0.1, "kd": 0.9},
              "temperature": 4.0, "lr": 1e-3} for i in range(3)]
    w = {t.name: t.line.color for t in strategy_figure(steps).data}
    assert w["weight ce"] == a["ce"] and w["weight kd"] == a["kd"]


# ---- pages ---------------------------------------------------------------------------------------
JARGON = ("§", "seed's", "KD Lab seed", "docs/", "scripts/", ".md", ":mod:", "assets/")


@pytest.fixture
def open_page(tmp_path, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KDLAB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("KDLAB_FAST", raising=False)
    st.cache_resource.clear()
    root = __import__("pathlib").Path(__file__).resolve().parents[1]

    def _open(page: str) -> AppTest:
        at = AppTest.from_file(str(root / "app.py"), default_timeout=300)
        at.switch_page(page)
        return at

    yield _open
    st.cache_resource.clear()


def shown_text(at) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error") for e in at.get(kind)]
    parts += [e.label for e in at.expander] + [getattr(w, "help", "") or "" for w in at.slider]
    return "\n".join(str(p) for p in parts)


def test_bundled_explorer_models_kd_not_worse_than_baseline():
    import json
    from pathlib import Path

    info = json.loads((Path(__file__).resolve().parents[1] / "assets/explorer/result.json").read_text())
    acc = {p: r["test_acc"] for p, r in info["phases"].items()}
    assert acc["kd"] >= acc["baseline"], acc
    assert acc["teacher"] > acc["kd"]


def test_explorer_opens_on_a_sample_the_teacher_gets_right(open_page):
    from ui.models import EXPLORER_DIR, default_sample, load_models, logits_for

    at = open_page("pages/3_Temperature_explorer.py").run()
    assert not at.exception, [e.value for e in at.exception]
    models = load_models(str(EXPLORER_DIR))
    first = default_sample(models)
    assert at.slider(key="tx-sample").value == first
    out = logits_for(models)  # the home figure's call: the same default sample
    assert out["index"] == first
    p = softmax_t(out["teacher"].numpy(), 4.0)
    assert p.argmax() == out["label"]  # the teacher is right …
    runner_up = np.sort(p)[-2]
    assert runner_up > 0.15 and p[out["label"]] - runner_up >= 0.1  # … with a visible second choice
    text = shown_text(at)
    assert "KD student" in text and "soft targets" in text  # the caption says why KD beats the baseline
    assert not [j for j in JARGON if j in text], text


def test_methods_page_has_no_internal_references(open_page):
    at = open_page("pages/4_Methods.py").run()
    assert not at.exception, [e.value for e in at.exception]
    text = shown_text(at)
    assert "attention_kd" in text and "activation boundaries" in text
    assert not [j for j in JARGON if j in text], [line for line in text.splitlines() if any(j in line for j in JARGON)]


def all_shown_text(at) -> str:
    """Every piece of text a page shows: headings, markdown, captions, alerts, expander / tab / button /
    widget labels and helps."""
    parts = [e.value for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error",
                                  "success") for e in at.get(kind)]
    parts += [e.label for e in at.expander] + [t.label for t in at.tabs]
    for kind in ("button", "checkbox", "toggle", "radio", "selectbox", "multiselect", "slider", "select_slider",
                 "number_input", "text_input", "text_area"):
        for w in at.get(kind):
            parts += [getattr(w, "label", "") or "", getattr(w, "help", "") or ""]
            parts += [str(o) for o in (getattr(w, "options", None) or [])]
    return "\n".join(str(p) for p in parts)


def page_files() -> list[str | None]:
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    return [None] + [f"pages/{p.name}" for p in sorted((root / "pages").glob("*.py"))]


@pytest.mark.parametrize("page", page_files())
def test_no_page_shows_design_document_references(open_page, page):
    """No page (home included) shows the design document's section marks ("§4.2", "the seed's …")."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    if page is None:
        root = __import__("pathlib").Path(__file__).resolve().parents[1]
        at = AppTest.from_file(str(root / "app.py"), default_timeout=300)
        st.cache_resource.clear()
    else:
        at = open_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    text = all_shown_text(at)
    assert len(text) > 50, text
    bad = [line for line in text.splitlines() if "§" in line or "seed's" in line or "KD Lab seed" in line]
    assert not bad, bad


def test_method_docstrings_carry_no_design_document_references():
    """At the source: what ``python -m kdcore methods`` prints and the Methods page shows (summary,
    paper, docstring of every loss, weighting and temperature schedule) names no section of the design
    document."""
    import inspect
    import re

    from kdcore.methods.losses import LOSSES
    from kdcore.methods.strategies import TEMPERATURE_SCHEDULES, WEIGHTINGS

    internal = re.compile(r"seed's|KD Lab seed|\(§|^§| §\d")
    found = []
    for name, cls in [*LOSSES.items(), *WEIGHTINGS.items(), *TEMPERATURE_SCHEDULES.items()]:
        for text in (getattr(cls, "summary", ""), getattr(cls, "paper", ""), inspect.getdoc(cls)):
            found += [f"{name}: {line.strip()}" for line in (text or "").splitlines()
                      if internal.search(line) and not re.search(r"et al\.?,? \d{4},? §", line)]
    assert not found, found
