"""Train: the live view of a background job — progress + ETA per phase, every loss term, accuracy of
teacher / baseline / KD student, adaptive weights and temperature, learning rate; the preset's lesson
(its claim and what to look at) while it runs; after it, the result table (accuracy, agreement with
the teacher, KL, ECE, omitted-class accuracy before / after the bias correction), the per-class
accuracy chart, the chart that carries the lesson and an honest verdict (the preset's stored
multi-seed result beside this run, or the seed repeat). Leaving the page does not stop the job."""

from __future__ import annotations

import os
import time

import streamlit as st

from kdcore.core.verdict import run_verdict
from kdcore.presets import lessons, measured_for
from kdcore.viz import (
    accuracy_figure,
    loss_terms_figure,
    lr_figure,
    strategy_figure,
    uses_adaptive_strategy,
)
from kdcore.viz.lessons import lesson_figure, lesson_result_table, per_class_figure
from ui import state
from ui.seeds import REPEAT_HINT, REPEAT_LABEL, base_preset_of, seed_group_summary, submit_seed_group

st.set_page_config(page_title="KD Lab · Train", page_icon="🧪", layout="wide")
state.init()
ss = st.session_state
st.title("Train")

manager = state.get_manager()
jobs = sorted(manager.jobs(), key=lambda j: j.created, reverse=True)
job = state.current_job()

if not jobs:
    st.info("No job yet. Run the current setup here, pick a preset on the home page, or edit the setup first.")
    spec = state.get_spec()
    if st.button(f"▶ Run the current setup ({spec.name})", type="primary", key="train-run-current"):
        state.submit(spec)
        st.rerun()
    st.page_link("pages/1_Setup.py", label="Edit the setup")
    st.stop()

if job is None:
    job = jobs[0]
    state.select_job(job.id)
labels = {j.id: f"{j.spec.name} · {j.id}" + (f" · resumes run {j.resumes}" if j.resumes else "")
          + f" · submitted {time.strftime('%H:%M:%S', time.localtime(j.created))}" for j in jobs}
picked = st.selectbox("job", list(labels), index=list(labels).index(job.id), format_func=labels.get,
                      key=f"train-job-picker-{job.id}",
                      help="Every job of this server, newest first (jobs keep running when you leave the page).")
if picked != job.id:
    state.select_job(picked)
    st.rerun()

polling = not job.done
preset = base_preset_of(job.spec)  # from the run's name ("omitted-digit", "digits-av · width 8")
lesson = lessons().get(preset or "") or {}
if lesson:
    text = f"**{preset}** — {lesson.get('claim', '')}"
    if lesson.get("look_at"):
        text += f"\n\n**What to look at:** {lesson['look_at']}"
    if lesson.get("toggle"):
        tg = lesson["toggle"]
        text += f"\n\n**Then try:** {tg.get('label', tg.get('field'))} (setting `{tg.get('field')}` in Setup)."
    if not job.done:
        chart = {"omitted": "the omitted-class accuracy", "agreement": "agreement with the teacher vs accuracy"}
        text += (f"\n\nWhen the run ends: the result table, {chart.get(lesson.get('chart'), 'the lesson chart')} "
                 "and the per-class accuracy chart appear below.")
    st.info(text, icon=":material/school:")
POLL_S = float(os.environ.get("KDLAB_POLL_S", "0.5"))  # live refresh interval (seconds)
TREE = getattr(job.spec.student, "kind", "neural") == "tree"  # tree students: one point per boosting round
EPOCH_AXIS = {"x_title": "epoch (teacher) · boosting round (tree students)"} if TREE else {}
STEP_AXIS = {"x_title": "optimiser step (teacher) · boosting round (tree students)"} if TREE else {}
ss["train-polling"] = polling


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "…"
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def show_result(result: dict, spec) -> None:
    st.subheader("Result (test split, best-on-validation checkpoint)")
    data = result.get("data") or {}
    if data.get("regime"):
        st.caption(f"Data: {data['regime']} · {data.get('test_size', '?')} test samples.")
    st.dataframe(lesson_result_table(result), hide_index=True, key="train-result")
    stored = measured_for(spec, preset) if preset else None
    st.markdown(f"**Verdict:** {run_verdict(result, stored=stored, repeat_hint=REPEAT_HINT)}")
    omitted = list(spec.data.regime.omit_classes) if spec.data.regime else []
    chart = lesson.get("chart") if lesson else None
    fig = lesson_figure(result, chart)
    if fig is None and chart is not None:
        fig = lesson_figure(result, None)
    left, right = st.columns([2, 3])  # the per-class chart has ten groups of bars: the wider column
    if fig is not None:
        left.plotly_chart(fig, key="train-lesson-chart")
    if any(r.get("per_class_acc") for r in result["phases"].values()):
        (right if fig is not None else left).plotly_chart(per_class_figure(result, omitted=omitted),
                                                          key="train-per-class")


@st.fragment(run_every=POLL_S if polling else None)
def live(job_id: str) -> None:
    j = manager.get(job_id)
    if j is None:
        st.warning("This job is no longer in memory (the server keeps the last 50); its run folder remains.")
        return
    snap = j.snapshot()
    c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
    c1.markdown(f"**{snap.name}** — status: **{snap.state_label}**"
                + (f" · run folder `{snap.run_dir}`" if snap.run_dir else ""))
    if not snap.done:  # callbacks act before the rerun, so the rerun already shows the new state
        if snap.status == "running":
            if snap.paused:
                c2.button("Resume", key="train-resume", icon=":material/play_arrow:", on_click=j.resume)
            else:
                c2.button("Pause", key="train-pause", icon=":material/pause:", on_click=j.pause)
        c3.button("Stop", key="train-stop", icon=":material/stop:", on_click=j.stop)
    if snap.status == "queued":
        st.info(f"Waiting in the queue at position {snap.queue_position} "
                f"({len(manager.running())} job(s) running, cap {manager.max_concurrent}).")
    for phase in snap.phases:
        p = snap.progress.get(phase)
        if p is None:
            continue
        if p.state == "pending":
            text = f"{phase}: waiting"
        elif p.state == "done":
            text = f"{phase}: done in {fmt_seconds(p.elapsed_s)}"
        elif TREE and phase in ("baseline", "kd"):  # a tree phase: one step per boosting round
            text = (f"{phase}: boosting round {p.step}/{p.total_steps} (early stopping may end it sooner) · "
                    f"ETA {fmt_seconds(p.eta_s)}" + (" · paused" if snap.paused else ""))
        else:
            text = (f"{phase}: epoch {p.epoch}/{p.epochs} · step {p.step}/{p.total_steps} · "
                    f"ETA {fmt_seconds(p.eta_s)}" + (" · paused" if snap.paused else ""))
        st.progress(p.fraction, text=text)

    if snap.steps:
        c1, c2 = st.columns([3, 1])
        smoothing = c1.slider("smoothing (EMA)", 0.0, 0.99, 0.6, 0.01, key="train-smoothing")
        log_y = c2.checkbox("log scale", value=False, key="train-logy")
        fig = loss_terms_figure(snap.steps, smoothing, log_y, **STEP_AXIS)
        # engine timestamps of the latest steps, for benchmarks/ui_latency.py (event → browser latency)
        fig.update_layout(meta={"event_ts": [e["t"] for e in snap.steps[-50:]]})
        st.plotly_chart(fig, key="train-losses")
    if snap.epochs:
        st.plotly_chart(accuracy_figure(snap.epochs, snap.result, **EPOCH_AXIS), key="train-accuracy")
    if snap.steps:
        if uses_adaptive_strategy(snap.steps):
            st.plotly_chart(strategy_figure(snap.steps), key="train-strategy")
        # a toggle, not a collapsed expander: a hidden chart would still be sent and redrawn every poll
        if st.toggle("show the learning rate", value=False, key="train-show-lr"):
            st.plotly_chart(lr_figure(snap.steps), key="train-lr")

    if snap.done:
        if snap.status != "finished":
            (st.error if snap.status in ("failed", "diverged") else st.warning)(
                f"The run {snap.status}: {snap.message}")
        if snap.result and snap.result.get("phases"):
            show_result(snap.result, j.spec)
        if ss.get("train-polling"):
            ss["train-polling"] = False
            st.rerun()  # once: the page re-renders without polling


live(job.id)

# ---- several seeds ---------------------------------------------------------------------------
st.divider()
group = seed_group_summary(manager, ss.get("seed-group"))
if group is not None:
    st.subheader("Seeds")
    st.dataframe(group["table"], hide_index=True, key="train-seed-table")
    if group["done"]:
        st.markdown(f"**Verdict over {group['n']} seeds:** {group['verdict']}")
    else:
        st.caption(f"{group['finished']}/{group['n']} seeds finished; refresh to update.")
        if st.button("Refresh", key="train-seed-refresh"):
            st.rerun()
if job.done and job.snapshot().status == "finished":
    if st.button(REPEAT_LABEL, key="train-seeds",
                 help="Runs seeds 0, 1, 2 of this spec as separate jobs; one seed is not evidence."):
        ss["seed-group"] = submit_seed_group(manager, job.spec, 3)
        st.rerun()
