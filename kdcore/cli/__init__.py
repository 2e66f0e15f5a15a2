"""Command line: ``python -m kdcore run|presets|methods|sweep ...``.

Bad input (unknown preset, invalid YAML, unknown ``--set`` key or bad value) prints one line
naming the problem and exits with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable

from kdcore.presets import DEFAULT_PRESET, PRESETS, PresetError, load_preset, measured_for
from kdcore.core.spec import ExperimentSpec, SpecError

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {}


class UsageError(Exception):
    """A user error: printed as one line, exit code 2."""


def command(name: str, help_: str):
    def deco(pair):
        add_args, run = pair
        COMMANDS[name] = (add_args, run, help_)
        return pair

    return deco


def spec_from_args(args: argparse.Namespace) -> ExperimentSpec:
    if args.preset and args.config:
        raise UsageError("give either --preset or --config, not both")
    try:
        if args.config:
            spec = ExperimentSpec.load(args.config)
        else:
            spec = load_preset(args.preset or DEFAULT_PRESET)
        return spec.with_overrides(args.set or [])
    except (SpecError, PresetError) as exc:
        raise UsageError(str(exc)) from None


def add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help=f"preset name ({', '.join(PRESETS)})")
    p.add_argument("--config", help="experiment YAML file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a spec field, e.g. --set train.lr=0.01 --set distill.losses.kd.weight=0.5")


class ProgressPrinter:
    """Subscriber: a one-line progress bar per phase on stderr."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.total = 1
        self.phase = ""
        self.t0 = time.time()

    def __call__(self, ev) -> None:
        kind = ev.kind
        if kind == "PhaseStarted":
            self.phase, self.total, self.t0 = ev.phase, max(1, ev.epochs * ev.steps_per_epoch), time.time()
            note = f" (teacher cache {ev.teacher_cache})" if ev.teacher_cache else ""
            self.stream.write(f"\n{ev.phase}: {ev.params:,} parameters{note}\n")
        elif kind == "StepLosses":
            done = ev.step + 1
            if done % 5 and done != self.total:
                return
            frac = done / self.total
            bar = "#" * int(30 * frac)
            eta = (time.time() - self.t0) / frac * (1 - frac)
            self.stream.write(f"\r  [{bar:<30}] {100 * frac:5.1f}%  loss {ev.total:.4f}  ETA {eta:4.0f}s")
        elif kind == "EpochMetrics":
            pass
        elif kind == "PhaseFinished":
            self.stream.write(f"\n  best epoch {ev.best_epoch}: val {100 * ev.val_acc:.1f}%  "
                              f"test {100 * ev.test_acc:.1f}%  ({ev.seconds:.1f}s)\n")
        elif kind in ("RunFailed", "RunDiverged", "RunStopped"):
            self.stream.write(f"\n{kind}: {ev.message}\n")
        self.stream.flush()


# extra per-phase metrics shown as columns (fractions, printed as %): header → result key prefix/name
_EXTRA_COLUMNS = {"fgsm_acc": "FGSM", "pgd_acc": "PGD", "sparsity": "sparsity", "agreement": "agree",
                  "ece": "ECE", "omitted_acc": "omitted", "omitted_acc_corrected": "omit+bias"}


def _extra_columns(phases: dict) -> list[tuple[str, str]]:
    keys: list[str] = []
    for r in phases.values():
        keys += [k for k in r if k not in keys]
    cols = [(k, "−" + k.removeprefix("acc_without_")) for k in keys if k.startswith("acc_without_")]
    cols += [(k, h) for k, h in _EXTRA_COLUMNS.items() if k in keys]
    return cols


def _efficiency_lines(phases: dict) -> list[str]:
    """Efficiency columns (kdcore.train.efficiency): FLOPs, CPU latency, size, compression, speed-up."""
    rows = {n: r for n, r in phases.items() if isinstance(r.get("flops"), (int, float))}
    if not rows:
        return []
    w = max([10, *map(len, rows)])
    out = ["", f"{'efficiency':<{w}} {'MFLOPs':>8} {'ms @b1':>8} {'ms/smp @b64':>11} {'size KB':>8} "
               f"{'compr.':>7} {'speed-up b1':>11} {'b64':>6}"]
    for n, r in rows.items():
        out.append(f"{n:<{w}} {r['flops'] / 1e6:8.3f} {r['latency_ms_b1']:8.3f} {r['latency_ms_b64']:11.4f} "
                   f"{r['size_bytes'] / 1024:8.1f} {r['compression']:6.1f}× {r['speedup_b1']:10.2f}× "
                   f"{r['speedup_b64']:5.2f}×")
    out.append("FLOPs per sample (forward, torch.utils.flop_counter); CPU latency = median of repeats; size = "
               "safetensors bytes; compression and speed-up relative to the teacher.")
    return out


def result_table(result: dict, stored: dict | None = None) -> str:
    phases = result["phases"]
    w = max([10, *map(len, phases)])
    cols = _extra_columns(phases)
    head = "".join(f" {h:>{max(8, len(h))}}" for _, h in cols)
    lines = [f"{'phase':<{w}} {'test acc':>9} {'val acc':>8} {'best ep':>7} {'params':>10}{head}"]
    for name, r in phases.items():
        cells = "".join(f" {'':>{max(8, len(h))}}" if not isinstance(r.get(k), (int, float))
                        else f" {100 * r[k]:>{max(8, len(h)) - 1}.2f}%" for k, h in cols)
        lines.append(f"{name:<{w}} {100 * r['test_acc']:8.2f}% {100 * r['val_acc']:7.2f}% {r['best_epoch']:>7} "
                     f"{r['params'] or 0:>10,}{cells}")
    if any(k.startswith("acc_without_") for k, _ in cols):
        lines.append("−m = test accuracy with modality m removed at test time.")
    eps = next((r["robust_eps"] for r in phases.values() if "robust_eps" in r), None)
    if eps is not None:
        lines.append(f"FGSM / PGD = test accuracy under that white-box L∞ attack at ε = {eps:g} "
                     "(standardised input units; token inputs unperturbed).")
    if any(k == "sparsity" for k, _ in cols):
        lines.append("sparsity = fraction of conv/linear weights pruned to zero.")
    if any(k == "agreement" for k, _ in cols):
        lines.append("agree = top-1 agreement with the teacher on the test split; ECE = expected calibration error.")
    if any(k == "omitted_acc" for k, _ in cols):
        biases = ", ".join(f"{n} {r['bias']:+.1f}" for n, r in phases.items() if "bias" in r)
        lines.append(f"omitted = test accuracy on the omitted classes; omit+bias = after adding the bias fitted on "
                     f"the validation split to their logits ({biases}).")
    if (result.get("data") or {}).get("regime"):
        lines.append(f"data regime: {result['data']['regime']}")
    if result.get("kd_gain") is not None:
        from kdcore.core.verdict import run_verdict

        lines.append("Verdict: " + run_verdict(result, stored, repeat_hint="run `python -m kdcore sweep` with the "
                                                  "same --preset/--set and --seeds 3"))
    lines.append("Accuracy = test split, checkpoint with the best validation accuracy of each phase.")
    lines += _efficiency_lines(phases)
    if result.get("teacher_cache"):
        lines.append(f"teacher cache: {result['teacher_cache']}")
    return "\n".join(lines)


# ---- run -------------------------------------------------------------------------------
def _run_args(p):
    add_spec_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--runs-dir", default=None, help="where run folders go (default: $KDLAB_RUNS_DIR or runs)")
    p.add_argument("--no-save", action="store_true", help="do not write a run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run(args) -> int:
    import torch

    from kdcore.pipeline.experiment import Experiment

    spec = spec_from_args(args)
    if spec.train.threads:
        torch.set_num_threads(spec.train.threads)
    from kdcore.train import distributed as dist

    dist.init_from_env(spec.train.device)  # under torchrun: process group; only rank 0 logs and saves
    if not dist.is_main():
        code = 0 if Experiment(spec).run().status == "finished" else 1
        dist.shutdown()
        return code
    subs = [] if args.quiet else [ProgressPrinter()]
    from kdcore.store.registry import default_root

    exp = Experiment(spec, subs, run_root=None if args.no_save else (args.runs_dir or default_root()))
    t0 = time.time()
    result = exp.run().to_dict()
    result["wall_seconds"] = round(time.time() - t0, 2)
    if dist.active():
        result["world_size"] = dist.world_size()
        dist.shutdown()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print()
        stored = measured_for(spec, args.preset or (None if args.config else DEFAULT_PRESET))
        print(result_table(result, stored))
        if result["run_dir"]:
            print(f"run folder: {result['run_dir']}  (run id {exp.run_id})")
    return 0 if result["status"] == "finished" else 1


command("run", "run an experiment (teacher → baseline → KD student)")((_run_args, _run))


# ---- presets ---------------------------------------------------------------------------
def _presets_args(p):
    p.add_argument("--json", action="store_true")


def _presets(args) -> int:
    rows = {name: load_preset(name).description.strip().splitlines()[0] for name in PRESETS}
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max(map(len, rows))
        for name, desc in rows.items():
            print(f"{name:<{width}}  {desc}")
    return 0


command("presets", "list presets with a one-line description")((_presets_args, _presets))


# ---- methods ---------------------------------------------------------------------------
def _methods_args(p):
    p.add_argument("--json", action="store_true")


def _methods(args) -> int:
    from kdcore.methods.losses import LOSSES
    from kdcore.methods.strategies import TEMPERATURE_SCHEDULES, WEIGHTINGS

    rows = [{"name": n, "kind": "loss", "family": c.family, "summary": c.summary, "paper": c.paper,
             "default_weight": c.default_weight, "defaults": c.defaults} for n, c in sorted(LOSSES.items())]
    rows += [{"name": n, "kind": "weighting", "summary": c.summary, "defaults": c.defaults}
             for n, c in WEIGHTINGS.items()]
    rows += [{"name": n, "kind": "temperature", "summary": c.summary, "defaults": c.defaults}
             for n, c in TEMPERATURE_SCHEDULES.items()]
    from kdcore.pipeline.recipes.extra import PHASE_PARAMS, PHASE_SUMMARY

    rows += [{"name": n, "kind": "phase", "summary": PHASE_SUMMARY[n], "defaults": PHASE_PARAMS[n]}
             for n in PHASE_PARAMS]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            extra = f" weight {r['default_weight']}" if "default_weight" in r else ""
            params = ", ".join(f"{k}={v}" for k, v in r["defaults"].items())
            print(f"{r['kind']:<11} {r['name']:<{width}} {r['summary']}  [{params}{extra}]")
    return 0


command("methods", "list distillation methods and strategies with their defaults")((_methods_args, _methods))


# ---- sweep -----------------------------------------------------------------------------
def _sweep_args(p):
    add_spec_args(p)
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    p.add_argument("--vary", action="append", metavar="FIELD=V1,V2,...",
                   help="a spec field and its values, e.g. distill.temperature=1,2,4,8 (at most two --vary); "
                        "the table then has one row per grid point with the paired KD gain")
    p.add_argument("--no-cache", action="store_true", help="--vary: retrain every row (default: reuse the "
                   "rows cached under runs/sweeps/ and train only the missing ones)")
    p.add_argument("--json", action="store_true")


def _sweep(args) -> int:
    from kdcore.pipeline.sweep import run_sweep, sweep_table

    spec = spec_from_args(args)
    if args.seeds < 1:
        raise UsageError("--seeds must be ≥ 1")
    if args.vary:
        from kdcore.pipeline.grid import parse_vary, run_grid
        from kdcore.store.registry import default_root

        try:
            axes = parse_vary(args.vary)
            grid = run_grid(spec, axes, args.seeds, progress=sys.stderr,
                            cache_root=None if args.no_cache else default_root())
        except SpecError as exc:
            raise UsageError(str(exc)) from None
        print(json.dumps(grid.to_dict(), indent=2, default=str) if args.json else grid.table())
        return 0
    summary = run_sweep(spec, args.seeds, progress=sys.stderr)
    print(json.dumps(summary, indent=2) if args.json else sweep_table(summary))
    return 0


command("sweep", "run a preset over several seeds; mean ± std of every phase")((_sweep_args, _sweep))


# ---- explain ---------------------------------------------------------------------------
def _explain_args(p):
    p.add_argument("run", metavar="RUN", help="run folder (with spec.yaml, metrics.jsonl, checkpoints/)")
    p.add_argument("--method", default="ig", help="ig, saliency, smoothgrad, occlusion or gradcam (default ig)")
    p.add_argument("--samples", type=int, default=16, help="fixed probe samples of the split (default 16)")
    p.add_argument("--split", default="test", help="train, val or test (default test)")
    p.add_argument("--steps", type=int, default=32, help="IG steps (default 32)")
    p.add_argument("--window", type=int, default=4, help="occlusion window (default 4, stride window // 2)")
    p.add_argument("--baseline", default="zeros", help="zeros or mean (default zeros)")
    p.add_argument("--noise-samples", type=int, default=8, help="SmoothGrad draws (default 8)")
    p.add_argument("--topk", type=float, default=0.1, help="top-k fraction for the overlap (default 0.1)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")


def _explain(args) -> int:
    from kdcore.explain.attribution import AttributionError, AttributionParams
    from kdcore.explain.report import explain_report, report_table
    from kdcore.explain.runs import RunError
    from kdcore.models.checkpoints import CheckpointError

    try:
        params = AttributionParams(steps=args.steps, window=args.window, baseline=args.baseline,
                                   noise_samples=args.noise_samples).check()
        rep = explain_report(args.run, args.method, args.samples, params, args.topk, args.split)
    except (AttributionError, RunError, CheckpointError, SpecError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(rep, indent=2) if args.json else report_table(rep))
    return 0


command("explain", "attention α, attribution shares and teacher–student agreement of a run folder")(
    (_explain_args, _explain))


# ---- runs, resume, export, delete, import-data (kdcore.cli.store_commands) -----------------------
def _register_store_commands() -> None:
    from kdcore.cli.store_commands import COMMANDS as STORE_COMMANDS

    for name, help_, pair in STORE_COMMANDS:
        command(name, help_)(pair)


_register_store_commands()


# ---- bench (kdcore/bench.py) -------------------------------------------------------------
def _bench_args(p):
    from kdcore.bench import bench_args

    bench_args(p)


def _bench(args) -> int:
    from kdcore.bench import bench_run

    return bench_run(args)


command("bench", "engine vs a hand-written PyTorch loop, cached KD vs student-only (samples/s)")((_bench_args, _bench))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kdcore", description="KD Lab engine")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_args, _, help_) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed one usage line
        return int(exc.code or 0) if exc.code in (0, None) else 2
    try:
        return COMMANDS[args.command][1](args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
