"""Run names: the preset a spec started from plus what was changed, in short words.

``run_label(spec, "digits-av")`` → ``"digits-av · width 8 · −audio · T4 · +fitnet"``. A run keeps a
name the user typed (one that is neither the preset's name nor the preset spec's own ``name``);
otherwise it is named from its preset and the differences, so two runs of edited copies of one
preset are told apart in Train and Compare.
"""

from __future__ import annotations

from typing import Any

from kdcore.core.spec import ExperimentSpec

MAX_LEN = 60
SEP = " · "
MINUS = "−"  # U+2212, reads better than a hyphen before a word


def _g(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _mods(spec: ExperimentSpec, role: str) -> list[str]:
    return spec.teacher_modalities() if role == "teacher" else spec.student_modalities()


def _model_parts(spec: ExperimentSpec, base: ExperimentSpec, role: str, same_data: bool) -> list[str]:
    me, ref = getattr(spec, role), getattr(base, role)
    pre = "" if role == "student" else "teacher "
    out: list[str] = []
    if me.encoder.width != ref.encoder.width:
        out.append(f"{pre}width {me.encoder.width}")
    if me.encoder.depth != ref.encoder.depth:
        out.append(f"{pre}depth {me.encoder.depth}")
    if me.feature_dim != ref.feature_dim:
        out.append(f"{pre}dim {me.feature_dim}")
    if me.fusion != ref.fusion:
        out.append(f"{pre}{me.fusion} fusion")
    if me.checkpoint and me.checkpoint != ref.checkpoint:
        out.append(f"{pre}from checkpoint")
    if same_data:
        mine, theirs = _mods(spec, role), _mods(base, role)
        out += [f"{pre}{MINUS}{m}" for m in theirs if m not in mine]
        out += [f"{pre}+{m}" for m in mine if m not in theirs]
    return out


def _regime_parts(spec: ExperimentSpec, base: ExperimentSpec) -> list[str]:
    r, b = spec.data.regime, base.data.regime
    out: list[str] = []
    if r.labels_per_class != b.labels_per_class and r.labels_per_class is not None:
        out.append(f"{r.labels_per_class} labels/class")
    elif r.labels_per_class is None and (r.labelled_fraction != b.labelled_fraction
                                         or b.labels_per_class is not None):
        out.append("all labels" if r.labelled_fraction >= 1.0 else f"{100 * r.labelled_fraction:g} % labels")
    if r.transfer != b.transfer and r.has_unlabelled_transfer() != b.has_unlabelled_transfer():
        out.append("+unlabelled" if r.transfer == "labelled+unlabelled" else "labelled only")
    if sorted(r.omit_classes) != sorted(b.omit_classes):
        out.append("omit " + ",".join(str(c) for c in sorted(r.omit_classes)) if r.omit_classes else "omit none")
    if r.omitted_in_transfer != b.omitted_in_transfer and r.omit_classes:
        out.append("omitted in transfer" if r.omitted_in_transfer else "omitted from transfer")
    if r.teacher_label_noise != b.teacher_label_noise:
        out.append(f"teacher noise {r.teacher_label_noise:g}")
    elif r.teacher_noise_pairs != b.teacher_noise_pairs:
        out.append("noise pairs " + ",".join(f"{s}→{d}" for s, d in sorted(r.teacher_noise_pairs.items())))
    return out


def diff_parts(spec: ExperimentSpec, base: ExperimentSpec) -> list[str]:
    """What ``spec`` changes versus ``base``, most telling first, each a few words."""
    out: list[str] = []
    d, bd = spec.data, base.data
    same_data = d.dataset == bd.dataset and d.path == bd.path
    if d.dataset != bd.dataset:
        out.append("custom data" if d.dataset == "custom" else d.dataset)
    elif d.path != bd.path:
        out.append("other data")
    out += _model_parts(spec, base, "student", same_data)
    t, bt = spec.distill, base.distill
    if t.temperature != bt.temperature:
        out.append(f"T{t.temperature:g}")
    out += [f"+{k}" for k in t.losses if k not in bt.losses]
    out += [f"{MINUS}{k}" for k in bt.losses if k not in t.losses]
    out += [f"{k} {t.losses[k].weight:g}" for k in t.losses
            if k in bt.losses and t.losses[k].weight != bt.losses[k].weight]
    out += [f"{k} params" for k in t.losses
            if k in bt.losses and t.losses[k].params != bt.losses[k].params]
    if t.weighting != bt.weighting:
        out.append(f"{t.weighting} weighting")
    elif t.weighting_params != bt.weighting_params:
        out.append("weighting params")
    if t.temperature_schedule != bt.temperature_schedule:
        out.append(f"T {t.temperature_schedule}")
    out += [f"+{p}" for p in t.extra_phases if p not in bt.extra_phases]
    out += [f"{MINUS}{p}" for p in bt.extra_phases if p not in t.extra_phases]
    if (t.ensemble is None) != (bt.ensemble is None):
        out.append("+ensemble" if t.ensemble is not None else f"{MINUS}ensemble")
    elif t.ensemble != bt.ensemble:
        out.append("ensemble changed")
    out += _regime_parts(spec, base)
    if same_data:
        for k, v in d.noise.items():
            if bd.noise.get(k) != v:
                out.append(f"{k} {_g(v)}")
        out += [f"no {k}" for k in bd.noise if k not in d.noise]
    if d.train_limit != bd.train_limit:
        out.append(f"{d.train_limit} train" if d.train_limit else "all train")
    out += [f"+{a}" for a in d.aux_tasks if a not in bd.aux_tasks]
    out += _model_parts(spec, base, "teacher", same_data)
    tr, btr = spec.train, base.train
    if tr.student_epochs != btr.student_epochs:
        out.append(f"{tr.student_epochs} epochs")
    if tr.teacher_epochs != btr.teacher_epochs:
        out.append(f"teacher {tr.teacher_epochs} epochs")
    if tr.lr != btr.lr:
        out.append(f"lr {tr.lr:g}")
    if tr.batch_size != btr.batch_size:
        out.append(f"batch {tr.batch_size}")
    if tr.optimizer != btr.optimizer:
        out.append(tr.optimizer)
    if d.seed != bd.seed:
        out.append(f"seed {d.seed}")
    return out


def join_parts(head: str, parts: list[str], max_len: int = MAX_LEN) -> str:
    """``head · part · part …`` within ``max_len`` characters: parts that do not fit are left out and
    an ellipsis says so."""
    head = head[:max_len]
    out = head
    for i, p in enumerate(parts):
        rest = len(parts) - i - 1
        cand = out + SEP + p
        if len(cand) + (len(SEP) + 1 if rest else 0) <= max_len:
            out = cand
        else:
            return out + SEP + "…" if len(out) + len(SEP) + 1 <= max_len else out[: max_len - 1] + "…"
    return out


def run_label(spec: ExperimentSpec, base_preset_name: str | None, base: ExperimentSpec | None = None,
              max_len: int = MAX_LEN) -> str:
    """The run's display name: the preset's name plus what was changed versus that preset.

    ``base`` is the preset spec to compare with (default: the preset as shipped; pass the variant the
    session loaded, e.g. a shrunk test preset). A name the user typed is kept as it is (a name this
    function made, ``preset · …``, is made again); with no known preset the spec's own name is returned."""
    if base is None and base_preset_name:
        from kdcore.presets import PRESETS, load_preset

        base = load_preset(base_preset_name) if base_preset_name in PRESETS else None
    if base is None or not base_preset_name:
        return spec.name
    generated = spec.name in (base_preset_name, base.name) or spec.name.startswith(base_preset_name + SEP)
    if not generated:
        return spec.name  # the user named it
    return join_parts(base_preset_name, diff_parts(spec, base), max_len)


__all__ = ["diff_parts", "join_parts", "run_label"]
