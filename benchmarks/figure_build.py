#!/usr/bin/env python3
"""How long the Train page's live charts take to build — a benchmark, not a test.

The Train page rebuilds its charts on every poll (``KDLAB_POLL_S``), so build time is UI latency.
``kdcore.viz.fast`` builds them from dicts without plotly's property validation; this script
times, side by side in one process, each live figure (Train page and Temperature explorer) built
that way against constructing the
same figure with validation (``go.Figure(fig.to_dict())``, what ``go.Scatter`` / ``add_vline``
construction costs), plus the JSON serialisation both need, on event streams the size of the
default preset's (≈ 700 steps, 3 phases).

Usage: .venv/bin/python benchmarks/figure_build.py [--steps 700] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import plotly.graph_objects as go  # noqa: E402
import plotly.io as pio  # noqa: E402

from kdcore.viz import (  # noqa: E402
    accuracy_figure,
    gradient_split_figure,
    hard_vs_soft_figure,
    loss_terms_figure,
    lr_figure,
    softmax_bars_figure,
    strategy_figure,
    temperature_curves_figure,
)


def events(n_steps: int) -> tuple[list[dict], list[dict]]:
    phases = ("teacher", "baseline", "kd")
    steps, epochs = [], []
    per = n_steps // len(phases)
    for p in phases:
        terms = {"ce": 1.0} if p != "kd" else {"ce": 1.0, "kd": 0.5}
        w = {"ce": 1.0} if p != "kd" else {"ce": 0.1, "kd": 0.9}
        for i in range(per):
            t = {k: v / (1 + 0.01 * i) for k, v in terms.items()}
            steps.append({"phase": p, "step": i, "epoch": i // 17, "total": sum(w[k] * t[k] for k in t), "terms": t,
                          "weights": w, "temperature": 2.0 + i / per if p == "kd" else None, "lr": 0.01})
        for e in range(1, per // 17 + 1):
            epochs.append({"phase": p, "epoch": e, "train_acc": 0.5, "val_acc": 0.6, "train_loss": 1.0,
                           "val_loss": 1.0})
    return steps, epochs


def median_ms(fn, repeats: int) -> float:
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t))
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=700)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    steps, epochs = events(a.steps)
    zt, zs, names = [4.0, 1.0, -2.0, 0.5, 0.0, 2.5, -1.0, 1.5, 0.2, -0.3], [2.0] * 10, [str(i) for i in range(10)]
    pages = {
        "Train page (every poll)": {
            "loss terms": lambda: loss_terms_figure(steps, 0.6, False),
            "accuracy": lambda: accuracy_figure(epochs),
            "strategy": lambda: strategy_figure(steps),
            "learning rate": lambda: lr_figure(steps),
        },
        "Temperature explorer (every T step)": {
            "softmax bars": lambda: softmax_bars_figure(zt, zs, 4.0, names, 3),
            "T curves": lambda: temperature_curves_figure(zt, zs, 4.0),
            "hard vs soft": lambda: hard_vs_soft_figure(3, zt, 4.0, names),
            "gradient split": lambda: gradient_split_figure(zs, zt, 3, 4.0, 0.9, names),
        },
    }
    for page, builders in pages.items():
        print(page)
        print(f"  {'figure':<14} {'fast build ms':>14} {'validated ms':>13} {'ratio':>6} {'to_json ms':>11}")
        tot_fast = tot_val = 0.0
        for name, build in builders.items():
            spec = build().to_dict()
            fast = median_ms(build, a.repeats)
            val = median_ms(lambda: go.Figure(spec), a.repeats)
            js = median_ms(lambda: pio.to_json(build(), validate=False), a.repeats) - fast
            tot_fast, tot_val = tot_fast + fast, tot_val + val
            print(f"  {name:<14} {fast:>14.1f} {val:>13.1f} {val / fast:>6.1f} {js:>11.1f}")
        print(f"  {'all four':<14} {tot_fast:>14.1f} {tot_val:>13.1f} {tot_val / tot_fast:>6.1f}")


if __name__ == "__main__":
    main()
