"""``python -m kdcore explain RUN``: α statistics, attribution shares and teacher–student agreement
of a run folder as one JSON-able dict (and a short text table)."""

from __future__ import annotations

import math
import time
from pathlib import Path

from kdcore.explain.attention import alpha_on_split, attention_history
from kdcore.explain.attribution import METHODS, AttributionParams, attribute
from kdcore.explain.agreement import agreement
from kdcore.explain.callback import agreement_history
from kdcore.explain.probe import probe_rows
from kdcore.explain.runs import LoadedRun, load_run


def _clean(x):
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def explain_report(run: LoadedRun | str | Path, method: str = "ig", samples: int = 16,
                   params: AttributionParams | None = None, k_frac: float = 0.1, split: str = "test") -> dict:
    """Everything the inspection pages show, for the finished phases of one run.

    * ``alpha``: per phase, mean α per modality and per class × modality on ``split`` (all samples);
    * ``attribution``: per phase, the mean per-modality share of |attribution| on ``samples`` fixed
      probe samples (true class);
    * ``agreement``: per student phase, Spearman ρ and top-k overlap with the teacher (per shared modality);
    * ``agreement_history``: the per-epoch ``AttributionSnapshot`` numbers recorded during training."""
    if not isinstance(run, LoadedRun):
        run = load_run(run)
    if split not in ("train", "val", "test"):
        raise ValueError(f"split={split!r}; allowed: train, val, test")
    if samples < 1:
        raise ValueError(f"samples={samples} is outside the allowed range [1, {len(run.data.split(split))}]")
    params = (params or AttributionParams()).check()
    if method not in METHODS:
        raise ValueError(f"method={method!r}; allowed: {', '.join(METHODS)}")
    sp = run.data.split(split)
    rows = probe_rows(sp, samples, run.spec.data.seed)
    out: dict = {"run": str(run.run_dir) if run.run_dir else None, "dataset": run.spec.data.dataset,
                 "split": split, "method": method, "samples": int(len(rows)), "k_frac": k_frac,
                 "params": {k: v for k, v in vars(params).items()}, "phases": list(run.models),
                 "alpha": {}, "attribution": {}, "agreement": {}, "notes": list(run.notes)}
    attrs = {}
    t0 = time.time()
    for phase, model in run.models.items():
        mods = run.modalities(phase)
        st = alpha_on_split(model, sp, mods)
        out["alpha"][phase] = {"acc": st.acc, **({"mean": st.mean(),
                                                  "class_mean": st.class_mean().tolist()} if st.alpha is not None
                                                 else {"mean": None, "note": f"{phase} has no attention fusion"})}
        b = sp.batch(rows, mods)
        try:
            a = attribute(model, b.inputs, method, b.labels, params)
        except ValueError as exc:
            out["notes"].append(f"{phase}: {exc}")
            continue
        attrs[phase] = a
        if a.method != method:  # a tree student explains itself (pred_contrib), not with the chosen method
            out["notes"].append(f"{phase}: {a.notes[0] if a.notes else a.method}")
        out["attribution"][phase] = {"shares": a.mean_shares() or None, "modalities": list(a.modalities),
                                     "notes": a.notes}
    if "teacher" in attrs:
        for phase, a in attrs.items():
            if phase != "teacher":
                out["agreement"][phase] = agreement(attrs["teacher"], a, k_frac).mean()
    out["seconds"] = round(time.time() - t0, 3)
    hist = agreement_history(run.events)
    out["agreement_history"] = {p: [{"epoch": d["epoch"], "spearman": d["spearman"].get("all"),
                                     "topk": d["topk"].get("all")} for d in v] for p, v in hist.items()}
    out["attention_epochs"] = {p: len(v) for p, v in attention_history(run.events).items()}
    return _clean(out)


def report_table(rep: dict) -> str:
    lines = [f"run {rep['run']} — {rep['dataset']}, {rep['method']} on {rep['samples']} {rep['split']} samples"]
    lines.append("mean attention α (all of the split):")
    for phase, a in rep["alpha"].items():
        mean = a.get("mean")
        desc = ", ".join(f"{m} {v:.2f}" for m, v in mean.items()) if mean else a.get("note", "-")
        lines.append(f"  {phase:<9} acc {100 * a['acc']:5.1f}%  {desc}")
    lines.append("share of |attribution| per modality:")
    for phase, a in rep["attribution"].items():
        sh = a.get("shares") or {}
        lines.append(f"  {phase:<9} " + (", ".join(f"{m} {v:.2f}" for m, v in sh.items()) or "n/a"))
    if rep["agreement"]:
        lines.append(f"teacher–student agreement (Spearman ρ / top-{int(100 * rep['k_frac'])}% overlap):")
        for phase, ag in rep["agreement"].items():
            parts = [f"{m} {v['spearman'] if v['spearman'] is not None else float('nan'):.2f}/{v['topk']:.2f}"
                     for m, v in ag.items()]
            lines.append(f"  {phase:<9} " + ", ".join(parts))
    for n in rep["notes"]:
        lines.append(f"note: {n}")
    return "\n".join(lines)
