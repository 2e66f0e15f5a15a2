"""The Explore page's logic: sweep one or two knobs of a setup over seeds as a background sweep job
(``JobManager.submit_sweep`` → ``kdcore.pipeline.grid.run_grid``) and watch the paired KD gain fill
in with error bars.

* :func:`knobs_for` — the fields that make sense to sweep for a spec, with their allowed ranges;
  :func:`parse_values` validates a typed list ("1, 2, 4, 8") against a knob's range and
  :func:`check_grid` validates every grid point's spec (``grid.point_spec``), so every message
  names the field.
* :func:`suggested_sweeps` — the presets' one-click sweeps (``sweep:`` in ``_lessons.yaml``).
* :func:`sweep_to_query` / :func:`sweep_from_query` — the whole sweep in the URL (``base`` = a
  preset or ``current``; ``setup`` = the current setup as Setup's own query, JSON; ``knob1``,
  ``values1``, ``knob2``, ``values2``, ``seeds``, ``te`` / ``se`` = shorter training).
* :func:`point_run_ids` / :func:`open_point` — every grid point × seed of a sweep is a stored run
  (``submit_sweep`` saves them; each row names its ``run_id``): clicking a point of the KD-gain
  chart, or picking it and pressing "Open on Compare", opens its runs (one per seed) selected on the
  Compare page (``ui.compare.open_runs``).
* :func:`render` — the page.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

from kdcore.pipeline.grid import GridResult, point_spec, shared_phases
from kdcore.presets import PRESETS, lessons
from kdcore.core.spec import ExperimentSpec, SpecError

NONE = "(none)"
MAX_VALUES = 12
MAX_SEEDS = 10
KEYS = ("base", "setup", "knob1", "values1", "knob2", "values2", "seeds", "te", "se")  # URL parameters


@dataclass(frozen=True)
class Knob:
    field: str
    label: str
    kind: str  # "int" | "float"
    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    help: str = ""

    def range_text(self) -> str:
        return f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"

    def contains(self, v: float) -> bool:
        return ((v > self.lo if self.lo_open else v >= self.lo) and (v < self.hi if self.hi_open else v <= self.hi))


BASE_KNOBS = [
    Knob("distill.temperature", "temperature T", "float", 0, 100, lo_open=True,
         help="softens the teacher's and the student's outputs in the KD term (affects only the KD student)"),
    Knob("distill.losses.kd.weight", "KD loss weight", "float", 0, 1e6),
    Knob("distill.losses.ce.weight", "CE loss weight", "float", 0, 1e6),
    Knob("student.encoder.width", "student encoder width", "int", 1, 512),
    Knob("student.encoder.depth", "student encoder depth", "int", 1, 8),
    Knob("data.regime.labelled_fraction", "labelled fraction", "float", 0, 1, lo_open=True,
         help="fraction of the training split whose labels the students see"),
    Knob("data.regime.labels_per_class", "labels per class", "int", 1, 100000,
         help="labelled training samples per class (instead of a fraction)"),
    Knob("data.regime.teacher_label_noise", "teacher label noise", "float", 0, 1, hi_open=True,
         help="fraction of the teacher's training labels flipped"),
    Knob("train.teacher_epochs", "teacher epochs", "int", 0, 1000),
]
GAMMA = Knob("data.noise.gamma", "γ (shared decisive features)", "float", 0, 1,
             help="γ = shared / (20 − shared) decisive latents (mfh-gauss only)")


DEFAULT_VALUES = {"distill.temperature": [1, 2, 4, 8], "distill.losses.kd.weight": [0.25, 0.5, 0.75, 0.9],
                  "distill.losses.ce.weight": [0.1, 0.5, 1], "student.encoder.width": [4, 8, 16, 32],
                  "student.encoder.depth": [1, 2, 3], "data.regime.labelled_fraction": [0.05, 0.1, 0.2, 0.5],
                  "data.regime.labels_per_class": [2, 5, 10, 20], "data.regime.teacher_label_noise": [0, 0.2, 0.4],
                  "train.teacher_epochs": [2, 5, 10, 20], "data.noise.gamma": [0, 0.33, 0.67, 1]}


def default_values(knob: Knob) -> str:
    """A starting list for a knob (four evenly spaced values for a noise knob)."""
    if knob.field in DEFAULT_VALUES:
        return format_values(DEFAULT_VALUES[knob.field])
    step = (knob.hi - knob.lo) / 3
    return format_values([round(knob.lo + i * step, 3) for i in range(4)])


def knobs_for(spec: ExperimentSpec) -> dict[str, Knob]:
    """The fields worth sweeping for ``spec``: the distillation, student, label-regime and teacher
    knobs (a loss weight only where that loss term is in the spec), γ for mfh-gauss, and the noise
    knobs of the dataset's modalities."""
    out = {k.field: k for k in BASE_KNOBS
           if not k.field.startswith("distill.losses.") or k.field.split(".")[2] in spec.distill.losses}
    if spec.data.dataset == "mfh-gauss":
        out[GAMMA.field] = GAMMA
        return out
    try:
        noise = spec.data.dataset_info().noise_knobs()
    except Exception:  # noqa: BLE001 - a custom dataset without knobs
        noise = {}
    for name, (lo, hi, meaning) in noise.items():
        out[f"data.noise.{name}"] = Knob(f"data.noise.{name}", f"noise: {name}", "float", float(lo), float(hi),
                                         help=meaning)
    return out


def label_of(field: str) -> str:
    """A short axis label for a field (the knob's label, else the field name)."""
    for k in (*BASE_KNOBS, GAMMA):
        if k.field == field:
            return k.label
    return field.replace("data.noise.", "noise: ")


def parse_values(text: str, knob: Knob) -> list[int | float]:
    """``"1, 2, 4, 8"`` → ``[1, 2, 4, 8]`` within the knob's range; a ValueError names the field."""
    parts = [p.strip() for p in (text or "").replace(";", ",").split(",")]
    parts = [p for p in parts if p]
    hint = f"{knob.field}: allowed range {knob.range_text()}"
    if not parts:
        raise ValueError(f"{knob.field}: give at least one value, comma-separated (e.g. 1, 2, 4); {hint}")
    if len(parts) > MAX_VALUES:
        raise ValueError(f"{knob.field}: at most {MAX_VALUES} values per knob (got {len(parts)})")
    values: list[int | float] = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise ValueError(f"{knob.field}: {p!r} is not a number; {hint}") from None
        if knob.kind == "int":
            if v != int(v):
                raise ValueError(f"{knob.field}: {p} is not a whole number; {hint}")
            v = int(v)
        if not knob.contains(v):
            raise ValueError(f"{knob.field}={p} is outside the allowed range {knob.range_text()}")
        if v in values:
            raise ValueError(f"{knob.field}: {p} is listed twice")
        values.append(v)
    return values


def format_values(values) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in values)


def check_grid(base: ExperimentSpec, axes: Mapping[str, list]) -> list[str]:
    """The SpecError text of every grid point whose spec is invalid (``grid.point_spec``), deduplicated."""
    errors: list[str] = []
    keys = list(axes)
    for combo in itertools.product(*axes.values()):
        try:
            point_spec(base, dict(zip(keys, combo)), 0)
        except SpecError as exc:
            msg = str(exc)
            if msg not in errors:
                errors.append(msg)
    return errors


def with_epochs(spec: ExperimentSpec, teacher: int | None, student: int | None) -> ExperimentSpec:
    sets = ([f"train.teacher_epochs={int(teacher)}"] if teacher is not None else []) + \
           ([f"train.student_epochs={int(student)}"] if student is not None else [])
    return spec.with_overrides(sets) if sets else spec


def suggested_sweeps() -> list[tuple[str, dict[str, Any]]]:
    """``[(preset, {"label", "vary": {field: values}, "seeds"})]`` from ``_lessons.yaml``."""
    out = []
    for name, lesson in lessons().items():
        sw = (lesson or {}).get("sweep")
        if name in PRESETS and isinstance(sw, dict) and sw.get("vary"):
            out.append((name, sw))
    return out


def rows_total(axes: Mapping[str, list], seeds: int) -> int:
    n = seeds
    for v in axes.values():
        n *= len(v)
    return n


def point_run_ids(rows, point: Mapping[str, Any]) -> list[str]:
    """The stored runs of one grid point, one per seed in seed order (rows without a run skipped)."""
    mine = [r for r in rows if r.get("point") == dict(point) and r.get("run_id")]
    return [r["run_id"] for r in sorted(mine, key=lambda r: r.get("seed", 0))]


def point_text(point: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """``"temperature T = 2, student encoder width = 8"``: a grid point in the page's words."""
    return ", ".join(f"{labels.get(f, f)} = {format_values([v])}" for f, v in point.items())


def point_caption(sweep_name: str, point: Mapping[str, Any], labels: Mapping[str, str], rows) -> str:
    """What the Compare page says about a grid point's runs: the sweep, the point, the seeds."""
    seeds = sorted(r.get("seed", 0) for r in rows if r.get("point") == dict(point) and r.get("run_id"))
    return (f"From the Explore sweep of **{sweep_name}**: the runs of the grid point **{point_text(point, labels)}**, "
            f"one per seed (seeds {', '.join(str(s) for s in seeds)}).")


def summary_of(snap) -> list[dict[str, Any]]:
    """Per grid point mean ± std and the verdict of a (live) sweep snapshot's rows."""
    axes = {k: list(v) for k, v in snap.axes.items()}
    return GridResult(snap.name, axes, snap.seeds, shared_phases(list(axes)), rows=list(snap.rows)).summary()


# ---- the URL ----------------------------------------------------------------------------------
def sweep_to_query(sel: Mapping[str, Any], setup_query: Mapping[str, str] | None = None) -> dict[str, str]:
    """The sweep as query parameters. ``sel``: base (preset name or "current"), knob1, values1,
    knob2, values2, seeds, te, se; ``setup_query``: Setup's query of the current spec (base
    "current" only)."""
    q = {"base": str(sel["base"]), "knob1": str(sel["knob1"]), "values1": str(sel.get("values1") or "")}
    if sel.get("knob2") and sel["knob2"] != NONE:
        q["knob2"], q["values2"] = str(sel["knob2"]), str(sel.get("values2") or "")
    q["seeds"] = str(int(sel.get("seeds") or 3))
    for k in ("te", "se"):
        if sel.get(k) is not None:
            q[k] = str(int(sel[k]))
    if sel["base"] == "current" and setup_query:
        q["setup"] = json.dumps(dict(setup_query), separators=(",", ":"), ensure_ascii=False)
    return q


def sweep_from_query(params: Mapping[str, str]) -> tuple[dict[str, Any], ExperimentSpec | None, str | None]:
    """Inverse of :func:`sweep_to_query`: ``(selection, current spec from "setup" or None, its base
    preset)``; raises ValueError naming the parameter."""
    from ui.state import spec_from_query

    base = params.get("base") or ""
    if base != "current" and base not in PRESETS:
        raise ValueError(f"base: unknown {base!r}; a preset ({', '.join(PRESETS)}) or current")
    spec, setup_base = None, None
    if base == "current" and params.get("setup"):
        try:
            setup = json.loads(params["setup"])
        except json.JSONDecodeError:
            raise ValueError("setup: not the JSON of a setup") from None
        if not isinstance(setup, dict):
            raise ValueError("setup: not the JSON of a setup")
        spec, setup_base = spec_from_query({str(k): str(v) for k, v in setup.items()})
    sel: dict[str, Any] = {"base": base, "knob1": params.get("knob1") or "", "values1": params.get("values1") or "",
                           "knob2": params.get("knob2") or NONE, "values2": params.get("values2") or ""}
    try:
        seeds = int(params.get("seeds") or 3)
    except ValueError:
        raise ValueError(f"seeds: {params.get('seeds')!r} is not a whole number in [1, {MAX_SEEDS}]") from None
    if not 1 <= seeds <= MAX_SEEDS:
        raise ValueError(f"seeds: {seeds} is outside [1, {MAX_SEEDS}]")
    sel["seeds"] = seeds
    for k in ("te", "se"):
        raw = params.get(k)
        if raw not in (None, ""):
            try:
                sel[k] = int(raw)
            except ValueError:
                raise ValueError(f"{k}: {raw!r} is not a whole number of epochs") from None
    return sel, spec, setup_base


# ---- the page ----------------------------------------------------------------------------------
W = {"source": "ex-source", "preset": "ex-preset", "knob1": "ex-knob1", "values1": "ex-values1",
     "knob2": "ex-knob2", "values2": "ex-values2", "seeds": "ex-seeds", "te": "ex-te", "se": "ex-se"}
JOB_KEY = "ex-job"
CLICK_KEY = "ex-clicked"  # the grid point of the latest click on the KD-gain chart, until it is opened
SOURCES = ("current setup", "a preset")
POLL_S = float(os.environ.get("KDLAB_POLL_S", "0.5"))


def open_point(snap, point: Mapping[str, Any], labels: Mapping[str, str]) -> None:
    """Open the runs of ``point`` (a grid point of the sweep snapshot ``snap``) on the Compare page;
    a warning instead when none of its rows has a stored run."""
    import streamlit as st

    from ui.compare import open_runs

    ids = point_run_ids(snap.rows, point)
    if not ids:
        st.warning(f"No stored runs for {point_text(point, labels)} yet: its rows have not finished, or came from "
                   "a sweep cached without runs (run the sweep again to store them).")
        return
    open_runs(ids, point_caption(snap.name, point, labels, snap.rows))


def _on_gain_click() -> None:
    """The KD-gain chart's selection changed: remember the clicked grid point (opened in the fragment)."""
    import streamlit as st

    from kdcore.viz.sweep import clicked_point

    try:
        points = list(st.session_state["ex-gain"]["selection"]["points"])
    except (KeyError, TypeError):
        points = []
    point = next((p for p in map(clicked_point, points) if p is not None), None)
    if point is not None:
        st.session_state[CLICK_KEY] = point


def _open_controls(snap, summary: list[dict[str, Any]], labels: Mapping[str, str]) -> None:
    """The keyboard path to Compare: pick a grid point, press "Open on Compare"."""
    import streamlit as st

    from kdcore.viz.sweep import json_key

    stored = {json_key(e["point"]): e["point"] for e in summary if point_run_ids(snap.rows, e["point"])}
    if not stored:
        return
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    _keep_option("ex-open-point", list(stored))
    pick = c1.selectbox("a grid point's runs, one per seed", list(stored), key="ex-open-point",
                        format_func=lambda k: f"{point_text(stored[k], labels)} "
                                              f"({len(point_run_ids(snap.rows, stored[k]))} runs)")
    if c2.button("Open on Compare", key="ex-open", icon=":material/compare_arrows:",
                 help="The Compare page with this grid point's runs (one per seed) selected"):
        open_point(snap, stored[pick], labels)


def _apply_selection(sel: Mapping[str, Any]) -> None:
    """Put a selection (from the URL or a suggestion) into the widgets' session state."""
    import streamlit as st

    ss = st.session_state
    if sel.get("base") == "current":
        ss[W["source"]] = SOURCES[0]
    elif sel.get("base"):
        ss[W["source"]], ss[W["preset"]] = SOURCES[1], sel["base"]
    for k in ("knob1", "values1", "knob2", "values2", "seeds"):
        if k in sel:
            ss[W[k]] = sel[k]
    for k in ("te", "se"):
        if k in sel:
            ss[W[k]] = sel[k]


def _suggest(preset: str, sweep: Mapping[str, Any]) -> None:
    vary = dict(sweep["vary"])
    fields = list(vary)
    sel = {"base": preset, "knob1": fields[0], "values1": format_values(vary[fields[0]]),
           "knob2": fields[1] if len(fields) > 1 else NONE,
           "values2": format_values(vary[fields[1]]) if len(fields) > 1 else "",
           "seeds": int(sweep.get("seeds", 3))}
    _apply_selection(sel)


def _load_url() -> None:
    import streamlit as st

    from ui import state

    ss = st.session_state
    if ss.get("ex-url-done"):
        return
    ss["ex-url-done"] = True
    params = {k: st.query_params[k] for k in st.query_params}
    if not params.get("base"):
        return
    try:
        sel, spec, setup_base = sweep_from_query(params)
    except (ValueError, SpecError) as exc:
        ss["ex-url-error"] = f"The link's sweep is invalid and was ignored: {exc}"
        return
    if spec is not None:
        state.set_spec(spec, setup_base)
    _apply_selection(sel)


def _restore_form() -> None:
    """Streamlit forgets a page's widget values when the user visits another page: put back the
    last ones seen (copies under ``ex-keep-*``), unless something (the URL, a suggestion) set them."""
    import streamlit as st

    ss = st.session_state
    for key in W.values():
        kept = ss.get(f"ex-keep-{key}")
        if key not in ss and kept is not None:
            ss[key] = kept


def _keep_form() -> None:
    import streamlit as st

    ss = st.session_state
    for key in W.values():
        ss[f"ex-keep-{key}"] = ss.get(key)


def _keep_option(key: str, options: list[str]) -> None:
    import streamlit as st

    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)


def render() -> None:
    import streamlit as st

    from kdcore.store.registry import default_root
    from kdcore.viz.sweep import accuracy_figure, agreement_figure, gain_figure, rows_table, verdict_rows
    from ui import state

    ss = st.session_state
    state.init()
    _load_url()
    _restore_form()
    st.title("Explore a setting over seeds")
    st.markdown("How does the **KD gain** (KD student − the same student without KD, test accuracy points, paired "
                "per seed) change as you move a knob? Pick a setup, one or two knobs, their values and the number "
                "of seeds; the sweep runs in the background and the chart fills in as runs finish.")
    if ss.get("ex-url-error"):
        st.warning(ss.pop("ex-url-error"))

    suggestions = suggested_sweeps()
    if suggestions:
        st.caption("Suggested sweeps (one click fills in the form; then press Run):")
        cols = st.columns(min(4, len(suggestions)))
        for i, (preset, sw) in enumerate(suggestions):
            cols[i % len(cols)].button(f"Suggested: {sw.get('label', 'gain vs ' + next(iter(sw['vary'])))}",
                                       key=f"ex-suggest-{preset}", on_click=_suggest, args=(preset, sw),
                                       help=f"{preset}: {(lessons().get(preset) or {}).get('claim', '')}",
                                       use_container_width=True)

    c1, c2 = st.columns([1, 2])
    source = c1.radio("setup to sweep", SOURCES, key=W["source"], horizontal=True)
    if source == SOURCES[1]:
        names = list(PRESETS)
        _keep_option(W["preset"], names)
        if W["preset"] not in ss:
            ss[W["preset"]] = state.base_preset()
        preset = c2.selectbox("preset", names, key=W["preset"])
        base_name, base = preset, state.preset_spec(preset)
    else:
        base = state.labelled(state.get_spec())
        base_name = "current"
        c2.markdown(f"The current setup: **{base.name}** (edit it on the Setup page).")

    with st.expander("Shorter training (optional: a sweep multiplies runs)"):
        e1, e2 = st.columns(2)
        te = e1.number_input("teacher epochs", min_value=0, max_value=1000, step=1, key=W["te"],
                             placeholder=f"as in the setup ({base.train.teacher_epochs})",
                             **({} if W["te"] in ss else {"value": None}))
        se = e2.number_input("student epochs", min_value=1, max_value=1000, step=1, key=W["se"],
                             placeholder=f"as in the setup ({base.train.student_epochs})",
                             **({} if W["se"] in ss else {"value": None}))
    base = with_epochs(base, te, se)

    knobs = knobs_for(base)
    fields = list(knobs)
    for key, vkey in ((W["knob1"], W["values1"]), (W["knob2"], W["values2"])):
        asked = ss.get(key)
        if asked not in (None, NONE) and asked not in fields:
            st.warning(f"{asked} cannot be swept for {base.name} (dataset {base.data.dataset}); the knobs here: "
                       f"{', '.join(fields)}.")
            ss.pop(key, None)
            ss.pop(vkey, None)
    k1, v1 = st.columns([1, 2])
    _keep_option(W["knob1"], fields)
    knob1 = k1.selectbox("knob", fields, key=W["knob1"], format_func=lambda f: f"{knobs[f].label} · {f}",
                         on_change=lambda: ss.update({W["values1"]: default_values(knobs[ss[W["knob1"]]])}))
    if W["values1"] not in ss:
        ss[W["values1"]] = default_values(knobs[knob1])
    values1 = v1.text_input(f"values of {knob1} — allowed {knobs[knob1].range_text()}", key=W["values1"],
                            placeholder="e.g. 1, 2, 4, 8", help=knobs[knob1].help or None)
    k2, v2 = st.columns([1, 2])
    others = [NONE] + [f for f in fields if f != knob1]
    _keep_option(W["knob2"], others)
    knob2 = k2.selectbox("second knob (one line per value)", others, key=W["knob2"],
                         format_func=lambda f: f if f == NONE else f"{knobs[f].label} · {f}",
                         on_change=lambda: ss.update({W["values2"]: "" if ss[W["knob2"]] == NONE
                                                      else default_values(knobs[ss[W["knob2"]]])}))
    values2 = ""
    if knob2 != NONE:
        if W["values2"] not in ss:
            ss[W["values2"]] = default_values(knobs[knob2])
        values2 = v2.text_input(f"values of {knob2} — allowed {knobs[knob2].range_text()}", key=W["values2"],
                                placeholder="e.g. 4, 16")
    if W["seeds"] not in ss:
        ss[W["seeds"]] = 3
    seeds = int(st.number_input("seeds", min_value=1, max_value=MAX_SEEDS, step=1, key=W["seeds"]))
    if seeds < 3:
        st.warning(f"{seeds} seed{'s' if seeds > 1 else ''} {'are' if seeds > 1 else 'is'} not evidence: with fewer "
                   "than 3 seeds the spread between seeds is unknown and no verdict can be given. Use it to try "
                   "the sweep out, then run 3 or more.")
    else:
        st.caption("Each grid point is trained once per seed (seeds 0, 1, …); the verdict says KD helps or hurts "
                   "only when the mean gain is more than 2 standard deviations from 0.")

    # ---- validation: every message names the field
    axes: dict[str, list] = {}
    errors: list[str] = []
    for knob, text in ((knob1, values1), (knob2, values2)):
        if knob == NONE:
            continue
        if not (text or "").strip():
            errors.append(f"{knob}: give the values to sweep, comma-separated (allowed {knobs[knob].range_text()})")
            continue
        try:
            axes[knob] = parse_values(text, knobs[knob])
        except ValueError as exc:
            errors.append(str(exc))
    if not errors:
        errors = check_grid(base, axes)
    for e in errors:
        st.error(e)

    sel = {"base": base_name, "knob1": knob1, "values1": values1, "knob2": knob2, "values2": values2,
           "seeds": seeds, "te": te, "se": se}
    setup_query = state.spec_to_query(state.get_spec(), state.base_preset()) if base_name == "current" else None
    want = sweep_to_query(sel, setup_query)
    if {k: st.query_params[k] for k in st.query_params} != want:
        st.query_params.from_dict(want)

    _keep_form()
    manager = state.get_manager()
    if not errors:
        total = rows_total(axes, seeds)
        shared = shared_phases(list(axes))
        share_txt = (f"the {' and the '.join(shared)} trained once per seed and shared by every grid point"
                     if shared else "every phase retrained at every grid point (the knob affects the teacher)")
        st.caption(f"{total // seeds} grid point{'s' if total // seeds > 1 else ''} × {seeds} seeds = {total} runs "
                   f"of teacher, baseline and KD student — {share_txt}. Every run is stored in "
                   f"`{manager.run_root or default_root()}` (Compare lists it); rows already computed, with their "
                   f"runs, are taken from `{default_root() / 'sweeps'}`.")
    together = st.checkbox(
        "Train all seeds together", key="ex-together", value=False,
        help="The teachers, baselines and KD students of every seed train as a few stacked models instead of seed "
             "by seed: the same numbers, in about half the time on the default preset (measured by "
             "`python -m kdcore bench --sweep`), but the chart fills in only at the end.")
    if st.button("▶ Run the sweep", type="primary", key="ex-run", disabled=bool(errors)):
        job = manager.submit_sweep(base, axes, seeds, cache_root=default_root(), stack_seeds=together)
        ss[JOB_KEY] = job.id
        ss["ex-polling"] = True

    job = manager.get(ss.get(JOB_KEY))
    if job is None:
        st.info("No sweep yet in this tab. Every run of a sweep is stored: click a point of its KD-gain chart to "
                "open that grid point's runs (one per seed) on the Compare page.")
        return
    polling = not job.done
    ss["ex-polling"] = polling

    @st.fragment(run_every=POLL_S if polling else None)
    def live() -> None:
        j = manager.get(job.id)
        if j is None:
            st.warning("This sweep is no longer in memory (the server keeps the last 50 jobs); rerun it: its "
                       "rows come from the cache.")
            return
        snap = j.snapshot()
        a1, a2 = st.columns([4, 1])
        a1.markdown(f"**{snap.name}** · {' × '.join(snap.axes)} · {snap.seeds} seeds — status: "
                    f"**{snap.state_label}**")
        if not snap.done:
            a2.button("Stop", key="ex-stop", icon=":material/stop:", on_click=j.stop,
                      help="Stops after the run in progress; finished rows stay (and are cached).")
        st.progress(min(1.0, len(snap.rows) / max(1, snap.total)),
                    text=f"{len(snap.rows)} of {snap.total} runs finished")
        if snap.status == "queued":
            st.info(f"Waiting in the queue at position {snap.queue_position} "
                    f"({len(manager.running())} job(s) running, cap {manager.max_concurrent}).")
        if snap.done and snap.status != "finished":
            (st.error if snap.status == "failed" else st.warning)(f"The sweep {snap.status}: {snap.message}")
        summary = summary_of(snap)
        axes_ = {k: list(v) for k, v in snap.axes.items()}
        labels = {f: label_of(f) for f in axes_}
        clicked = ss.pop(CLICK_KEY, None)
        if clicked is not None:
            open_point(snap, clicked, labels)  # switches to Compare (or warns)
        if summary:
            st.plotly_chart(gain_figure(summary, axes_, labels), key="ex-gain", on_select=_on_gain_click,
                            selection_mode="points")
            st.caption("Click a point to open its runs (one per seed) on the Compare page.")
            p1, p2 = st.columns(2)
            p1.plotly_chart(accuracy_figure(summary, axes_, labels), key="ex-acc")
            p2.plotly_chart(agreement_figure(summary, axes_, labels), key="ex-agree")
            st.subheader("Verdict per grid point")
            st.dataframe(verdict_rows(summary, axes_, labels), hide_index=True, key="ex-verdicts")
            import pandas as pd

            st.download_button("Export rows as CSV", pd.DataFrame(rows_table(snap.rows)).to_csv(index=False),
                               file_name="kdlab-sweep.csv", mime="text/csv", key="ex-csv")
            _open_controls(snap, summary, labels)
            if snap.seeds < 3:
                st.caption("Fewer than 3 seeds: the verdicts say “too few seeds” — this is not evidence yet.")
        elif not snap.done:
            st.caption("The chart appears when the first run finishes.")
        if snap.done and ss.get("ex-polling"):
            ss["ex-polling"] = False
            st.rerun()  # once: the page re-renders without polling

    live()


__all__ = ["Knob", "check_grid", "knobs_for", "label_of", "open_point", "parse_values", "point_caption",
           "point_run_ids", "point_text", "render", "suggested_sweeps", "summary_of", "sweep_from_query",
           "sweep_to_query"]
