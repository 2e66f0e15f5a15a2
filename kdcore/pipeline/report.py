"""Text reports of a run: a one-line-per-phase progress printer (an event subscriber) and the
result table printed by ``python -m kdcore run`` / ``resume`` and ``kdcore.run(progress=True)``.

Torch-free at import: used by the CLI, the Python API (:mod:`kdcore.export.api`) and the benchmark.
"""

from __future__ import annotations

import sys
import time

from kdcore.core.events import Event, PhaseFinished, PhaseStarted, RunDiverged, RunFailed, RunStopped, StepLosses

__all__ = ["ProgressPrinter", "result_table"]


class ProgressPrinter:
    """Subscriber: a one-line progress bar per phase on stderr."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.total = 1
        self.phase = ""
        self.t0 = time.time()

    def __call__(self, ev: Event) -> None:
        match ev:
            case PhaseStarted():
                self.phase, self.total, self.t0 = ev.phase, max(1, ev.epochs * ev.steps_per_epoch), time.time()
                note = f" (teacher cache {ev.teacher_cache})" if ev.teacher_cache else ""
                self.stream.write(f"\n{ev.phase}: {ev.params:,} parameters{note}\n")
            case StepLosses():
                done = ev.step + 1
                if done % 5 and done != self.total:
                    return
                frac = done / self.total
                bar = "#" * int(30 * frac)
                eta = (time.time() - self.t0) / frac * (1 - frac)
                self.stream.write(f"\r  [{bar:<30}] {100 * frac:5.1f}%  loss {ev.total:.4f}  ETA {eta:4.0f}s")
            case PhaseFinished():
                self.stream.write(f"\n  best epoch {ev.best_epoch}: val {100 * ev.val_acc:.1f}%  "
                                  f"test {100 * ev.test_acc:.1f}%  ({ev.seconds:.1f}s)\n")
            case RunFailed() | RunDiverged() | RunStopped():
                self.stream.write(f"\n{ev.kind}: {ev.message}\n")
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
    if any("tree_trees" in r for r in rows.values()):  # tree students (kdcore.pipeline.tree_student)
        out.append("Tree students (LightGBM): MFLOPs = millions of split comparisons per sample, params = leaf "
                   "values + split thresholds, size = bytes of the LightGBM text model, best ep = best boosting round.")
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
