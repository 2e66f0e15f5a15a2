"""KD Lab — home page: what knowledge distillation is, the preset gallery, links to every page."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from kdcore.presets import DEFAULT_PRESET, PRESETS
from kdcore.viz import hard_vs_soft_figure
from ui import state
from ui.models import BUNDLED, load_models, logits_for, model_sources

st.set_page_config(page_title="KD Lab", page_icon="🧪", layout="wide")
state.init()
ROOT = Path(__file__).resolve().parent

st.title("KD Lab — knowledge distillation for multimodal models")

left, right = st.columns([3, 2])
with left:
    st.markdown(
        """
**Knowledge distillation (KD)** trains a small *student* network to imitate a large, already-trained
*teacher*. Besides the hard label ("this is a 7"), the student learns from the teacher's whole output
distribution, softened by a temperature *T*: how much the teacher thinks the 7 looks like a 1 or a 9.
These relative probabilities of the wrong classes — Hinton's *dark knowledge* — are a richer training
signal than one-hot labels, so a distilled student often beats the same student trained on labels alone.

Here the teacher and the student are **multimodal**: they read handwritten images, spoken digits and
digit names (or six views of one digit), fused with attention. The lab trains a teacher, a student
*without* KD (the baseline, same initial weights and data order) and the student *with* KD, so the KD
gain you see is the effect of distillation alone — and sometimes it is negative: cross-modal KD only
helps as far as the student's modality contains what the teacher relies on.
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
        out = logits_for(models, 7)
        fig = hard_vs_soft_figure(out["label"], out["teacher"].numpy(), 4.0, models.data.class_names,
                                  uirevision="home")
        fig.update_layout(title="What the student learns from: label vs teacher's soft target (T = 4)")
        st.plotly_chart(fig, key="home-figure")
        st.caption("A real test sample and the bundled teacher. Explore it in the Temperature explorer.")

st.header("Presets")
st.caption("Each preset is a full experiment spec. *Load* opens it in Setup; *Run* starts it right away.")
cols = st.columns(2)
for i, name in enumerate(PRESETS):
    spec = state.preset_spec(name)
    with cols[i % 2].container(border=True):
        st.subheader(name)
        st.markdown(spec.description.strip() or "_no description_")
        s_mods = ", ".join(spec.student_modalities())
        t_mods = ", ".join(spec.teacher_modalities())
        losses = " + ".join(f"{k} {v.weight:g}" for k, v in spec.distill.losses.items())
        st.caption(f"dataset **{spec.data.dataset}** · teacher sees {t_mods} · student sees {s_mods} · "
                   f"loss {losses} · T={spec.distill.temperature:g} · epochs {spec.train.teacher_epochs}/"
                   f"{spec.train.student_epochs}")
        b1, b2 = st.columns(2)
        if b1.button("Load in Setup", key=f"load-{name}"):
            state.load_preset_into_session(name)
            st.switch_page("pages/1_Setup.py")
        if b2.button("▶ Run", key=f"run-{name}"):
            state.load_preset_into_session(name)
            state.submit()
            st.switch_page("pages/2_Train.py")

st.header("Pages")
for page in sorted((ROOT / "pages").glob("*.py")):
    st.page_link(f"pages/{page.name}", label=page.stem.split("_", 1)[-1].replace("_", " "))
