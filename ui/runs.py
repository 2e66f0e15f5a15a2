"""Reading finished (and running) run folders for the Compare page: one row per run, the spec fields
that differ between the runs first, then the KD gain and the results (accuracy, agreement with the
teacher, ECE, omitted-class accuracy)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from kdcore.store.folder import read_events


@dataclass
class RunInfo:
    folder: Path
    spec: dict[str, Any]
    result: dict[str, Any] | None

    @property
    def id(self) -> str:
        return self.folder.name


def list_runs(root: Path) -> list[RunInfo]:
    """Run folders under ``root`` (newest first). A folder without result.json is still running (or was
    killed); it is listed with status ``running?``."""
    if not root.is_dir():
        return []
    out = []
    for d in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        spec_file = d / "spec.yaml"
        if not spec_file.is_file():
            continue
        try:
            spec = yaml.safe_load(spec_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            continue
        result = None
        rf = d / "result.json"
        if rf.is_file():
            try:
                result = json.loads(rf.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                result = None
        out.append(RunInfo(d, spec if isinstance(spec, dict) else {}, result))
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k not in ("params", "noise"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
    return out


def _norm(v: Any) -> Any:
    """Values that mean "nothing set" compare equal: None, "", {}, [] (also as JSON text)."""
    if v is None or v == "" or v in ("{}", "[]", "null") or v == {} or v == []:
        return None
    return v


MISSING = "–"
SKIP_SPEC = {"description", "name"}  # the name has its own column


def _pct(v: Any) -> float | None:
    return round(100 * v, 2) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def runs_table(runs: list[RunInfo]) -> tuple[pd.DataFrame, list[str]]:
    """The comparison table and the names of the spec columns whose values differ between runs.

    Column order: run, name, status, the differing spec fields (so they are on screen), the KD
    gain, test accuracy per phase, then agreement with the teacher, ECE and omitted-class accuracy
    (bias-corrected too) of the students. "Nothing set" values (None, {}, []) count as equal; a
    spec cell without a value reads "–"; a metric column no run has is left out."""
    flat = [{k: _norm(v) for k, v in _flatten(r.spec).items()} for r in runs]
    keys = sorted({k for f in flat for k in f} - SKIP_SPEC)
    differ = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]
    rows = []
    for r, f in zip(runs, flat):
        res = r.result or {}
        phases = res.get("phases") or {}
        row: dict[str, Any] = {"run": r.id, "name": r.spec.get("name") or MISSING,
                               "status": res.get("status", "running?")}
        for k in differ:
            v = f.get(k)
            row[k] = MISSING if v is None else (v if isinstance(v, (int, float, str, bool)) else str(v))
        gain = res.get("kd_gain")
        if gain is None and "kd" in phases and "baseline" in phases:
            gain = phases["kd"].get("test_acc", 0) - phases["baseline"].get("test_acc", 0)
        row["KD gain (points)"] = _pct(gain)
        for p in ("teacher", "baseline", "kd", *[p for p in phases if p not in ("teacher", "baseline", "kd")]):
            row[f"{p} test acc (%)"] = _pct(phases.get(p, {}).get("test_acc"))
        for p in ("baseline", "kd"):
            row[f"{p} agreement with teacher (%)"] = _pct(phases.get(p, {}).get("agreement"))
        for p in ("baseline", "kd"):
            ece = phases.get(p, {}).get("ece")
            row[f"{p} ECE"] = round(ece, 3) if isinstance(ece, (int, float)) else None
        for p in ("baseline", "kd"):
            row[f"{p} omitted-class acc (%)"] = _pct(phases.get(p, {}).get("omitted_acc"))
            row[f"{p} omitted-class acc, bias-corrected (%)"] = _pct(phases.get(p, {}).get("omitted_acc_corrected"))
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        fixed = ["run", "name", "status", *differ]
        empty = [c for c in df.columns if c not in fixed and df[c].isna().all()]
        df = df.drop(columns=empty)
    return df, differ


def run_events(run: RunInfo) -> list[dict]:
    return read_events(run.folder)
