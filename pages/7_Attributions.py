"""Attributions: which parts of each input the teacher and the students rely on (Captum, on eval-mode
copies of the models), per-modality shares, and whether distillation made the student look where the
teacher looks — teacher–student agreement per sample, on a fixed probe set, and across epochs (live)."""

from __future__ import annotations


import numpy as np
import pandas as pd
import streamlit as st

from kdcore.explain.agreement import agreement
from kdcore.explain.attribution import METHODS, AttributionError, AttributionParams, attribute_batches, token_scores
from kdcore.explain.callback import agreement_history
from kdcore.explain.probe import probe_rows
from kdcore.explain.runs import RunError, checkpoint_key, from_job
from kdcore.viz.attributions import (agreement_epochs_figure, agreement_samples_figure, feature_bars_figure,
                                     image_maps_figure, shares_figure, token_figure)
from kdcore.viz.video import frame_shares_figure, video_maps_figure
from ui import state
from ui.inspect import cached_run, pick_run, run_events

st.set_page_config(page_title="KD Lab · Attributions", page_icon="🧪", layout="wide")
state.init()
ss = st.session_state
st.title("Attributions")
st.caption("Captum attributions of the true class, computed on eval-mode deep copies of the best checkpoints "
           "(never the model being trained). Agreement compares teacher and student attribution magnitudes "
           "per sample: Spearman rank correlation and the overlap of their top-k features.")


# ---- which run ---------------------------------------------------------------------------
job, run_dir, live = pick_run("attr-run")
choice = ss["attr-run"]
ss["attr-ck"] = checkpoint_key(run_dir)  # checkpoints this full run loads; the live view reruns when they change


def current_events() -> tuple[list[dict], bool]:
    return run_events(job, run_dir)


# ---- live: agreement across epochs ------------------------------------------------------------
@st.fragment(run_every=2.0 if live else None)
def live_view() -> None:
    events, running = current_events()
    if job is not None and ss.get("attr-was-live") and not running:
        ss["attr-was-live"] = False
        st.rerun()
    if running and ss.get("attr-ck") != checkpoint_key(run_dir):
        st.rerun()  # a phase finished (new checkpoint): reload the models below
    ss["attr-was-live"] = running
    hist = agreement_history(events)
    st.subheader("Agreement with the teacher across epochs")
    if not hist:
        st.info("No per-epoch agreement recorded for this run. Runs started from this app record it every few "
                "student epochs; the on-demand view below works for any run."
                + (" Waiting for the first student epoch…" if running else ""))
        return
    last = next(iter(hist.values()))[-1]
    c1, c2 = st.columns(2)
    metric = c1.radio("measure", ["spearman", "topk"], horizontal=True, key="attr-live-metric",
                      format_func={"spearman": "Spearman ρ", "topk": f"top-{last['k_frac']:.0%} overlap"}.get)
    mods = ["all", *last["modalities"]]
    modality = c2.selectbox("modality", mods, key="attr-live-mod")
    st.plotly_chart(agreement_epochs_figure(hist, metric, modality, uirevision=f"attr-live-{choice}"),
                    key="attr-live-fig")
    st.caption(f"{last['method']} on {last['samples']} fixed validation samples, recorded after each epoch"
               + (" — live" if running else "") + ".")


live_view()

# ---- models ---------------------------------------------------------------------------------
try:
    if run_dir is None:
        run = None
    elif job is not None and job.done and job.models:
        run = from_job(job)
    else:
        run = cached_run(str(run_dir), checkpoint_key(run_dir))
except RunError as exc:
    st.error(str(exc))
    st.stop()
if run is None or not run.models:
    st.info("On-demand attributions need a finished phase (its best checkpoint); they appear when the teacher "
            "has finished.")
    st.stop()
for n in run.notes:
    st.caption(f"note: {n}")

# ---- method parameters ---------------------------------------------------------------------------
st.subheader("Attributions on a fixed probe set of the test split")
test = run.data.split("test")
with st.form("attr-form"):
    c1, c2, c3, c4 = st.columns(4)
    method = c1.selectbox("method", list(METHODS), format_func=METHODS.get, key="attr-method")
    samples = int(c2.number_input("probe samples", 1, min(64, len(test)), 8, key="attr-samples",
                                  help="fixed, class-stratified samples of the test split"))
    target = c3.selectbox("explain", ["label", "pred"], key="attr-target",
                          format_func={"label": "the true class", "pred": "each model's prediction"}.get)
    k_frac = c4.slider("top-k fraction", 0.02, 0.5, 0.1, 0.01, key="attr-k",
                       help="k = this fraction of a modality's features (for the top-k overlap)")
    c1, c2, c3, c4, c5 = st.columns(5)
    steps = int(c1.number_input("IG steps", 2, 256, 32, key="attr-steps", help="Integrated Gradients only"))
    baseline = c2.selectbox("baseline", ["zeros", "mean"], key="attr-baseline",
                            help="IG and occlusion reference: zeros, or the training-split mean (text: PAD)")
    nsamples = int(c3.number_input("noise samples", 1, 64, 8, key="attr-nsamples", help="SmoothGrad only"))
    nstd = float(c4.number_input("noise σ (× input std)", 0.01, 2.0, 0.15, 0.01, key="attr-nstd",
                                 help="SmoothGrad only"))
    window = int(c5.number_input("occlusion window", 1, 16, 4, key="attr-window",
                                 help="Occlusion only: square side in pixels / bins, or features; text: one token"))
    submitted = st.form_submit_button("Compute attributions", type="primary")

params = AttributionParams(steps=steps, baseline=baseline, noise_samples=nsamples, noise_std=nstd, window=window,
                           target=target)
key = (choice, checkpoint_key(run_dir), tuple(run.models), method, samples, k_frac, repr(params))
result = ss.get("attr-result")
if submitted or result is None or result["key"][:3] != key[:3]:
    rows = probe_rows(test, samples, run.spec.data.seed)
    tr = run.data.split("train")
    reference = {m: run.data.inputs[m][tr.indices] for m in run.data.inputs if run.data.inputs[m].is_floating_point()}
    attrs, errors = {}, []
    bar = st.progress(0.0, text=f"{METHODS[method]}…")
    phases = list(run.models)
    for i, phase in enumerate(phases):
        b = test.batch(rows, run.modalities(phase))
        try:
            attrs[phase] = attribute_batches(
                run.models[phase], b.inputs, method, b.labels, params, batch_size=4, reference=reference,
                progress=lambda f, i=i: bar.progress((i + f) / len(phases), text=f"{METHODS[method]}: {phase}…"))
        except AttributionError as exc:
            errors.append(f"{phase}: {exc}")
    bar.empty()
    result = ss["attr-result"] = {"key": key, "attrs": attrs, "rows": rows, "errors": errors}
attrs, rows = result["attrs"], result["rows"]
for e in result["errors"]:
    st.warning(e)
if not attrs:
    st.stop()
notes = sorted({n for a in attrs.values() for n in a.notes})
for n in notes:
    st.caption(f"note: {n}")

# ---- shares and agreement ------------------------------------------------------------------------
left, right = st.columns(2)
with left:
    shares = {p: a.mean_shares() for p, a in attrs.items() if a.shares is not None}
    if shares:
        st.plotly_chart(shares_figure(shares, uirevision=f"attr-shares-{choice}"), key="attr-shares")
    else:
        st.caption("Grad-CAM maps live on each encoder's own scale: no per-modality shares.")
ag = {}
if "teacher" in attrs:
    for p, a in attrs.items():
        if p != "teacher":
            ag[p] = agreement(attrs["teacher"], a, k_frac)
with right:
    if ag:
        st.plotly_chart(agreement_samples_figure({p: g.per_sample()[:, 0].numpy() for p, g in ag.items()},
                                                 uirevision=f"attr-agree-{choice}"), key="attr-agree-samples")
if ag:
    table = []
    for p, g in ag.items():
        for m, v in g.mean().items():
            table.append({"student": p, "modality": m, "Spearman ρ": v["spearman"], f"top-k overlap": v["topk"]})
    st.dataframe(pd.DataFrame(table), hide_index=True, key="attr-agree-table")
    st.caption("Mean over the probe samples; k = ⌈fraction × features⌉ (for text: × the sample's characters). "
               "Input-times-gradient methods (IG, occlusion) agree partly through the input itself: even an "
               "untrained student agrees with the teacher where the input is large. Compare the students with "
               "each other, not with 0.")

# ---- one sample ----------------------------------------------------------------------------------
st.subheader("One sample, teacher and students side by side")
labels = test.labels[rows]
names = run.data.class_names
pick = st.selectbox("probe sample", list(range(len(rows))), key=f"attr-pick-{len(rows)}",
                    format_func=lambda i: f"#{int(rows[i])} of the test split — class {names[int(labels[i])]}")
idx = int(test.indices[rows[pick]])
preds = {p: names[int(a.logits[pick].argmax())] for p, a in attrs.items()}
st.markdown(f"true class **{names[int(labels[pick])]}** · "
            + " · ".join(f"{p} predicts **{v}**" for p, v in preds.items()))
if ag:
    st.caption(" · ".join(f"{p}: ρ = {float(g.per_sample()[pick, 0]):.2f}, top-k = {float(g.per_sample()[pick, 1]):.2f}"
                          for p, g in ag.items()))
meta = run.data.meta
for m, info in run.data.modalities.items():
    having = {p: a for p, a in attrs.items() if m in a.maps}
    if not having:
        continue
    x = run.data.inputs[m][idx]
    if info.kind in ("image", "spectrogram"):
        st.plotly_chart(image_maps_figure(x.numpy(), {p: a.maps[m][pick].numpy() for p, a in having.items()},
                                          method, m, spectrogram=info.kind == "spectrogram",
                                          uirevision=f"attr-{m}-{choice}"), key=f"attr-map-{m}")
        if info.kind == "spectrogram" and "audio_waves" in meta:
            wave = meta["audio_waves"][int(meta["audio_clip"][idx])].astype(np.float32) / 32767.0
            st.audio(wave, sample_rate=int(meta["audio_sample_rate"]))
    elif info.kind == "video":  # one row of per-frame maps per model, then where in time each one looks
        vmaps = {p: a.maps[m][pick].numpy() for p, a in having.items()}
        st.plotly_chart(video_maps_figure(x.numpy(), vmaps, method, m, uirevision=f"attr-{m}-{choice}"),
                        key=f"attr-map-{m}")
        st.plotly_chart(frame_shares_figure(vmaps, method, m, uirevision=f"attr-t-{m}-{choice}"),
                        key=f"attr-frames-{m}")
    elif info.kind == "tokens":
        st.plotly_chart(token_figure({p: token_scores(a, m, pick) for p, a in having.items()}, method, m,
                                     uirevision=f"attr-{m}-{choice}"), key=f"attr-map-{m}")
        if "texts" in meta:
            st.caption(f"text: “{meta['texts'][idx]}”")
    else:
        st.plotly_chart(feature_bars_figure({p: a.maps[m][pick].numpy() for p, a in having.items()}, method, m,
                                            uirevision=f"attr-{m}-{choice}"), key=f"attr-map-{m}")
