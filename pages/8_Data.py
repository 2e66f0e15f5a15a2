"""Your data: upload an image folder (zip) or a CSV manifest (+ files), see what is kept and dropped,
use it in the spec; bring your own teacher checkpoint (safetensors)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st

from kdcore.data.custom import (
    IMAGE_SIZE,
    LABEL_COLUMNS,
    MAX_AUDIO_SECONDS,
    MAX_FILE_BYTES,
    MAX_ROWS,
    MAX_UPLOAD_BYTES,
    DataImportError,
    data_root,
    extract_upload,
    inspect_source,
)
from kdcore.core.spec import SpecError, validate_spec
from kdcore.models.checkpoints import CheckpointError, load_state
from kdcore.store.folder import safe_name
from ui import state

st.set_page_config(page_title="KD Lab · Your data", page_icon="🧪", layout="wide")
state.init()
ss = st.session_state
st.title("Your data")
st.markdown(
    f"""
Train on your own data. Two layouts:

* **Image folder** — a zip of `<class name>/<image files>` folders (one subfolder per class).
* **CSV manifest** — a zip holding one `.csv` and the files it names, or a `.csv` alone for
  text / numeric data. One label column (`{"`, `".join(LABEL_COLUMNS)}`) and one column per
  modality: image paths, `.wav` paths, text, or numbers (columns `view.0`, `view.1`, … form one
  vector view). A `classes.txt` next to the manifest fixes the allowed labels.

Every row is checked; bad rows are dropped and listed with the reason. Limits: upload
{MAX_UPLOAD_BYTES // 2**20} MiB, {MAX_ROWS:,} rows, {MAX_FILE_BYTES // 2**20} MiB per file,
{MAX_AUDIO_SECONDS:.0f} s per clip (PCM WAV). Images are resized to
{IMAGE_SIZE}×{IMAGE_SIZE}. Each audio clip is resampled to 8 kHz, trimmed of leading and trailing
silence, level-normalised and centre-cropped or zero-padded to 1 s on its own, then turned into a
32 × 32 log-mel spectrogram, as the bundled speech is. Nothing leaves this machine.
"""
)

REPORT_KEY, PATH_KEY, DONE_KEY = "data-report", "data-path", "data-upload-done"


def check(path: Path | str) -> None:
    try:
        report = inspect_source(path)
    except DataImportError as exc:
        ss.pop(REPORT_KEY, None)
        st.error(str(exc))
        return
    ss[REPORT_KEY] = report.to_dict()
    ss[PATH_KEY] = str(path)


up_col, path_col = st.columns(2)
with up_col:
    upload = st.file_uploader("Upload a .zip (image folder, or CSV + files) or a .csv", type=["zip", "csv"],
                              key="data-upload")
    if upload is not None and ss.get(DONE_KEY) != upload.file_id:
        ss[DONE_KEY] = upload.file_id
        data = upload.getvalue()
        try:
            with st.spinner("unpacking and checking every row…"):
                check(extract_upload(data, upload.name))
        except DataImportError as exc:
            st.error(f"{safe_name(upload.name)}: {exc}")
with path_col:
    local = st.text_input("…or a folder / CSV already on this machine", key="data-local-path",
                          placeholder="/path/to/images or /path/to/manifest.csv")
    if st.button("Check", key="data-check-local", disabled=not local):
        with st.spinner("checking every row…"):
            check(local.strip())

report = ss.get(REPORT_KEY)
if report:
    st.subheader("Report")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("rows", report["rows_total"])
    c2.metric("kept", report["kept"])
    c3.metric("dropped", report["dropped_count"])
    c4.metric("classes", len(report["classes"]))
    st.caption(f"source: `{report['source']}` ({report['layout']})")
    for w in report["warnings"]:
        st.warning(w)
    left, right = st.columns(2)
    left.markdown("**Modalities**")
    left.dataframe(pd.DataFrame({"modality": list(report["modalities"]), "kind": list(report["modalities"].values())}),
                   hide_index=True, key="data-mods")
    right.markdown("**Rows per class (kept)**")
    right.bar_chart(pd.Series(report["per_class"], name="rows"))
    if report["dropped"]:
        st.markdown("**Dropped rows**")
        st.dataframe(pd.DataFrame(report["dropped"]), hide_index=True, key="data-dropped")
    usable = report["kept"] > 0 and len(report["classes"]) >= 2
    if not usable:
        st.error("No usable dataset: at least two classes with usable rows are needed.")
    mods = list(report["modalities"])
    # one widget per checked source: a second upload gets a fresh default, not the last one's stale choice
    mods_key = "data-student-mods-" + hashlib.sha1(f"{report['source']}|{','.join(mods)}".encode()).hexdigest()[:10]
    student_mods = st.multiselect("student modalities (the teacher sees all)", mods, default=mods[-1:],
                                  key=mods_key)
    if usable and not student_mods:
        st.info("Pick at least one student modality to use this data.")
    if st.button("Use this data in the spec", type="primary", disabled=not usable or not student_mods,
                 key="data-use"):
        d = state.get_spec().to_dict()
        d["data"].update({"dataset": "custom", "path": ss[PATH_KEY], "modalities": None, "noise": {},
                          "aux_tasks": []})
        for role in ("teacher", "student"):
            d[role]["encoders"] = {}
            d[role]["modalities"] = None
        d["student"]["modalities"] = student_mods
        d["teacher"]["checkpoint"] = None
        try:
            state.set_spec(validate_spec(d))
            st.success("The spec now uses this data. Adjust models and training on the **Setup** page "
                       "(sidebar), then train.")
        except SpecError as exc:
            st.error(str(exc))

st.divider()
st.subheader("Your own teacher")
st.markdown(
    "Upload a teacher checkpoint as **safetensors** (e.g. `checkpoints/teacher.safetensors` of an earlier run). "
    "Pickle files (`.pt`, `.pth`, `.pkl`) are refused: loading them can run code. The checkpoint must match the "
    "teacher architecture of the current spec; a mismatch is reported with the first differing layer."
)
ck = st.file_uploader("teacher checkpoint (.safetensors)", type=["safetensors"], key="data-teacher")
if ck is not None:
    data = ck.getvalue()
    if len(data) > MAX_UPLOAD_BYTES:
        st.error(f"{safe_name(ck.name)} is over the {MAX_UPLOAD_BYTES // 2**20} MiB limit")
    else:
        dest = data_root() / "teachers" / f"{safe_name(Path(ck.name).stem, 40)}-{hashlib.sha256(data).hexdigest()[:8]}.safetensors"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            dest.write_bytes(data)
        try:
            load_state(dest)
        except CheckpointError as exc:
            dest.unlink(missing_ok=True)
            st.error(str(exc))
        else:
            if st.button("Check it against the current teacher and use it", key="data-teacher-use"):
                from kdcore.data import load_data
                from kdcore.models import build_model
                from kdcore.models.checkpoints import load_into

                spec = state.get_spec()
                try:
                    with st.spinner("loading data and building the teacher…"):
                        data_ = load_data(spec.data)
                        load_into(build_model(spec.teacher, spec.teacher_modalities(), data_), dest)
                    d = spec.to_dict()
                    d["teacher"]["checkpoint"] = str(dest)
                    state.set_spec(validate_spec(d))
                    st.success("The checkpoint matches; the teacher will be loaded instead of trained.")
                except (CheckpointError, DataImportError, SpecError) as exc:
                    st.error(str(exc))
