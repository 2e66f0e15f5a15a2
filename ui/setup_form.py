"""The Setup page's form: every spec field as a grouped widget, building a spec dict.

Widgets are keyed ``"<field path>@<spec version>"`` so a load (preset, YAML, URL) re-creates them
from the new spec. Fields without a dedicated widget (added to the spec later) are still editable
in each group's "other fields (YAML)" box, so *every* field of the spec can be set here.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Callable

import streamlit as st
import yaml

from kdcore.data import DATASETS
from kdcore.data.custom import dataset_class
from kdcore.data.tasks import AUX_TASKS
from kdcore.losses import LOSSES
from kdcore.spec import ARCHS_BY_KIND, DEFAULT_ARCH, FUSIONS, OPTIMIZERS, DEVICES, SpecError
from kdcore.strategies import TEMPERATURE_SCHEDULES, WEIGHTINGS

SECTIONS = ("data", "teacher", "student", "distill", "train")


def extra_phase_names() -> list[str]:
    from kdcore.engine.experiment import EXTRA_PHASES

    try:  # registers ard / pruning when that module exists
        import kdcore.engine.phases  # noqa: F401
    except ImportError:
        pass
    return sorted(EXTRA_PHASES)


def wkey(path: str, version: int) -> str:
    return f"{path}@{version}"


class Form:
    """Collects widget values into a copy of the spec dict; remembers per-section parse errors."""

    def __init__(self, spec_dict: dict[str, Any], version: int):
        self.d = copy.deepcopy(spec_dict)
        self.v = version
        self.errors: dict[str, list[str]] = {}
        self.covered: dict[str, set[str]] = {s: set() for s in SECTIONS}

    def key(self, path: str) -> str:
        return wkey(path, self.v)

    def error(self, section: str, msg: str) -> None:
        self.errors.setdefault(section, []).append(msg)

    def mark(self, section: str, *fields: str) -> None:
        self.covered[section].update(fields)

    def json_params(self, path: str, label: str, value: dict, section: str, allowed: dict | None = None) -> dict | None:
        """A JSON text box for a parameter mapping; ``allowed`` (the method's defaults) names the keys
        it accepts, so a typo is reported here rather than when the run starts."""
        help_ = f"defaults: {json.dumps(allowed, default=str)}" if allowed is not None else ""
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


def data_group(f: Form) -> None:
    d = f.d["data"]
    names = list(DATASETS)
    ds = st.selectbox("dataset", names, index=names.index(d["dataset"]), key=f.key("data.dataset"),
                      help="; ".join(f"{n}: {DATASETS[n].description}" for n in names))
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
        f.d.setdefault("_dataset_changed", True)
        return
    st.caption(cls.description + (" — " + cls.pairing_note if cls.pairing_note else ""))
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
            cur = float(d["noise"].get(knob, lo if knob != "audio_snr_db" else hi))
            val = cols[i % len(cols)].slider(knob, float(lo), float(hi), cur, key=f.key(f"data.noise.{knob}"),
                                             help=meaning)
            if knob in d["noise"] or val != (lo if knob != "audio_snr_db" else hi):
                noise[knob] = val
        d["noise"] = noise
    c1, c2, c3, c4 = st.columns(4)
    d["train_fraction"] = c1.number_input("train fraction", 0.05, 0.95, float(d["train_fraction"]), 0.05,
                                          key=f.key("data.train_fraction"))
    d["val_fraction"] = c2.number_input("validation fraction", 0.05, 0.9, float(d["val_fraction"]), 0.05,
                                        key=f.key("data.val_fraction"), help="the rest is the test split")
    limit = c3.number_input("train limit (0 = all)", 0, 100000, int(d["train_limit"] or 0), 50,
                            key=f.key("data.train_limit"), help="use at most this many training samples (≥ 10)")
    d["train_limit"] = int(limit) or None
    d["seed"] = int(c4.number_input("seed", 0, 2**31 - 1, int(d["seed"]), 1, key=f.key("data.seed")))
    d["aux_tasks"] = st.multiselect("auxiliary tasks", list(AUX_TASKS), default=d["aux_tasks"],
                                    key=f.key("data.aux_tasks"),
                                    help="extra label tasks (multi-task heads; used by multi-task KD losses)")
    f.mark("data", "dataset", "modalities", "noise", "train_fraction", "val_fraction", "train_limit", "seed",
           "aux_tasks")
    f.other_fields("data")


def model_group(f: Form, role: str, data_mods: list[str], kinds: dict[str, str]) -> None:
    m = f.d[role]
    chosen = st.multiselect(f"{role} modalities", data_mods, default=[x for x in (m["modalities"] or data_mods)
                                                                        if x in data_mods] or data_mods,
                            key=f.key(f"{role}.modalities"))
    m["modalities"] = None if set(chosen) == set(data_mods) else chosen
    c1, c2, c3, c4 = st.columns(4)
    m["fusion"] = c1.selectbox("fusion", FUSIONS, index=FUSIONS.index(m["fusion"]), key=f.key(f"{role}.fusion"))
    m["feature_dim"] = int(c2.number_input("feature dim", 2, 2048, int(m["feature_dim"]), 4,
                                           key=f.key(f"{role}.feature_dim")))
    m["dropout"] = c3.number_input("dropout", 0.0, 0.95, float(m["dropout"]), 0.05, key=f.key(f"{role}.dropout"))
    m["modality_dropout"] = c4.number_input("modality dropout", 0.0, 0.95, float(m["modality_dropout"]), 0.05,
                                            key=f.key(f"{role}.modality_dropout"),
                                            help="train-time probability of dropping a modality")
    st.markdown("**Encoders** (default for every modality, then per-modality overrides)")
    enc = m["encoder"]
    c1, c2 = st.columns(2)
    enc["width"] = int(c1.number_input("default width", 1, 512, int(enc["width"]), 1,
                                       key=f.key(f"{role}.encoder.width")))
    enc["depth"] = int(c2.number_input("default depth", 1, 8, int(enc["depth"]), 1,
                                       key=f.key(f"{role}.encoder.depth")))
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
            width = c2.number_input(f"{mod} width", 1, 512, int(cur.get("width", 16)), 1,
                                    key=f.key(f"{role}.encoders.{mod}.width"))
            depth = c3.number_input(f"{mod} depth", 1, 8, int(cur.get("depth", 2)), 1,
                                    key=f.key(f"{role}.encoders.{mod}.depth"))
            encoders[mod] = {"arch": arch, "width": int(width), "depth": int(depth)}
    m["encoders"] = encoders
    covered = ["modalities", "fusion", "feature_dim", "dropout", "modality_dropout", "encoder", "encoders"]
    if role == "teacher":
        ck = st.text_input("teacher checkpoint (.safetensors path; empty = train it)", value=m["checkpoint"] or "",
                           key=f.key("teacher.checkpoint"))
        m["checkpoint"] = ck.strip() or None
        covered.append("checkpoint")
    f.mark(role, *covered)
    f.other_fields(role)


def distill_group(f: Form) -> None:
    d = f.d["distill"]
    names = sorted(LOSSES)
    chosen = st.multiselect("loss terms", names, default=[n for n in d["losses"] if n in names],
                            key=f.key("distill.losses"),
                            format_func=lambda n: f"{n} — {LOSSES[n].summary}")
    losses = {}
    for n in chosen:
        cls = LOSSES[n]
        cur = d["losses"].get(n, {"weight": cls.default_weight, "params": {}})
        c1, c2 = st.columns([1, 3])
        w = c1.number_input(f"{n} weight", 0.0, 1e6, float(cur["weight"]), key=f.key(f"distill.losses.{n}.weight"),
                            help=f"default {cls.default_weight:g}")
        params = c2.columns(1)[0]
        with params:
            p = f.json_params(f"distill.losses.{n}.params", f"{n} parameters", cur.get("params") or {}, "distill",
                              allowed=cls.defaults)
        losses[n] = {"weight": float(w), "params": p if p is not None else cur.get("params", {})}
    d["losses"] = losses
    c1, c2, c3 = st.columns(3)
    d["temperature"] = c1.slider("temperature T", 0.5, 20.0, float(d["temperature"]), 0.5,
                                 key=f.key("distill.temperature"))
    ws = list(WEIGHTINGS)
    d["weighting"] = c2.selectbox("loss weighting", ws, index=ws.index(d["weighting"]) if d["weighting"] in ws else 0,
                                  key=f.key("distill.weighting"), format_func=lambda n: f"{n} — {WEIGHTINGS[n].summary}")
    ts = list(TEMPERATURE_SCHEDULES)
    d["temperature_schedule"] = c3.selectbox(
        "temperature schedule", ts, index=ts.index(d["temperature_schedule"]) if d["temperature_schedule"] in ts else 0,
        key=f.key("distill.temperature_schedule"), format_func=lambda n: f"{n} — {TEMPERATURE_SCHEDULES[n].summary}")
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
    phases = extra_phase_names()
    d["extra_phases"] = st.multiselect("extra student phases (after KD)", phases,
                                       default=[x for x in d["extra_phases"] if x in phases],
                                       key=f.key("distill.extra_phases"))
    ensemble_widgets(f)
    f.mark("distill", "losses", "temperature", "weighting", "temperature_schedule", "weighting_params",
           "temperature_params", "extra_phases", "ensemble")
    f.other_fields("distill")


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
    t["teacher_epochs"] = int(c1.number_input("teacher epochs", 0, 1000, int(t["teacher_epochs"]), 1,
                                              key=f.key("train.teacher_epochs")))
    t["student_epochs"] = int(c2.number_input("student epochs", 1, 1000, int(t["student_epochs"]), 1,
                                              key=f.key("train.student_epochs")))
    t["batch_size"] = int(c3.number_input("batch size", 1, 65536, int(t["batch_size"]), 8,
                                          key=f.key("train.batch_size")))
    t["optimizer"] = c4.selectbox("optimizer", OPTIMIZERS, index=OPTIMIZERS.index(t["optimizer"]),
                                  key=f.key("train.optimizer"))
    c1, c2, c3, c4 = st.columns(4)
    t["lr"] = c1.number_input("learning rate", 1e-6, 10.0, float(t["lr"]), format="%.5f", key=f.key("train.lr"))
    tlr = c2.number_input("teacher lr (0 = same)", 0.0, 10.0, float(t["teacher_lr"] or 0.0), format="%.5f",
                          key=f.key("train.teacher_lr"))
    t["teacher_lr"] = tlr or None
    t["weight_decay"] = c3.number_input("weight decay", 0.0, 1.0, float(t["weight_decay"]), format="%.5f",
                                        key=f.key("train.weight_decay"))
    t["momentum"] = c4.number_input("momentum (sgd)", 0.0, 0.99, float(t["momentum"]), 0.05,
                                    key=f.key("train.momentum"))
    c1, c2, c3, c4 = st.columns(4)
    t["device"] = c1.selectbox("device", DEVICES, index=DEVICES.index(t["device"]), key=f.key("train.device"))
    th = c2.number_input("CPU threads (0 = default)", 0, 256, int(t["threads"] or 0), 1, key=f.key("train.threads"))
    t["threads"] = int(th) or None
    t["probe_samples"] = int(c3.number_input("probe samples", 0, 4096, int(t["probe_samples"]), 16,
                                             key=f.key("train.probe_samples"),
                                             help="samples used for attention / attribution probes"))
    t["teacher_cache"] = c4.checkbox("cache teacher outputs", value=bool(t["teacher_cache"]),
                                     key=f.key("train.teacher_cache"))
    c1, c2 = st.columns(2)
    t["precision"] = c1.selectbox("precision", ["fp32", "bf16"], index=["fp32", "bf16"].index(t["precision"]),
                                  key=f.key("train.precision"),
                                  help="bf16 = autocast of the training step (pays on recent GPUs; slower on most CPUs)")
    t["compile"] = c2.checkbox("torch.compile the training step", value=bool(t["compile"]),
                               key=f.key("train.compile"),
                               help="CUDA graphs on GPU (mode reduce-overhead); compiling costs seconds up front")
    f.mark("train", "teacher_epochs", "student_epochs", "batch_size", "optimizer", "lr", "teacher_lr",
           "weight_decay", "momentum", "device", "threads", "probe_samples", "teacher_cache", "precision", "compile")
    f.other_fields("train")


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


__all__ = ["Form", "SECTIONS", "data_group", "distill_group", "model_group", "route_errors", "spec_errors_box",
           "train_group", "wkey", "SpecError"]
