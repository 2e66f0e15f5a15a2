"""Sweep every distillation method (and the adaptive strategies) on the presets ``digits-av`` and
``mfeat-crossmodal`` over several seeds; write mean ± std of the test accuracy to docs/results.md.

Per (preset, seed) the teacher and the no-KD baseline are trained **once** and reused: every
method runs only its KD phase, from the same student initial weights and data order as the
baseline (``Experiment.student_phase`` with the spec's losses replaced). The test accuracy is that
of each phase's best-on-validation checkpoint.

Results are cached per (preset, seed, method) in ``runs/sweep_methods/<preset>.json`` with a
hash of the preset YAML and of the method's spec, so an interrupted sweep resumes and a changed
preset is recomputed. Usage::

    python scripts/sweep_methods.py                      # 3 seeds, both presets, all methods
    python scripts/sweep_methods.py --seeds 5 --presets mfeat-crossmodal --methods kd dkd
    python scripts/sweep_methods.py --quick              # 1 epoch, 1 seed: a smoke test (no docs)
    python scripts/sweep_methods.py --preset-runs robust sparse   # whole preset runs, 3 seeds each

``--preset-runs`` runs whole presets (teacher → baseline → KD → extra phases) over the seeds with
``kdcore.pipeline.sweep.run_sweep`` and adds a section per preset (every phase, robust accuracy,
sparsity, missing-modality accuracy) to docs/results.md; cached in ``runs/sweep_methods/presets/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from kdcore.pipeline.experiment import Experiment  # noqa: E402
from kdcore.presets import PRESET_DIR, load_preset  # noqa: E402
from kdcore.core.spec import ExperimentSpec, LossTerm  # noqa: E402

PRESETS = ["digits-av", "mfeat-crossmodal"]
# also swept (fewer methods): the mfeat view where plain KD hurts, to see which strategy recovers it
EXTRA_SWEEP_PRESETS = ["mfeat-mfh"]

# method name → (spec overrides of the KD phase, what it is). Logit methods follow the anchors'
# weights; feature/relation methods are CE (weight 1) + the method at its anchor default weight
# (RepDistiller's feature-only setting), so they are compared with plain KD as alternatives.
# DKD's warm-up is shortened from 20 to 5 epochs because these runs are 15–20 epochs long.
M: dict[str, tuple[dict[str, Any], str]] = {
    "kd": ({"losses": {"ce": 0.1, "kd": 0.9}}, "Hinton KD at the preset's T (CE 0.1 + KD 0.9)"),
    "dkd": ({"losses": {"ce": 1.0, "dkd": (1.0, {"warmup": 5})}}, "DKD α=1 β=8, warm-up 5 epochs (+ CE 1)"),
    "logit_mse": ({"losses": {"ce": 1.0, "logit_mse": 1.0}}, "MSE on logits (+ CE 1)"),
    "ab": ({"losses": {"ce": 1.0, "ab": 1.0}}, "activation boundaries, hinge (+ CE 1)"),
    "fitnet": ({"losses": {"ce": 1.0, "fitnet": 100.0}}, "FitNets hint ×100 (+ CE 1)"),
    "at": ({"losses": {"ce": 1.0, "at": 1000.0}}, "attention transfer ×1000 (+ CE 1)"),
    "sp": ({"losses": {"ce": 1.0, "sp": 3000.0}}, "similarity preserving ×3000 (+ CE 1)"),
    "rkd": ({"losses": {"ce": 1.0, "rkd": 1.0}}, "RKD distance 25 + angle 50 (+ CE 1)"),
    "pkt": ({"losses": {"ce": 1.0, "pkt": 30000.0}}, "PKT ×30000 (+ CE 1)"),
    "attention_kd": ({"losses": {"ce": 0.1, "kd": 0.9, "attention_kd": 1.0}},
                     "KD + KL between teacher and student modality attention (0 for a one-modality student)"),
    "modality_feature_kd": ({"losses": {"ce": 0.1, "kd": 0.9, "modality_feature_kd": 1.0}},
                            "KD + attention-weighted per-modality feature hints"),
    "crossmodal_feature_kd": ({"losses": {"ce": 0.1, "kd": 0.9, "crossmodal_feature_kd": 1.0}},
                              "KD + student modality features regressed onto the teacher's fused feature"),
    # strategies, all on top of plain KD (CE 0.1 + KD 0.9)
    "kd+uncertainty": ({"losses": {"ce": 0.1, "kd": 0.9}, "weighting": "uncertainty"},
                       "KD, Kendall uncertainty weighting (learned log-variances)"),
    "kd+confidence": ({"losses": {"ce": 0.1, "kd": 0.9}, "weighting": "confidence"},
                      "KD, per-sample weights = teacher max softmax prob"),
    "kd+c2kd": ({"losses": {"ce": 0.1, "kd": 0.9}, "weighting": "c2kd"},
                "KD on samples whose teacher argmax = label only"),
    "kd+c2kd-nontarget": ({"losses": {"ce": 0.1, "kd": 0.9}, "weighting": "c2kd",
                           "weighting_params": {"non_target_only": True}},
                          "C2KD filter + non-target classes only"),
    "c2kd-nontarget-ce1": ({"losses": {"ce": 1.0, "kd": 1.0}, "weighting": "c2kd",
                            "weighting_params": {"non_target_only": True}},
                           "C2KD filter + non-target classes only, CE 1 + KD 1"),
    "kd+learnable-T": ({"losses": {"ce": 0.1, "kd": 0.9}, "temperature_schedule": "learnable"},
                       "KD with a learned temperature (starts at the preset's T)"),
    "kd+cosine-T": ({"losses": {"ce": 0.1, "kd": 0.9}, "temperature_schedule": "cosine",
                     "temperature_params": {"end": 1.0}}, "KD, T follows a cosine from the preset's T to 1"),
}
# preset → variants (label, --set overrides) measured by --preset-runs
PRESET_RUNS: dict[str, list[tuple[str, list[str]]]] = {
    "mfeat-mfh": [("student on mor", []), ("student on zer", ["student.modalities=[zer]"]),
                  ("student on fou", ["student.modalities=[fou]"]),
                  ("student on pix", ["student.modalities=[pix]"]),
                  ("student on fac", ["student.modalities=[fac]"])],
    "robust": [("ARD", [])],
    "sparse": [("pruning to 90 %", [])],
    "multi-teacher": [("7 teachers, confidence-weighted", [])],
    "multitask": [("parity + ge5 heads", [])],
}
STRATEGY_KEYS = ("weighting", "weighting_params", "temperature_schedule", "temperature_params")


def method_spec(base: ExperimentSpec, method: str) -> ExperimentSpec:
    cfg, _ = M[method]
    data = base.to_dict()
    losses = {}
    for name, v in cfg["losses"].items():
        w, params = (v if isinstance(v, tuple) else (v, {}))
        losses[name] = {"weight": w, "params": params}
    data["distill"]["losses"] = losses
    for k in STRATEGY_KEYS:
        data["distill"][k] = cfg.get(k, {} if k.endswith("params") else
                                     ("fixed" if k == "weighting" else "constant"))
    return ExperimentSpec.model_validate(data)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_seed(preset: str, seed: int, methods: list[str], cache: dict, quick: bool, save) -> None:
    base = load_preset(preset).with_overrides([f"data.seed={seed}", "train.device=cpu"])
    if quick:
        base = base.with_overrides(["train.teacher_epochs=1", "train.student_epochs=1", "data.train_limit=100"])
    phash = _hash((PRESET_DIR / f"{preset}.yaml").read_text() + str(quick))
    key = f"{preset}|{seed}"
    entry = cache.get(key)
    if entry is None or entry.get("preset_hash") != phash:
        entry = cache[key] = {"preset_hash": phash, "methods": {}}
    todo = [m for m in methods if entry["methods"].get(m, {}).get("spec_hash") != _hash(
        method_spec(base, m).to_yaml())]
    if not todo and "teacher" in entry:
        return
    t0 = time.time()
    exp = Experiment(base)
    exp.setup()
    entry["teacher"] = exp.results["teacher"].test_acc
    res = exp.run_phase(exp.student_phase("baseline", {"ce": LossTerm(weight=1.0)}))
    entry["baseline"] = res.test_acc
    print(f"[{preset} seed {seed}] teacher {100 * entry['teacher']:.1f}  baseline {100 * res.test_acc:.1f}"
          f"  ({time.time() - t0:.0f}s)", flush=True)
    save()
    for m in todo:
        t1 = time.time()
        spec = method_spec(base, m)
        exp.spec = spec  # same data, teacher, student init; only distill.* differs
        try:
            r = exp.run_phase(exp.student_phase(m, spec.distill.losses))
            entry["methods"][m] = {"test_acc": r.test_acc, "spec_hash": _hash(spec.to_yaml()),
                                   "seconds": round(time.time() - t1, 1)}
            msg = f"{100 * r.test_acc:.1f}"
        except Exception as exc:  # report the failure in the table instead of stopping the sweep
            entry["methods"][m] = {"error": f"{type(exc).__name__}: {exc}", "spec_hash": _hash(spec.to_yaml())}
            msg = f"FAILED {type(exc).__name__}: {exc}"
        print(f"[{preset} seed {seed}] {m}: {msg}  ({time.time() - t1:.0f}s)", flush=True)
        save()


def _ms(xs: list[float]) -> str:
    if not xs:
        return "–"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{100 * statistics.fmean(xs):.1f} ± {100 * sd:.1f}"


def summarize(cache: dict, presets: list[str], seeds: int, methods: list[str]) -> str:
    lines = ["# Method sweep: every distillation method on digits-av and mfeat-crossmodal", "",
             "Produced by `python scripts/sweep_methods.py` (committed); test-split accuracy (%) of the "
             f"best-on-validation checkpoint, mean ± std over {seeds} seeds (data split, noise, "
             "initialisation and data order all change with the seed). Per seed the teacher and the "
             "no-KD baseline are trained once; every method trains a student from the baseline's "
             "initial weights with the same data order, so *Δ vs KD* is the paired difference to plain "
             "Hinton KD (mean ± std over seeds). Presets as committed when the sweep ran (student "
             "and teacher architectures, epochs, noise: see `kdcore/presets/<name>.yaml`).", ""]
    for preset in presets:
        entries = [cache.get(f"{preset}|{s}") for s in range(seeds)]
        entries = [e for e in entries if e and "teacher" in e]
        if not entries:
            continue
        spec = load_preset(preset)
        import subprocess

        commit = subprocess.run(["git", "log", "-1", "--format=%h %cI", "--", f"kdcore/presets/{preset}.yaml"],
                                cwd=ROOT, capture_output=True, text=True).stdout.strip() or "uncommitted"
        lines += [f"## {preset}", "", spec.description.strip().splitlines()[0], "",
                  f"Preset file hash {entries[0]['preset_hash']} (last preset commit: {commit}).", "",
                  f"Teacher: {_ms([e['teacher'] for e in entries])} · student without KD (baseline): "
                  f"{_ms([e['baseline'] for e in entries])} · seeds: {len(entries)}", "",
                  "| method | what | test acc | Δ vs baseline | Δ vs KD |", "|---|---|---|---|---|"]
        for m in methods:
            accs, d_base, d_kd, errors = [], [], [], []
            for e in entries:
                r = e["methods"].get(m)
                if r is None:
                    continue
                if "error" in r:
                    errors.append(r["error"])
                    continue
                accs.append(r["test_acc"])
                d_base.append(r["test_acc"] - e["baseline"])
                kd = e["methods"].get("kd", {}).get("test_acc")
                if kd is not None and m != "kd":
                    d_kd.append(r["test_acc"] - kd)
            if errors and not accs:
                what = "n/a" if errors[0].startswith("ValueError") else "failed"
                lines.append(f"| {m} | {M[m][1]} | {what}: {errors[0].split(': ', 1)[-1][:90]} | | |")
                continue
            if not accs:
                continue

            def delta(xs):
                if not xs:
                    return "–"
                sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
                return f"{100 * statistics.fmean(xs):+.1f} ± {100 * sd:.1f}"

            lines.append(f"| {m} | {M[m][1]} | {_ms(accs)} (n={len(accs)}) | {delta(d_base)} | {delta(d_kd)} |")
        worse = []
        for m in methods:
            vals = [e["methods"][m]["test_acc"] - e["methods"]["kd"]["test_acc"] for e in entries
                    if m != "kd" and "test_acc" in e["methods"].get(m, {}) and "test_acc" in e["methods"].get("kd", {})]
            if vals and statistics.fmean(vals) < 0:
                worse.append(m)
        lines += ["", f"Methods below plain KD on average here: {', '.join(worse) or 'none'}.", ""]
    return "\n".join(lines)


def run_presets(names: list[str], seeds: int, cache_dir: Path) -> None:
    from kdcore.pipeline.sweep import run_sweep

    cache_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        for label, sets in PRESET_RUNS[name]:
            spec = load_preset(name).with_overrides([*sets, "train.device=cpu"])
            h = _hash(spec.to_yaml() + str(seeds))
            f = cache_dir / f"{name}-{h}.json"
            if f.is_file():
                continue
            t0 = time.time()
            summary = run_sweep(spec, seeds, progress=sys.stdout)
            summary.update(label=label, sets=sets, preset=name, seconds=round(time.time() - t0, 1))
            f.write_text(json.dumps(summary, indent=1))
            print(f"[{name} / {label}] done in {time.time() - t0:.0f}s", flush=True)


def presets_section(cache_dir: Path, seeds: int) -> str:
    if not cache_dir.is_dir():
        return ""
    lines = ["## Whole-preset runs", "",
             f"`python scripts/sweep_methods.py --preset-runs ...`: each preset run end to end over {seeds} seeds "
             "(seed = data split, noise, initialisation); test accuracy (%) mean ± std per phase; extra columns are "
             "the phase's robust accuracy under FGSM / PGD, the sparsity reached, and accuracy with a modality "
             "removed at test time (−m).", ""]
    order = list(PRESET_RUNS)
    current = {}
    for f in sorted(cache_dir.glob("*.json")):  # keep only runs of the presets as they are now
        r = json.loads(f.read_text())
        spec = load_preset(r["preset"]).with_overrides([*r["sets"], "train.device=cpu"])
        if r["seeds"] == seeds and f.stem.endswith(_hash(spec.to_yaml() + str(seeds))):
            current[(r["preset"], r["label"])] = r
    for name in order:
        for label, sets in PRESET_RUNS[name]:
            r = current.get((name, label))
            if r is None:
                continue
            extras = sorted({k.split(".", 1)[1] for k in r["extra"]} - {"robust_eps", "loaded", "members",
                                                                          "model_sparsity"})
            cols = [k for k in ("fgsm_acc", "pgd_acc", "sparsity") if k in extras] + \
                [k for k in extras if k.startswith("acc_without_")]
            head = ["phase", "test acc", *[{"fgsm_acc": "FGSM", "pgd_acc": "PGD"}.get(c, c.replace(
                "acc_without_", "−")) for c in cols]]
            set_note = f" (`--set {' '.join(sets)}`)" if sets else ""
            lines += [f"### {name}: {label}{set_note}", ""]
            eps = [v["mean"] for k, v in r["extra"].items() if k.endswith(".robust_eps")]
            if eps:
                lines += [f"Attacks at ε = {eps[0]:g} (L∞, standardised feature units), white-box on each model.", ""]
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for phase, ms in r["phases"].items():
                cells = []
                for c in cols:
                    v = r["extra"].get(f"{phase}.{c}")
                    cells.append(_ms_d(v) if v else "")
                lines.append(f"| {phase} | {_ms_d(ms)} | " + " | ".join(cells) + " |")
            if r.get("kd_gain"):
                g = r["kd_gain"]
                lines += ["", f"KD gain (kd − baseline): {100 * g['mean']:+.1f} ± {100 * g['std']:.1f} points."]
            lines.append("")
    return "\n".join(lines)


def _ms_d(ms: dict) -> str:
    return f"{100 * ms['mean']:.1f} ± {100 * ms['std']:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--presets", nargs="+", default=PRESETS, choices=PRESETS + EXTRA_SWEEP_PRESETS)
    ap.add_argument("--methods", nargs="+", default=list(M), choices=list(M))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only-seeds", type=int, nargs="+", help="run just these seeds (parallel processes)")
    ap.add_argument("--tag", default="", help="cache file suffix, for a second process on the same seed")
    ap.add_argument("--quick", action="store_true", help="1 epoch, 100 samples, no docs: a smoke test")
    ap.add_argument("--cache-dir", default=str(ROOT / "runs" / "sweep_methods"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    ap.add_argument("--report-only", action="store_true", help="only rebuild docs/results.md from the cache")
    ap.add_argument("--preset-runs", nargs="+", choices=list(PRESET_RUNS), metavar="PRESET",
                    help=f"run whole presets over the seeds instead ({', '.join(PRESET_RUNS)})")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.preset_runs:
        run_presets(args.preset_runs, args.seeds, Path(args.cache_dir) / "presets")
        return 0
    cache_dir = Path(args.cache_dir) / ("quick" if args.quick else "")
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache: dict = {}
    for preset in PRESETS + EXTRA_SWEEP_PRESETS:  # one file per (preset, seed): they can run in parallel
        for f in [cache_dir / f"{preset}.json", *sorted(cache_dir.glob(f"{preset}-s*.json"))]:
            if not f.is_file():
                continue
            for key, entry in json.loads(f.read_text()).items():  # merge the methods of parallel runs
                old = cache.get(key)
                # same preset file, or (a description-only edit in between) the same trained teacher and
                # baseline to the last digit: the runs share their setup, so their methods can be pooled
                same = old is not None and (old.get("preset_hash") == entry.get("preset_hash") or (
                    "teacher" in old and old.get("teacher") == entry.get("teacher")
                    and old.get("baseline") == entry.get("baseline")))
                if same:
                    old["methods"].update(entry["methods"])
                    for k in ("teacher", "baseline"):
                        old.setdefault(k, entry.get(k))
                else:
                    cache[key] = entry

    def saver(preset, seed):
        def save():
            f = cache_dir / f"{preset}-s{seed}{args.tag}.json"
            tmp = f.with_suffix(".tmp")
            tmp.write_text(json.dumps({f"{preset}|{seed}": cache[f"{preset}|{seed}"]}, indent=1))
            tmp.replace(f)
        return save

    methods = ["kd", *[m for m in args.methods if m != "kd"]]  # KD first: every Δ vs KD needs it
    if not args.report_only:
        for seed in (args.only_seeds if args.only_seeds is not None else range(1 if args.quick else args.seeds)):
            for preset in args.presets:
                run_seed(preset, seed, methods, cache, args.quick, saver(preset, seed))
    text = summarize(cache, PRESETS + EXTRA_SWEEP_PRESETS if args.report_only else args.presets,
                     1 if args.quick else args.seeds,
                     methods)
    if args.quick:
        print(text)
        return 0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    text += "\n" + presets_section(Path(args.cache_dir) / "presets", args.seeds)
    out = Path(args.out)
    begin, end = "<!-- generated by scripts/sweep_methods.py -->", "<!-- end generated -->"
    block = f"{begin}\n{text}\n{end}"
    old = out.read_text(encoding="utf-8") if out.is_file() else ""
    if begin in old and end in old:  # keep hand-written notes outside the generated block
        block = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
    out.write_text(block + ("" if block.endswith("\n") else "\n"), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
