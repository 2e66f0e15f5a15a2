"""Session state for the app: the current spec (per browser tab), the process-wide job manager,
the tab's job id, and the spec ⇄ URL round trip.

* The spec lives in ``st.session_state["spec"]`` as a plain dict (always a *valid* spec); widgets
  on the Setup page are keyed by ``spec_version`` so that loading a preset / YAML / URL replaces
  every widget value at once.
* ``get_manager()`` is a ``st.cache_resource``: one :class:`JobManager` per server process,
  shared by every session. Only the job id is kept in the session, so leaving the Train page does
  not stop a job and coming back shows it.
* The URL holds ``preset=<base preset>`` plus every field that differs from it (dotted keys, JSON
  values), so a link reproduces the setup.
* ``KDLAB_FAST=1`` (tests and the UI latency benchmark only) shrinks every loaded preset;
  ``KDLAB_FAST_OVERRIDES`` (space-separated ``field=value``) adds to that shrinking, e.g. the browser
  tests lengthen the students so a live chart has time to update before the run ends;
  ``KDLAB_FAST_EPOCH_HOLD_S`` (fast mode only) holds every epoch's end that long, so a browser test
  sees a live update however fast or slow the machine renders the page.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import streamlit as st

from kdcore.service import ast_guard
from kdcore.service.jobs import Job, JobManager, ui_job_threads, ui_switch_interval_s
from kdcore.presets import DEFAULT_PRESET, PRESETS, load_preset
from kdcore.core.spec import ExperimentSpec, SpecError, validate_spec

SPEC_KEY, VERSION_KEY, JOB_KEY, PRESET_KEY, URL_DONE_KEY = "spec", "spec_version", "job_id", "preset", "url_loaded"
# Mappings whose keys are free: the URL carries them whole (so removing an entry survives the trip).
_WHOLE = {"noise", "encoders", "losses", "params", "weighting_params", "temperature_params", "modalities",
          "aux_tasks", "extra_phases", "teacher_noise_pairs"}  # int-keyed {4: 9}: whole, as JSON {"4": 9}
_NOT_IN_URL = {"description"}

FAST_OVERRIDES = ["data.train_limit=150", "train.teacher_epochs=2", "train.student_epochs=2", "train.batch_size=32"]


def fast_mode() -> bool:
    """True when ``KDLAB_FAST=1``: a quick variant of every preset, for browser tests and benchmarks."""
    return os.environ.get("KDLAB_FAST", "") == "1"


def fast_epoch_hold_s() -> float:
    """Seconds every epoch's end is held in fast mode (``$KDLAB_FAST_EPOCH_HOLD_S``, default 0: none)."""
    if not fast_mode():
        return 0.0
    try:
        return max(0.0, float(os.environ.get("KDLAB_FAST_EPOCH_HOLD_S", "0") or 0))
    except ValueError:
        raise ValueError("KDLAB_FAST_EPOCH_HOLD_S must be a number of seconds, got "
                         f"{os.environ['KDLAB_FAST_EPOCH_HOLD_S']!r}") from None


def fast_overrides() -> list[str]:
    """The overrides of the quick variant: :data:`FAST_OVERRIDES`, then ``$KDLAB_FAST_OVERRIDES``."""
    return FAST_OVERRIDES + os.environ.get("KDLAB_FAST_OVERRIDES", "").split()


def preset_spec(name: str) -> ExperimentSpec:
    spec = load_preset(name)
    return spec.with_overrides(fast_overrides()) if fast_mode() else spec


@st.cache_resource(show_spinner=False)
def get_manager() -> JobManager:
    """The process-wide job manager (cap from ``$KDLAB_MAX_JOBS``, run folders in ``$KDLAB_RUNS_DIR``,
    torch threads per job from ``$KDLAB_JOB_THREADS``, default: all CPUs but one, for the UI).

    Also shortens the interpreter's thread switch interval, so a page rerun does not starve the
    training threads of the GIL (``ui_switch_interval_s``), and serialises AST construction across
    threads (``kdcore.service.ast_guard``)."""
    ast_guard.install()  # job and script threads both build Python ASTs (CPython 3.11 bug, see module)
    sys.setswitchinterval(ui_switch_interval_s())
    return JobManager(threads=ui_job_threads())


# ---- the current spec ---------------------------------------------------------------------
def init() -> None:
    """Call at the top of every page: the spec (from the URL on a session's first page load, else
    the default preset) is in session state afterwards."""
    ss = st.session_state
    if not ss.get(URL_DONE_KEY):
        ss[URL_DONE_KEY] = True
        params = {k: st.query_params[k] for k in st.query_params}
        if params.get(PRESET_KEY) or any("." in k or k == "name" for k in params):
            try:
                spec, base = spec_from_query(params)
                set_spec(spec, base)
            except SpecError as exc:
                ss["url_error"] = f"The link's setup is invalid and was ignored: {exc}"
    if SPEC_KEY not in ss:
        set_spec(preset_spec(DEFAULT_PRESET), DEFAULT_PRESET)


def get_spec() -> ExperimentSpec:
    init()
    return validate_spec(st.session_state[SPEC_KEY])


def spec_version() -> int:
    return int(st.session_state.get(VERSION_KEY, 0))


def set_spec(spec: ExperimentSpec, base_preset: str | None = None, bump: bool = True) -> None:
    """Make ``spec`` current. ``bump`` re-initialises the Setup widgets from it (use it for loads,
    not for edits made through those widgets)."""
    ss = st.session_state
    ss[SPEC_KEY] = spec.to_dict()
    if base_preset is not None:
        ss[PRESET_KEY] = base_preset
    if bump:
        ss[VERSION_KEY] = spec_version() + 1


def base_preset() -> str:
    return st.session_state.get(PRESET_KEY) or DEFAULT_PRESET


def load_preset_into_session(name: str) -> ExperimentSpec:
    spec = preset_spec(name)
    set_spec(spec, name)
    return spec


# ---- jobs --------------------------------------------------------------------------------
def submit(spec: ExperimentSpec | None = None) -> Job:
    """Submit the current (or given) spec to the process-wide manager, named by :func:`labelled`;
    remember it for this tab.

    Teacher–student attribution agreement is tracked during training (IG, 16 samples, every 4th
    student epoch and the last: ~0.1–0.3 s each on 2 CPU cores) for the Attributions page."""
    from kdcore.explain import AgreementCallback

    callbacks: list = [AgreementCallback(every=4)]
    hold = fast_epoch_hold_s()
    if hold:
        import time

        from kdcore.train.callbacks import LambdaCallback

        callbacks.append(LambdaCallback(on_epoch_end=lambda run: time.sleep(hold)))
    job = get_manager().submit(labelled(spec or get_spec()), callbacks=callbacks)
    st.session_state[JOB_KEY] = job.id
    return job


def labelled(spec: ExperimentSpec) -> ExperimentSpec:
    """``spec`` named from this tab's base preset plus what was changed (``kdcore.presets.naming.run_label``),
    so edited copies of one preset are told apart in Train and Compare; a name the user typed stays."""
    from kdcore.presets.naming import run_label

    base = base_preset()
    ref = preset_spec(base) if base in PRESETS else None
    label = run_label(spec, base, ref)
    return spec if label == spec.name else spec.model_copy(update={"name": label})


def submit_resume(run_id: str) -> Job:
    """Queue the continuation of a stored run as a job of this tab (raises ``ResumeError``)."""
    from kdcore.explain import AgreementCallback

    job = get_manager().submit_resume(run_id, callbacks=[AgreementCallback(every=4)])
    st.session_state[JOB_KEY] = job.id
    return job


def current_job() -> Job | None:
    return get_manager().get(st.session_state.get(JOB_KEY))


def select_job(job_id: str) -> None:
    st.session_state[JOB_KEY] = job_id


# ---- URL round trip -----------------------------------------------------------------------
def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k not in _WHOLE:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def spec_to_query(spec: ExperimentSpec, base: str | None = None) -> dict[str, str]:
    """``{"preset": base, "a.b": json(value), ...}`` for every field that differs from the preset."""
    base = base if base in PRESETS else DEFAULT_PRESET
    ref = _flatten(preset_spec(base).to_dict())
    mine = _flatten(spec.to_dict())
    out = {PRESET_KEY: base}
    for k, v in mine.items():
        if k.split(".")[-1] in _NOT_IN_URL or k in _NOT_IN_URL:
            continue
        if ref.get(k, object()) != v:
            out[k] = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    return out


def spec_from_query(params: dict[str, str]) -> tuple[ExperimentSpec, str]:
    """Inverse of :func:`spec_to_query`; unknown keys or bad values raise :class:`SpecError`."""
    base = params.get(PRESET_KEY) or DEFAULT_PRESET
    if base not in PRESETS:
        raise SpecError(f"preset: unknown {base!r}; available: {', '.join(PRESETS)}")
    data = preset_spec(base).to_dict()
    for key, raw in params.items():
        if key == PRESET_KEY:
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        path = key.split(".")
        node = data
        for part in path[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise SpecError(f"unknown setting {key!r} in the link")
            node = node[part]
            if node is None:
                raise SpecError(f"unknown setting {key!r} in the link")
        if not isinstance(node, dict) or path[-1] not in node:
            raise SpecError(f"unknown setting {key!r} in the link")
        node[path[-1]] = value
    return validate_spec(data), base


def sync_url(spec: ExperimentSpec) -> None:
    """Write the spec into the address bar (only when it changed, to avoid needless reruns)."""
    want = spec_to_query(spec, base_preset())
    have = {k: st.query_params[k] for k in st.query_params}
    if have != want:
        st.query_params.from_dict(want)
