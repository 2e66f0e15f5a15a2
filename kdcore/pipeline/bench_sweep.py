"""``python -m kdcore bench --sweep``: students trained together vs one at a time (issue #13, item 4).

Side by side in one process, on the spec's student architecture (the default preset's: image +
speech + text, GRU text encoder):

1. **Per-student time.** N KD students that differ only in the temperature (N = 2, 4, 8, 16 by
   default) train ``epochs`` epochs as one stacked model (:func:`kdcore.train.stacked.train_stacked`);
   the same students train one at a time with :func:`kdcore.train.trainer.train_phase` (two of
   them, every repeat: the sequential cost per student does not depend on N). Repeats interleave
   the variants, so a load spike from other processes hits all of them; the report gives the
   median wall seconds per student and the ratio stacked / sequential (1.00 = no gain).
2. **A temperature sweep vs one run** (off with ``--no-grid``): the wall time of
   ``run_grid(spec, {distill.temperature: [1, 2, 4, 8]}, seeds=3)`` (stacked, nothing cached) —
   every seed's teachers and students together, and seed by seed — against one
   ``Experiment(spec).run()``, all in this process, at the spec's own epochs (not ``--epochs``,
   which sizes part 1 only). Runs and sweeps alternate (``grid_repeats`` of each, then the
   seed-by-seed sweep and a last run) and the ratio is median over median, so neither a slow
   first run nor a slow stretch of a shared machine decides it.

Wall clock (``perf_counter``) and process CPU time (``process_time``, less sensitive to other
processes on a shared machine) with ``threads`` torch threads; the machine's load average is
recorded at the start and the end.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from kdcore.core.spec import ExperimentSpec
from kdcore.pipeline.experiment import Experiment

TEMPERATURES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ")[0]
    except OSError:
        return "?"


def _kd_cfgs(lead: Experiment, n: int):
    """``n`` KD phases of the lead's seed at different temperatures (same init, data, teacher)."""
    cfgs = []
    for i in range(n):
        t = TEMPERATURES[i % len(TEMPERATURES)] + (i // len(TEMPERATURES)) * 0.5
        lead.spec = lead.spec.with_overrides([f"distill.temperature={t}"])
        cfgs.append(lead.student_phase("kd", lead.spec.distill.losses))
    return cfgs


def run_sweep_bench(spec: ExperimentSpec, counts: tuple[int, ...] = (2, 4, 8, 16), repeats: int = 1,
                    threads: int = 2, grid_spec: ExperimentSpec | None = None, seeds: int = 3,
                    progress: Callable[[str], None] | None = None, grid_repeats: int = 3) -> dict[str, Any]:
    from kdcore.pipeline.grid import run_grid
    from kdcore.train.stacked import stack_reason, train_stacked
    from kdcore.train.trainer import train_phase

    say = progress or (lambda s: None)
    torch.set_num_threads(threads)
    report: dict[str, Any] = {"spec": spec.name, "threads": threads, "repeats": repeats,
                              "student_epochs": spec.train.student_epochs, "teacher_epochs": spec.train.teacher_epochs,
                              "load_start": _load(), "host": platform.node(), "cpus": os.cpu_count(),
                              "torch": torch.__version__}
    lead = Experiment(spec)
    t0 = time.perf_counter()
    lead.setup()
    report["setup_s"] = round(time.perf_counter() - t0, 2)
    nothing = lambda e: None  # noqa: E731
    never = lambda: False  # noqa: E731
    probe = _kd_cfgs(lead, 2)
    why = stack_reason(probe, spec.train, lead.device)
    if why:
        raise ValueError(f"--sweep: the students of {spec.name} cannot be stacked: {why}")
    seq: list[float] = []
    seq_cpu: list[float] = []
    stacked: dict[int, list[float]] = {n: [] for n in counts}
    stacked_cpu: dict[int, list[float]] = {n: [] for n in counts}
    for r in range(repeats):
        order = ["seq", *counts] if r % 2 == 0 else [*counts, "seq"]
        for variant in order:
            if variant == "seq":
                for cfg in _kd_cfgs(lead, 2):
                    t, c = time.perf_counter(), time.process_time()
                    train_phase(cfg, lead.data, spec.train, lead.device, nothing, never)
                    seq.append(time.perf_counter() - t)
                    seq_cpu.append(time.process_time() - c)
                say(f"repeat {r + 1}: one at a time {seq[-1]:.2f} s per student (load {_load()})")
            else:
                cfgs = _kd_cfgs(lead, variant)
                t, c = time.perf_counter(), time.process_time()
                train_stacked(cfgs, lead.data, spec.train, lead.device, [nothing] * variant, never)
                dt = (time.perf_counter() - t) / variant
                stacked[variant].append(dt)
                stacked_cpu[variant].append((time.process_time() - c) / variant)
                say(f"repeat {r + 1}: {variant} stacked {dt:.2f} s per student (load {_load()})")
    seq_s, seq_c = statistics.median(seq), statistics.median(seq_cpu)
    report["sequential_s_per_student"] = round(seq_s, 3)
    report["sequential_cpu_s_per_student"] = round(seq_c, 3)
    report["per_student"] = {str(n): {"stacked_s_per_student": round(statistics.median(v), 3),
                                      "ratio": round(statistics.median(v) / seq_s, 3),
                                      "cpu_s_per_student": round(statistics.median(stacked_cpu[n]), 3),
                                      "cpu_ratio": round(statistics.median(stacked_cpu[n]) / seq_c, 3),
                                      "repeats_s": [round(x, 3) for x in v]} for n, v in stacked.items()}
    report["sequential_repeats_s"] = [round(x, 3) for x in seq]
    if grid_spec is not None:
        report["grid_repeats"] = grid_repeats
        report["grid_student_epochs"] = grid_spec.train.student_epochs
        report["grid_teacher_epochs"] = grid_spec.train.teacher_epochs
        def timed(what: str, fn) -> tuple[float, float, Any]:
            t, c = time.perf_counter(), time.process_time()
            out = fn()
            dt, dc = time.perf_counter() - t, time.process_time() - c
            say(f"{what}: {dt:.1f} s (CPU {dc:.1f} s, load {_load()})")
            return dt, dc, out

        def one_run():
            return Experiment(grid_spec).run()

        def sweep(stack_seeds: bool):
            return lambda: run_grid(grid_spec, {"distill.temperature": [1.0, 2.0, 4.0, 8.0]}, seeds,
                                    cache_root=None, stack=True, stack_seeds=stack_seeds)

        # interleaved, so a slower or faster stretch of a shared machine hits both: one run, the sweep
        # (every seed together), ... (grid_repeats times), the sweep seed by seed once, one run again;
        # the ratio is median over median (wall) and the same for process CPU time
        runs, sweeps = [], []
        g = None
        for _ in range(grid_repeats):
            runs.append(timed(f"one run of {spec.name}", one_run)[:2])
            dt, dc, g = timed(f"4 x {seeds} temperature sweep, seeds together", sweep(True))
            sweeps.append((dt, dc))
        by_seed = timed(f"4 x {seeds} temperature sweep, seed by seed", sweep(False))[:2]
        runs.append(timed(f"one run of {spec.name}", one_run)[:2])
        one_s, one_c = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        grid_s, grid_c = statistics.median(x[0] for x in sweeps), statistics.median(x[1] for x in sweeps)
        report["grid"] = {"one_run_s": round(one_s, 2), "one_run_repeats_s": [round(r[0], 2) for r in runs],
                          "sweep_4x%d_s" % seeds: round(grid_s, 2), "sweep_repeats_s": [round(x[0], 2) for x in sweeps],
                          "ratio": round(grid_s / one_s, 3), "cpu_ratio": round(grid_c / one_c, 3),
                          "seed_by_seed_s": round(by_seed[0], 2), "seed_by_seed_ratio": round(by_seed[0] / one_s, 3),
                          "stacked": g.stacked, "naive_estimate_s": round(4 * seeds * one_s, 1)}
    report["load_end"] = _load()
    return report


def sweep_bench_table(rep: dict[str, Any]) -> str:
    lines = [f"Students trained together — {rep['spec']}, {rep['student_epochs']} student epochs, "
             f"{rep['threads']} thread(s), {rep['repeats']} repeat(s), load {rep['load_start']} → {rep['load_end']}",
             f"one at a time: {rep['sequential_s_per_student']:.2f} s per student "
             f"(CPU {rep['sequential_cpu_s_per_student']:.2f} s)",
             "| students | stacked s / student | stacked / one at a time (wall) | (process CPU) |", "|---|---|---|---|"]
    for n, v in rep["per_student"].items():
        lines.append(f"| {n} | {v['stacked_s_per_student']:.2f} | {v['ratio']:.2f}× | {v['cpu_ratio']:.2f}× |")
    g = rep.get("grid")
    if g:
        key = next(k for k in g if k.startswith("sweep_"))
        lines.append(f"temperature sweep {key[6:-2]} ({rep['grid_teacher_epochs']} teacher / "
                     f"{rep['grid_student_epochs']} student epochs): {g[key]:.1f} s vs one run "
                     f"{g['one_run_s']:.1f} s (medians of {rep['grid_repeats']} interleaved repeats) → "
                     f"{g['ratio']:.2f}× (process CPU {g['cpu_ratio']:.2f}×) with every seed's students stacked "
                     "together "
                     f"(seed by seed: {g['seed_by_seed_s']:.1f} s = {g['seed_by_seed_ratio']:.2f}×; "
                     f"run one at a time it would be ~{g['naive_estimate_s']:.0f} s)")
    return "\n".join(lines)


def main_sweep_bench(spec: ExperimentSpec, repeats: int, threads: int, as_json: bool,
                     grid_spec: ExperimentSpec | None = None,
                     counts: tuple[int, ...] = (2, 4, 8, 16), out_dir: str | Path | None = "benchmarks/results",
                     progress=None, grid_repeats: int = 3) -> dict[str, Any]:
    rep = run_sweep_bench(spec, counts, repeats, threads, grid_spec, progress=progress, grid_repeats=grid_repeats)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"bench-sweep-{spec.name}-{time.strftime('%Y-%m-%d-%H%M%S')}.json"
        path.write_text(json.dumps(rep, indent=2), encoding="utf-8")
        rep["file"] = str(path)
    print(json.dumps(rep, indent=2) if as_json else sweep_bench_table(rep) + (
        f"\n(JSON: {rep['file']})" if "file" in rep else ""))
    return rep
