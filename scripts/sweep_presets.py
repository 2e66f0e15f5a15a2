"""Produce the README's results table: the lesson presets (and their toggles) and the core presets over
seeds, with the paired KD − baseline gain and the 2-std verdict.

    .venv/bin/python scripts/sweep_presets.py [--only omitted-digit few-labels] [--seeds N]

Each seed changes the split, the regime's draws, the noise draw, the initial weights and the data order;
baseline and KD student of a seed share all of them, so their difference is paired. Numbers are test
accuracies of each phase's best-on-validation checkpoint. Seeds per entry: 5 where a run takes under
20 s, 10 for the seconds-long synthetic MFH runs, 3 otherwise (``--seeds`` overrides all).

Writes ``docs/preset_results.md`` (the table and every seed's raw numbers) and
``kdcore/presets/measured.json`` (what the app shows beside a single run of a preset).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from kdcore.pipeline.sweep import fmt, run_sweep  # noqa: E402
from kdcore.core.verdict import seed_verdict  # noqa: E402
from kdcore.presets import MEASURED_FILE, load_preset  # noqa: E402

# (entry name, preset, overrides, default seeds)
ENTRIES: list[tuple[str, str, list[str], int]] = [
    ("multiview-kd", "multiview-kd", [], 5),
    ("omitted-digit", "omitted-digit", [], 5),
    ("omitted-digit · no 3s in transfer", "omitted-digit", ["data.regime.omitted_in_transfer=false"], 5),
    ("few-labels", "few-labels", [], 5),
    ("few-labels · transfer: labelled", "few-labels", ["data.regime.transfer=labelled"], 5),
    ("noisy-teacher", "noisy-teacher", [], 5),
    ("mfh-gamma · γ 0", "mfh-gamma", [], 10),
    ("mfh-gamma · γ 1/3", "mfh-gamma", ["data.noise.gamma=0.3333"], 10),
    ("mfh-gamma · γ 1", "mfh-gamma", ["data.noise.gamma=1.0"], 10),
    ("digits-av", "digits-av", [], 3),
    ("digits-crossmodal", "digits-crossmodal", [], 3),
    ("mfeat-crossmodal", "mfeat-crossmodal", [], 5),
    ("classic-kd", "classic-kd", [], 3),
    ("multitask", "multitask", [], 3),
    ("tree-student", "tree-student", [], 3),
    ("video-kd", "video-kd", [], 3),
    ("video-kd · teacher + speech", "video-kd", ["teacher.modalities=[video, audio]"], 3),
]


def _extra(s: dict, key: str) -> str:
    ms = s["extra"].get(key)
    return f"{100 * ms['mean']:.1f} ± {100 * ms['std']:.1f}" if ms else "–"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=None, help="seeds for every entry (default: per entry)")
    ap.add_argument("--only", nargs="*", default=None, help="presets to run (default: all entries)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "preset_results.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    measured = json.loads(MEASURED_FILE.read_text()) if MEASURED_FILE.is_file() else {}
    raw_file = Path(args.out).with_suffix(".json")  # every entry's raw sweep, merged across invocations
    stored = json.loads(raw_file.read_text()) if raw_file.is_file() else {}
    rows, raw = {}, {}
    for entry, preset, overrides, seeds in ENTRIES:
        if args.only and preset not in args.only and entry not in args.only:
            continue
        n = args.seeds or seeds
        t0 = time.time()
        s = run_sweep(load_preset(preset).with_overrides(overrides) if overrides else load_preset(preset), n,
                      progress=sys.stderr)
        s["entry"], s["overrides"] = entry, overrides
        raw[entry] = s
        g = s["kd_gain"]
        gains = [100 * x for x in g["per_seed"]]
        v = seed_verdict(gains)
        p = s["params"]
        omitted = ""
        if "kd.omitted_acc" in s["extra"]:
            omitted = (f"3s: baseline {_extra(s, 'baseline.omitted_acc')} → KD {_extra(s, 'kd.omitted_acc')}; "
                       f"bias-corrected {_extra(s, 'baseline.omitted_acc_corrected')} → "
                       f"{_extra(s, 'kd.omitted_acc_corrected')}")
        rows[entry] = (f"| {entry} | {fmt(s['phases']['teacher'])} | {fmt(s['phases']['baseline'])} | "
                    f"{fmt(s['phases']['kd'])} | {v.mean:+.1f} ± {v.std:.1f} | **{v.label}** ({n}) | "
                    f"{_extra(s, 'baseline.agreement')} → {_extra(s, 'kd.agreement')} | {omitted} | "
                    f"{p['teacher']:,} → {p['kd']:,} | {(time.time() - t0) / n:.0f} s |")
        measured[entry] = {
            "preset": preset, "overrides": overrides, "seeds": n, "date": time.strftime("%Y-%m-%d"),
            "verdict": v.label,
            "kd_gain": {"mean": round(v.mean, 2), "std": round(v.std, 2), "n": n,
                        "per_seed": [round(x, 2) for x in gains]},
            "phases": {k: {"mean": round(100 * m["mean"], 2), "std": round(100 * m["std"], 2)}
                       for k, m in s["phases"].items()},
            "metrics": {k: {"mean": round(m["mean"], 4), "std": round(m["std"], 4)} for k, m in s["extra"].items()
                        if k.split(".", 1)[1] in ("agreement", "kl_to_teacher", "ece", "omitted_acc",
                                                  "omitted_acc_corrected", "bias", "test_acc_corrected")
                        or k.split(".", 1)[1].startswith("acc_without_")},
        }
        MEASURED_FILE.write_text(json.dumps(measured, indent=1, ensure_ascii=False) + "\n")
        stored[entry] = {"row": rows[entry], "sweep": s}
        raw_file.write_text(json.dumps(stored, indent=1, ensure_ascii=False) + "\n")
    order = [e[0] for e in ENTRIES]
    stored = {k: stored[k] for k in sorted(stored, key=lambda k: order.index(k) if k in order else len(order))}
    raw = {k: v["sweep"] for k, v in stored.items()}
    table = "\n".join([
        "| preset | teacher | student, no KD | student + KD | KD gain (points) | verdict (seeds) | "
        "agreement with teacher, no KD → KD | omitted class | parameters | s / seed |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(v["row"] for v in stored.values()),
    ])
    note = (f"Test accuracy (%), mean ± std over seeds 0..N−1 (N in the verdict column), produced by "
            f"`scripts/sweep_presets.py` (last run {time.strftime('%Y-%m-%d')}, {args.threads} CPU threads; the s / seed "
            "column is wall time on a shared machine, often loaded). "
            "The gain is paired (same seed, split, initial weights and data order). 'KD helps/hurts' only when "
            "the mean gain is more than 2 standard deviations of the per-seed gains away from 0, with ≥ 3 seeds.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    per_seed = []
    for entry, s in raw.items():
        per_seed.append(f"### {entry}\n\nOverrides: {s['overrides'] or 'none'}\n\n| seed | " +
                        " | ".join(s["phases"]) + " | gain |\n|" + "---|" * (len(s["phases"]) + 2))
        for i, r in enumerate(s["per_seed"]):
            per_seed.append(f"| {i} | " + " | ".join(f"{100 * r[k]:.2f}" for k in s["phases"]) +
                            f" | {100 * (r['kd'] - r['baseline']):+.2f} |")
        per_seed.append("")
    Path(args.out).write_text(f"# Preset results\n\n{table}\n\n{note}\n\n## Every seed\n\n" + "\n".join(per_seed) +
                              f"\n\nThe raw sweeps (every metric of every seed) are in `{raw_file.name}` beside this file.\n")
    print(table)
    print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
