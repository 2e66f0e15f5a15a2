"""KD Lab — the entrypoint: the page navigation (``st.navigation``: the sidebar's first entry is *Home*,
every page keeps the URL path of its file, ``pages/2_Train.py`` → ``/Train``) and the home page (what
knowledge distillation is, the preset gallery, links to every page)."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from kdcore.presets import DEFAULT_PRESET, MEASURED_FILE, PRESETS, lessons
from kdcore.viz import hard_vs_soft_figure
from ui import state
from ui.lecture import lecture_mode, lecture_toggle
from ui.models import BUNDLED, load_models, logits_for, model_sources

ROOT = Path(__file__).resolve().parent
HOME_TITLE, HOME_ICON = "Home", "🧪"
# sidebar title and icon per page file (the URL path stays the file's name without its number: /Train);
# a page file missing here still appears, titled after its file name
PAGE_TITLES = {
    "1_Setup.py": ("Setup", ":material/tune:"),
    "2_Train.py": ("Train", ":material/monitoring:"),
    "3_Temperature_explorer.py": ("Temperature explorer", ":material/thermostat:"),
    "4_Methods.py": ("Methods", ":material/menu_book:"),
    "5_Compare.py": ("Compare", ":material/compare_arrows:"),
    "6_Attention.py": ("Attention", ":material/visibility:"),
    "7_Attributions.py": ("Attributions", ":material/highlight:"),
    "8_Data.py": ("Your data", ":material/upload_file:"),
    "9_Explore.py": ("Explore", ":material/explore:"),
}
GROUPS = [("helps", "KD helps"), ("hurts", "KD hurts"), ("why", "Why (and when it does not)"), ("methods", "Methods")]


def page_table() -> list[tuple[str, str, str | None]]:
    """(path relative to this file, sidebar title, icon) of every page in ``pages/``, in file order."""
    out = []
    for page in sorted((ROOT / "pages").glob("*.py")):
        title, icon = PAGE_TITLES.get(page.name, (page.stem.split("_", 1)[-1].replace("_", " "), None))
        out.append((f"pages/{page.name}", title, icon))
    return out


def measured_entries(preset: str) -> list[tuple[str, dict]]:
    """The stored multi-seed results of a preset and its measured variants (scripts/sweep_presets.py)."""
    if not MEASURED_FILE.is_file():
        return []
    try:
        table = json.loads(MEASURED_FILE.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    own = [(k, v) for k, v in table.items() if k == preset]
    variants = [(k, v) for k, v in table.items() if k != preset and isinstance(v, dict) and v.get("preset") == preset]
    return own + variants


def measured_line(entry: str, preset: str, m: dict) -> str:
    g = m.get("kd_gain") or {}
    if g.get("mean") is None:
        return ""
    head = f"over {g.get('n', '?')} seeds: {g['mean']:+.1f} ± {g.get('std', 0):.1f} points — {m.get('verdict', '')}"
    metrics = m.get("metrics") or {}
    if (metrics.get("kd.omitted_acc") or {}).get("mean") is not None and "baseline.omitted_acc" in metrics:
        head += (f"; omitted class: baseline {100 * metrics['baseline.omitted_acc']['mean']:.0f} % → "
                 f"KD {100 * metrics['kd.omitted_acc']['mean']:.0f} %")
    label = entry[len(preset):].lstrip(" ·") if entry.startswith(preset) else entry
    return f"*{label}* {head}" if label else head


def preset_card(name: str, lesson: dict) -> None:
    spec = state.preset_spec(name)
    with st.container(border=True):
        st.markdown(f"#### {name}")  # smaller than the group headings
        if lesson.get("claim"):
            st.markdown(f"**{lesson['claim']}**")
        lines = [line for entry, m in measured_entries(name) if (line := measured_line(entry, name, m))]
        if lines:
            st.markdown("Measured " + "  \n".join(lines))
        elif lesson:
            st.caption("Not measured over seeds yet: one run of it is not evidence.")
        s_mods = ", ".join(spec.student_modalities())
        t_mods = ", ".join(spec.teacher_modalities())
        losses = " + ".join(f"{k} {v.weight:g}" for k, v in spec.distill.losses.items())

        def details() -> None:
            st.markdown(spec.description.strip() or "_no description_")
            if lesson.get("look_at"):
                st.markdown(f"*What to look at:* {lesson['look_at']}")
            st.caption(f"dataset **{spec.data.dataset}** · teacher sees {t_mods} · student sees {s_mods} · "
                       f"loss {losses} · T={spec.distill.temperature:g} · epochs {spec.train.teacher_epochs}/"
                       f"{spec.train.student_epochs}")

        if lecture_mode():
            with st.expander("Details"):
                details()
        else:
            details()
        b1, b2 = st.columns(2)
        if b1.button("Load in Setup", key=f"load-{name}"):
            state.load_preset_into_session(name)
            st.switch_page("pages/1_Setup.py")
        if b2.button("▶ Run", key=f"run-{name}"):
            state.load_preset_into_session(name)
            state.submit()
            st.switch_page("pages/2_Train.py")


def home() -> None:
    """The home page."""
    st.set_page_config(page_title="KD Lab", page_icon=HOME_ICON, layout="wide")
    state.init()
    lecture_toggle()  # the sidebar switch; in lecture mode the preset cards fold their details away
    lesson_table = lessons()

    st.title("KD Lab — knowledge distillation for multimodal models")

    left, right = st.columns([3, 2])
    with left:
        st.markdown(
            """
    **Knowledge distillation (KD)** trains a small *student* network to imitate a large, already-trained
    *teacher*. Besides the hard label (which class a sample belongs to), the student learns from the teacher's
    whole output distribution, softened by a temperature *T*: how much the teacher thinks the sample also looks
    like other classes — the figure shows which ones for a real test sample. These relative probabilities of
    the wrong classes — Hinton's *dark knowledge* — carry knowledge the labels do not: they pay most when the
    student has few labels or unlabelled data to learn from (the "KD helps" presets below), and they can
    mislead it (the "KD hurts" presets).

    Here the teacher and the student are **multimodal**: they read handwritten images, spoken digits and
    digit names (or six views of one digit), fused with attention. The lab trains a teacher, a student
    *without* KD (the baseline, same initial weights and data order) and the student *with* KD, so the KD
    gain you see is the effect of distillation alone — and sometimes it is negative: cross-modal KD only
    helps as far as the student's modality contains what the teacher relies on. One run is never evidence:
    every preset below shows its result measured over several seeds.
    """
        )
        if st.button(f"▶ Run the default preset ({DEFAULT_PRESET})", type="primary", key="run-default"):
            state.load_preset_into_session(DEFAULT_PRESET)
            state.submit()
            st.switch_page("pages/2_Train.py")
    with right:
        sources = model_sources()
        if BUNDLED in sources:
            models = load_models(str(sources[BUNDLED]))
            out = logits_for(models)
            fig = hard_vs_soft_figure(out["label"], out["teacher"].numpy(), 4.0, models.data.class_names,
                                      uirevision="home")
            fig.update_layout(title="Label vs the teacher's soft target (T = 4)")
            st.plotly_chart(fig, key="home-figure")
            st.caption("A real test sample and the bundled teacher. Explore it in the Temperature explorer.")

    st.header("Presets, grouped by what they teach")
    st.caption("Each preset is a full experiment spec with a claim. *Load* opens it in Setup; *Run* starts it right "
               "away. The measured result is the paired KD − baseline gain over several seeds (KD helps or hurts only "
               "when the mean is more than 2 standard deviations from 0).")

    for group, title in GROUPS:
        names = [n for n in PRESETS if (lesson_table.get(n) or {}).get("group", "methods") == group]
        if not names:
            continue
        st.subheader(title, anchor=f"lessons-{group}", divider="gray")
        cols = st.columns(2)
        for i, name in enumerate(names):
            with cols[i % 2]:
                preset_card(name, lesson_table.get(name) or {})

    st.header("Pages")
    for path, title, icon in page_table():
        st.page_link(path, label=title, icon=icon)


def navigation() -> st.Page:
    """Home first, then every page file under its own URL path."""
    return st.navigation([st.Page(home, title=HOME_TITLE, icon=HOME_ICON, default=True),
                          *(st.Page(path, title=title, icon=icon) for path, title, icon in page_table())])


st.set_page_config(page_title="KD Lab", page_icon=HOME_ICON, layout="wide")
navigation().run()
