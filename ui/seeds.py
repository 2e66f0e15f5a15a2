"""Repeat a spec over several seeds as separate jobs and summarise them: the paired KD gain per seed
and the 2-std verdict of :func:`kdcore.core.verdict.seed_verdict`; the preset a job comes from."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from kdcore.service.jobs import JobManager
from kdcore.core.verdict import seed_verdict
from kdcore.presets import PRESETS
from kdcore.core.spec import ExperimentSpec

REPEAT_LABEL = "Repeat this experiment over 3 seeds"
REPEAT_HINT = f"press “{REPEAT_LABEL}” below to run seeds 0, 1 and 2"


def base_preset_of(spec: ExperimentSpec, fallback: str | None = None) -> str | None:
    """The preset a spec was made from, read from its name ("digits-av · width 8", "few-labels-seed1"),
    else ``fallback`` (the session's base preset), else None."""
    name = (spec.name or "").split(" · ")[0].strip()
    name = re.sub(r"-seed\d+$", "", name)
    if name in PRESETS:
        return name
    return fallback if fallback in PRESETS else None


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
    rows, gains = [], []
    for s in snaps:
        ph = (s.result or {}).get("phases", {})
        acc = {p: round(100 * r["test_acc"], 2) for p, r in ph.items() if r.get("test_acc") is not None}
        row: dict[str, Any] = {"seed": s.spec.data.seed, "status": s.state_label,
                               **{f"{p} test acc (%)": v for p, v in acc.items()}}
        if s.status == "finished" and {"kd", "baseline"} <= set(ph):
            gain = 100 * (ph["kd"]["test_acc"] - ph["baseline"]["test_acc"])
            gains.append(gain)
            row["KD gain (points)"] = round(gain, 2)
        if ph.get("kd", {}).get("agreement") is not None:
            row["KD agreement with teacher (%)"] = round(100 * ph["kd"]["agreement"], 2)
        if ph.get("kd", {}).get("omitted_acc") is not None:
            row["KD omitted-class acc (%)"] = round(100 * ph["kd"]["omitted_acc"], 2)
        rows.append(row)
    table = pd.DataFrame(rows)
    table = table.fillna("–") if table.isna().any().any() else table
    finished = sum(1 for s in snaps if s.status == "finished")
    done = all(s.done for s in snaps)
    text = ""
    if gains:
        text = seed_verdict(gains).sentence() + "."
        if finished < len(snaps) and done:
            text += f" ({len(snaps) - finished} seed(s) did not finish and are left out.)"
    elif done:
        text = "No seed finished, so there is no KD gain to judge."
    return {"table": table, "done": done, "n": len(snaps), "finished": finished, "verdict": text,
            "gains": gains}
