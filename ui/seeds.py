"""Repeat a spec over several seeds as separate jobs and summarise them (mean KD gain ± std)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from kdcore.engine.jobs import JobManager
from kdcore.spec import ExperimentSpec
from kdcore.viz.training import aggregate_results, verdict


def submit_seed_group(manager: JobManager, spec: ExperimentSpec, n: int) -> list[str]:
    jobs = [manager.submit(spec.with_overrides([f"data.seed={seed}", f"name={spec.name}-seed{seed}"]))
            for seed in range(n)]
    return [j.id for j in jobs]


def seed_group_summary(manager: JobManager, ids: list[str] | None) -> dict[str, Any] | None:
    if not ids:
        return None
    snaps = [j.snapshot() for j in (manager.get(i) for i in ids) if j is not None]
    if not snaps:
        return None
    rows = []
    for s in snaps:
        ph = (s.result or {}).get("phases", {})
        acc = {p: round(100 * r["test_acc"], 2) for p, r in ph.items() if r.get("test_acc") is not None}
        rows.append({"seed": s.spec.data.seed, "status": s.state_label, **{f"{p} test acc (%)": v
                                                                             for p, v in acc.items()},
                     "KD gain (points)": round(acc["kd"] - acc["baseline"], 2) if {"kd", "baseline"} <= set(acc)
                     else None})
    agg = aggregate_results([s.result or {} for s in snaps])
    finished = sum(1 for s in snaps if s.status == "finished")
    text = verdict(agg, seeds=agg.get("seeds", 0)) if agg["status"] == "finished" else ""
    if agg.get("gain_std") is not None:
        text += f" Seed-to-seed spread of the gain: ± {agg['gain_std']:.1f} points (std)."
    return {"table": pd.DataFrame(rows), "done": all(s.done for s in snaps), "n": len(snaps), "finished": finished,
            "verdict": text}
