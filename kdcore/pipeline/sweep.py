"""Seed sweeps: the same spec over seeds 0..N-1; mean ± std of each phase's test accuracy."""

from __future__ import annotations

import statistics
import sys
from typing import Any, TextIO

from kdcore.pipeline.experiment import Experiment
from kdcore.core.verdict import seed_verdict
from kdcore.core.spec import ExperimentSpec


def _mean_std(xs: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}


def run_sweep(spec: ExperimentSpec, seeds: int, progress: TextIO | None = None) -> dict[str, Any]:
    per_seed = []
    for seed in range(seeds):
        s = spec.with_overrides([f"data.seed={seed}"])
        res = Experiment(s).run()
        if res.status != "finished":
            raise RuntimeError(f"seed {seed}: run {res.status}: {res.message}")
        row = {name: r["test_acc"] for name, r in res.phases.items()}
        row["data"] = res.data
        row["params"] = {name: r["params"] for name, r in res.phases.items()}
        for name, r in res.phases.items():
            for k, v in r.items():
                if k not in ("test_acc", "val_acc", "best_epoch", "params", "seconds") and isinstance(v, float):
                    row.setdefault("extra", {})[f"{name}.{k}"] = v
        per_seed.append(row)
        if progress is not None:
            accs = "  ".join(f"{k} {100 * v:.1f}" for k, v in row.items() if isinstance(v, float))
            progress.write(f"[{spec.name}] seed {seed}: {accs}\n")
            progress.flush()
    phases = [k for k, v in per_seed[0].items() if isinstance(v, float)]
    summary = {"preset": spec.name, "seeds": seeds,
               "phases": {p: _mean_std([r[p] for r in per_seed]) for p in phases},
               "params": per_seed[0]["params"], "per_seed": per_seed}
    if "kd" in phases and "baseline" in phases:
        gains = [r["kd"] - r["baseline"] for r in per_seed]
        summary["kd_gain"] = {**_mean_std(gains), "per_seed": gains}
        summary["verdict"] = seed_verdict([100 * g for g in gains]).label
    extras = sorted({k for r in per_seed for k in r.get("extra", {})})
    summary["extra"] = {k: _mean_std([r["extra"][k] for r in per_seed if k in r.get("extra", {})]) for k in extras}
    return summary


def fmt(ms: dict[str, float]) -> str:
    return f"{100 * ms['mean']:.1f} ± {100 * ms['std']:.1f}"


def sweep_table(summary: dict[str, Any]) -> str:
    cols = list(summary["phases"])
    head = "| preset | " + " | ".join(cols) + " | KD gain |"
    sep = "|" + "---|" * (len(cols) + 2)
    gain = summary.get("kd_gain")
    g = f"{100 * gain['mean']:+.1f} ± {100 * gain['std']:.1f}" if gain else "–"
    row = f"| {summary['preset']} | " + " | ".join(fmt(summary["phases"][c]) for c in cols) + f" | {g} |"
    verdict = seed_verdict([100 * x for x in gain["per_seed"]]).sentence() if gain else ""
    lines = [head, sep, row, f"(test accuracy %, mean ± std over {summary['seeds']} seeds) {verdict}"]
    extra = summary.get("extra", {})
    if "kd.agreement" in extra and "baseline.agreement" in extra:
        lines.append(f"agreement with the teacher: baseline {fmt(extra['baseline.agreement'])} → KD "
                     f"{fmt(extra['kd.agreement'])} %")
    if "kd.omitted_acc" in extra:
        for when, key in (("before", "omitted_acc"), ("after", "omitted_acc_corrected")):
            b, k = extra.get(f"baseline.{key}"), extra.get(f"kd.{key}")
            if b and k:
                lines.append(f"omitted classes, {when} the bias correction: baseline {fmt(b)} → KD {fmt(k)} % "
                             f"({100 * (k['mean'] - b['mean']):+.1f} points)")
        if "kd.bias" in extra:
            lines.append(f"fitted bias on the omitted logits (validation split): baseline "
                         f"{extra['baseline.bias']['mean']:+.2f}, KD {extra['kd.bias']['mean']:+.2f}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m kdcore sweep --preset NAME --seeds 3")
