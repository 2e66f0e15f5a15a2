"""Setup: every field of the experiment spec as grouped widgets (data regime included), a preview of
the data, model sizes, YAML preview / download / upload. The whole setup lives in the URL. Lecture
mode (sidebar) shows only the fields a lesson is about; the others keep their values."""

from __future__ import annotations

import streamlit as st

from kdcore.data import load_data
from kdcore.data import dataset_class
from kdcore.models import build_model, count_parameters
from kdcore.presets import PRESETS
from kdcore.core.spec import ExperimentSpec, SpecError, validate_spec
from ui import state
from ui.lecture import lecture_toggle
from ui.preview import show_sample
from ui.setup_form import Form, data_group, distill_group, model_group, route_errors, spec_errors_box, train_group

st.set_page_config(page_title="KD Lab · Setup", page_icon="🧪", layout="wide")
state.init()
ss = st.session_state
lecture = lecture_toggle()
st.title("Setup")
if ss.get("url_error"):
    st.warning(ss.pop("url_error"))
if ss.get("setup-notice"):
    st.info(ss.pop("setup-notice"))
if lecture:
    st.caption("Lecture mode: only the dataset, modalities, data regime, losses, temperature and epochs are shown; "
               "the other settings keep their values (switch lecture mode off in the sidebar to see them).")

current = state.get_spec()

# ---- load: preset or YAML -------------------------------------------------------------------
c1, c2, c3 = st.columns([2, 1, 3])
preset = c1.selectbox("start from a preset", PRESETS, index=PRESETS.index(state.base_preset())
                      if state.base_preset() in PRESETS else 0, key="setup-preset")
if c2.button("Load preset", key="setup-load-preset"):
    state.load_preset_into_session(preset)
    st.rerun()
upload = c3.file_uploader("…or upload a spec (YAML)", type=["yaml", "yml"], key="setup-upload")
if upload is not None and ss.get("setup-upload-done") != upload.file_id:
    ss["setup-upload-done"] = upload.file_id
    try:
        text = upload.getvalue().decode("utf-8")
        state.set_spec(ExperimentSpec.from_yaml(text))
        st.rerun()
    except (SpecError, UnicodeDecodeError) as exc:
        st.error(f"{upload.name}: {exc}")

form = Form(current.to_dict(), state.spec_version(), lecture=lecture)
d = form.d
slots = {}

if not lecture:
    c1, c2 = st.columns([1, 3])
    d["name"] = c1.text_input("experiment name", value=d["name"], max_chars=80, key=form.key("name"))
    d["description"] = c2.text_area("description", value=d["description"], key=form.key("description"), height=68)
slots["general"] = st.container()

with st.expander("1 · Data & modalities", expanded=True):
    slots["data"] = st.container()
    data_group(form)
if form.errors.get("data") and d["data"]["dataset"] == "custom":  # no usable source yet: nothing else to set
    with slots["data"]:
        spec_errors_box(form.errors, "data")
    st.info("Enter the path of an image folder or CSV manifest (the Data page checks and imports one).")
    st.stop()
dropped = d.pop("_dropped", "")
if d.pop("_dataset_changed", False):
    try:
        state.set_spec(validate_spec(d))
        if dropped:
            ss["setup-notice"] = dropped
        st.rerun()
    except SpecError as exc:
        st.error(str(exc))
        st.stop()

data_cls = dataset_class(d["data"]["dataset"], d["data"].get("path"))
data_mods = d["data"]["modalities"] or data_cls.modality_names()
kinds = data_cls.modality_kinds()
tcol, scol = st.columns(2)
with tcol, st.expander("2 · Teacher", expanded=True):
    slots["teacher"] = st.container()
    t_count = st.empty()
    model_group(form, "teacher", data_mods, kinds)
with scol, st.expander("3 · Student", expanded=True):
    slots["student"] = st.container()
    s_count = st.empty()
    model_group(form, "student", data_mods, kinds)
with st.expander("4 · Distillation", expanded=True):
    slots["distill"] = st.container()
    distill_group(form)
with st.expander("5 · Training", expanded=lecture):
    slots["train"] = st.container()
    train_group(form)

# ---- validate: inline messages per group ---------------------------------------------------
errors = {k: list(v) for k, v in form.errors.items()}
spec: ExperimentSpec | None = None
if not errors:
    try:
        spec = validate_spec(d)
    except SpecError as exc:
        errors = route_errors(str(exc))
for section, slot in slots.items():
    with slot:
        spec_errors_box(errors, section)
if spec is not None:
    if spec.to_dict() != current.to_dict():
        state.set_spec(spec, bump=False)
    state.sync_url(spec)
shown = spec or current

# ---- live model sizes and data preview -----------------------------------------------------
data = load_data(shown.data)
teacher_n = count_parameters(build_model(shown.teacher, shown.teacher_modalities(), data))
t_count.metric("teacher parameters", f"{teacher_n:,}")
if shown.student.kind == "tree":  # its size is known once the trees are grown
    tr = shown.student.tree
    s_count.metric("student", "tree ensemble", f"≤ {tr.rounds} rounds × {data.num_classes} trees × {tr.num_leaves} "
                   "leaves", delta_color="off")
else:
    student_n = count_parameters(build_model(shown.student, shown.student_modalities(), data))
    s_count.metric("student parameters", f"{student_n:,}", f"{teacher_n / max(1, student_n):.1f}× smaller",
                   delta_color="off")

with st.expander("Data preview", expanded=True):
    n = len(data.labels)
    idx = st.slider("sample", 0, n - 1, min(7, n - 1), key="setup-preview-index")
    st.markdown(f"label **{data.class_names[int(data.labels[idx])]}** · "
                f"{len(data.split('train'))} train / {len(data.split('val'))} val / {len(data.split('test'))} test")
    if data.pairing_note:
        st.caption(data.pairing_note)
    show_sample(data, idx, shown.data.all_modalities(), key="setup-preview")

# ---- YAML, link, run -------------------------------------------------------------------------
with st.expander("YAML", expanded=False):
    st.code(shown.to_yaml(), language="yaml")
st.download_button("Download spec (YAML)", shown.to_yaml(), file_name=f"{shown.name}.yaml", mime="text/yaml",
                   key="setup-download")
st.caption("The address bar holds this whole setup: copy the link to share or reproduce it.")
if st.button("▶ Run this setup", type="primary", disabled=spec is None, key="setup-run"):
    state.submit(spec)
    st.switch_page("pages/2_Train.py")
