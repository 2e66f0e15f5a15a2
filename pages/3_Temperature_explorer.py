"""Temperature explorer (teaching): how the temperature T shapes the teacher's soft targets, the KD
loss and its gradient, on a real sample with real trained models — no training run needed."""

from __future__ import annotations

import numpy as np
import streamlit as st

from kdcore.viz import (
    gradient_split_figure,
    hard_vs_soft_figure,
    kd_quantities,
    softmax_bars_figure,
    temperature_curves_figure,
)
from ui import state
from ui.models import BUNDLED, default_sample, load_models, logits_for, model_sources
from ui.preview import show_sample

st.set_page_config(page_title="KD Lab · Temperature explorer", page_icon="🧪", layout="wide")
state.init()
st.title("Temperature explorer")
st.markdown(
    "The teacher's logits *z* become probabilities through a softmax **at temperature T**. At T = 1 a "
    "confident teacher is almost one-hot; raising T spreads probability over the wrong classes, exposing "
    "which digits the teacher finds similar. KD trains the student to match that softened distribution.")

sources = model_sources()
if not sources:
    st.error("No models found: the bundled example models are missing and no finished run has a teacher "
             "and a KD student yet. Train a run on the Train page, then come back.")
    st.stop()
c1, c2 = st.columns([2, 3])
source = c1.selectbox("models", list(sources), key="tx-source",
                      help="The bundled small teacher + student, or the checkpoints of a finished run.")
models = load_models(str(sources[source]))
students = list(models.students)
student_phase = c2.radio("student", students, horizontal=True, key="tx-student",
                         format_func=lambda p: {"kd": "KD student", "baseline": "student without KD"}.get(p, p)) \
    if students else None
PHASE_WORDS = {"teacher": "teacher", "baseline": "student without KD", "kd": "KD student"}
if source == BUNDLED and models.info.get("phases"):
    acc = ", ".join(f"{PHASE_WORDS.get(p, p)} {100 * r['test_acc']:.1f} %" for p, r in models.info["phases"].items())
    share = models.info.get("labelled_fraction")
    why = (f" The students saw the labels of only {100 * share:g} % of the training samples; the KD student "
           f"also learned from the other {100 * (1 - share):g} % through the teacher's soft targets, which is "
           "why it beats the student without KD.") if share is not None and share < 1 else ""
    st.caption(f"Bundled example models (one training run; test accuracy: {acc}).{why}")

test = models.data.split("test")
first = default_sample(models)
index = st.slider("test sample", 0, len(test) - 1, min(first, len(test) - 1), key="tx-sample",
                  help=f"Opens on sample {first}: the teacher gets it right and its soft target shows a clear "
                       "second choice (the most visible dark knowledge at T = 4).")
out = logits_for(models, index)
names = models.data.class_names
zt = out["teacher"].numpy()
zs = out[student_phase].numpy() if student_phase else None
label = out["label"]
with st.expander(f"The sample (true class {names[label]})", expanded=True):
    show_sample(models.data, out["sample"], models.spec.data.all_modalities(), key="tx-preview")
    st.caption(f"The teacher sees {', '.join(models.spec.teacher_modalities())}; the student sees "
               f"{', '.join(models.spec.student_modalities())}.")


@st.fragment
def temperature_view() -> None:
    """Moving T or α reruns only this part (not the sample preview above)."""
    c1, c2 = st.columns([3, 1])
    T = c1.slider("temperature T", 0.5, 20.0, 4.0, 0.5, key="tx-T")
    alpha = c2.slider("α (KD weight)", 0.0, 1.0, 0.9, 0.05, key="tx-alpha",
                      help="L = α·T²·KL(p_t‖p_s) + (1−α)·CE(y, p_s at T=1)")
    st.plotly_chart(softmax_bars_figure(zt, zs, T, names, label), key="tx-bars")
    if zs is not None:
        q = kd_quantities(zt, zs, [T])
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("KL(p_t‖p_s) at T", f"{q['kl'][0]:.4f}")
        m2.metric("KD loss T²·KL", f"{q['kd_loss'][0]:.4f}")
        m3.metric("‖∂L_KD/∂z_s‖", f"{q['grad_norm'][0]:.4f}")
        m4.metric("teacher entropy (nats)", f"{q['teacher_entropy'][0]:.3f}", f"max {np.log(len(names)):.3f}",
                  delta_color="off")
        st.plotly_chart(temperature_curves_figure(zt, zs, T), key="tx-curves")
    st.plotly_chart(hard_vs_soft_figure(label, zt, T, names), key="tx-hard-soft")
    if zs is not None:
        st.subheader("Where the student's gradient comes from")
        fig = gradient_split_figure(zs, zt, label, T, alpha, names)
        st.plotly_chart(fig, key="tx-grad")
        st.caption("Negative bars push a logit up. CE only pushes the true class; KD also shapes the wrong "
                   "classes toward the teacher's relative preferences.")


temperature_view()

st.subheader("The formula")
st.latex(r"p_i^{T} = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)}")
st.latex(r"\mathcal{L} = \alpha\, T^2\, \mathrm{KL}\!\left(p_t^{T} \,\|\, p_s^{T}\right)"
         r" + (1-\alpha)\, \mathrm{CE}\!\left(y,\, p_s^{1}\right)")
st.latex(r"\frac{\partial\, T^2\,\mathrm{KL}}{\partial z_{s}} = T\,\left(p_s^{T} - p_t^{T}\right)")
st.markdown(
    "The **T²** factor (Hinton et al. 2015) keeps the KD gradient on the same scale as the CE gradient as "
    "T changes: without it the gradient would shrink roughly like 1/T² (right-hand chart above).")

