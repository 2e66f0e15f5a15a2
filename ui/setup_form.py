"""The Setup page's form: every spec field as a grouped widget, building a spec dict.

Widgets are keyed ``"<field path>@<spec version>"`` so a load (preset, YAML, URL) re-creates them
from the new spec. Fields without a dedicated widget (added to the spec later) are still editable
in each group's "Advanced: raw fields" expander (YAML / JSON boxes), so *every* field of the spec
can be set here.

Number boxes carry no min / max of their own: an out-of-range value is passed on and the engine's
validation message (naming the field and its allowed range) is shown inline, instead of a red box
without a message. In lecture mode (:mod:`ui.lecture`) only the fields a lesson is about are drawn;
the others keep their values.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Callable

import streamlit as st
import yaml

from kdcore.data import DATASETS
from kdcore.data import dataset_class
from kdcore.data.tasks import AUX_TASKS
from kdcore.methods.losses import LOSSES
from kdcore.core.spec import ARCHS_BY_KIND, DEFAULT_ARCH, FUSIONS, OPTIMIZERS, DEVICES, SpecError
from kdcore.methods.strategies import TEMPERATURE_SCHEDULES, WEIGHTINGS

SECTIONS = ("data", "teacher", "student", "distill", "train")


def extra_phase_names() -> list[str]:
    from kdcore.pipeline.recipes import EXTRA_PHASES

    try:  # registers ard / pruning when that module exists
        import kdcore.pipeline.recipes.extra  # noqa: F401
    except ImportError:
        pass
    return sorted(EXTRA_PHASES)


def wkey(path: str, version: int) -> str:
    return f"{path}@{version}"


class Form:
    """Collects widget values into a copy of the spec dict; remembers per-section parse errors."""

    def __init__(self, spec_dict: dict[str, Any], version: int, lecture: bool = False):
        self.d = copy.deepcopy(spec_dict)
        self.v = version
        self.lecture = lecture  # draw only the lesson's fields; the others keep their values
        self.errors: dict[str, list[str]] = {}
        self.covered: dict[str, set[str]] = {s: set() for s in SECTIONS}

    def key(self, path: str) -> str:
        return wkey(path, self.v)

    def error(self, section: str, msg: str) -> None:
        self.errors.setdefault(section, []).append(msg)

    def mark(self, section: str, *fields: str) -> None:
        self.covered[section].update(fields)

    def number(self, where, label: str, path: str, value: float | int, step: float | int | None = None,
               fmt: str | None = None, allowed: str | None = None, help: str | None = None):
        """A number box without min / max (see the module docstring); ``allowed`` is shown in its help."""
        tip = "; ".join(x for x in (help, f"allowed: {allowed}" if allowed else None) if x) or None
        return where.number_input(label, value=value, step=step, format=fmt, key=self.key(path), help=tip)

    def has_raw_fields(self, section: str) -> bool:
        return any(k not in self.covered[section] for k in self.d[section])

    def json_params(self, path: str, label: str, value: dict, section: str, allowed: dict | None = None) -> dict | None:
        """A JSON text box for a parameter mapping; ``allowed`` (the method's defaults) names the keys
        it accepts, so a typo is reported here rather than when the run starts."""
        help_ = f"defaults: {json.dumps(allowed, default=str)}" if allowed is not None else None
        raw = st.text_input(label, value=json.dumps(value) if value else "{}", key=self.key(path), help=help_)
        try:
            parsed = yaml.safe_load(raw) if raw.strip() else {}
        except yaml.YAMLError:
            parsed = None
        if not isinstance(parsed, dict):
            self.error(section, f"{path}: not a mapping; write it as JSON, e.g. {{\"end\": 1.0}}")
            return None
        if allowed is not None:
            unknown = sorted(set(parsed) - set(allowed))
            if unknown:
                self.error(section, f"{path}: unknown parameter(s) {unknown}; allowed: {', '.join(allowed) or 'none'}")
                return None
        return parsed

    def other_fields(self, section: str) -> None:
        """A YAML box for the section's fields that have no dedicated widget."""
        sec = self.d[section]
        rest = {k: v for k, v in sec.items() if k not in self.covered[section]}
        if not rest:
            return
        raw = st.text_area(f"other {section} fields (YAML)", value=yaml.safe_dump(rest, sort_keys=False).strip(),
                           key=self.key(f"{section}.__other__"), height=90,
                           help="Fields without a dedicated widget; edit them here as YAML.")
        try:
            parsed = yaml.safe_load(raw) if raw.strip() else {}
        except yaml.YAMLError as exc:
            self.error(section, f"{section} (other fields): invalid YAML: {str(exc).splitlines()[0]}")
            return
        if not isinstance(parsed, dict):
            self.error(section, f"{section} (other fields): must be a mapping of field: value")
            return
        unknown = set(parsed) - set(sec)
        if unknown:
            self.error(section, f"{section}: unknown field(s) {sorted(unknown)}")
            return
        sec.update(parsed)


# ---- plain words, noise-knob defaults, flip pairs ------------------------------------------------
_JARGON = [
    re.compile(r"\s*\([^()]*(?:\bseed's\b|§)[^()]*\)"),  # "(the seed's hinge loss)", "(§4.2)"
    re.compile(r"(?:KD Lab |the )?seed(?:'s)?,?\s*§[\d.]+(?:\s*/\s*§?[\d.]+)*\s*[;,]?\s*"),  # "KD Lab seed §4.2; "
    re.compile(r"\s*§[\d.]+(?:\s*/\s*§?[\d.]+)*"),
    re.compile(r"\s*\(?(?:see )?\S*docs/[\w./-]+\.md\)?"),  # links to the repository's docs files
]


def plain(text: str | None) -> str:
    """``text`` without internal references (the project seed's section numbers, docs file paths)."""
    out = text or ""
    for pat in _JARGON:
        out = pat.sub("", out)
    return re.sub(r"\s{2,}", " ", out).strip(" ;,")


def knob_default(cls, knob: str, lo: float, hi: float, meaning: str) -> float:
    """The value a noise knob has when the spec leaves it out: the dataset's ``noise_defaults()`` when
    it has one, else the "(default X)" its description states, else no noise (``lo``; ``hi`` for an SNR)."""
    defaults = getattr(cls, "noise_defaults", None)
    if callable(defaults):
        try:
            value = defaults().get(knob)
        except Exception:  # noqa: BLE001 — a dataset's helper must not break the page
            value = None
        if value is not None:
            return float(value)
    m = re.search(r"\(default (-?\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?", meaning or "")
    if m:
        value = float(m[1]) / float(m[2] or 1)
        if lo <= value <= hi:
            return value
    return float(hi if knob == "audio_snr_db" else lo)


_PAIR = re.compile(r"^\s*(-?\d+)\s*(?:→|->|=>|:|>)\s*(-?\d+)\s*$")
PAIRS_FIELD = "data.regime.teacher_noise_pairs"


def format_pairs(pairs: dict) -> str:
    return ", ".join(f"{int(s)}→{int(d)}" for s, d in pairs.items())


def parse_pairs(text: str) -> dict[int, int]:
    """``"4→9, 3→8"`` (also ``4->9``, ``4:9``, a ``{4: 9}`` mapping) → ``{4: 9, 3: 8}``; raises
    ``ValueError`` with a message that names the field."""
    raw = (text or "").strip()
    if raw.startswith("{") and raw.endswith("}"):
        raw = raw[1:-1]
    out: dict[int, int] = {}
    for part in [p for p in re.split(r"[,;\n]", raw) if p.strip()]:
        m = _PAIR.match(part)
        if not m:
            raise ValueError(f"{PAIRS_FIELD}: cannot read {part.strip()!r}; write source→target class pairs, "
                             f"e.g. 4→9, 3→8 (or 4->9), or leave it empty for uniform flips")
        s, d = int(m[1]), int(m[2])
        if s in out:
            raise ValueError(f"{PAIRS_FIELD}: class {s} is flipped twice; give each source class once")
        out[s] = d
    return out


def parse_classes(text: str, path: str) -> list[int]:
    """``"3, 5"`` → ``[3, 5]``; raises ``ValueError`` naming ``path``."""
    out = []
    for part in [p.strip() for p in re.split(r"[,;\s]+", text or "") if p.strip()]:
        if not re.fullmatch(r"-?\d+", part):
            raise ValueError(f"{path}: {part!r} is not a class index; write indices such as 3, 5")
        out.append(int(part))
    return out


def data_group(f: Form) -> None:
    d = f.d["data"]
    names = list(DATASETS)
    ds = st.selectbox("dataset", names, index=names.index(d["dataset"]), key=f.key("data.dataset"),
                      help="; ".join(f"{n}: {plain(DATASETS[n].description)}" for n in names))
    old_path = d.get("path")
    if ds == "custom":
        raw = st.text_input("data path (an image folder with one subfolder per class, or a CSV manifest)",
                            value=old_path or "", key=f.key("data.path"),
                            placeholder="/path/to/images or /path/to/manifest.csv",
                            help="Check and import your data on the Data page first: it reports every bad row.")
        d["path"] = raw.strip() or None
        f.mark("data", "path")
        try:
            cls = dataset_class(ds, d["path"])  # reads the source's headers for its modalities
        except ValueError as exc:
            f.error("data", str(exc))  # the page stops here until the path works
            d["dataset"] = ds
            return
    else:
        cls = DATASETS[ds]
    if ds != d["dataset"] or (ds == "custom" and d["path"] != old_path):
        # a new dataset (or another custom source): its own modalities and noise knobs
        d.update(dataset=ds, modalities=None, noise={})
        for role in ("teacher", "student"):
            f.d[role]["modalities"] = None
            f.d[role]["encoders"] = {}
        f.d["_dropped"] = keep_valid_classes(d["regime"], cls.class_count({}), ds)
        f.d.setdefault("_dataset_changed", True)
        return
    st.caption(plain(cls.description) + (" — " + plain(cls.pairing_note) if cls.pairing_note else ""))
    all_mods = cls.modality_names()
    kinds = cls.modality_kinds()
    chosen = st.multiselect("modalities to load", all_mods, default=d["modalities"] or all_mods,
                            key=f.key("data.modalities"),
                            format_func=lambda m: f"{m} ({kinds[m]})")
    d["modalities"] = None if set(chosen) == set(all_mods) else chosen
    knobs = cls.noise_knobs()
    if knobs:
        st.markdown("**Noise knobs** (applied once, deterministically from the seed)")
        cols = st.columns(min(4, len(knobs)))
        noise = {}
        for i, (knob, (lo, hi, meaning)) in enumerate(knobs.items()):
            default = knob_default(cls, knob, float(lo), float(hi), meaning)
            cur = float(d["noise"].get(knob, default))
            whole = float(lo).is_integer() and float(hi).is_integer() and hi - lo >= 8
            val = cols[i % len(cols)].slider(knob, float(lo), float(hi), cur, 1.0 if whole else None,
                                             key=f.key(f"data.noise.{knob}"), help=plain(meaning))
            if knob in d["noise"] or val != default:
                noise[knob] = val
        d["noise"] = noise
    regime_widgets(f, cls)
    if not f.lecture:
        c1, c2, c3, c4 = st.columns(4)
        d["train_fraction"] = f.number(c1, "train fraction", "data.train_fraction", float(d["train_fraction"]), 0.05,
                                       allowed="(0, 1), with train + validation < 1")
        d["val_fraction"] = f.number(c2, "validation fraction", "data.val_fraction", float(d["val_fraction"]), 0.05,
                                     allowed="(0, 1)", help="the rest is the test split")
        limit = f.number(c3, "train limit (0 = all)", "data.train_limit", int(d["train_limit"] or 0), 50,
                         allowed="0 or ≥ 10", help="use at most this many training samples")
        d["train_limit"] = int(limit) or None
        d["seed"] = int(f.number(c4, "seed", "data.seed", int(d["seed"]), 1, allowed="≥ 0"))
        d["aux_tasks"] = st.multiselect("auxiliary tasks", list(AUX_TASKS), default=d["aux_tasks"],
                                        key=f.key("data.aux_tasks"),
                                        help="extra label tasks (multi-task heads; used by multi-task KD losses)")
    f.mark("data", "dataset", "modalities", "noise", "train_fraction", "val_fraction", "train_limit", "seed",
           "aux_tasks", "regime")
    raw_fields(f, "data")


def keep_valid_classes(regime: dict, n_classes: int | None, dataset: str) -> str:
    """After a dataset change: drop omitted classes / flip pairs the new dataset does not have (so the
    page does not stop on a spec error it cannot show a widget for); returns what was dropped."""
    if n_classes is None:
        return ""
    dropped = [c for c in regime["omit_classes"] if not 0 <= c < n_classes]
    regime["omit_classes"] = [c for c in regime["omit_classes"] if 0 <= c < n_classes]
    if len(regime["omit_classes"]) >= n_classes:
        dropped += regime["omit_classes"]
        regime["omit_classes"] = []
    pairs = {int(s): int(t) for s, t in regime["teacher_noise_pairs"].items()}  # JSON-dumped spec: str keys
    bad = {s: t for s, t in pairs.items() if not (0 <= s < n_classes and 0 <= t < n_classes)}
    regime["teacher_noise_pairs"] = {s: t for s, t in pairs.items() if s not in bad}
    parts = []
    if dropped:
        parts.append(f"omitted classes {', '.join(map(str, dropped))}")
    if bad:
        parts.append(f"flip pairs {format_pairs(bad)}")
        if not regime["teacher_noise_pairs"]:
            regime["teacher_label_noise"] = 0.0  # pairs were the whole noise recipe: no noise left
            parts[-1] += " (teacher label noise set to 0)"
    if not parts:
        return ""
    return f"{dataset} has classes 0–{n_classes - 1}: dropped {' and '.join(parts)} from the data regime."


TRANSFER_HELP = ("The training samples whose labels the student does not see still reach the KD student: "
                 "it learns from the teacher's soft targets on them only — no labels, no cross-entropy. "
                 "The baseline never sees them.")


def regime_widgets(f: Form, cls) -> None:
    """data.regime: scarce labels + transfer set, omitted classes, noisy teacher."""
    r = f.d["data"]["regime"]
    st.markdown("**Data regime** — which training labels the students see (the teacher sees them all)")
    modes = {"all": "all", "fraction": "a fraction", "per_class": "k per class"}
    now = "per_class" if r["labels_per_class"] is not None else ("fraction" if r["labelled_fraction"] < 1 else "all")
    c1, c2, c3 = st.columns([2, 1, 2])
    mode = c1.radio("Labels the student sees", list(modes), index=list(modes).index(now), format_func=modes.get,
                    horizontal=True, key=f.key("data.regime.labels"),
                    help="Stratified and drawn from the data seed. The training samples left without a label "
                         "form the unlabelled transfer set.")
    if mode == "all":
        r.update(labelled_fraction=1.0, labels_per_class=None)
    elif mode == "fraction":
        path = "data.regime.labelled_fraction"
        first = f.key(path) not in st.session_state and r["labelled_fraction"] >= 1
        frac = f.number(c2, "labelled fraction", path, 0.1 if first else float(r["labelled_fraction"]), 0.05,
                        "%.3f", allowed="(0, 1]", help="this fraction of each class keeps its label")
        r.update(labelled_fraction=float(frac), labels_per_class=None)
    else:
        k = f.number(c2, "labels per class", "data.regime.labels_per_class", int(r["labels_per_class"] or 10), 1,
                     allowed="1 to 100000")
        r.update(labelled_fraction=1.0, labels_per_class=int(k))
    transfers = {"labelled": "labelled only", "labelled+unlabelled": "labelled + unlabelled"}
    r["transfer"] = c3.radio("Transfer set (what the KD student trains on)", list(transfers),
                             index=list(transfers).index(r["transfer"]), format_func=transfers.get, horizontal=True,
                             key=f.key("data.regime.transfer"), help=TRANSFER_HELP)
    c3.caption("labelled + unlabelled: the unlabelled samples teach through soft targets only, no labels.")

    n_classes = cls.class_count(f.d["data"]["noise"])
    c1, c2 = st.columns([2, 1])
    path = "data.regime.omit_classes"
    if n_classes is not None:
        options = sorted(set(range(n_classes)) | set(r["omit_classes"]))  # a stale class stays visible, flagged
        r["omit_classes"] = c1.multiselect("Omit classes from the student", options, default=r["omit_classes"],
                                           key=f.key(path),
                                           help="Their samples leave the students' labelled data (Hinton's "
                                                "omitted 3); the teacher still learns them.")
    else:
        raw = c1.text_input("Omit classes from the student (class indices, e.g. 3, 5)",
                            value=", ".join(map(str, r["omit_classes"])), key=f.key(path),
                            help="Class indices in the order of the dataset's class names.")
        try:
            r["omit_classes"] = parse_classes(raw, path)
        except ValueError as exc:
            f.error("data", str(exc))
    r["omitted_in_transfer"] = c2.checkbox("omitted classes stay in the transfer set (unlabelled)",
                                           value=bool(r["omitted_in_transfer"]),
                                           key=f.key("data.regime.omitted_in_transfer"),
                                           disabled=not r["omit_classes"],
                                           help="Off: the students never see a sample of an omitted class.")
    c1, c2 = st.columns([1, 2])
    noise = f.number(c1, "Teacher label noise", "data.regime.teacher_label_noise",
                     float(r["teacher_label_noise"]), 0.05, "%.2f", allowed="[0, 1); 0 to 0.95 makes sense",
                     help="fraction of the teacher's training labels flipped (seeded); the students' labels stay "
                          "clean")
    r["teacher_label_noise"] = float(noise)
    raw = c2.text_input("flip pairs (source→target; empty = flip to any other class)",
                        value=format_pairs(r["teacher_noise_pairs"]), key=f.key(PAIRS_FIELD),
                        placeholder="4→9, 3→8",
                        help="Only the source classes are flipped, each to its target, e.g. 4→9, 3→8 "
                             "(4->9 works too). Needs a label noise above 0.")
    try:
        r["teacher_noise_pairs"] = parse_pairs(raw)
    except ValueError as exc:
        f.error("data", str(exc))


def raw_fields(f: Form, section: str, extra: Callable[[], None] | None = None) -> None:
    """One "Advanced: raw fields" expander per group: ``extra`` (the group's JSON boxes) and the YAML
    box of the fields without a dedicated widget. Not drawn in lecture mode (the values stay)."""
    if f.lecture or (extra is None and not f.has_raw_fields(section)):
        return
    with st.expander("Advanced: raw fields", expanded=False):
        if extra is not None:
            extra()
        f.other_fields(section)


def model_group(f: Form, role: str, data_mods: list[str], kinds: dict[str, str]) -> None:
    m = f.d[role]
    chosen = st.multiselect(f"{role} modalities", data_mods, default=[x for x in (m["modalities"] or data_mods)
                                                                        if x in data_mods] or data_mods,
                            key=f.key(f"{role}.modalities"))
    m["modalities"] = None if set(chosen) == set(data_mods) else chosen
    covered = ["modalities", "fusion", "feature_dim", "dropout", "modality_dropout", "encoder", "encoders"]
    if role == "teacher":
        covered.append("checkpoint")
    f.mark(role, *covered)
    if f.lecture:
        return
    if role == "student":  # neural network or gradient-boosted trees (ui.tree_form)
        from ui.tree_form import student_kind

        if student_kind(f, kinds, chosen or data_mods):
            raw_fields(f, role)
            return
    c1, c2, c3, c4 = st.columns(4)
    m["fusion"] = c1.selectbox("fusion", FUSIONS, index=FUSIONS.index(m["fusion"]), key=f.key(f"{role}.fusion"))
    m["feature_dim"] = int(f.number(c2, "feature dim", f"{role}.feature_dim", int(m["feature_dim"]), 4,
                                    allowed="2 to 2048"))
    m["dropout"] = f.number(c3, "dropout", f"{role}.dropout", float(m["dropout"]), 0.05, allowed="[0, 1)")
    m["modality_dropout"] = f.number(c4, "modality dropout", f"{role}.modality_dropout",
                                     float(m["modality_dropout"]), 0.05, allowed="[0, 1)",
                                     help="train-time probability of dropping a modality")
    st.markdown("**Encoders** (default for every modality, then per-modality overrides)")
    enc = m["encoder"]
    c1, c2 = st.columns(2)
    enc["width"] = int(f.number(c1, "default width", f"{role}.encoder.width", int(enc["width"]), 1,
                                allowed="1 to 512"))
    enc["depth"] = int(f.number(c2, "default depth", f"{role}.encoder.depth", int(enc["depth"]), 1,
                                allowed="1 to 8"))
    encoders = {}
    for mod in (chosen or data_mods):
        cur = m["encoders"].get(mod)
        own = st.checkbox(f"own encoder for {mod} ({kinds[mod]})", value=cur is not None,
                          key=f.key(f"{role}.encoders.{mod}.own"))
        if own:
            cur = cur or {"arch": None, "width": enc["width"], "depth": enc["depth"]}
            archs = list(ARCHS_BY_KIND[kinds[mod]])
            arch_now = cur.get("arch") or DEFAULT_ARCH[kinds[mod]]
            c1, c2, c3 = st.columns(3)
            arch = c1.selectbox(f"{mod} arch", archs, index=archs.index(arch_now) if arch_now in archs else 0,
                                key=f.key(f"{role}.encoders.{mod}.arch"))
            width = f.number(c2, f"{mod} width", f"{role}.encoders.{mod}.width", int(cur.get("width", 16)), 1,
                             allowed="1 to 512")
            depth = f.number(c3, f"{mod} depth", f"{role}.encoders.{mod}.depth", int(cur.get("depth", 2)), 1,
                             allowed="1 to 8")
            encoders[mod] = {"arch": arch, "width": int(width), "depth": int(depth)}
    m["encoders"] = encoders
    if role == "teacher":
        ck = st.text_input("teacher checkpoint (.safetensors path; empty = train it)", value=m["checkpoint"] or "",
                           key=f.key("teacher.checkpoint"))
        m["checkpoint"] = ck.strip() or None
    raw_fields(f, role)


WEIGHT_MAX = 1e6


def weight_note(name: str, weight: float) -> str | None:
    """Why a loss term starts at a weight far from CE / KD's (FitNets: 100): its paper's weight."""
    cls = LOSSES[name]
    if cls.default_weight <= 1.0 or weight != cls.default_weight:
        return None
    paper = plain(getattr(cls, "paper", "") or "")
    src = f"the weight its paper uses ({paper})" if paper else "the weight its method is usually run with"
    return (f"{weight:g} is {name}'s default weight, {src}: this loss is much smaller in raw value than CE or KD, "
            "so its weight is larger to give it a comparable share. Weights are not comparable across terms.")


def distill_group(f: Form) -> None:
    d = f.d["distill"]
    names = sorted(LOSSES)
    chosen = st.multiselect("loss terms", names, default=[n for n in d["losses"] if n in names],
                            key=f.key("distill.losses"),
                            format_func=lambda n: f"{n} — {plain(LOSSES[n].summary)}")
    losses = {}
    for n in chosen:
        cls = LOSSES[n]
        cur = d["losses"].get(n, {"weight": cls.default_weight, "params": {}})
        path = f"distill.losses.{n}.weight"
        c1, c2 = st.columns([1, 3])
        w = f.number(c1, f"{n} weight", path, float(cur["weight"]), allowed=f"[0, {WEIGHT_MAX:g}]",
                     help=f"default {cls.default_weight:g}")
        if not 0.0 <= float(w) <= WEIGHT_MAX:
            f.error("distill", f"{path}={float(w):g} is outside the allowed range [0, {WEIGHT_MAX:g}]")
        note = weight_note(n, float(w))
        if note:
            c2.caption(note)
        losses[n] = {"weight": float(w), "params": cur.get("params") or {}}
    d["losses"] = losses
    c1, c2, c3 = st.columns(3)
    d["temperature"] = c1.slider("temperature T", 0.5, 20.0, float(d["temperature"]), 0.5,
                                 key=f.key("distill.temperature"))
    f.mark("distill", "losses", "temperature", "weighting", "temperature_schedule", "weighting_params",
           "temperature_params", "extra_phases", "ensemble")
    if f.lecture:
        return
    ws = list(WEIGHTINGS)
    d["weighting"] = c2.selectbox("loss weighting", ws, index=ws.index(d["weighting"]) if d["weighting"] in ws else 0,
                                  key=f.key("distill.weighting"),
                                  format_func=lambda n: f"{n} — {plain(WEIGHTINGS[n].summary)}")
    ts = list(TEMPERATURE_SCHEDULES)
    d["temperature_schedule"] = c3.selectbox(
        "temperature schedule", ts, index=ts.index(d["temperature_schedule"]) if d["temperature_schedule"] in ts else 0,
        key=f.key("distill.temperature_schedule"),
        format_func=lambda n: f"{n} — {plain(TEMPERATURE_SCHEDULES[n].summary)}")
    phases = extra_phase_names()
    d["extra_phases"] = st.multiselect("extra student phases (after KD)", phases,
                                       default=[x for x in d["extra_phases"] if x in phases],
                                       key=f.key("distill.extra_phases"))
    ensemble_widgets(f)

    def json_boxes() -> None:
        st.caption("Method parameters as JSON; each box's help lists the parameters it accepts and their defaults.")
        for n in chosen:
            cur = d["losses"][n]
            p = f.json_params(f"distill.losses.{n}.params", f"{n} parameters", cur["params"], "distill",
                              allowed=LOSSES[n].defaults)
            if p is not None:
                cur["params"] = p
        c1, c2 = st.columns(2)
        with c1:
            p = f.json_params("distill.weighting_params", "weighting parameters", d["weighting_params"], "distill",
                              allowed=WEIGHTINGS[d["weighting"]].defaults)
            if p is not None:
                d["weighting_params"] = p
        with c2:
            p = f.json_params("distill.temperature_params", "schedule parameters", d["temperature_params"], "distill",
                              allowed=TEMPERATURE_SCHEDULES[d["temperature_schedule"]].defaults)
            if p is not None:
                d["temperature_params"] = p

    raw_fields(f, "distill", json_boxes)


def ensemble_widgets(f: Form) -> None:
    """Multi-teacher distillation: extra teachers, one per modality chosen here (each sees that
    modality only), their soft targets averaged or confidence-weighted per sample. Other member
    groupings (e.g. a teacher on two modalities) stay editable as YAML in the spec."""
    d = f.d["distill"]
    ens = d.get("ensemble")
    on = st.checkbox("multi-teacher ensemble", value=ens is not None, key=f.key("distill.ensemble.on"),
                     help="Extra teachers (same architecture as the teacher) trained with CE before the students; "
                          "the student distils from their combined soft targets.")
    if not on:
        d["ensemble"] = None
        return
    ens = dict(ens or {"members": [], "combine": "mean", "include_main": True})
    data = f.d["data"]
    data_mods = data["modalities"] or dataset_class(data["dataset"], data.get("path")).modality_names()
    singles = [m[0] for m in ens["members"] if len(m) == 1 and m[0] in data_mods]
    others = [m for m in ens["members"] if not (len(m) == 1 and m[0] in data_mods)]
    c1, c2, c3 = st.columns([2, 1, 1])
    chosen = c1.multiselect("one extra teacher per modality", data_mods, default=singles or data_mods,
                            key=f.key("distill.ensemble.members"))
    if others:
        c1.caption(f"kept from the spec: teachers on {', '.join('+'.join(m) for m in others)}")
    combine = c2.selectbox("combine", ["mean", "confidence"], index=["mean", "confidence"].index(ens["combine"]),
                           key=f.key("distill.ensemble.combine"),
                           help="mean: average of soft targets; confidence: each teacher weighted per sample by "
                                "its max softmax probability")
    main = c3.checkbox("include the fused teacher", value=bool(ens["include_main"]),
                       key=f.key("distill.ensemble.include_main"))
    d["ensemble"] = {"members": [[m] for m in chosen] + others, "combine": combine, "include_main": main}


def train_group(f: Form) -> None:
    t = f.d["train"]
    c1, c2, c3, c4 = st.columns(4)
    t["teacher_epochs"] = int(f.number(c1, "teacher epochs", "train.teacher_epochs", int(t["teacher_epochs"]), 1,
                                       allowed="0 to 1000"))
    t["student_epochs"] = int(f.number(c2, "student epochs", "train.student_epochs", int(t["student_epochs"]), 1,
                                       allowed="1 to 1000"))
    f.mark("train", "teacher_epochs", "student_epochs", "batch_size", "optimizer", "lr", "teacher_lr",
           "weight_decay", "momentum", "device", "threads", "probe_samples", "teacher_cache", "precision", "compile")
    if f.lecture:
        return
    t["batch_size"] = int(f.number(c3, "batch size", "train.batch_size", int(t["batch_size"]), 8, allowed="≥ 1"))
    t["optimizer"] = c4.selectbox("optimizer", OPTIMIZERS, index=OPTIMIZERS.index(t["optimizer"]),
                                  key=f.key("train.optimizer"))
    c1, c2, c3, c4 = st.columns(4)
    t["lr"] = f.number(c1, "learning rate", "train.lr", float(t["lr"]), fmt="%.5f", allowed="> 0")
    tlr = f.number(c2, "teacher lr (0 = same)", "train.teacher_lr", float(t["teacher_lr"] or 0.0), fmt="%.5f",
                   allowed="0 (same as the student's) or > 0")
    t["teacher_lr"] = tlr or None
    t["weight_decay"] = f.number(c3, "weight decay", "train.weight_decay", float(t["weight_decay"]), fmt="%.5f",
                                 allowed="≥ 0")
    t["momentum"] = f.number(c4, "momentum (sgd)", "train.momentum", float(t["momentum"]), 0.05, allowed="[0, 1)")
    c1, c2, c3, c4 = st.columns(4)
    t["device"] = c1.selectbox("device", DEVICES, index=DEVICES.index(t["device"]), key=f.key("train.device"))
    th = f.number(c2, "CPU threads (0 = default)", "train.threads", int(t["threads"] or 0), 1, allowed="0 or ≥ 1")
    t["threads"] = int(th) or None
    t["probe_samples"] = int(f.number(c3, "probe samples", "train.probe_samples", int(t["probe_samples"]), 16,
                                      allowed="≥ 0", help="samples used for attention / attribution probes"))
    t["teacher_cache"] = c4.checkbox("cache teacher outputs", value=bool(t["teacher_cache"]),
                                     key=f.key("train.teacher_cache"))
    c1, c2 = st.columns(2)
    t["precision"] = c1.selectbox("precision", ["fp32", "bf16"], index=["fp32", "bf16"].index(t["precision"]),
                                  key=f.key("train.precision"),
                                  help="bf16 = autocast of the training step (pays on recent GPUs; slower on most CPUs)")
    t["compile"] = c2.checkbox("torch.compile the training step", value=bool(t["compile"]),
                               key=f.key("train.compile"),
                               help="CUDA graphs on GPU (mode reduce-overhead); compiling costs seconds up front")
    raw_fields(f, "train")


def route_errors(message: str) -> dict[str, list[str]]:
    """Split a :class:`SpecError` message into its parts and file each under its spec section."""
    out: dict[str, list[str]] = {}
    for part in [p.strip() for p in message.split("; ") if p.strip()]:
        head = part.split(":", 1)[0].split(".", 1)[0].split("=", 1)[0].strip()
        section = head if head in SECTIONS else ("distill" if head in ("extra_phases", "phase_params")
                                                 else "general")
        out.setdefault(section, []).append(part)
    return out


def spec_errors_box(errors: dict[str, list[str]], section: str, render: Callable[[str], Any] = st.error) -> None:
    for msg in errors.get(section, []):
        render(msg)


__all__ = ["Form", "SECTIONS", "data_group", "distill_group", "format_pairs", "model_group", "parse_pairs", "plain",
           "regime_widgets", "route_errors", "spec_errors_box", "train_group", "weight_note", "wkey", "SpecError"]
