"""Attention: where the attention fusion of teacher and student looks — the modality weights α per
class and epoch (live while a run trains), per sample, and as one modality gets noisier or is removed."""

from __future__ import annotations


import numpy as np
import streamlit as st
import torch

from kdcore.data import DATASETS
from kdcore.explain.attention import alpha_on_split, attention_history, noise_sweep, removal_sweep
from kdcore.explain.runs import LoadedRun, RunError, checkpoint_key, from_job
from kdcore.viz.attention import (alpha_epochs_figure, alpha_heatmaps, alpha_mean_lines, removal_figure,
                                  robustness_figure, sample_alpha_bars)
from ui import state
from ui.inspect import cached_run, pick_run, run_events
from kdcore.viz.video import clip_strip_figure
from ui.preview import input_figure

st.set_page_config(page_title="KD Lab · Attention", page_icon="🧪", layout="wide")
state.init()
ss = st.session_state
st.title("Attention")
st.caption("The attention fusion weighs each modality per sample: α = softmax over the modalities present, "
           "so α sums to 1 for every sample. Heatmaps show the mean α per true class (validation split, "
           "recorded after every epoch); the views below evaluate the best checkpoints on the test split.")


# ---- which run ---------------------------------------------------------------------------
job, run_dir, live = pick_run("att-run")
choice = ss["att-run"]
ss["att-ck"] = checkpoint_key(run_dir)  # checkpoints this full run loads; the live view reruns when they change


def current_events() -> tuple[list[dict], bool]:
    return run_events(job, run_dir)


def current_run() -> LoadedRun | None:
    if run_dir is None:
        return None
    try:
        if job is not None and job.done and job.models:
            return from_job(job)
        return cached_run(str(run_dir), checkpoint_key(run_dir))
    except RunError as exc:
        st.error(str(exc))
        return None


# ---- live: α per class and epoch -------------------------------------------------------------
@st.fragment(run_every=2.0 if live else None)
def live_view() -> None:
    events, running = current_events()
    hist = attention_history(events)
    if job is not None and ss.get("att-was-live") and not running:
        ss["att-was-live"] = False
        st.rerun()
    if running and ss.get("att-ck") != checkpoint_key(run_dir):
        st.rerun()  # a phase finished (new checkpoint): reload the models below  # the job ended: one full rerun stops the polling and loads the checkpoints
    ss["att-was-live"] = running
    if not hist:
        st.info("No attention snapshot yet: they arrive after every epoch of a model with attention fusion."
                if running else "This run recorded no attention snapshots (its models do not use attention fusion).")
        return
    class_names = None
    phases = list(hist)
    students = [p for p in phases if p != "teacher"]
    c1, c2, c3 = st.columns([1, 1, 2])
    student = c1.selectbox("student phase", students or phases, key="att-student",
                           index=(students or phases).index("kd") if "kd" in (students or phases) else 0)
    snaps = hist.get(student, [])
    follow = c2.toggle("follow the latest epoch", value=True, key="att-follow",
                       help="Off: pick an epoch with the slider.")
    epochs = [s["epoch"] for s in snaps]
    if not epochs:
        st.info(f"{student}: no epoch finished yet.")
        return
    if follow or len(epochs) == 1:
        epoch = epochs[-1]
        c3.markdown(f"epoch **{epoch}** of {student}" + (" — live" if running else ""))
    else:
        epoch = c3.select_slider("epoch", options=epochs, value=epochs[-1], key="att-epoch")
    snap = next(s for s in snaps if s["epoch"] == epoch)
    panels = {}
    if "teacher" in hist and student != "teacher":
        t = hist["teacher"][-1]
        panels[f"teacher (epoch {t['epoch']}, final)"] = t
    panels[f"{student} (epoch {epoch})"] = snap
    st.plotly_chart(alpha_heatmaps(panels, class_names, uirevision=f"att-heat-{choice}"), key="att-heatmap")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(alpha_epochs_figure(snaps, class_names, title=f"{student}: α per class over epochs",
                                            uirevision=f"att-frames-{choice}-{student}"), key="att-frames")
    with right:
        st.plotly_chart(alpha_mean_lines(hist, uirevision=f"att-lines-{choice}"), key="att-lines")


live_view()

# ---- the finished phases' models -----------------------------------------------------------------
run = current_run()
if run is None or not run.models:
    st.info("The per-sample and robustness views need a finished phase (its best checkpoint); "
            "they appear here when the teacher has finished.")
    st.stop()
with_attention = {p: m for p, m in run.models.items() if getattr(m, "fusion_type", "") == "attention"}
if not with_attention:
    st.info("None of this run's models uses attention fusion, so there is no α to inspect.")
    st.stop()
for n in run.notes:
    st.caption(f"note: {n}")
test = run.data.split("test")
models = list(with_attention)

# ---- per sample ---------------------------------------------------------------------------------------
st.header("One sample")
c1, c2 = st.columns([1, 3])
pos = int(c1.number_input("test sample", min_value=0, max_value=len(test) - 1, value=0, step=1, key="att-sample",
                          help=f"position in the test split (0–{len(test) - 1})"))
idx = int(test.indices[pos])
label = run.data.class_names[int(run.data.labels[idx])]
alphas, preds = {}, {}
rows = torch.tensor([pos])
for phase in models:
    stats = alpha_on_split(with_attention[phase], test, run.modalities(phase), rows=rows)
    alphas[phase] = {m: float(v) for m, v in zip(stats.modalities, stats.alpha[0]) if m in run.modalities(phase)}
    preds[phase] = run.data.class_names[int(stats.preds[0])]
with c2:
    st.markdown(f"true class **{label}** · " + " · ".join(f"{p} predicts **{v}**" for p, v in preds.items()))
    if run.data.pairing_note:
        st.caption(run.data.pairing_note)
cols = st.columns(4)
meta = run.data.meta
kinds = {m: i.kind for m, i in run.data.modalities.items()}
col = 0
for m, kind in kinds.items():
    x = run.data.inputs[m][idx]
    with cols[col % 3]:
        if kind == "image":
            st.plotly_chart(input_figure(x[0].numpy(), f"{m} (input the models see)", uirevision="att-input"),
                            key=f"att-in-{m}", config={"displayModeBar": False})
            if "image_clean" in meta:
                st.plotly_chart(input_figure(meta["image_clean"][idx, 0].numpy(), "clean image",
                                             uirevision="att-input"), key=f"att-clean-{m}",
                                config={"displayModeBar": False})
        elif kind == "spectrogram":
            st.plotly_chart(input_figure(x[0].numpy(), f"{m}: log-mel spectrogram", kind="spectrogram",
                                         uirevision="att-input"), key=f"att-in-{m}", config={"displayModeBar": False})
            st.caption("Low frequencies at the bottom.")
            if "audio_waves" in meta:
                wave = meta["audio_waves"][int(meta["audio_clip"][idx])].astype(np.float32) / 32767.0
                st.audio(wave, sample_rate=int(meta["audio_sample_rate"]))
        elif kind == "video":
            st.plotly_chart(clip_strip_figure(x.numpy(), f"{m}: {x.shape[1]} frames", uirevision="att-input"),
                            key=f"att-in-{m}", config={"displayModeBar": False})
        elif kind == "tokens":
            text = meta.get("texts", [None] * (idx + 1))[idx]
            st.markdown(f"**{m}**")
            st.code(text if text is not None else "(not stored)", language=None)
        else:
            st.markdown(f"**{m}**: {x.numel()} features (vector view)")
    col += 1
with cols[3]:
    st.plotly_chart(sample_alpha_bars(alphas, preds, uirevision=f"att-sample-{choice}"), key="att-sample-bars")

# ---- robustness -------------------------------------------------------------------------------------
st.header("Robustness")
st.caption("Evaluated on the fly on the test split with the best checkpoints. When one modality gets noisier "
           "the attention should move to the clean ones; removing a modality shows what the rest carry.")
removal_key = (choice, tuple(models), checkpoint_key(run_dir))
if ss.get("att-removal-result", {}).get("key") != removal_key:
    with st.spinner("Evaluating with each modality removed…"):
        ss["att-removal-result"] = {"key": removal_key, "rows": removal_sweep(
            with_attention, test, {p: run.modalities(p) for p in models})}
st.plotly_chart(removal_figure(ss["att-removal-result"]["rows"], uirevision=f"att-removal-{choice}"),
                key="att-removal")

knobs = DATASETS[run.spec.data.dataset].noise_knobs()
for k in getattr(DATASETS[run.spec.data.dataset], "SHAPE_KNOBS", ()):  # they change the input shape / the split
    knobs.pop(k, None)
if knobs:
    c1, c2, c3 = st.columns([2, 2, 1])
    knob = c1.selectbox("noise knob", list(knobs), key="att-knob",
                        format_func=lambda k: f"{k} — {knobs[k][2]}")
    lo, hi, _ = knobs[knob]
    cur_level = float(run.spec.data.noise.get(knob, lo))
    span = c2.slider("levels from … to", min_value=float(lo), max_value=float(hi),
                     value=(float(lo), float(min(hi, max(cur_level * 3, lo + (hi - lo) / 2)))), key="att-span",
                     help=f"allowed range [{lo}, {hi}]; the run trained at {knob} = {cur_level:g}")
    points = int(c3.number_input("points", min_value=2, max_value=8, value=4, key="att-points"))
    levels = [round(float(v), 4) for v in np.linspace(span[0], span[1], points)]
    if st.button(f"Evaluate α and accuracy at {', '.join(f'{v:g}' for v in levels)}", key="att-sweep"):
        bar = st.progress(0.0, text="rebuilding the test data at each noise level…")
        rows_ = noise_sweep(with_attention, run.spec.data, knob, levels, {p: run.modalities(p) for p in models},
                            progress=lambda f: bar.progress(f, text=f"{int(100 * f)}% of the levels done"))
        bar.empty()
        ss["att-sweep-result"] = {"key": (choice, knob, tuple(levels), tuple(models)), "rows": rows_, "knob": knob}
    res = ss.get("att-sweep-result")
    if res and res["key"][0] == choice:
        st.plotly_chart(robustness_figure(res["rows"], res["knob"], uirevision=f"att-robust-{choice}"),
                        key="att-robustness")
