"""Compare: every run folder as a row — the spec fields that differ between runs first (highlighted),
then the KD gain, accuracy, agreement with the teacher, ECE and omitted-class accuracy — overlay the
curves of the selected runs, export the table as CSV. The selection is in the URL (``?runs=id1,id2``)
and other pages open it with runs selected (Explore: a sweep grid point's runs; ``ui/compare.py``)."""

from __future__ import annotations

import streamlit as st

from kdcore.service.jobs import runs_dir
from kdcore.viz import overlay_figure
from ui import compare, state
from ui.runs import list_runs, run_events, runs_table

st.set_page_config(page_title="KD Lab · Compare", page_icon="🧪", layout="wide")
state.init()
st.title("Compare runs")
root = runs_dir()
runs = list_runs(root)
if not runs:
    st.info(f"No run folders in `{root}` yet. Runs started from the app or the CLI "
            "(`python -m kdcore run --runs-dir ...`) appear here.")
    st.stop()

df, differ = runs_table(runs)
st.caption(f"{len(runs)} runs in `{root}`. The highlighted columns right after the name are the settings that "
           "differ between the runs (empty and unset count as the same); then the KD gain (KD student − the same "
           "student without KD, test accuracy points) and the metrics. Select rows to overlay their curves. "
           "“–”: not measured in that run.")
if not differ:
    st.caption("All runs share the same settings (apart from their names).")
styled = df.style.apply(lambda col: ["background-color: #FFF3BF" if col.name in differ else "" for _ in col],
                        axis=0).format(precision=2, na_rep="–")
asked = compare.apply_preselection(runs)  # runs another page (or the link) asked for: selected below
if asked is not None and asked.missing:
    st.warning(f"Not in `{root}` (deleted, or stored elsewhere): {', '.join(asked.missing)}.")
event = st.dataframe(styled, hide_index=True, on_select="rerun", selection_mode="multi-row", key=compare.TABLE_KEY,
                     column_config={"name": st.column_config.Column(pinned=True)})
st.download_button("Export CSV", df.to_csv(index=False), file_name="kdlab-runs.csv", mime="text/csv",
                   key="cmp-csv")

selected = list(event.selection.rows) if event is not None else []
compare.keep_selection(runs, selected)
origin = compare.origin_caption(runs, selected)
if origin:
    st.info(origin, icon=":material/explore:")
note = compare.shared_note(runs, selected)
if note:
    st.caption(note)
if not selected:
    selected = list(range(min(2, len(runs))))
    st.caption("No rows selected: showing the newest two runs.")
c1, c2 = st.columns(2)
metric = c1.selectbox("metric", ["val_acc", "train_acc", "val_loss", "train_loss"], key="cmp-metric")
phases = sorted({p for i in selected for p in ((runs[i].result or {}).get("phases") or {})}
                | {"teacher", "baseline", "kd"})
phase = c2.selectbox("phase", phases, index=phases.index("kd") if "kd" in phases else 0, key="cmp-phase")
curves = {f"{runs[i].id}": run_events(runs[i]) for i in selected}
st.plotly_chart(overlay_figure(curves, metric=metric, phase=phase), key="cmp-overlay")

# ---- the distilled student where it will be used: ONNX, parity-checked with onnxruntime ---------------
from kdcore.export.onnx_export import OnnxExportError, export_zip_bytes  # noqa: E402


@st.cache_data(show_spinner="Exporting to ONNX and checking parity with onnxruntime …", max_entries=4)
def _onnx_zip(folder: str, run_id: str) -> bytes:
    return export_zip_bytes(folder, ["kd"], exporter="torchscript")


one = runs[selected[0]]
if st.toggle(f"ONNX of {one.id} (teacher + KD student, parity-checked)", key="cmp-onnx"):
    try:
        data = _onnx_zip(str(one.folder), one.id)
    except (OnnxExportError, ValueError, FileNotFoundError) as exc:
        st.error(str(exc).splitlines()[0])
    else:
        st.download_button("Download ONNX zip", data, file_name=f"{one.id}-onnx.zip", mime="application/zip",
                           key="cmp-onnx-dl")

# ---- stored runs that did not finish: resume from the last epoch checkpoint (kdcore.store) -------
from kdcore.store.registry import open_registry  # noqa: E402
from kdcore.store.resume import ResumeError  # noqa: E402

resumable = [r for r in open_registry(root).list() if r.resumable]
if resumable:
    st.subheader("Resume a run")
    by_id = {r.id: r for r in resumable}
    pick = st.selectbox("interrupted, stopped or failed runs", list(by_id), key="cmp-resume-pick",
                        format_func=lambda i: f"{i} — {by_id[i].status} in {by_id[i].phase or 'setup'}"
                                              f" (epoch {by_id[i].epoch or 0})")
    st.caption(by_id[pick].message or "")
    if st.button("Resume", key="cmp-resume",
                 help="Continues from the last epoch checkpoint as a background job: watch it on the Train page."):
        try:
            job = state.submit_resume(pick)  # checks the run and its checkpoint now, or explains why not
        except ResumeError as exc:
            st.error(str(exc))
        else:
            st.success(f"Resuming {pick} from its last checkpoint as job {job.id} "
                       f"({job.status}{', queued behind the running jobs' if job.status == 'queued' else ''}).")
            st.page_link("pages/2_Train.py", label="Watch it live on the Train page", icon=":material/monitoring:")
