"""Reading finished (and running) run folders for the Compare page: one row per run, the spec fields
that differ between the runs, the results."""

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


def runs_table(runs: list[RunInfo]) -> tuple[pd.DataFrame, list[str]]:
    """The comparison table and the names of the spec columns whose values differ between runs."""
    flat = [_flatten(r.spec) for r in runs]
    keys = sorted({k for f in flat for k in f} - {"description"})
    differ = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]
    rows = []
    for r, f in zip(runs, flat):
        res = r.result or {}
        phases = res.get("phases") or {}
        row: dict[str, Any] = {"run": r.id, "name": r.spec.get("name"), "status": res.get("status", "running?")}
        for p in ("teacher", "baseline", "kd"):
            acc = phases.get(p, {}).get("test_acc")
            row[f"{p} test acc (%)"] = round(100 * acc, 2) if acc is not None else None
        for p, v in phases.items():
            if p not in ("teacher", "baseline", "kd") and v.get("test_acc") is not None:
                row[f"{p} test acc (%)"] = round(100 * v["test_acc"], 2)
        gain = res.get("kd_gain")
        row["KD gain (points)"] = round(100 * gain, 2) if gain is not None else None
        for k in differ:
            v = f.get(k)
            row[k] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
        rows.append(row)
    return pd.DataFrame(rows), differ


def run_events(run: RunInfo) -> list[dict]:
    return read_events(run.folder)
